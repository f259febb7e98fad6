"""One stream's backfill: what is missing of the range, from the archive, then from the API."""

from __future__ import annotations

import time

from ost.archive import Archive, is_archived
from ost.backfill.from_api import fill_from_api
from ost.backfill.from_archive import fill_from_archive
from ost.backfill.plan import check_source, plan_archive
from ost.backfill.result import BackfillResult, Progress
from ost.backfill.tally import StreamTally
from ost.binance import BinanceClient
from ost.gaps import (
    ExchangeGapLog,
    candle_count,
    closed_stop,
    first_open_from,
    missing_ranges,
    subtract,
)
from ost.intervals import Interval, Symbol
from ost.settings import DEFAULT_MAX_CONCURRENCY, load_settings
from ost.store import CandleStore, Quarantined


def backfill_stream(  # noqa: PLR0917  # the signature promised to the CLI and the flows
    client: BinanceClient,
    store: CandleStore,
    symbol: Symbol,
    interval: Interval,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
    progress: Progress | None = None,
    workers: int = DEFAULT_MAX_CONCURRENCY,
    recheck: bool = False,
) -> BackfillResult:
    """Fill the closed candles of ``[start_ms, end_ms)`` that are missing; raise on a failure.

    ``archive_base_url`` defaults to ``OST_ARCHIVE_BASE_URL``. Whatever was stored before a
    failure stays stored; running again resumes. ``recheck`` first forgets the exchange-side
    gaps recorded in the range, so that Binance is asked about them again.
    """
    chosen = check_source(source)
    started = time.perf_counter()
    now = client.now_ms()  # the earlier of the two clocks: see ost.clock
    first = first_open_from(interval, start_ms)
    stop = max(first, closed_stop(interval, end_ms, now))
    gap_log = ExchangeGapLog.of(store)
    rechecked = (
        gap_log.forget(symbol, interval, (first, first_open_from(interval, end_ms)))
        if recheck
        else []
    )
    refetched: list[BackfillResult] = []  # damaged partitions met: quarantined, fetched again

    def refetch(quarantined: Quarantined) -> None:
        again = refetch_quarantined(
            client, store, quarantined, source=chosen, archive_base_url=archive_base_url
        )
        refetched.extend([again] if again is not None else [])

    stored = store.healing(
        symbol, interval, lambda: missing_ranges(store, symbol, interval, first, stop), refetch
    )
    todo = subtract(stored, gap_log.load(symbol, interval))
    result = BackfillResult(
        symbol,
        interval,
        first,
        stop,
        chosen,
        missing=candle_count(interval, todo),
        rechecked=rechecked,
    )
    for again in refetched:
        result.written += again.written
        result.from_archive += again.from_archive
        result.from_api += again.from_api
    tally = StreamTally(result, todo, progress)
    tally.report(0)
    if chosen != "api" and is_archived(interval) and todo:
        base_url = archive_base_url or load_settings().archive_base_url
        # The client's connection pool serves the archive too (same timeout and user agent).
        archive = Archive(base_url, client.http, max_attempts=client.max_attempts)
        files = plan_archive(symbol, interval, todo, now, chosen)
        todo = fill_from_archive(archive, store, files, tally, workers=workers, now_ms=now)
    for missing in todo:
        fill_from_api(client, store, missing, tally, gap_log=gap_log, workers=workers)
    tally.conclude()
    result.seconds = time.perf_counter() - started
    return result


def refetch_quarantined(
    client: BinanceClient,
    store: CandleStore,
    quarantined: Quarantined,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
) -> BackfillResult | None:
    """Fetch again the candles of a quarantined partition: a backfill of its whole range.

    None for a file that was not a partition's own (its rows were never the store's).
    """
    span = quarantined.range_ms
    if span is None or quarantined.symbol is None or quarantined.interval is None:
        return None
    return backfill_stream(
        client,
        store,
        quarantined.symbol,
        quarantined.interval,
        *span,
        source=source,
        archive_base_url=archive_base_url,
    )

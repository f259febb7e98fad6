"""Many streams' backfill: a few streams at once, sharing the requests in flight."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Final, TypedDict

from ost.backfill.plan import check_source
from ost.backfill.result import BackfillResult, Progress, StreamProgress
from ost.backfill.stream import backfill_stream
from ost.binance import BinanceClient
from ost.concurrency import in_order_concurrently
from ost.errors import OstError
from ost.intervals import Interval, Stream, Symbol
from ost.settings import DEFAULT_MAX_CONCURRENCY
from ost.store import CandleStore

#: Streams one backfill runs at once, :func:`backfill_streams` and the ``backfill`` flow alike.
#: Requests in flight are bounded apart from it (the streams share ``OST_MAX_CONCURRENCY``),
#: so this only sets how much streams overlap: many short streams (``--interval all --days
#: 1``) are bound by round trips, and 4 at once run them 2.5x faster than one by one
#: (docs/benchmarks.md); more would only add parse and writer threads. The ``ingest-all`` flow
#: has a bound of its own (``flows.ingest.MAX_PARALLEL_STREAMS``): an ingestion's stream is a
#: page or two fetched one after the other, sharing no pool of requests in flight.
STREAMS_AT_ONCE: Final = 4


class StreamsOptions(TypedDict, total=False):
    """The options of :func:`backfill_streams` that a caller passes on (``ost gaps --repair``)."""

    source: str
    archive_base_url: str | None
    progress: StreamProgress | None
    workers: int
    recheck: bool


def backfill_streams(
    client: BinanceClient,
    store: CandleStore,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
    progress: StreamProgress | None = None,
    on_result: Callable[[BackfillResult], None] | None = None,
    workers: int = DEFAULT_MAX_CONCURRENCY,
    recheck: bool = False,
) -> list[BackfillResult]:
    """:func:`~ost.backfill.stream.backfill_stream` for each stream, several at once.

    A failed stream is reported in its result, and the others go on. Up to
    ``STREAMS_AT_ONCE`` streams run at once and share ``workers`` requests in flight (at least
    one each), inside the client's one weight budget. ``on_result`` is called in this thread,
    and the results come back, in the streams' order.
    """
    chosen = check_source(source)
    at_once = max(1, min(len(streams), STREAMS_AT_ONCE, workers))

    def run(stream: Stream) -> BackfillResult:
        symbol, interval = stream
        started = time.perf_counter()
        try:
            return backfill_stream(
                client,
                store,
                symbol,
                interval,
                start_ms,
                end_ms,
                source=chosen,
                archive_base_url=archive_base_url,
                progress=_bind_progress(progress, symbol, interval),
                workers=max(1, workers // at_once),
                recheck=recheck,
            )
        except OstError as exc:
            return BackfillResult(
                symbol,
                interval,
                start_ms,
                end_ms,
                chosen,
                ok=False,
                seconds=time.perf_counter() - started,
                reason=exc.reason,
                error=str(exc),
            )

    results = []
    with contextlib.closing(in_order_concurrently(run, streams, at_once)) as outcomes:
        for result in outcomes:
            if on_result is not None:
                on_result(result)
            results.append(result)
    return results


def _bind_progress(
    progress: StreamProgress | None, symbol: Symbol, interval: Interval
) -> Progress | None:
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(symbol, interval, done, total)

    return report

"""One ingestion pass: each stream from its last stored closed candle up to now.

Streams are independent: one that fails is reported as failed and stops no other. Pages are
stored as they arrive, so a pass that dies halfway keeps what it fetched, and the next pass
resumes from the last stored candle without a gap. The ``ingest-all`` flow runs the same
:func:`ingest_stream` per stream, as a task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ost import intervals
from ost.binance import BinanceClient
from ost.errors import OstError
from ost.store import CandleStore


@dataclass(frozen=True)
class StreamOutcome:
    """What one stream's ingestion did."""

    symbol: str
    interval: str
    ok: bool
    written: int
    last_open_ms: int | None
    seconds: float
    reason: str | None = None
    error: str | None = None
    #: The error that failed the stream, for a caller that must raise it (the flow's task).
    exception: OstError | None = field(default=None, repr=False, compare=False)


def resume_point(
    store: CandleStore, symbol: str, interval: str, now_ms: int, lookback_days: float
) -> int:
    """Where a stream's ingestion starts: after its last stored candle, or the lookback ago."""
    last = store.last_open_time(symbol, interval)
    if last is not None:
        return intervals.next_open(interval, last)
    return intervals.align(interval, now_ms - int(lookback_days * intervals.DAY_MS))


def ingest_stream(
    client: BinanceClient,
    store: CandleStore,
    symbol: str,
    interval: str,
    *,
    lookback_days: float,
) -> StreamOutcome:
    """Fetch and store the closed candles a stream is missing; raise on any failure."""
    started = time.perf_counter()
    if client.server_offset_ms is None:
        client.sync_time()
    start = resume_point(store, symbol, interval, client.server_now_ms(), lookback_days)
    written = 0
    for page in client.closed_klines(symbol, interval, start):
        written += store.merge(symbol, interval, page)
    return StreamOutcome(
        symbol,
        interval,
        ok=True,
        written=written,
        last_open_ms=store.last_open_time(symbol, interval),
        seconds=time.perf_counter() - started,
    )


def ingest_or_report(
    client: BinanceClient,
    store: CandleStore,
    symbol: str,
    interval: str,
    *,
    lookback_days: float,
) -> StreamOutcome:
    """:func:`ingest_stream`, with a failure returned as a failed outcome naming its reason."""
    started = time.perf_counter()
    try:
        return ingest_stream(client, store, symbol, interval, lookback_days=lookback_days)
    except OstError as exc:
        return StreamOutcome(
            symbol,
            interval,
            ok=False,
            written=0,
            last_open_ms=store.last_open_time(symbol, interval),
            seconds=time.perf_counter() - started,
            reason=exc.reason,
            error=str(exc),
            exception=exc,
        )


def ingest_all(
    client: BinanceClient,
    store: CandleStore,
    streams: Iterable[tuple[str, str]],
    *,
    lookback_days: float,
    on_outcome: Callable[[StreamOutcome], None] | None = None,
) -> list[StreamOutcome]:
    """Ingest every stream in turn; a failed stream is reported and the others go on."""
    outcomes = []
    for symbol, interval in streams:
        outcome = ingest_or_report(client, store, symbol, interval, lookback_days=lookback_days)
        if on_outcome is not None:
            on_outcome(outcome)
        outcomes.append(outcome)
    return outcomes

"""One ingestion pass: each stream from its last stored closed candle up to now.

Streams are independent: one that fails is reported as failed and stops no other. Pages are
stored as they arrive, so a pass that dies halfway keeps what it fetched, and the next pass
resumes from the last stored candle without a gap. The ``ingest-all`` flow runs the same
:func:`ingest_all` over chunks of streams, a task run per chunk.

A stream is ``ok`` only when every closed candle up to now is stored or proven exchange-side
(:mod:`ost.paging`: a later candle in Binance's answer; such a hole is recorded with its
evidence). When Binance answers nothing for the rest of the range, not even a later candle, the
stream is ``incomplete``: not ok, with one line saying how many candles are still missing,
where, and why (an :class:`~ost.errors.Incomplete`, which the flow's task raises).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ost import intervals
from ost.backfill import refetch_quarantined
from ost.binance import BinanceClient
from ost.errors import Incomplete, OstError, StoreError
from ost.gaps import ExchangeGapLog, incomplete_line
from ost.intervals import Interval, Stream, Symbol
from ost.paging import Findings
from ost.store import CandleStore, Quarantined


@dataclass(frozen=True)
class StreamOutcome:
    """What one stream's ingestion did."""

    symbol: Symbol
    interval: Interval
    ok: bool
    written: int
    last_open_ms: int | None
    seconds: float
    reason: str | None = None
    error: str | None = None
    #: Why the stream ended, its symbol no longer trading: its status (``BREAK``) or
    #: ``delisted`` (see :mod:`ost.universe`); ``ok`` then, and not recorded as a success.
    ended: str | None = None
    #: The error that failed the stream, for a caller that must raise it (the flow's task).
    exception: OstError | None = field(default=None, repr=False, compare=False)

    @property
    def result(self) -> str:
        """``ok``, ``incomplete`` or ``failed: REASON``, as ``ost ingest`` shows it."""
        if self.ok:
            return "ok"
        if self.reason == Incomplete.reason:
            return Incomplete.reason
        return f"failed: {self.reason}"

    def as_row(self) -> dict[str, Any]:
        """The outcome as plain data (a task's result, an artifact's row): no exception object."""
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "result": self.result,
            "written": self.written,
            "last_open_ms": self.last_open_ms,
            "error": self.error,
        }


def resume_point(
    store: CandleStore, symbol: Symbol, interval: Interval, now_ms: int, lookback_days: float
) -> int:
    """Where a stream's ingestion starts: after its last stored candle, or the lookback ago."""
    last = store.last_open_time(symbol, interval)
    if last is not None:
        return intervals.next_open(interval, last)
    return intervals.align(interval, now_ms - int(lookback_days * intervals.DAY_MS))


def ingest_stream(
    client: BinanceClient,
    store: CandleStore,
    symbol: Symbol,
    interval: Interval,
    *,
    lookback_days: float,
) -> StreamOutcome:
    """Fetch and store the closed candles a stream is missing; raise on any failure.

    Closed by the earlier of the local clock and Binance's (:meth:`BinanceClient.now_ms`). Holes
    that Binance's answers prove are recorded; candles it answered nothing for leave the outcome
    not ok, ``incomplete``, with its :class:`~ost.errors.Incomplete` in ``exception``.
    """
    started = time.perf_counter()
    start = resume_point(store, symbol, interval, client.now_ms(), lookback_days)
    written = 0
    findings = Findings()
    for page in client.closed_klines(symbol, interval, start, findings=findings):
        written += store.merge(symbol, interval, page)
    ExchangeGapLog.of(store).record(symbol, interval, findings.proven)
    left = [each.candles for each in findings.unanswered]
    problem = (
        Incomplete.of_stream(symbol, interval, incomplete_line(interval, left, findings.unanswered))
        if left
        else None
    )
    return StreamOutcome(
        symbol,
        interval,
        ok=problem is None,
        written=written,
        last_open_ms=store.last_open_time(symbol, interval),
        seconds=time.perf_counter() - started,
        reason=None if problem is None else problem.reason,
        error=None if problem is None else str(problem),
        exception=problem,
    )


def ingest_or_report(
    client: BinanceClient,
    store: CandleStore,
    symbol: Symbol,
    interval: Interval,
    *,
    lookback_days: float,
) -> StreamOutcome:
    """:func:`ingest_stream`, with a failure returned as a failed outcome naming its reason.

    A damaged partition of the stream that it meets is healed in the same run
    (:meth:`CandleStore.healing`): quarantined, its range fetched again from the API, and the
    ingestion run again; the candles fetched again count as written.
    """
    started = time.perf_counter()
    refetched: list[int] = []

    def refetch(quarantined: Quarantined) -> None:
        result = refetch_quarantined(client, store, quarantined)
        refetched.append(result.written if result is not None else 0)

    try:
        outcome = store.healing(
            symbol,
            interval,
            lambda: ingest_stream(client, store, symbol, interval, lookback_days=lookback_days),
            refetch,
        )
        return replace(outcome, written=outcome.written + sum(refetched))
    except OstError as exc:
        return StreamOutcome(
            symbol,
            interval,
            ok=False,
            written=sum(refetched),
            last_open_ms=_stored_last_open(store, symbol, interval),
            seconds=time.perf_counter() - started,
            reason=exc.reason,
            error=str(exc),
            exception=exc,
        )


def _stored_last_open(store: CandleStore, symbol: Symbol, interval: Interval) -> int | None:
    """The newest stored open time, for an outcome that failed already; None if unreadable.

    The failure itself is what the outcome reports: a store that cannot say more (the reason the
    stream failed, maybe) must not turn the report into a traceback that stops the other streams.
    """
    try:
        return store.last_open_time(symbol, interval)
    except StoreError:
        return None


def ingest_all(
    client: BinanceClient,
    store: CandleStore,
    streams: Iterable[Stream],
    *,
    lookback_days: float,
    on_outcome: Callable[[StreamOutcome], None] | None = None,
    workers: int = 1,
) -> list[StreamOutcome]:
    """Ingest every stream, ``workers`` at once; a failed stream is reported and the others go on.

    The outcomes come back in the order of ``streams``. ``on_outcome`` is called as each stream
    ends, from the worker threads when ``workers`` > 1 (the client's pacer keeps them all inside
    one weight budget).
    """

    def one(stream: Stream) -> StreamOutcome:
        symbol, interval = stream
        outcome = ingest_or_report(client, store, symbol, interval, lookback_days=lookback_days)
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    chosen = list(streams)
    if workers <= 1 or len(chosen) <= 1:
        return [one(stream) for stream in chosen]
    with ThreadPoolExecutor(min(workers, len(chosen)), thread_name_prefix="ost-ingest") as pool:
        return list(pool.map(one, chosen))

"""The API path: page ``/api/v3/klines`` over a missing range, store it, record proven gaps.

Reading follows :mod:`ost.paging`: a short page is not the end, a hole is recorded exchange-side
(:class:`~ost.gaps.ExchangeGapLog`) only with an answer that proves it, and what Binance
answered nothing for stays missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ost import intervals
from ost.backfill.tally import StreamTally
from ost.backfill.writing import PartitionBuffer, PartitionWriter
from ost.binance import PAGE_LIMIT, BinanceClient
from ost.concurrency import in_order_concurrently
from ost.gaps import ExchangeGapLog, Range, candle_count, runs_of
from ost.intervals import Interval, Symbol
from ost.paging import Page, read_range, read_step
from ost.store import CandleStore


def fill_from_api(
    client: BinanceClient,
    store: CandleStore,
    missing: Range,
    tally: StreamTally,
    *,
    gap_log: ExchangeGapLog,
    workers: int = 1,
) -> None:
    """Fetch ``missing`` from the API, storing it partition by partition; record proven gaps.

    ``missing`` ends at most at the current candle's open (:func:`ost.clock.closed_stop`, by
    the earlier of the local clock and Binance's, measured at the start), so every candle
    asked for is closed, and proven gaps go to ``gap_log``. Requests run ``workers`` at a time
    (the client's pacer keeps them in the weight budget); pages are taken in time order and
    written once per partition, so memory stays bounded.
    """
    partitions = PartitionBuffer(tally.interval)
    with PartitionWriter(store, tally.symbol, tally.interval) as writer:
        for page in api_pages(client, tally.symbol, tally.interval, missing, workers=workers):
            tally.result.api_pages += 1
            _take_findings(page, tally, gap_log)
            for complete in partitions.add(page.columns):
                tally.count_api_writes(writer.submit_columns(complete))
            tally.report(candle_count(tally.interval, [page.settled]))
        for rest in partitions.flush():
            tally.count_api_writes(writer.submit_columns(rest))
        tally.count_api_writes(writer.drain())


def api_pages(
    client: BinanceClient, symbol: Symbol, interval: Interval, missing: Range, *, workers: int
) -> Iterator[Page]:
    """The pages of ``missing`` in time order (:func:`ost.paging.read_range`).

    The first request runs alone from the range's start: Binance answers it with the first
    1000 candles that exist, which skips a symbol's pre-listing time in one request. The
    rest is cut into windows of 1000 candles, each read to its end, ``workers`` at once.
    """
    start, end = missing
    first = read_step(client, symbol, interval, start, end)
    yield first
    cursor = first.settled[1]
    if first.unanswered is not None or cursor >= end:
        return
    step = intervals.FIXED_INTERVAL_MS.get(interval)
    if step is None or workers <= 1:  # 1M: calendar months, a page at a time
        yield from read_range(client, symbol, interval, cursor, end)
        return
    windows = [
        (at, min(at + PAGE_LIMIT * step, end)) for at in range(cursor, end, PAGE_LIMIT * step)
    ]

    def read_window(window: Range) -> list[Page]:
        """Every page of one window (one, unless a page came back short)."""
        return list(read_range(client, symbol, interval, *window))

    with contextlib.closing(in_order_concurrently(read_window, windows, workers)) as read:
        for pages in read:
            yield from pages


def _take_findings(page: Page, tally: StreamTally, gap_log: ExchangeGapLog) -> None:
    """Record what ``page`` proved; settle what it settled, and note what it left unanswered."""
    tally.result.exchange_gaps += gap_log.record(tally.symbol, tally.interval, page.proven)
    if page.unanswered is not None:
        tally.leave_unanswered(page.unanswered)
        return
    tally.settle([gap.candles for gap in page.proven])
    tally.settle(runs_of(tally.interval, page.columns["open_time"]))

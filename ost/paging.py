"""Reading a range of candles from Binance page by page, and what its answers prove.

:func:`read_range` asks ``/api/v3/klines`` for the candles of ``[start, end)`` from ``start``,
then again from after the last candle of each answer, until ``end`` is reached. A short page is
not the end of the data: a host or proxy that drops ``limit`` serves 500 rows a page, and reading
goes on after them.

What an answer proves about the candles it does not hold (:mod:`ost.gaps` records the proof):

* An answer to a request from ``cursor`` whose candles start after ``cursor``, or skip from one
  candle to a later one, proves that Binance has no candle in between: a
  :class:`~ost.gaps.ProvenGap`, whose evidence is the host, the request and the first candle
  after the hole (the 2023-03-24 halt: 12:39, then 14:00).
* An empty answer proves nothing. The request is sent again without ``endTime``, to find the
  next candle wherever it is. One at or after ``end`` proves the rest of the range a hole; one
  before ``end`` shows the empty answer was wrong, and reading goes on from it; none at all (up
  to now) leaves the rest of the range :class:`~ost.gaps.Unanswered`: missing, never
  exchange-side.

Nothing here imports prefect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ost import intervals, klines
from ost.gaps import Evidence, ProvenGap, Range, Unanswered, runs_of, subtract
from ost.intervals import Interval, Symbol

if TYPE_CHECKING:
    from ost.binance import BinanceClient, KlinePage


@dataclass(frozen=True)
class Page:
    """One step of a read: the range it settles, its candles there, and what it proved."""

    #: ``[cursor, to)``: every candle in it is either in ``columns`` or in a proven gap, unless
    #: ``unanswered`` says Binance answered nothing for it.
    settled: Range
    columns: klines.Columns
    proven: tuple[ProvenGap, ...] = ()
    unanswered: Unanswered | None = None


@dataclass
class Findings:
    """What the pages of a read proved and left unanswered, gathered as they pass."""

    proven: list[ProvenGap] = field(default_factory=list)
    unanswered: list[Unanswered] = field(default_factory=list)

    def add(self, page: Page) -> None:
        """Keep what ``page`` proved or left unanswered."""
        self.proven += page.proven
        if page.unanswered is not None:
            self.unanswered.append(page.unanswered)


def read_range(
    client: BinanceClient, symbol: Symbol, interval: Interval, start: int, end: int
) -> Iterator[Page]:
    """The pages of ``[start, end)`` in time order, until ``end`` or an unanswered rest.

    ``end`` must not be after the current candle's open: every candle asked for is closed.
    """
    cursor = start
    while cursor < end:
        page = read_step(client, symbol, interval, cursor, end)
        yield page
        if page.unanswered is not None:
            return
        cursor = page.settled[1]


def read_step(
    client: BinanceClient, symbol: Symbol, interval: Interval, cursor: int, end: int
) -> Page:
    """One answer from ``cursor`` (two if the first is empty), and what it settles of the range."""
    answer = client.kline_page(symbol, interval, cursor, end)
    if not _holds_from(answer, cursor):
        answer = client.kline_page(symbol, interval, cursor, None)
        if not _holds_from(answer, cursor):
            lost = Unanswered((cursor, end), answer.base_url, answer.request)
            return Page((cursor, end), klines.take(answer.columns, slice(0, 0)), unanswered=lost)
    opens = answer.columns["open_time"]
    inside = (opens >= cursor) & (opens < end)
    kept = answer.columns if inside.all() else klines.take(answer.columns, inside)
    reaches_end = bool(opens[-1] >= end)
    settled = (cursor, end if reaches_end else intervals.next_open(interval, int(opens[-1])))
    holes = subtract([settled], runs_of(interval, kept["open_time"]))
    proven = tuple(
        ProvenGap(
            hole,
            Evidence(
                answer.base_url,
                answer.request,
                next_open_ms=int(opens[np.searchsorted(opens, hole[1])]),
                answered_at_ms=answer.answered_at_ms,
            ),
        )
        for hole in holes
    )
    return Page(settled, kept, proven)


def _holds_from(answer: KlinePage, cursor: int) -> bool:
    """Whether ``answer`` holds a candle opening at or after ``cursor``."""
    opens = answer.columns["open_time"]
    return bool(len(opens)) and bool(opens[-1] >= cursor)

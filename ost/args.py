"""Parsing of what an operator types: symbol and interval lists, ISO times, day ranges.

Everything here raises :class:`~ost.errors.BadInput` with one line, before any request or write.

Ranges read as people mean them: ``--start`` and ``--end`` are both inclusive, so a range holds
every candle whose open time is at or after the start and at or before the end (as Binance's
``endTime`` reads), and a date alone means the whole day, for ``--end`` as for ``--start``:
``--start 2023-03-24 --end 2023-03-24`` is that day, 00:00 to the candle opening at 23:59. The
flows' ``start`` and ``end`` (:data:`FlowTime`) read the same way. Inside, a range is half-open:
:func:`time_range` returns the exclusive bound one past the inclusive end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator

from ost import intervals
from ost.errors import BadInput
from ost.intervals import Interval, Stream, Symbol
from ost.settings import Settings, split_commas
from ost.universe import Selection


def parse_symbols(text: str | None, settings: Settings) -> Selection:
    """``BTCUSDT,*FDUSD`` or ``all``, checked; None means the configured ``OST_SYMBOLS``.

    Symbols, ``all`` and patterns (:mod:`ost.universe`); a pattern is resolved later, by
    :meth:`ost.universe.Universe.resolve`.
    """
    if text is None:
        return Selection.of(settings.symbols)
    selection = Selection.of(split_commas(text))
    if not selection.items:
        raise BadInput("no symbol given")
    return selection


def parse_intervals(text: str | None, settings: Settings) -> list[Interval]:
    """``1h,1d`` or ``all`` as a parsed list; None and ``all`` mean ``OST_INTERVALS``."""
    if text is None or text.strip() == intervals.ALL:
        return list(settings.intervals)
    chosen = [intervals.parse_interval(interval) for interval in split_commas(text)]
    if not chosen:
        raise BadInput("no interval given")
    return list(dict.fromkeys(chosen))


def parse_time(text: str) -> int:
    """An ISO-8601 date or time (UTC when it has no offset) as epoch milliseconds."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"invalid time {text!r}: expected ISO-8601 like 2024-12-31T00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # In integers: a float's timestamp() * 1000 loses the millisecond (…00.015 became …00.014).
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def is_date_alone(text: str) -> bool:
    """Whether ``text`` is a date with no time of day, such as ``2023-03-24``."""
    try:
        dt.date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def parse_end(text: str) -> int:
    """The exclusive bound of an inclusive end: one past every candle opening at or before it.

    A time gives the next millisecond; a date alone gives the next day's midnight, so that the
    whole day is in.
    """
    moment = parse_time(text)
    return moment + (intervals.DAY_MS if is_date_alone(text) else 1)


def time_range(
    days: float | None, start: str | None, end: str | None, now_ms: int
) -> tuple[int, int]:
    """``[start, stop)`` in epoch ms from either ``days`` back from now, or ``start``/``end``.

    ``end`` is inclusive (:func:`parse_end`); ``stop`` is at most ``now_ms``.
    """
    if days is not None and start is not None:
        raise BadInput("give either --days or --start, not both")
    if days is None and start is None:
        raise BadInput("give --days N or --start T")
    if days is not None:
        if not 0 < days <= 36_500:
            raise BadInput(f"invalid --days {days:g}: expected a number of days above 0")
        if end is not None:
            raise BadInput("--end goes with --start, not with --days")
        return now_ms - int(days * intervals.DAY_MS), now_ms
    assert start is not None  # noqa: S101  # narrowed by the two checks above
    start_ms = parse_time(start)
    end_ms = parse_end(end) if end is not None else now_ms
    if start_ms >= end_ms:
        raise BadInput(
            f"--start {start} is after --end {end}" if end else f"--start {start} is not before now"
        )
    if start_ms < _BINANCE_FIRST_MS:
        raise BadInput(f"--start {start} is before Binance's first candle (2017-07-14)")
    return start_ms, min(end_ms, now_ms)


_BINANCE_FIRST_MS = int(dt.datetime(2017, 7, 14, tzinfo=dt.UTC).timestamp() * 1000)


def _date_alone_stays_a_date(value: Any) -> Any:
    """A flow parameter given as text: a date alone becomes a date (a whole day), not midnight."""
    if isinstance(value, str) and is_date_alone(value):
        return dt.date.fromisoformat(value.strip())
    return value


#: A flow's ``start`` or ``end``: a time (UTC when naive), or a date alone, which means the whole
#: day, as on the command line. Prefect's form offers both.
FlowTime = Annotated[dt.datetime | dt.date, BeforeValidator(_date_alone_stays_a_date)]


def flow_time_text(value: dt.datetime | dt.date | None) -> str | None:
    """A :data:`FlowTime` as the command line would have it: ``2023-03-24`` or a full time."""
    return None if value is None else value.isoformat()


def streams_and_range(
    settings: Settings,
    *,
    interval: str | None,
    symbols: str | None,
    days: float | None,
    start: str | None,
    end: str | None,
    now_ms: int,
    resolve: Callable[[Selection], Sequence[Symbol]],
) -> tuple[list[Stream], int, int]:
    """The streams and the ``[start, end)`` range that a backfill or a gap check names.

    Everything is checked first; then ``resolve`` makes symbols of the selection (a pattern may
    ask Binance's exchangeInfo, see :meth:`ost.universe.Universe.resolve`).
    """
    selection = parse_symbols(symbols, settings)
    chosen_intervals = parse_intervals(interval, settings)
    start_ms, end_ms = time_range(days, start, end, now_ms)
    streams = [Stream(symbol, each) for symbol in resolve(selection) for each in chosen_intervals]
    return streams, start_ms, end_ms

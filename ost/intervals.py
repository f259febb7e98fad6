"""Binance kline intervals: parsing, alignment and the time partition each one is stored in.

A :class:`Stream` is a symbol at an interval, the one value that names a stream everywhere.
Symbols and intervals are parsed once, where they come in (the command line, the settings, a
flow's parameters, names found on disk): :func:`parse_symbol` and :func:`parse_interval` are
the only makers of a :data:`Symbol` and an :data:`Interval`, so the layers below, which take
those types, never check them again (mypy proves every value they get came through a parser).

All times here are integer milliseconds since the epoch, UTC. ``1w`` candles open on Monday
00:00 UTC and ``1M`` candles on the 1st of the month, as Binance aligns them.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, NewType

from ost.errors import BadInput

SECOND_MS: Final = 1_000
MINUTE_MS: Final = 60 * SECOND_MS
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS
WEEK_MS: Final = 7 * DAY_MS
# 1970-01-01 was a Thursday; Binance weeks open on Monday (1970-01-05).
_MONDAY_OFFSET_MS: Final = 4 * DAY_MS

#: A symbol Binance could list: 2-20 characters of A-Z and 0-9 (:func:`parse_symbol` makes one).
Symbol = NewType("Symbol", str)
#: One of Binance's kline intervals (:func:`parse_interval` makes one).
Interval = NewType("Interval", str)

#: Fixed-length intervals in milliseconds. ``1M`` is calendar-aligned and handled apart.
FIXED_INTERVAL_MS: Final[dict[str, int]] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": WEEK_MS,
}
INTERVALS: Final[tuple[Interval, ...]] = tuple(map(Interval, (*FIXED_INTERVAL_MS, "1M")))
#: The word that means every interval of ``OST_INTERVALS``.
ALL: Final = "all"

if TYPE_CHECKING:  # mypy cannot read a Literal built at run time; to it, a choice is a str
    IntervalChoice = str
else:
    #: A flow parameter's type: one interval, or ``all`` (a drop-down in Prefect's form).
    IntervalChoice = Literal[(ALL, *INTERVALS)]

_SYMBOL_RE: Final = re.compile(r"^[A-Z0-9]{2,20}$")


class Stream(NamedTuple):
    """One kline stream: a symbol at an interval.

    A tuple, so it unpacks, compares, hashes and serializes as ``(symbol, interval)``: a key
    or a row written from a plain pair reads back equal to it.
    """

    symbol: Symbol
    interval: Interval


def parse_symbol(text: str) -> Symbol:
    """``text`` as a :data:`Symbol` if Binance could list it, else raise :class:`BadInput`."""
    if not _SYMBOL_RE.fullmatch(text):
        raise BadInput(f"invalid symbol {text!r}: expected 2-20 characters of A-Z and 0-9")
    return Symbol(text)


def parse_interval(text: str) -> Interval:
    """``text`` as an :data:`Interval` if it is one of Binance's, else raise :class:`BadInput`."""
    if text not in INTERVALS:
        raise BadInput(f"unknown interval {text!r}: expected one of {', '.join(INTERVALS)}")
    return Interval(text)


def parse_stream(symbol: str, interval: str) -> Stream:
    """``(symbol, interval)`` as a :class:`Stream`, each parsed; :class:`BadInput` if not."""
    return Stream(parse_symbol(symbol), parse_interval(interval))


def _month_start(ms: int, months_ahead: int = 0) -> int:
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    index = t.year * 12 + (t.month - 1) + months_ahead
    start = dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)
    return int(start.timestamp() * 1000)


def align(interval: str, ms: int) -> int:
    """Open time of the candle of ``interval`` that contains instant ``ms``."""
    if interval == "1M":
        return _month_start(ms)
    step = FIXED_INTERVAL_MS[interval]
    offset = _MONDAY_OFFSET_MS if interval == "1w" else 0
    return (ms - offset) // step * step + offset


def next_open(interval: str, open_ms: int) -> int:
    """Open time of the candle after the one that opens at ``open_ms``."""
    if interval == "1M":
        return _month_start(open_ms, months_ahead=1)
    return open_ms + FIXED_INTERVAL_MS[interval]


def is_aligned(interval: str, ms: int) -> bool:
    """Whether ``ms`` is an open time of ``interval``."""
    return align(interval, ms) == ms


def close_time(interval: str, open_ms: int) -> int:
    """Binance's close_time of a full candle: one millisecond before the next opens."""
    return next_open(interval, open_ms) - 1


def open_times(interval: str, start_ms: int, end_ms: int) -> list[int]:
    """Every open time of ``interval`` in ``[start_ms, end_ms)``, from the first aligned one."""
    current = align(interval, start_ms)
    if current < start_ms:
        current = next_open(interval, current)
    times: list[int] = []
    while current < end_ms:
        times.append(current)
        current = next_open(interval, current)
    return times


def count_between(interval: str, start_ms: int, end_ms: int) -> int:
    """How many candles of ``interval`` open in ``[start_ms, end_ms)``."""
    if interval == "1M":
        return len(open_times(interval, start_ms, end_ms))
    step = FIXED_INTERVAL_MS[interval]
    first = align(interval, start_ms)
    if first < start_ms:
        first += step
    return max(0, (end_ms - first + step - 1) // step)


# ---- time partitions of the store -------------------------------------------------------------

#: How much time one Parquet file of a stream covers: "day", "month" or "year". Chosen so that a
#: file holds at most a few thousand rows (1s excepted), which keeps a 15-minute update cheap.
PARTITION_SPAN: Final[dict[str, str]] = {
    "1s": "day",
    "1m": "day",
    "3m": "day",
    "5m": "day",
    "15m": "month",
    "30m": "month",
    "1h": "year",
    "2h": "year",
    "4h": "year",
    "6h": "year",
    "8h": "year",
    "12h": "year",
    "1d": "year",
    "3d": "year",
    "1w": "year",
    "1M": "year",
}


def partition_start(interval: str, open_ms: int) -> dt.date:
    """First day of the time partition that holds the candle opening at ``open_ms``."""
    day = dt.datetime.fromtimestamp(open_ms / 1000, tz=dt.UTC).date()
    span = PARTITION_SPAN[interval]
    if span == "day":
        return day
    if span == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def partition_end_ms(interval: str, start: dt.date) -> int:
    """First instant after the partition that starts on ``start``."""
    span = PARTITION_SPAN[interval]
    if span == "day":
        end = start + dt.timedelta(days=1)
    elif span == "month":
        end = start.replace(day=calendar.monthrange(start.year, start.month)[1]) + dt.timedelta(
            days=1
        )
    else:
        end = start.replace(year=start.year + 1)
    return date_ms(end)


def date_ms(day: dt.date) -> int:
    """Midnight UTC of ``day`` in epoch milliseconds."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)

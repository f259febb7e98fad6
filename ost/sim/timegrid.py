"""The simulator's own candle grid: Binance's intervals and where their candles open.

Kept apart from :mod:`ost.intervals` on purpose: the simulator is the tests' witness of what
Binance does, so it must not share the arithmetic of the code it checks. Times are epoch
milliseconds, UTC. As Binance aligns them: candles up to ``3d`` open at whole multiples of their
length since the epoch, ``1w`` candles on Monday 00:00 and ``1M`` candles on the 1st of a month.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from ost.errors import BadInput

SECOND_MS: Final = 1_000
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000

#: Binance's intervals, in the order of its documentation (the synthetic market's seeds depend on
#: it), with their lengths; ``1M`` has none (months differ).
LENGTH_MS: Final[dict[str, int | None]] = {
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
    "1w": 7 * DAY_MS,
    "1M": None,
}
INTERVALS: Final = tuple(LENGTH_MS)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def check(interval: str) -> None:
    """Raise :class:`BadInput` unless Binance has ``interval``."""
    if interval not in LENGTH_MS:
        raise BadInput(f"Binance has no interval {interval!r}")


def fixed_length(interval: str) -> int:
    """The length of a candle of ``interval`` in ms (not for ``1M``)."""
    length = LENGTH_MS[interval]
    if length is None:
        raise ValueError(f"{interval} candles have no fixed length")
    return length


def _ms(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


def _moment(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def day_start_ms(day: dt.date) -> int:
    """Midnight UTC of ``day``."""
    return _ms(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


def candle_open(interval: str, ms: int) -> int:
    """The open time of the candle of ``interval`` that holds the instant ``ms``."""
    if interval == "1M":
        moment = _moment(ms)
        return day_start_ms(dt.date(moment.year, moment.month, 1))
    if interval == "1w":
        day = _moment(ms).date()
        return day_start_ms(day - dt.timedelta(days=day.weekday()))
    length = fixed_length(interval)
    return ms - ms % length


def next_open(interval: str, open_ms: int) -> int:
    """The open time of the candle after the one that opens at ``open_ms``."""
    if interval != "1M":
        return open_ms + fixed_length(interval)
    moment = _moment(open_ms)
    year, month = divmod(moment.year * 12 + moment.month, 12)  # month is 0-based here
    return day_start_ms(dt.date(year, month + 1, 1))


def open_times(interval: str, low: int, high: int) -> list[int]:
    """Every open time of ``interval`` in ``[low, high)``."""
    times: list[int] = []
    current = candle_open(interval, low)
    if current < low:
        current = next_open(interval, current)
    while current < high:
        times.append(current)
        current = next_open(interval, current)
    return times

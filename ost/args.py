"""Parsing of what an operator types: symbol and interval lists, ISO times, day ranges.

Everything here raises :class:`~ost.errors.BadInput` with one line, before any request or write.
"""

from __future__ import annotations

import datetime as dt

from ost import intervals
from ost.errors import BadInput
from ost.settings import Settings, split_commas


def parse_symbols(text: str | None, settings: Settings) -> list[str]:
    """``BTCUSDT,ETHUSDT`` as a checked list; None means the configured ``OST_SYMBOLS``."""
    if text is None:
        return list(settings.symbols)
    symbols = [intervals.check_symbol(symbol) for symbol in split_commas(text)]
    if not symbols:
        raise BadInput("no symbol given")
    return list(dict.fromkeys(symbols))


def parse_intervals(text: str | None, settings: Settings) -> list[str]:
    """``1h,1d`` or ``all`` as a checked list; None and ``all`` mean ``OST_INTERVALS``."""
    if text is None or text.strip() == intervals.ALL:
        return list(settings.intervals)
    chosen = [intervals.check_interval(interval) for interval in split_commas(text)]
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
    return int(moment.timestamp() * 1000)


def time_range(
    days: float | None, start: str | None, end: str | None, now_ms: int
) -> tuple[int, int]:
    """``[start, end)`` in epoch ms from either ``days`` back from now, or ``start``/``end``."""
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
    end_ms = parse_time(end) if end is not None else now_ms
    if start_ms >= end_ms:
        raise BadInput(f"--start {start} is not before --end {end or 'now'}")
    if start_ms < _BINANCE_FIRST_MS:
        raise BadInput(f"--start {start} is before Binance's first candle (2017-07-14)")
    return start_ms, min(end_ms, now_ms)


_BINANCE_FIRST_MS = int(dt.datetime(2017, 7, 14, tzinfo=dt.UTC).timestamp() * 1000)


def streams_and_range(
    settings: Settings,
    *,
    interval: str | None,
    symbols: str | None,
    days: float | None,
    start: str | None,
    end: str | None,
    now_ms: int,
) -> tuple[list[tuple[str, str]], int, int]:
    """The streams and the ``[start, end)`` range that a backfill or a gap check names."""
    chosen_symbols = parse_symbols(symbols, settings)
    chosen_intervals = parse_intervals(interval, settings)
    start_ms, end_ms = time_range(days, start, end, now_ms)
    streams = [(symbol, each) for symbol in chosen_symbols for each in chosen_intervals]
    return streams, start_ms, end_ms

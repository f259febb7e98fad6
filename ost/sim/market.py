"""What the simulated exchange has traded: every candle, as a pure function of its arguments.

:func:`klines` is the reference for tests: ``klines(symbol, interval, start_ms, end_ms, now_ms)``
returns exactly the rows the simulator's API serves, for every candle opening in
``[start_ms, end_ms)`` and at or before ``now_ms`` (the candle containing ``now_ms`` is the open,
still-changing one). :func:`page` adds the API's paging rules (``startTime``, ``endTime``,
``limit``), and :func:`exchange_gaps` lists where the exchange itself has no candles. A symbol
whose trading stopped (its ``halted_ms``) has candles up to then, as of then, and none after.

Where the candles come from:

* synthetic closed forms (:mod:`ost.sim.synthetic`) everywhere, except
* inside real-data spans (:mod:`ost.sim.realdata`, BTCUSDT only): real 1m candles, nothing in
  the minutes Binance had none. A candle of a longer interval whose time overlaps a span is
  aggregated from the 1m candles of its time (open of the first, close of the last, highest
  high, lowest low, sums of the rest); it does not exist when no 1m candle does. Its close_time is
  the full candle's, unless its last 1m candle closed early (a halt), then that one's. 1s candles
  inside a span are cut from the real 1m candle of their minute (prices moving linearly from its
  open to its close, its high and low in its first second, volumes shared out evenly).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Final

import numpy as np

from ost.errors import BadInput
from ost.sim import realdata, synthetic, timegrid
from ost.sim.candles import Candles
from ost.sim.symbols import Listing, find_listing
from ost.sim.timegrid import MINUTE_MS, SECOND_MS

DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 1000


class UnknownSymbol(BadInput):
    """The simulator does not list this symbol (Binance answers -1121 "Invalid symbol.")."""

    reason = "unknown_symbol"
    hint = "See ost.sim.symbols.LISTINGS for the symbols the simulator lists."


def listing_of(symbol: str) -> Listing:
    """The listing of ``symbol``, or :class:`UnknownSymbol`."""
    listing = find_listing(symbol)
    if listing is None:
        raise UnknownSymbol(f"the simulator does not list {symbol!r}")
    return listing


def klines(symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int) -> list[list[Any]]:
    """The API's rows of every candle opening in ``[start_ms, end_ms)`` and by ``now_ms``."""
    return candles(symbol, interval, start_ms, end_ms, now_ms).rows()


def candles(symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int) -> Candles:
    """Like :func:`klines`, as numpy columns (none after the symbol's trading stopped)."""
    listing = listing_of(symbol)
    timegrid.check(interval)
    now_ms = listing.market_now(now_ms)
    low = max(start_ms, timegrid.candle_open(interval, listing.listed_ms))
    high = min(end_ms, now_ms + 1)
    if low >= high:
        return Candles.empty()
    opens = _open_times(interval, low, high)
    nexts = _next_opens(interval, opens)
    special = _overlaps_spans(symbol, opens, nexts)
    if not special.any():
        return synthetic.candles(listing, interval, opens, nexts, now_ms)
    if interval == "1m":
        return _minutes(listing, low, high, now_ms)
    plain = synthetic.candles(listing, interval, opens[~special], nexts[~special], now_ms)
    if interval == "1s":
        return Candles.concat([plain, _real_seconds(listing, low, high, now_ms)])
    runs = [
        _aggregated_run(listing, interval, run_opens, run_nexts, now_ms)
        for run_opens, run_nexts in _runs(opens[special], nexts[special])
    ]
    return Candles.concat([plain, *runs])


def page(
    symbol: str,
    interval: str,
    now_ms: int,
    *,
    start_time: int | None = None,
    end_time: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Candles:
    """What ``/api/v3/klines`` answers, following Binance's rules.

    No times: the ``limit`` most recent candles. ``startTime`` (with or without ``endTime``): the
    oldest ``limit`` candles from it. ``endTime`` alone: the most recent ``limit`` up to it.
    ``endTime`` is inclusive; nothing opens after ``now_ms``. ``limit`` must be 1 to 1000.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"limit {limit} is not between 1 and {MAX_LIMIT}")
    listing = listing_of(symbol)
    timegrid.check(interval)
    now_ms = listing.market_now(now_ms)
    first = timegrid.candle_open(interval, listing.listed_ms)
    stop = min(now_ms, end_time if end_time is not None else now_ms) + 1
    if start_time is not None:
        low = max(start_time, first)
        return _forward(symbol, interval, low, stop, limit=limit, now_ms=now_ms)
    return _backward(symbol, interval, first, stop, limit=limit, now_ms=now_ms)


def exchange_gaps(symbol: str) -> list[tuple[int, int]]:
    """Where ``symbol`` has no 1m candle inside a real-data span: ``[start_ms, end_ms)`` ranges."""
    gaps: list[tuple[int, int]] = []
    for span in realdata.spans(symbol):
        minutes = np.arange(span.start_ms, span.end_ms, MINUTE_MS, dtype=np.int64)
        missing = ~np.isin(minutes, span.rows.open_time)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], missing.astype(np.int8), [0]])))
        gaps.extend(
            (int(minutes[a]), int(minutes[b - 1]) + MINUTE_MS)
            for a, b in zip(edges[::2], edges[1::2], strict=True)
        )
    return _merge_ranges(gaps)


# ---- open times ---------------------------------------------------------------------------------


def _open_times(interval: str, low: int, high: int) -> np.ndarray:
    """Open times of ``interval`` in ``[low, high)``."""
    if interval == "1M":
        return np.array(timegrid.open_times(interval, low, high), dtype=np.int64)
    step = timegrid.fixed_length(interval)
    first = timegrid.candle_open(interval, low)
    if first < low:
        first += step
    return np.arange(first, high, step, dtype=np.int64)


def _next_opens(interval: str, opens: np.ndarray) -> np.ndarray:
    if interval == "1M":
        return np.array([timegrid.next_open(interval, int(t)) for t in opens], dtype=np.int64)
    return opens + timegrid.fixed_length(interval)


def _advance(interval: str, t: int, count: int) -> int:
    """An instant ``count`` candles after ``t`` (far enough for 1M: the end of time)."""
    if interval == "1M":
        return 2**62
    return t + count * timegrid.fixed_length(interval)


def _forward(
    symbol: str, interval: str, low: int, stop: int, *, limit: int, now_ms: int
) -> Candles:
    """The first ``limit`` candles opening in ``[low, stop)``, a chunk at a time (gaps skip)."""
    found: list[Candles] = []
    total = 0
    while low < stop and total < limit:
        chunk_end = min(stop, _advance(interval, low, limit - total))
        chunk = candles(symbol, interval, low, chunk_end, now_ms)
        found.append(chunk)
        total += len(chunk)
        low = chunk_end
    return Candles.concat(found).take(slice(0, limit))


def _backward(
    symbol: str, interval: str, first: int, stop: int, *, limit: int, now_ms: int
) -> Candles:
    """The last ``limit`` candles opening in ``[first, stop)``, a chunk at a time."""
    if interval == "1M":
        every = candles(symbol, interval, first, stop, now_ms)
        return every.take(slice(max(0, len(every) - limit), None))
    step = timegrid.fixed_length(interval)
    found: list[Candles] = []
    total = 0
    while stop > first and total < limit:
        chunk_start = max(first, stop - (limit - total) * step)
        chunk = candles(symbol, interval, chunk_start, stop, now_ms)
        found.append(chunk)
        total += len(chunk)
        stop = chunk_start
    every = Candles.concat(found)
    return every.take(slice(max(0, len(every) - limit), None))


# ---- real-data spans ----------------------------------------------------------------------------


def _overlaps_spans(symbol: str, opens: np.ndarray, nexts: np.ndarray) -> np.ndarray:
    """Which candles ``[open, next)`` overlap a real-data span."""
    starts, ends = realdata.span_starts_ends(symbol)
    special = np.zeros(len(opens), dtype=bool)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        special |= (opens < end) & (nexts > start)
    return special


def _minutes(listing: Listing, low: int, high: int, now_ms: int) -> Candles:
    """The 1m candles opening in ``[low, high)`` (``high`` ≤ ``now_ms`` + 1): real in spans."""
    parts: list[Candles] = []
    cursor = low
    for span in realdata.spans(listing.symbol):
        if span.end_ms <= low or span.start_ms >= high:
            continue
        parts.append(_synthetic_minutes(listing, cursor, min(span.start_ms, high), now_ms))
        parts.append(span.rows.between(max(low, span.start_ms), min(high, span.end_ms)))
        cursor = span.end_ms
    parts.append(_synthetic_minutes(listing, cursor, high, now_ms))
    return Candles.concat(parts)


def _synthetic_minutes(listing: Listing, low: int, high: int, now_ms: int) -> Candles:
    low = max(low, timegrid.candle_open("1m", listing.listed_ms))
    if low >= high:
        return Candles.empty()
    opens = _open_times("1m", low, high)
    return synthetic.candles(listing, "1m", opens, opens + MINUTE_MS, now_ms)


def _runs(opens: np.ndarray, nexts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split candles into runs of adjacent ones (each opens where the previous ends)."""
    breaks = np.flatnonzero(opens[1:] != nexts[:-1]) + 1
    yield from zip(np.split(opens, breaks), np.split(nexts, breaks), strict=True)


def _aggregated_run(
    listing: Listing, interval: str, opens: np.ndarray, nexts: np.ndarray, now_ms: int
) -> Candles:
    """Candles of adjacent buckets, aggregated from 1m candles; cached once all are closed."""
    if int(nexts[-1]) <= now_ms + 1:
        return _closed_run(listing, interval, tuple(opens.tolist()), tuple(nexts.tolist()))
    return _aggregate(listing, opens, nexts, now_ms)


@functools.lru_cache(maxsize=512)
def _closed_run(
    listing: Listing, interval: str, opens: tuple[int, ...], nexts: tuple[int, ...]
) -> Candles:
    del interval  # part of the cache key only: buckets of two intervals may coincide
    last_close = nexts[-1] - 1
    return _aggregate(listing, np.array(opens), np.array(nexts), last_close)


def _aggregate(listing: Listing, opens: np.ndarray, nexts: np.ndarray, now_ms: int) -> Candles:
    """One candle per bucket ``[opens[i], nexts[i])`` that holds a 1m candle."""
    minutes = _minutes(listing, int(opens[0]), min(int(nexts[-1]), now_ms + 1), now_ms)
    if not len(minutes):
        return Candles.empty()
    bucket = np.searchsorted(nexts, minutes.open_time, side="right")
    first = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    last = np.concatenate([first[1:] - 1, [len(bucket) - 1]])
    which = bucket[first]
    full_close = nexts[which] - 1
    minute_full_close = minutes.open_time[last] + MINUTE_MS - 1
    closed_early = minutes.close_time[last] < minute_full_close
    return Candles(
        open_time=opens[which].astype(np.int64),
        open=minutes.open[first],
        high=np.maximum.reduceat(minutes.high, first),
        low=np.minimum.reduceat(minutes.low, first),
        close=minutes.close[last],
        volume=np.add.reduceat(minutes.volume, first),
        close_time=np.where(closed_early, minutes.close_time[last], full_close).astype(np.int64),
        quote_volume=np.add.reduceat(minutes.quote_volume, first),
        trades=np.add.reduceat(minutes.trades, first),
        taker_buy_base_volume=np.add.reduceat(minutes.taker_buy_base_volume, first),
        taker_buy_quote_volume=np.add.reduceat(minutes.taker_buy_quote_volume, first),
    )


def _real_seconds(listing: Listing, low: int, high: int, now_ms: int) -> Candles:
    """The 1s candles opening in ``[low, high)`` inside spans, cut from the real 1m candles."""
    parts: list[Candles] = []
    for span in realdata.spans(listing.symbol):
        lo, hi = max(low, span.start_ms), min(high, span.end_ms)
        if lo < hi:
            minutes = span.rows.between(timegrid.candle_open("1m", lo), hi)
            parts.append(_split_minutes(minutes, listing.tick_size).between(lo, hi))
    seconds = Candles.concat(parts)
    return seconds.take(seconds.open_time <= now_ms)


def _split_minutes(minutes: Candles, tick: float) -> Candles:
    """Each 1m candle as the 1s candles up to its close_time (see the module docstring)."""
    lengths = -(-(minutes.close_time + 1 - minutes.open_time) // SECOND_MS)
    parent = np.repeat(np.arange(len(minutes)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    position = np.arange(len(parent)) - starts[parent]
    count = lengths[parent]
    open_time = minutes.open_time[parent] + position * SECOND_MS
    move = minutes.close[parent] - minutes.open[parent]
    open_ = synthetic.round_to_tick(minutes.open[parent] + move * position / count, tick)
    close = synthetic.round_to_tick(minutes.open[parent] + move * (position + 1) / count, tick)
    leading = position == 0
    high = np.where(leading, minutes.high[parent], np.maximum(open_, close))
    low = np.where(leading, minutes.low[parent], np.minimum(open_, close))
    trades = minutes.trades[parent] // count + (position < minutes.trades[parent] % count)

    def share(values: np.ndarray) -> np.ndarray:
        shared: np.ndarray = np.round(values[parent] / count, 8)
        return shared

    return Candles(
        open_time=open_time,
        open=open_,
        high=np.maximum(high, np.maximum(open_, close)),
        low=np.minimum(low, np.minimum(open_, close)),
        close=close,
        volume=share(minutes.volume),
        close_time=np.minimum(open_time + SECOND_MS - 1, minutes.close_time[parent]),
        quote_volume=share(minutes.quote_volume),
        trades=trades.astype(np.int64),
        taker_buy_base_volume=share(minutes.taker_buy_base_volume),
        taker_buy_quote_volume=share(minutes.taker_buy_quote_volume),
    )


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged

"""The synthetic market: deterministic, vectorized candles of any interval, from closed forms.

Each symbol has a price path ``P(t)`` and cumulative volume ``V(t)`` defined at every millisecond
by closed forms, so any candle is computed without generating the ones before it:

* ``log P(t)`` = a piecewise-linear trend through the symbol's price anchors, plus "value noise"
  at octaves from one second to half a year (hashed values at grid points, linearly
  interpolated), with amplitudes growing like the square root of the octave, as a random walk's.
* ``V(t)`` = a constant rate plus octaves of value noise too small to ever make it decrease, so
  volumes and trade counts add up exactly across intervals (a 1h volume is the sum of its 1m ones).

A candle over ``[a, b)`` (``a`` is the later of its open and the listing; ``b`` the earlier of its
end and just after "now", which makes the current candle grow) opens at ``P(a)``, closes at
``P(b)``, so every close equals the next open; its high and low stretch beyond them by a hashed
fraction of the volatility expected over ``b - a``. Prices are rounded to the symbol's tick.
Open and close agree between intervals; highs and lows are drawn per interval and do not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from ost.sim.candles import Candles
from ost.sim.symbols import Listing
from ost.sim.timegrid import DAY_MS, INTERVALS, MINUTE_MS, SECOND_MS

_U64: Final = np.uint64
_GOLDEN: Final = _U64(0x9E3779B97F4A7C15)
_MIX1: Final = _U64(0xBF58476D1CE4E5B9)
_MIX2: Final = _U64(0x94D049BB133111EB)

#: Octaves of the price noise, in ms: 1 s up to about half a year.
_PRICE_OCTAVES: Final = (
    SECOND_MS,
    15 * SECOND_MS,
    MINUTE_MS,
    5 * MINUTE_MS,
    30 * MINUTE_MS,
    3 * 60 * MINUTE_MS,
    DAY_MS,
    5 * DAY_MS,
    30 * DAY_MS,
    180 * DAY_MS,
)
#: Octaves of the volume rate, each moving it by at most ±2 * 10 % of the base rate.
_VOLUME_OCTAVES: Final = (MINUTE_MS, 60 * MINUTE_MS, DAY_MS, 30 * DAY_MS)
_VOLUME_SWING: Final = 0.1
#: Octaves of the taker-buy share of the volume.
_TAKER_OCTAVES: Final = (MINUTE_MS, 60 * MINUTE_MS)
_TAKER_SWING: Final = 0.02
#: Average traded value per trade, in quote currency.
_QUOTE_PER_TRADE: Final = 600.0
#: How far high and low may stretch, in units of the expected volatility over the candle.
_RANGE_SCALE: Final = 0.8


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: 64 well-mixed bits from each uint64."""
    z: np.ndarray = values
    z = (z ^ (z >> _U64(30))) * _MIX1
    z = (z ^ (z >> _U64(27))) * _MIX2
    mixed: np.ndarray = z ^ (z >> _U64(31))
    return mixed


def stream_seed(*parts: int) -> int:
    """A seed for one random stream, derived from integers (symbol seed, stream number, ...)."""
    state = np.zeros(1, dtype=np.uint64)
    for part in parts:
        state = _mix(state ^ np.array([part & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64))
    return int(state[0])


def uniform(seed: int, keys: np.ndarray) -> np.ndarray:
    """A uniform number in ``[0, 1)`` for each integer key, fixed by ``seed``."""
    with np.errstate(over="ignore"):
        bits = _mix(keys.astype(np.uint64) * _GOLDEN + _U64(seed))
    unit: np.ndarray = (bits >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return unit


def _value_noise(seed: int, t: np.ndarray, octave_ms: int) -> np.ndarray:
    """Values in ``[-1, 1]`` hashed at multiples of ``octave_ms``, linearly interpolated."""
    cell = t // octave_ms
    frac = (t - cell * octave_ms) / octave_ms
    left = uniform(seed, cell) * 2.0 - 1.0
    right = uniform(seed, cell + 1) * 2.0 - 1.0
    noise: np.ndarray = left + (right - left) * frac
    return noise


def log_price(listing: Listing, t: np.ndarray) -> np.ndarray:
    """Natural log of the unrounded price at each instant ``t`` (epoch ms)."""
    anchor_t = np.array([when for when, _ in listing.anchors], dtype=np.float64)
    anchor_p = np.log([price for _, price in listing.anchors])
    result = np.interp(t.astype(np.float64), anchor_t, anchor_p)
    for number, octave in enumerate(_PRICE_OCTAVES):
        amplitude = listing.daily_vol * np.sqrt(octave / DAY_MS)
        result += amplitude * _value_noise(stream_seed(listing.seed, 1, number), t, octave)
    return result


def _per_ms_rate(listing: Listing) -> float:
    """Base volume traded per millisecond: the symbol's quote volume at its latest anchor price."""
    return listing.quote_per_minute / listing.anchors[-1][1] / MINUTE_MS


def cumulative_volume(listing: Listing, t: np.ndarray) -> np.ndarray:
    """Base-asset volume traded from the listing to each instant ``t``; never decreasing.

    Its rate stays between 0.2 and 1.8 times the base rate: each octave moves it by at most
    ``2 * _VOLUME_SWING`` of it.
    """
    rate = _per_ms_rate(listing)
    total = rate * (t - listing.listed_ms).astype(np.float64)
    for number, octave in enumerate(_VOLUME_OCTAVES):
        noise = _value_noise(stream_seed(listing.seed, 2, number), t, octave)
        total += _VOLUME_SWING * rate * octave * noise
    return total


def _taker_wiggle(listing: Listing, t: np.ndarray) -> np.ndarray:
    """What the cumulative taker-buy volume adds to half the cumulative volume.

    Its rate stays within ±0.08 of the base rate, less than half the lowest volume rate, so the
    taker-buy volume of any candle stays between 0 and the candle's volume.
    """
    rate = _per_ms_rate(listing)
    total = np.zeros(len(t), dtype=np.float64)
    for number, octave in enumerate(_TAKER_OCTAVES):
        noise = _value_noise(stream_seed(listing.seed, 3, number), t, octave)
        total += _TAKER_SWING * rate * octave * noise
    return total


def _at_both_ends(
    function: Callable[[np.ndarray], np.ndarray], start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``function`` at each candle's start and end, evaluated once per shared instant.

    Consecutive candles share their boundary (one's end is the next one's start), so a run
    of them needs ``n + 1`` evaluations rather than ``2n``.
    """
    if len(start) > 1 and bool((start[1:] == end[:-1]).all()):
        values = function(np.concatenate([start[:1], end]))
        return values[:-1], values[1:]
    return function(start), function(end)


def round_to_tick(prices: np.ndarray, tick: float) -> np.ndarray:
    """Prices on the tick grid, never below one tick."""
    return np.maximum(np.round(prices / tick) * tick, tick)


def candles(
    listing: Listing,
    interval: str,
    opens: np.ndarray,
    nexts: np.ndarray,
    now_ms: int,
) -> Candles:
    """The candles opening at ``opens`` (each ending at the matching ``nexts``), as of ``now_ms``.

    Every candle must overlap the listing and open at or before ``now_ms``. The one containing
    ``now_ms`` is partial: it covers up to ``now_ms`` and keeps its full close_time.
    """
    start = np.maximum(opens, listing.listed_ms)
    end = np.minimum(nexts, now_ms + 1)
    log_open, log_close = _at_both_ends(lambda t: log_price(listing, t), start, end)
    spread = _RANGE_SCALE * listing.daily_vol * np.sqrt((end - start) / DAY_MS)
    draw_seed = stream_seed(listing.seed, 4, INTERVALS.index(interval))
    up = uniform(draw_seed, opens * 2)
    down = uniform(draw_seed, opens * 2 + 1)
    tick = listing.tick_size
    open_ = round_to_tick(np.exp(log_open), tick)
    close = round_to_tick(np.exp(log_close), tick)
    high = round_to_tick(np.exp(np.maximum(log_open, log_close) + spread * up), tick)
    low = round_to_tick(np.exp(np.minimum(log_open, log_close) - spread * down), tick)
    volume_before, volume_after = _at_both_ends(lambda t: cumulative_volume(listing, t), start, end)
    volume = np.round(volume_after - volume_before, 8)
    wiggle_before, wiggle_after = _at_both_ends(lambda t: _taker_wiggle(listing, t), start, end)
    taker = 0.5 * (volume_after - volume_before) + (wiggle_after - wiggle_before)
    taker = np.clip(np.round(taker, 8), 0.0, volume)
    typical = (open_ + high + low + close) / 4
    trades_per_unit = listing.anchors[-1][1] / _QUOTE_PER_TRADE
    trades = np.floor(volume_after * trades_per_unit) - np.floor(volume_before * trades_per_unit)
    return Candles(
        open_time=opens.astype(np.int64),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        close_time=(nexts - 1).astype(np.int64),
        quote_volume=np.round(volume * typical, 8),
        trades=trades.astype(np.int64),
        taker_buy_base_volume=taker,
        taker_buy_quote_volume=np.round(taker * typical, 8),
    )

"""Valid test candles, the same for the same (interval, open time, seed) whatever the call.

``make_candles("1m", t0, 100)`` and ``make_candles("1m", t0 + 50 * 60_000, 100)`` agree on the 50
candles they share, so overlapping batches of one series can be built from separate calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from oracle import frame

from ost import intervals, klines

#: A pytest warning filter for stores written in tests: fastparquet reads tz-aware columns through
#: ``Series.values``, which pandas 3.1 deprecates (harmless, and costly to record thousands of).
FASTPARQUET_VALUES = "ignore:Series.values returning an ndarray:DeprecationWarning"

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: well-spread 64-bit hashes of ``values`` (uint64)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & _MASK


def _uniform(open_ms: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Numbers in [0, 1) that depend only on the open time, the seed and the salt."""
    key = open_ms.astype(np.uint64) * np.uint64(1_000_003) + np.uint64(seed * 7919 + salt)
    return (_mix(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def open_times(interval: str, start_ms: int, count: int) -> np.ndarray:
    """``count`` consecutive open times of ``interval``, from the first one at or after start."""
    first = intervals.align(interval, start_ms)
    if first < start_ms:
        first = intervals.next_open(interval, first)
    if interval in intervals.FIXED_INTERVAL_MS:
        step = intervals.FIXED_INTERVAL_MS[interval]
        return first + step * np.arange(count, dtype=np.int64)
    times = [first]
    while len(times) < count:
        times.append(intervals.next_open(interval, times[-1]))
    return np.array(times[:count], dtype=np.int64)


def make_candles(interval: str, start_ms: int, count: int, seed: int = 0) -> pd.DataFrame:
    """``count`` consecutive full candles of ``interval`` that pass ``klines.validate``."""
    open_ms = open_times(interval, start_ms, count)
    close_ms = np.array([intervals.close_time(interval, int(ms)) for ms in open_ms], np.int64)
    mid = 100.0 * (1.5 + np.sin(open_ms / 3.6e6 / 24.0 + seed))
    open_, close = (mid * (1 + 0.01 * (_uniform(open_ms, seed, salt) - 0.5)) for salt in (1, 2))
    high = np.maximum(open_, close) * (1 + 0.005 * _uniform(open_ms, seed, 3))
    low = np.minimum(open_, close) * (1 - 0.005 * _uniform(open_ms, seed, 4))
    volume = 10.0 * _uniform(open_ms, seed, 5)
    taker = volume * _uniform(open_ms, seed, 6)
    candles = frame(
        {
            "open_time": open_ms,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "close_time": close_ms,
            "quote_volume": volume * mid,
            "trades": (1000 * _uniform(open_ms, seed, 7)).astype(np.int64),
            "taker_buy_base_volume": taker,
            "taker_buy_quote_volume": taker * mid,
        }
    )
    return klines.validate(candles, interval)

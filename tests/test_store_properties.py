"""Properties of merge: the stored result does not depend on the order of batches."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pytest
from candles import FASTPARQUET_VALUES, make_candles
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_candles

from ost import intervals, klines
from ost.store import CandleStore

pytestmark = pytest.mark.filterwarnings(FASTPARQUET_VALUES)
SYMBOL = "ETHUSDT"
LENGTH = 600
#: Where each interval's series starts: shortly before one of its partition boundaries.
STARTS = {
    "1m": intervals.date_ms(dt.date(2024, 2, 29)) - 250 * intervals.MINUTE_MS,
    "15m": intervals.date_ms(dt.date(2024, 3, 1)) - 200 * 15 * intervals.MINUTE_MS,
    "1h": intervals.date_ms(dt.date(2024, 1, 1)) - 300 * intervals.HOUR_MS,
}
SERIES = {interval: make_candles(interval, start, LENGTH) for interval, start in STARTS.items()}

slices = st.tuples(st.integers(0, LENGTH - 1), st.integers(1, LENGTH))
batches_and_order = st.lists(slices, min_size=1, max_size=6).flatmap(
    lambda batches: st.tuples(st.just(batches), st.permutations(range(len(batches))))
)


def merge_all(root: str, interval: str, batches: list[tuple[int, int]]) -> list[int]:
    """Merge each (begin, length) slice of the interval's series; what each merge returned."""
    store = CandleStore(root)
    series = SERIES[interval]
    return [
        store.merge(SYMBOL, interval, series.iloc[begin : begin + size]) for begin, size in batches
    ]


def file_states(root: str) -> dict[Path, tuple[int, int]]:
    """Each partition file with its inode and mtime."""
    return {
        path: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in Path(root).rglob("part.parquet")
    }


@settings(max_examples=25, deadline=None)
@given(interval=st.sampled_from(sorted(SERIES)), batches_order=batches_and_order)
def test_merge_order_does_not_matter_and_merging_again_changes_nothing(
    interval: str, batches_order: tuple[list[tuple[int, int]], list[int]]
) -> None:
    """Overlapping batches give the same store in any order; merging them again is a no-op."""
    batches, order = batches_order
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        written = merge_all(first, interval, batches)
        written_reordered = merge_all(second, interval, [batches[index] for index in order])
        stored = CandleStore(first).load_klines(SYMBOL, interval)
        assert_candles(stored, CandleStore(second).load_klines(SYMBOL, interval))

        covered = np.zeros(LENGTH, dtype=bool)
        for begin, size in batches:
            covered[begin : begin + size] = True
        assert_candles(stored, SERIES[interval][covered])
        assert sum(written) == sum(written_reordered) == int(covered.sum())

        before = file_states(first)
        assert merge_all(first, interval, batches) == [0] * len(batches)
        assert file_states(first) == before
        assert_candles(CandleStore(first).load_klines(SYMBOL, interval), stored)


def test_series_cross_a_partition_boundary() -> None:
    """Each generated series spans at least two partitions, so merges split batches."""
    for interval, series in SERIES.items():
        open_ms = klines.open_time_ms(series)
        first, last = (
            intervals.partition_start(interval, int(ms)) for ms in (open_ms[0], open_ms[-1])
        )
        assert first < last, interval

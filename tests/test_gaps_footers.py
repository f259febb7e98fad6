"""The gap check from partition footers: the ranges of a full read, from real Parquet files."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import simulator_candles

from ost import intervals
from ost.args import parse_time
from ost.errors import InvalidCandle, PartitionCorrupt
from ost.gaps import Evidence, ExchangeGapLog, ProvenGap, check_gaps, gap_report, stored_runs
from ost.intervals import Stream
from ost.sim import exchange_gaps
from ost.store import CandleStore, partition_path, write_frame

MINUTE = intervals.MINUTE_MS
NOW = parse_time("2026-01-01")
#: Five day partitions around the simulator's BTCUSDT halt of 2023-03-24 12:40-13:59.
WINDOW = (parse_time("2023-03-22"), parse_time("2023-03-27"))
STORED = (parse_time("2023-03-22T12:00"), parse_time("2023-03-26T06:00"))
#: Candles cut out of the stored ones: (first open time, how many).
HOLES = (
    (parse_time("2023-03-23T05:00"), 3),
    (parse_time("2023-03-23T23:59"), 1),  # the last candle of a day
    (parse_time("2023-03-25T00:00"), 1),  # the first candle of the next but one
    (parse_time("2023-03-25T10:00"), 10),
)


def store_without(root: Path, symbol: str, interval: str, rows: pd.DataFrame) -> CandleStore:
    """A store at ``root`` that holds ``rows``, merged through the store a partition at a time."""
    store = CandleStore(str(root))
    opens = np.array(open_times(rows), dtype=np.int64)
    periods = [intervals.partition_start(interval, int(t)) for t in opens]
    for period in sorted(set(periods)):
        chosen = np.array([each == period for each in periods], dtype=bool)
        store.merge(symbol, interval, rows[chosen].reset_index(drop=True))
    return store


def cut(candles: pd.DataFrame, holes: tuple[tuple[int, int], ...]) -> pd.DataFrame:
    """``candles`` without the 1m candles of ``holes``."""
    opens = np.array(open_times(candles), dtype=np.int64)
    drop = np.zeros(len(opens), dtype=bool)
    for first, count in holes:
        drop |= (opens >= first) & (opens < first + count * MINUTE)
    return candles[~drop].reset_index(drop=True)


@pytest.fixture
def holed(tmp_path: Path) -> CandleStore:
    """BTCUSDT 1m from 12:00 of the first day to 06:00 of the last, holes cut, the halt recorded."""
    candles = simulator_candles("BTCUSDT", "1m", *STORED, NOW)
    store = store_without(tmp_path / "data", "BTCUSDT", "1m", cut(candles, HOLES))
    evidence = Evidence("http://127.0.0.1:1", "/api/v3/klines?symbol=BTCUSDT", 0, NOW)
    halts = [hole for hole in exchange_gaps("BTCUSDT") if WINDOW[0] <= hole[0] < WINDOW[1]]
    ExchangeGapLog.of(store).record("BTCUSDT", "1m", [ProvenGap(h, evidence) for h in halts])
    return store


def test_missing_ranges_are_the_rows_removed(holed: CandleStore) -> None:
    """Missing: before the first and after the last stored candle, and each hole; halt apart."""
    report = check_gaps(holed, "BTCUSDT", "1m", *WINDOW, NOW)
    holes = [(first, first + count * MINUTE) for first, count in HOLES]
    assert report.missing_ranges == [(WINDOW[0], STORED[0]), *holes, (STORED[1], WINDOW[1])]
    halts = [hole for hole in exchange_gaps("BTCUSDT") if WINDOW[0] <= hole[0] < WINDOW[1]]
    assert halts
    exchange_side = [(gap.first_open_ms, gap.last_open_ms + MINUTE) for gap in report.exchange_side]
    assert exchange_side == halts


def test_footers_and_full_read_agree_on_every_window(holed: CandleStore) -> None:
    """From footers or from every row, the stored runs of each window are the same."""
    bounds = [WINDOW[0], STORED[0], HOLES[1][0], parse_time("2023-03-24T13:00"), WINDOW[1]]
    for first in bounds:
        for stop in bounds:
            fast = stored_runs(holed, "BTCUSDT", "1m", first, stop, footers=True)
            assert fast == stored_runs(holed, "BTCUSDT", "1m", first, stop)


def test_a_complete_days_rows_are_not_read(tmp_path: Path) -> None:
    """A day whose footer shows all 1440 candles counts as stored: its data pages are not read."""
    day = (parse_time("2024-06-03"), parse_time("2024-06-04"))
    store = store_without(tmp_path, "BTCUSDT", "1m", simulator_candles("BTCUSDT", "1m", *day, NOW))
    path = Path(
        partition_path(store.backend.root, "BTCUSDT", "1m", intervals.partition_start("1m", day[0]))
    )
    data = bytearray(path.read_bytes())
    data[8:4008] = bytes(4000)  # the first column's pages; the footer at the end is intact
    path.write_bytes(bytes(data))
    assert check_gaps(store, "BTCUSDT", "1m", *day, NOW).missing == ()
    with pytest.raises(PartitionCorrupt):
        stored_runs(store, "BTCUSDT", "1m", *day)


def test_a_partition_without_a_footer_is_read(tmp_path: Path) -> None:
    """A file the footer check cannot read is read whole: it is reported damaged, not complete."""
    day = (parse_time("2024-06-03"), parse_time("2024-06-04"))
    store = store_without(tmp_path, "BTCUSDT", "1m", simulator_candles("BTCUSDT", "1m", *day, NOW))
    path = Path(
        partition_path(store.backend.root, "BTCUSDT", "1m", intervals.partition_start("1m", day[0]))
    )
    path.write_bytes(path.read_bytes()[:-8])
    [stream] = gap_report(store, [Stream("BTCUSDT", "1m")], *day, NOW).streams
    assert stream.error is not None


# ---- the property: footers or every row, the same ranges ---------------------------------------

#: Per interval, three partitions of the simulator's BTCUSDT candles.
SPANS = {
    "1m": (parse_time("2024-06-03"), parse_time("2024-06-06")),
    "1h": (parse_time("2021-01-01"), parse_time("2024-01-01")),
    "1w": (parse_time("2021-01-01"), parse_time("2024-01-01")),
    "1M": (parse_time("2021-01-01"), parse_time("2024-01-01")),
}


@functools.cache
def span_candles(interval: str) -> pd.DataFrame:
    """The simulator's candles of the interval's span."""
    return simulator_candles("BTCUSDT", interval, *SPANS[interval], NOW)


def open_times(frame: pd.DataFrame) -> list[int]:
    """The open times of ``frame`` as epoch ms."""
    naive = frame["open_time"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]")
    return naive.astype(np.int64).tolist()


def expected_runs(interval: str, kept: list[int], first: int, stop: int) -> list[tuple[int, int]]:
    """The runs of consecutive kept candles inside ``[first, stop)``, counted one by one."""
    runs: list[tuple[int, int]] = []
    for t in (t for t in kept if first <= t < stop):
        if runs and runs[-1][1] == t:
            runs[-1] = (runs[-1][0], intervals.next_open(interval, t))
        else:
            runs.append((t, intervals.next_open(interval, t)))
    return runs


@st.composite
def stored_stream(draw: st.DrawFn) -> tuple[str, list[int], tuple[int, int]]:
    """An interval, which of its span's candles are kept (whole partitions, holes), a window."""
    interval = draw(st.sampled_from(sorted(SPANS)))
    grid = open_times(span_candles(interval))
    keep = [True] * len(grid)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(grid) - 1))
        length = draw(st.sampled_from([1, 2, len(grid) // 6, len(grid) // 3]))
        keep[start : start + length] = [False] * len(keep[start : start + length])
    low, high = sorted(draw(st.lists(st.integers(0, len(grid)), min_size=2, max_size=2)))
    window = (grid[low] if low < len(grid) else SPANS[interval][1], SPANS[interval][1])
    if draw(st.booleans()):
        window = (window[0], grid[high] if high < len(grid) else SPANS[interval][1])
    return interval, [t for t, kept in zip(grid, keep, strict=True) if kept], window


@given(stream=stored_stream())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_footer_path_equals_full_read(stream: tuple[str, list[int], tuple[int, int]]) -> None:
    """Whatever is stored and whatever the window, footers and full reads give the same runs."""
    interval, kept, (first, stop) = stream
    candles = span_candles(interval)
    rows = candles[np.isin(open_times(candles), kept)].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as root:
        store = CandleStore(root)
        if len(rows):
            store.merge("BTCUSDT", interval, rows)
            store.merge("BTCUSDT", interval, rows.iloc[len(rows) // 3 :])  # again: no repeats
        fast = stored_runs(store, "BTCUSDT", interval, first, stop, footers=True)
        full = stored_runs(store, "BTCUSDT", interval, first, stop)
    assert fast == full == expected_runs(interval, kept, first, stop)


def test_merge_refuses_a_repeated_open_time(tmp_path: Path) -> None:
    """A frame that repeats an open time is refused whole: a partition's open times stay unique."""
    store = CandleStore(str(tmp_path))
    day = simulator_candles("BTCUSDT", "1m", *SPANS["1m"], NOW).iloc[:10]
    with pytest.raises(InvalidCandle):
        store.merge("BTCUSDT", "1m", pd.concat([day, day.iloc[3:4]], ignore_index=True))
    assert store.partitions("BTCUSDT", "1m") == []


def test_full_partitions_of_the_store_say_so_in_their_footers(tmp_path: Path) -> None:
    """Each complete partition's footer states its candle count and first and last open time."""
    store = CandleStore(str(tmp_path))
    for interval in SPANS:
        store.merge("BTCUSDT", interval, span_candles(interval))
        for period in store.partitions("BTCUSDT", interval):
            extent = store.partition_extent("BTCUSDT", interval, period)
            assert extent is not None
            rows = store.read_partition("BTCUSDT", interval, period)
            assert rows is not None
            opens = open_times(rows)
            assert (extent.rows, extent.first_open_ms, extent.last_open_ms) == (
                len(opens),
                opens[0],
                opens[-1],
            )


def write_without_statistics(path: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` as fastparquet does with no statistics (another writer's file)."""
    import fastparquet

    fastparquet.write(path, frame, write_index=False, stats=False)


def test_a_file_without_statistics_is_read(tmp_path: Path) -> None:
    """A partition whose footer has no open_time statistics is read whole, with the same runs."""
    day = (parse_time("2024-06-03"), parse_time("2024-06-04"))
    store = CandleStore(str(tmp_path))
    frame = simulator_candles("BTCUSDT", "1m", *day, NOW)
    path = partition_path(
        store.backend.root, "BTCUSDT", "1m", intervals.partition_start("1m", day[0])
    )
    write_frame(store.backend, path, frame)
    assert (
        store.partition_extent("BTCUSDT", "1m", intervals.partition_start("1m", day[0])) is not None
    )
    Path(path).unlink()
    write_without_statistics(path, frame)
    assert store.partition_extent("BTCUSDT", "1m", intervals.partition_start("1m", day[0])) is None
    assert stored_runs(store, "BTCUSDT", "1m", *day, footers=True) == [day]

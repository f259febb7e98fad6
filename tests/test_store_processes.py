"""The candle store across processes: concurrent writers, and writers killed with SIGKILL."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import processes
import pyarrow.dataset as pds
import pytest
from candles import FASTPARQUET_VALUES, make_candles
from oracle import assert_candles

from ost import klines
from ost.backend import TEMP_PREFIX
from ost.store import CandleStore

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(FASTPARQUET_VALUES)]

SYMBOL = "BTCUSDT"
#: 2024-03-30 21:00 UTC: a 1m series from here spans three day partitions.
T0 = 1_711_832_400_000
SERIES_LENGTH = 1800
#: The SIGKILL test's series: 30 days, so that its writers keep writing (a merge of candles
#: already stored writes nothing) through every round of kills.
KILL_SERIES_LENGTH = 30 * 1440
#: How many writers the SIGKILL test kills: half at random instants, half stopped mid-write.
KILLS = 12


def series(length: int = SERIES_LENGTH) -> pd.DataFrame:
    """The candles every writer of these tests takes its batches from."""
    return make_candles("1m", T0, length)


def merge_batches(root: str, batches: list[tuple[int, int]], start: object) -> None:
    """Child: wait for ``start``, then merge each [begin, end) slice of the series in turn."""
    store = CandleStore(root)
    candles = series()
    start.wait()  # type: ignore[attr-defined]  # a multiprocessing Barrier
    for begin, end in batches:
        store.merge(SYMBOL, "1m", candles.iloc[begin:end])


def merge_forever(root: str, log_path: str, seed: int) -> None:
    """Child: merge random slices of the series until killed, logging each one once committed."""
    store = CandleStore(root)
    candles = series(KILL_SERIES_LENGTH)
    rng = random.Random(seed)
    with open(log_path, "a") as log:
        while True:
            begin = rng.randrange(KILL_SERIES_LENGTH)
            end = min(KILL_SERIES_LENGTH, begin + rng.randint(1, 120))
            store.merge(SYMBOL, "1m", candles.iloc[begin:end])
            log.write(f"{begin} {end}\n")
            log.flush()


def rewrite_forever(root: str) -> None:
    """Child: rewrite the stream's partitions with growing slices of changing values, forever."""
    store = CandleStore(root)
    variants = [make_candles("1m", T0, SERIES_LENGTH, seed=seed) for seed in range(3)]
    for step in itertools.count(1):
        end = 1 + (step * 37) % SERIES_LENGTH
        store.merge(SYMBOL, "1m", variants[step % 3].iloc[:end])


def rows_of_some_variant(loaded: pd.DataFrame, variants: list[pd.DataFrame]) -> np.ndarray:
    """Per loaded row, whether it equals the row of the same open time in one of ``variants``."""
    positions = (klines.open_time_ms(loaded) - T0) // 60_000
    values = loaded[list(klines.FLOAT_COLUMNS)].to_numpy()
    matched = np.zeros(len(loaded), dtype=bool)
    for variant in variants:
        expected = variant[list(klines.FLOAT_COLUMNS)].to_numpy()[positions]
        matched |= (expected == values).all(axis=1)
    return matched


def committed_rows(log_path: Path) -> np.ndarray:
    """Which rows of the series the log says were merged (complete lines only)."""
    stored = np.zeros(KILL_SERIES_LENGTH, dtype=bool)
    text = log_path.read_text() if log_path.exists() else ""
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            begin, end = map(int, line.split())
            stored[begin:end] = True
    return stored


def check_readable_without_duplicates(root: Path) -> pd.DataFrame:
    """Read the store with pyarrow, DuckDB and the store itself; all agree and hold no duplicate."""
    dataset = pds.dataset(str(root / "klines"), partitioning="hive").to_table().to_pandas()
    query = (
        "select count(*), count(distinct open_time) from read_parquet(?, hive_partitioning=true)"
    )
    [(rows, distinct)] = duckdb.execute(query, [f"{root}/klines/**/*.parquet"]).fetchall()
    loaded = CandleStore(str(root)).load_klines(SYMBOL, "1m")
    assert rows == distinct == len(dataset) == len(loaded)
    assert loaded["open_time"].is_unique
    assert klines.validate(loaded, "1m") is loaded
    return loaded


def temp_files(root: Path) -> set[Path]:
    """The temp files of unfinished writes under ``root``."""
    return set(root.rglob(f"{TEMP_PREFIX}*"))


def parquet_names(root: Path) -> set[str]:
    """The names of every ``.parquet`` file under ``root``."""
    return {path.name for path in root.rglob("*.parquet")}


def test_two_processes_merging_one_stream_lose_nothing(tmp_path: Path) -> None:
    """Two processes merging disjoint and overlapping batches at once store their union once."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    evens = [(begin, begin + 5) for begin in range(0, 1200, 10)]
    odds_and_overlaps = [(begin, begin + 8) for begin in range(5, 1800, 10)]
    writers = [
        context.Process(target=merge_batches, args=(str(tmp_path), batches, start))
        for batches in (evens, odds_and_overlaps)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    expected = np.zeros(SERIES_LENGTH, dtype=bool)
    for begin, end in evens + odds_and_overlaps:
        expected[begin:end] = True
    loaded = check_readable_without_duplicates(tmp_path)
    assert_candles(loaded, series()[expected])


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    """Lock-free reads during constant rewrites always give whole, valid candles of one write."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ost.store", "candles", "test_store_processes"])
    variants = [make_candles("1m", T0, SERIES_LENGTH, seed=seed) for seed in range(3)]
    writer = context.Process(target=rewrite_forever, args=(str(tmp_path),))
    writer.start()
    store = CandleStore(str(tmp_path))
    reads = 0
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            loaded = store.load_klines(SYMBOL, "1m")
            klines.validate(loaded, "1m")
            assert rows_of_some_variant(loaded, variants).all()
            reads += 1
    finally:
        writer.kill()
        writer.join()
    assert reads > 20


def test_sigkill_at_any_instant_leaves_the_last_valid_data(tmp_path: Path) -> None:
    """A writer killed at any instant, mid-write too, loses no committed row and leaves no file."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ost.store", "candles", "test_store_processes"])
    log_path = tmp_path / "committed.log"
    store_root = tmp_path / "data"
    candles = series(KILL_SERIES_LENGTH)
    rng = random.Random(20261124)
    killed_mid_write = 0
    temps: set[Path] = set()
    for kills in range(1, KILLS + 1):
        writer = context.Process(target=merge_forever, args=(str(store_root), str(log_path), kills))
        writer.start()
        wait_for_a_commit(log_path, writer)
        if kills % 2:
            time.sleep(rng.uniform(0.0, 0.1))
        else:
            stop_mid_write(writer.pid or 0, store_root, temps, rng)
        os.kill(writer.pid or 0, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        temps, previous = temp_files(store_root), temps
        killed_mid_write += bool(temps - previous)

        assert parquet_names(store_root) == {"part.parquet"}
        loaded = check_readable_without_duplicates(store_root)
        stored = np.isin(klines.open_time_ms(candles), klines.open_time_ms(loaded))
        assert stored[committed_rows(log_path)].all()
        assert_candles(loaded, candles[stored])
    assert killed_mid_write >= KILLS // 2, f"{KILLS} kills, {killed_mid_write} mid-write"


def stop_mid_write(pid: int, root: Path, before: set[Path], rng: random.Random) -> None:
    """SIGSTOP ``pid`` at random instants until it is caught with a new temp file under ``root``.

    Writes are fast, so a kill at a random instant seldom lands inside one; a writer stopped
    while its temp file exists is stopped mid-write, at whatever instruction it had reached.
    """
    deadline = time.monotonic() + 30
    while True:
        os.kill(pid, signal.SIGSTOP)
        while not processes.stopped(pid):
            assert time.monotonic() < deadline
        if temp_files(root) - before:
            return
        os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline
        time.sleep(rng.uniform(0.0, 0.003))


def wait_for_a_commit(log_path: Path, writer: multiprocessing.process.BaseProcess) -> None:
    """Wait until ``writer`` has logged one more committed merge."""
    lines = committed_rows_count(log_path)
    deadline = time.monotonic() + 30
    while committed_rows_count(log_path) == lines:
        assert writer.is_alive()
        assert time.monotonic() < deadline
        time.sleep(0.002)


def committed_rows_count(log_path: Path) -> int:
    """How many merges the log records."""
    return log_path.read_text().count("\n") if log_path.exists() else 0

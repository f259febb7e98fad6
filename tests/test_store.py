"""The candle store on real Parquet files: layout, merge, reads, and what it refuses."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import fastparquet
import filelock
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from candles import FASTPARQUET_VALUES, make_candles
from oracle import assert_candles

from ost import intervals, klines
from ost.backend import DirectorySyncs
from ost.errors import BadInput, InvalidCandle, StoreCorrupt, StoreError
from ost.store import (
    COMPRESSION,
    LOCK_STRIPES,
    STATISTICS_COLUMNS,
    CandleStore,
    Extent,
    load_klines,
    partition_path,
    read_footer,
)
from ost.verify import verify_store

pytestmark = pytest.mark.filterwarnings(FASTPARQUET_VALUES)
#: DuckDB's SQL types of the contract's dtypes (docs/CONTRACT.md).
DUCKDB_TYPES = {
    klines.TIME_DTYPE: "TIMESTAMP WITH TIME ZONE",
    "float64": "DOUBLE",
    "int64": "BIGINT",
}
TIME_COLUMNS = klines.TIME_COLUMNS
SYMBOL = "BTCUSDT"
MINUTE = 60_000
#: 22:00 UTC on 2024-02-28: 1m series from here cross day (and leap-day) boundaries soon.
T0 = intervals.date_ms(dt.date(2024, 2, 28)) + 22 * 60 * MINUTE


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """A store in an empty temporary directory."""
    return CandleStore(str(tmp_path))


def files_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every partition file under ``root`` with its inode, mtime and size."""
    return {
        str(path.relative_to(root)): (
            path.stat().st_ino,
            path.stat().st_mtime_ns,
            path.stat().st_size,
        )
        for path in sorted(root.rglob("part.parquet"))
    }


def no_listing(directory: str) -> list[str]:
    """A stand-in for listing a directory, where no listing may happen."""
    raise AssertionError(f"listed {directory}")


def parquet_glob(root: Path) -> str:
    """The DuckDB glob of every Parquet file of the store at ``root``."""
    return f"{root}/klines/**/*.parquet"


def period_file(root: Path, interval: str, open_ms: int) -> Path:
    """The partition file that holds the candle opening at ``open_ms``."""
    period = intervals.partition_start(interval, open_ms)
    return Path(partition_path(str(root), SYMBOL, interval, period))


def test_round_trip_keeps_dtypes_and_values(store: CandleStore) -> None:
    """Candles merged over several partitions load back equal, with the stored dtypes."""
    candles = make_candles("1m", T0, 3000)
    store.merge(SYMBOL, "1m", candles)
    loaded = store.load_klines(SYMBOL, "1m")
    assert list(loaded.columns) == list(klines.COLUMNS)
    assert {column: str(dtype) for column, dtype in loaded.dtypes.items()} == klines.DTYPES
    assert isinstance(loaded.index, pd.RangeIndex)
    assert_candles(loaded, candles)
    assert len(store.partitions(SYMBOL, "1m")) > 1


def test_files_hold_only_the_stored_columns_as_utc_milliseconds(
    store: CandleStore, tmp_path: Path
) -> None:
    """Each file has the 11 stored columns, times as UTC-adjusted TIMESTAMP_MILLIS."""
    store.merge(SYMBOL, "15m", make_candles("15m", T0, 100))
    [path] = tmp_path.rglob("*.parquet")
    schema = pq.read_schema(path)
    assert schema.names == list(klines.COLUMNS)
    assert (
        schema.field("open_time").type
        == schema.field("close_time").type
        == pa.timestamp("ms", tz="UTC")
    )
    assert schema.field("trades").type == pa.int64()
    assert {schema.field(column).type for column in klines.FLOAT_COLUMNS} == {pa.float64()}


@pytest.mark.parametrize("interval", ["1s", "15m", "1h", "1w", "1M"])
def test_each_candle_lands_in_its_time_partition(
    store: CandleStore, tmp_path: Path, interval: str
) -> None:
    """The file of every stored candle is the one ``partition_start`` names."""
    candles = make_candles(interval, T0, 200)
    store.merge(SYMBOL, interval, candles)
    for open_ms in klines.open_time_ms(candles)[::37]:
        path = period_file(tmp_path, interval, int(open_ms))
        stored = fastparquet.ParquetFile(str(path)).to_pandas()
        assert int(open_ms) in set(klines.open_time_ms(stored))
    assert_candles(store.load_klines(SYMBOL, interval), candles)


def test_merge_counts_open_times_not_stored_before(store: CandleStore) -> None:
    """Merging returns how many of its open times were new to the store."""
    first = make_candles("1m", T0, 500)
    second = make_candles("1m", T0 + 300 * MINUTE, 500)
    assert store.merge(SYMBOL, "1m", first) == len(first)
    overlap = set(klines.open_time_ms(first)) & set(klines.open_time_ms(second))
    assert store.merge(SYMBOL, "1m", second) == len(second) - len(overlap)
    assert store.merge(SYMBOL, "1m", second) == 0


def test_newest_fetch_wins_on_the_same_open_time(store: CandleStore) -> None:
    """Rows of a later merge replace stored rows with the same open_time."""
    old = make_candles("1m", T0, 200, seed=1)
    new = make_candles("1m", T0 + 100 * MINUTE, 200, seed=2)
    store.merge(SYMBOL, "1m", old)
    store.merge(SYMBOL, "1m", new)
    loaded = store.load_klines(SYMBOL, "1m")
    expected = pd.concat([old.iloc[:100], new], ignore_index=True)
    assert_candles(loaded, expected)
    assert not old.iloc[100:].reset_index(drop=True).equals(new.iloc[:100].reset_index(drop=True))


def test_unsorted_frame_is_stored_sorted(store: CandleStore) -> None:
    """A frame in any row order is stored sorted by open_time."""
    candles = make_candles("1m", T0, 300)
    store.merge(SYMBOL, "1m", candles.sample(frac=1.0, random_state=3))
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)


def test_pyarrow_dataset_reads_the_store_with_partition_keys(
    store: CandleStore, tmp_path: Path
) -> None:
    """The pyarrow hive dataset reads every stream, with symbol and interval columns."""
    streams = {
        ("BTCUSDT", "1m"): make_candles("1m", T0, 1500),
        ("ETHUSDT", "1h"): make_candles("1h", T0, 50),
    }
    for (symbol, interval), candles in streams.items():
        store.merge(symbol, interval, candles)
    table = pds.dataset(str(tmp_path / "klines"), partitioning="hive").to_table()
    assert table.schema.field("open_time").type == pa.timestamp("ms", tz="UTC")
    frame = table.to_pandas()
    for (symbol, interval), candles in streams.items():
        rows = frame[(frame["symbol"] == symbol) & (frame["interval"] == interval)]
        rows = rows.sort_values("open_time")[list(klines.COLUMNS)]
        assert (
            rows["open_time"].astype(klines.TIME_DTYPE).to_numpy()
            == candles["open_time"].to_numpy()
        ).all()
        assert np.array_equal(rows["close"].to_numpy(), candles["close"].to_numpy())
        assert np.array_equal(rows["trades"].to_numpy(), candles["trades"].to_numpy())


def test_duckdb_reads_the_store_with_partition_keys(store: CandleStore, tmp_path: Path) -> None:
    """DuckDB's hive glob reads every stream, with symbol and interval columns."""
    streams = {
        ("BTCUSDT", "15m"): make_candles("15m", T0, 400),
        ("ETHUSDT", "1m"): make_candles("1m", T0, 200),
    }
    for (symbol, interval), candles in streams.items():
        store.merge(symbol, interval, candles)
    rows = duckdb.execute(
        """select symbol, interval, count(*), count(distinct open_time), epoch_ms(max(open_time)),
                  sum(trades), sum(close)
           from read_parquet(?, hive_partitioning=true)
           group by symbol, interval order by symbol""",
        [parquet_glob(tmp_path)],
    ).fetchall()
    expected = [
        (
            symbol,
            interval,
            len(candles),
            len(candles),
            int(klines.open_time_ms(candles).max()),
            int(candles["trades"].sum()),
        )
        for (symbol, interval), candles in sorted(streams.items())
    ]
    assert [row[:6] for row in rows] == expected
    sums = [float(candles["close"].sum()) for _, candles in sorted(streams.items())]
    assert [row[6] for row in rows] == pytest.approx(sums)


def test_update_rewrites_only_the_newest_partition(store: CandleStore, tmp_path: Path) -> None:
    """Adding 15 candles to a stream rewrites its newest file and leaves older files untouched."""
    history = make_candles("1m", T0, 4 * 1440 - 30)
    store.merge(SYMBOL, "1m", history)
    before = files_state(tmp_path)
    update = make_candles("1m", int(klines.open_time_ms(history)[-1]) + MINUTE, 15)
    newest = period_file(tmp_path, "1m", int(klines.open_time_ms(update)[0]))

    assert store.merge(SYMBOL, "1m", update) == 15

    after = files_state(tmp_path)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {str(newest.relative_to(tmp_path))}


def test_update_reads_no_older_partition(
    store: CandleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update of the newest partition lists only its own directory, opens no older file."""
    history = make_candles("1m", T0, 3 * 1440)
    store.merge(SYMBOL, "1m", history)
    newest = period_file(tmp_path, "1m", int(klines.open_time_ms(history)[-1]))
    for path in tmp_path.rglob("part.parquet"):
        if path != newest:
            path.write_bytes(b"not parquet")
    update = make_candles("1m", int(klines.open_time_ms(history)[-1]) + MINUTE, 15)
    listed: list[str] = []
    list_files = store.backend.list_files
    with monkeypatch.context() as patch:
        patch.setattr(store.backend, "list_names", no_listing)
        patch.setattr(store.backend, "list_files", lambda d: listed.append(d) or list_files(d))
        assert store.merge(SYMBOL, "1m", update) == 15
    assert listed == [str(newest.parent)]  # for foreign files beside the one it wrote
    assert store.last_open_time(SYMBOL, "1m") == int(klines.open_time_ms(update)[-1])


def test_batch_leaves_new_directories_to_one_sync(store: CandleStore, tmp_path: Path) -> None:
    """Merges with a DirectorySyncs leave the fsync of the parents they added to its one sync."""
    candles = make_candles("1m", T0, 3 * 1440)
    syncs = DirectorySyncs()
    added = store.merge_columns(SYMBOL, "1m", klines.columns_of(candles), syncs=syncs)
    assert added == 3 * 1440
    stream = tmp_path / "klines" / f"symbol={SYMBOL}" / "interval=1m"
    assert syncs.pending == sorted(map(str, [tmp_path, tmp_path / "klines", stream.parent, stream]))
    syncs.sync()
    assert syncs.pending == []
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)
    more = make_candles("1m", T0 + 3 * 1440 * MINUTE, 1440)
    store.merge_columns(SYMBOL, "1m", klines.columns_of(more), syncs=syncs)
    assert syncs.pending == [str(stream)]  # only the stream's directory gained an entry


def test_identical_merge_rewrites_nothing(store: CandleStore, tmp_path: Path) -> None:
    """Merging rows equal to the stored ones leaves every file as it was."""
    candles = make_candles("1m", T0, 2000)
    store.merge(SYMBOL, "1m", candles)
    before = files_state(tmp_path)
    assert store.merge(SYMBOL, "1m", candles.iloc[100:1900]) == 0
    assert files_state(tmp_path) == before


MAR_1 = intervals.date_ms(dt.date(2024, 3, 1))


@pytest.mark.parametrize(
    ("start", "end", "start_ms", "end_ms"),
    [
        (None, None, None, None),
        (T0 + 90 * MINUTE, None, T0 + 90 * MINUTE, None),
        (None, T0 + 90 * MINUTE, None, T0 + 90 * MINUTE),
        (T0 + 90 * MINUTE + 1, T0 + 1500 * MINUTE, T0 + 90 * MINUTE + 1, T0 + 1500 * MINUTE),
        (
            pd.Timestamp(T0 + 7 * MINUTE, unit="ms", tz="UTC"),
            dt.datetime(2024, 3, 1, 3, 0, tzinfo=dt.UTC),
            T0 + 7 * MINUTE,
            MAR_1 + 180 * MINUTE,
        ),
        (dt.datetime(2024, 3, 1), pd.Timestamp("2024-03-01 00:05"), MAR_1, MAR_1 + 5 * MINUTE),
        (
            dt.datetime(2024, 3, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            MAR_1 + MINUTE,
            MAR_1,
            MAR_1 + MINUTE,
        ),
        (T0 + 500 * MINUTE, T0 + 500 * MINUTE, T0 + 500 * MINUTE, T0 + 500 * MINUTE),
        (
            T0 - 9 * 1440 * MINUTE,
            T0 - 5 * 1440 * MINUTE,
            T0 - 9 * 1440 * MINUTE,
            T0 - 5 * 1440 * MINUTE,
        ),
    ],
)
def test_load_klines_returns_rows_in_the_half_open_range(
    store: CandleStore, start: object, end: object, start_ms: int | None, end_ms: int | None
) -> None:
    """load_klines keeps exactly the candles with start <= open_time < end, for each bound type."""
    candles = make_candles("1m", T0, 3000)
    store.merge(SYMBOL, "1m", candles)
    loaded = store.load_klines(SYMBOL, "1m", start, end)
    open_ms = klines.open_time_ms(candles)
    keep = np.ones(len(candles), dtype=bool)
    if start_ms is not None:
        keep &= open_ms >= start_ms
    if end_ms is not None:
        keep &= open_ms < end_ms
    assert_candles(loaded, candles[keep])
    assert {column: str(dtype) for column, dtype in loaded.dtypes.items()} == klines.DTYPES


def test_load_klines_opens_only_overlapping_partitions(store: CandleStore, tmp_path: Path) -> None:
    """Files outside the range are never opened: corrupting them does not disturb the read."""
    candles = make_candles("1m", T0, 5 * 1440)
    store.merge(SYMBOL, "1m", candles)
    wanted_start = intervals.date_ms(dt.date(2024, 3, 1))
    wanted = (wanted_start + 60 * MINUTE, wanted_start + 1440 * MINUTE)
    needed = period_file(tmp_path, "1m", wanted[0])
    for path in tmp_path.rglob("part.parquet"):
        if path != needed:
            path.write_bytes(b"garbage")
    loaded = store.load_klines(SYMBOL, "1m", *wanted)
    open_ms = klines.open_time_ms(candles)
    assert_candles(loaded, candles[(open_ms >= wanted[0]) & (open_ms < wanted[1])])
    with pytest.raises(StoreCorrupt, match=r"part\.parquet"):
        store.load_klines(SYMBOL, "1m", wanted[0], wanted[1] + 1)


def test_load_klines_of_an_unknown_stream_is_empty(store: CandleStore) -> None:
    """A stream with nothing stored loads as the empty stored frame."""
    loaded = store.load_klines(SYMBOL, "4h")
    assert loaded.empty
    assert {column: str(dtype) for column, dtype in loaded.dtypes.items()} == klines.DTYPES


def test_module_load_klines_reads_the_configured_data_dir(
    store: CandleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The module-level load_klines reads data_dir, or OST_DATA_DIR when none is given."""
    candles = make_candles("1h", T0, 30)
    store.merge(SYMBOL, "1h", candles)
    assert_candles(load_klines(SYMBOL, "1h", data_dir=str(tmp_path)), candles)
    monkeypatch.setenv("OST_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no stray .env file is read
    assert_candles(load_klines(SYMBOL, "1h", T0 + 3_600_000), candles.iloc[1:])


def test_last_open_time_comes_from_footer_statistics(
    store: CandleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """last_open_time is found without reading any file's rows."""
    candles = make_candles("1m", T0, 3000)
    store.merge(SYMBOL, "1m", candles)

    def no_row_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("last_open_time read rows")

    monkeypatch.setattr(pq.ParquetFile, "read", no_row_reads)
    assert store.last_open_time(SYMBOL, "1m") == int(klines.open_time_ms(candles).max())


def test_last_open_time_without_statistics_reads_the_newest_file(
    store: CandleStore, tmp_path: Path
) -> None:
    """A file written without statistics still gives its newest open time."""
    candles = make_candles("1d", T0, 40)
    store.merge(SYMBOL, "1d", candles)
    newest = period_file(tmp_path, "1d", int(klines.open_time_ms(candles)[-1]))
    stored = fastparquet.ParquetFile(str(newest)).to_pandas()
    fastparquet.write(str(newest), stored, write_index=False, stats=False)
    assert store.last_open_time(SYMBOL, "1d") == int(klines.open_time_ms(candles).max())


def test_last_open_time_skips_a_period_directory_without_file(
    store: CandleStore, tmp_path: Path
) -> None:
    """A newer period directory left without a file by a crash does not hide the stored data."""
    assert store.last_open_time(SYMBOL, "1m") is None
    candles = make_candles("1m", T0, 100)
    store.merge(SYMBOL, "1m", candles)
    leftover = Path(partition_path(str(tmp_path), SYMBOL, "1m", dt.date(2030, 1, 1))).parent
    leftover.mkdir()
    (leftover / ".part-crashed.tmp").write_bytes(b"half a file")
    assert store.last_open_time(SYMBOL, "1m") == int(klines.open_time_ms(candles)[-1])
    assert dt.date(2030, 1, 1) not in store.partitions(SYMBOL, "1m")


def test_impossible_candle_writes_nothing(store: CandleStore, tmp_path: Path) -> None:
    """A frame with one impossible candle is refused whole; the store stays byte for byte."""
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 100))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    bad = make_candles("1m", T0 + 50 * MINUTE, 3000, seed=5)
    bad.loc[2500, "high"] = bad.loc[2500, "low"] / 2
    with pytest.raises(InvalidCandle):
        store.merge(SYMBOL, "1m", bad)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before


def mangle(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """``frame`` broken in one way: a dtype, a missing or extra column, a null, a duplicate."""
    broken = frame.copy()
    if how == "float32":
        broken["volume"] = broken["volume"].astype("float32")
    elif how == "microseconds":
        broken["close_time"] = broken["close_time"].astype("datetime64[us, UTC]")
    elif how == "missing":
        broken = broken.drop(columns=["trades"])
    elif how == "extra":
        broken["symbol"] = SYMBOL
    elif how == "null":
        broken.loc[3, "open"] = np.nan
    elif how == "null_time":
        broken.loc[3, "close_time"] = pd.NaT
    elif how == "duplicate":
        broken = pd.concat([broken, broken.iloc[[4]]], ignore_index=True)
    return broken


@pytest.mark.parametrize(
    "how", ["float32", "microseconds", "missing", "extra", "null", "null_time", "duplicate"]
)
def test_malformed_frame_is_refused_before_any_write(
    store: CandleStore, tmp_path: Path, how: str
) -> None:
    """A frame with the wrong columns, dtypes, nulls or duplicate open times writes nothing."""
    with pytest.raises((StoreError, InvalidCandle)):
        store.merge(SYMBOL, "1m", mangle(make_candles("1m", T0, 10), how))
    assert not (tmp_path / "klines").exists()


def test_a_shuffled_frame_is_stored_in_time_order(store: CandleStore) -> None:
    """Rows given out of order are stored sorted by open_time, the same candles."""
    frame = make_candles("1m", T0, 300)
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert store.merge(SYMBOL, "1m", shuffled) == 300
    assert_candles(store.load_klines(SYMBOL, "1m"), frame)


def test_empty_frame_writes_nothing(store: CandleStore, tmp_path: Path) -> None:
    """Merging no candles returns 0 and creates nothing."""
    assert store.merge(SYMBOL, "1m", klines.empty_frame()) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("symbol", "interval"),
    [("../x", "1m"), ("BTCUSDT", "../1m"), ("btc/..", "1m"), ("BTCUSDT", "2m")],
)
def test_bad_names_never_reach_the_filesystem(tmp_path: Path, symbol: str, interval: str) -> None:
    """A bad symbol or interval never parses, so no store path is built; load_klines refuses it."""
    calls = [
        lambda: intervals.parse_stream(symbol, interval),
        lambda: load_klines(symbol, interval, data_dir=str(tmp_path)),
    ]
    for call in calls:
        with pytest.raises(BadInput):
            call()
    assert list(tmp_path.iterdir()) == []


def test_corrupt_partition_raises_store_corrupt_naming_the_file(
    store: CandleStore, tmp_path: Path
) -> None:
    """An unreadable partition file raises StoreCorrupt with its path, for reads and merges."""
    candles = make_candles("1m", T0, 100)
    store.merge(SYMBOL, "1m", candles)
    path = period_file(tmp_path, "1m", T0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StoreCorrupt, match=str(path)):
        store.load_klines(SYMBOL, "1m")
    with pytest.raises(StoreCorrupt, match=str(path)):
        store.last_open_time(SYMBOL, "1m")
    with pytest.raises(StoreCorrupt, match=str(path)):
        store.merge(SYMBOL, "1m", candles.iloc[:5])


def test_partition_holding_foreign_rows_is_corrupt(store: CandleStore, tmp_path: Path) -> None:
    """A file whose rows belong to another partition, or lack a column, raises StoreCorrupt."""
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 10))
    path = period_file(tmp_path, "1m", T0)
    elsewhere = make_candles("1m", T0 + 3 * 1440 * MINUTE, 10)
    fastparquet.write(str(path), elsewhere, write_index=False)
    with pytest.raises(StoreCorrupt, match="outside"):
        store.load_klines(SYMBOL, "1m")
    fastparquet.write(
        str(path), make_candles("1m", T0, 10).drop(columns=["close"]), write_index=False
    )
    with pytest.raises(StoreCorrupt, match="columns"):
        store.load_klines(SYMBOL, "1m")


def test_streams_and_partitions_describe_the_store(store: CandleStore, tmp_path: Path) -> None:
    """The stored pairs and their periods are listed; stray entries are ignored."""
    store.merge("ETHUSDT", "1h", make_candles("1h", T0, 10))
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 200))
    store.merge(SYMBOL, "15m", make_candles("15m", T0, 10))
    (tmp_path / "klines" / "symbol=bad!").mkdir()
    (tmp_path / "klines" / "README").write_text("not a stream")
    (tmp_path / "klines" / f"symbol={SYMBOL}" / "interval=7m").mkdir()
    assert store.streams() == [(SYMBOL, "15m"), (SYMBOL, "1m"), ("ETHUSDT", "1h")]
    assert store.partitions(SYMBOL, "1m") == [dt.date(2024, 2, 28), dt.date(2024, 2, 29)]
    assert store.partitions(SYMBOL, "15m") == [dt.date(2024, 2, 1)]
    assert store.partitions("ETHUSDT", "1h") == [dt.date(2024, 1, 1)]
    assert store.partitions("ETHUSDT", "1m") == []


def test_stale_temp_files_are_invisible_and_cleaned(store: CandleStore, tmp_path: Path) -> None:
    """A temp file left by a killed writer is ignored by readers and removed by the next write."""
    candles = make_candles("1m", T0, 100)
    store.merge(SYMBOL, "1m", candles)
    directory = period_file(tmp_path, "1m", T0).parent
    stale = directory / ".part-killed.tmp"
    stale.write_bytes(b"PAR1 half written")
    assert pds.dataset(str(tmp_path / "klines"), partitioning="hive").count_rows() == len(candles)
    counted = duckdb.execute("select count(*) from read_parquet(?)", [parquet_glob(tmp_path)])
    assert counted.fetchall() == [(len(candles),)]
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 5, seed=9))
    assert sorted(path.name for path in directory.iterdir()) == ["part.parquet"]


def test_lock_held_elsewhere_times_out_as_store_error(tmp_path: Path) -> None:
    """A writer that cannot get the partition's lock in time raises StoreError, writes nothing."""
    store = CandleStore(str(tmp_path), lock_timeout=0.2)
    (tmp_path / "locks").mkdir()
    stripe = intervals.partition_start("1m", T0).toordinal() % LOCK_STRIPES
    with (
        filelock.FileLock(tmp_path / "locks" / f"{SYMBOL}-1m.{stripe}.lock"),
        pytest.raises(StoreError, match="lock"),
    ):
        store.merge(SYMBOL, "1m", make_candles("1m", T0, 10))
    assert store.partitions(SYMBOL, "1m") == []


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A unique ``memory://`` root, removed afterwards."""
    root = f"memory://ost-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_memory_filesystem_root(memory_root: str) -> None:
    """A memory:// root supports merge, reads, statistics and listing like a local one."""
    store = CandleStore(memory_root)
    candles = make_candles("1m", T0, 3000)
    assert store.merge(SYMBOL, "1m", candles.iloc[:2000]) == 2000
    assert store.merge(SYMBOL, "1m", candles.iloc[1500:]) == 1000
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)
    assert store.last_open_time(SYMBOL, "1m") == int(klines.open_time_ms(candles)[-1])
    assert store.streams() == [(SYMBOL, "1m")]
    assert len(store.partitions(SYMBOL, "1m")) == 3
    fs = fsspec.filesystem("memory")
    names = [os.path.basename(path) for path in fs.find(memory_root.removeprefix("memory://"))]
    assert set(names) == {"part.parquet"}


def test_file_url_root_is_the_same_store_as_its_path(tmp_path: Path) -> None:
    """A file:// URL and the plain path address the same files."""
    candles = make_candles("15m", T0, 100)
    CandleStore(f"file://{tmp_path}").merge(SYMBOL, "15m", candles)
    assert_candles(CandleStore(str(tmp_path)).load_klines(SYMBOL, "15m"), candles)
    assert (tmp_path / "locks").is_dir()


def test_partition_files_read_the_same_in_fastparquet_pyarrow_and_duckdb(
    store: CandleStore, tmp_path: Path
):
    """Each partition file: contract types, ZSTD, time statistics, the same values in 3 readers."""
    candles = make_candles("1m", T0, 180)  # across midnight: two files
    store.merge(SYMBOL, "1m", candles)
    written = sorted((tmp_path / "klines").rglob("part.parquet"))
    assert len(written) == 2
    day_two = intervals.date_ms(dt.date(2024, 2, 29))
    for path, want in zip(written, (candles[:120], candles[120:]), strict=True):
        assert_candles(fastparquet.ParquetFile(str(path)).to_pandas(), want, "fastparquet")
        assert_candles(pq.read_table(path).to_pandas(), want, "pyarrow")
        relation = duckdb.read_parquet(str(path), hive_partitioning=False)
        assert dict(zip(relation.columns, map(str, relation.types), strict=True)) == {
            column: DUCKDB_TYPES[dtype] for column, dtype in klines.DTYPES.items()
        }
        in_duckdb = relation.to_arrow_table().to_pandas()
        in_duckdb = in_duckdb.astype(dict.fromkeys(TIME_COLUMNS, klines.TIME_DTYPE))
        assert_candles(in_duckdb, want, "duckdb")  # its µs timestamps, as ms: equal values
        footer = read_footer(store.backend, str(path))
        assert footer is not None
        for column in STATISTICS_COLUMNS:
            assert footer.min(column) == want[column].iloc[0].to_datetime64()
            assert footer.max(column) == want[column].iloc[-1].to_datetime64()
        metadata = pq.ParquetFile(path).metadata
        assert str(pq.read_schema(path).field("open_time").type) == "timestamp[ms, tz=UTC]"
        chunks = [metadata.row_group(0).column(i) for i in range(metadata.num_columns)]
        assert {chunk.compression for chunk in chunks} == {COMPRESSION}
        assert {chunk.path_in_schema for chunk in chunks if chunk.is_stats_set} >= set(
            STATISTICS_COLUMNS
        )
    assert int(klines.open_time_ms(candles[120:])[0]) == day_two  # the second file's first row


def test_files_of_the_old_fastparquet_writer_read_as_the_store_writes_them(
    store: CandleStore, tmp_path: Path
) -> None:
    """Partitions written by fastparquet (the store's writer until pyarrow) read the same, healthy.

    Written as main 43ff878's ``_write_parquet`` wrote them (the bytes of ``fastparquet.write``
    with ZSTD and time statistics): existing users' stores hold such files.
    """
    candles = make_candles("1m", T0, 180)  # across midnight: two files
    store.merge(SYMBOL, "1m", candles)
    periods = store.partitions(SYMBOL, "1m")
    parts = [candles[:120], candles[120:]]
    for period, part in zip(periods, parts, strict=True):
        path = partition_path(str(tmp_path), SYMBOL, "1m", period)
        fastparquet.write(
            path,
            part.reset_index(drop=True),
            write_index=False,
            compression=COMPRESSION,
            stats=list(STATISTICS_COLUMNS),
        )
        assert str(pq.read_schema(path).field("open_time").type) == "timestamp[ms, tz=UTC]"
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)
    for period, part in zip(periods, parts, strict=True):
        assert_candles(store.read_partition(SYMBOL, "1m", period), part, period)
        assert store.partition_problem(SYMBOL, "1m", period) is None
        open_ms = klines.open_time_ms(part)
        extent = store.partition_extent(SYMBOL, "1m", period)
        assert extent == Extent(len(part), int(open_ms[0]), int(open_ms[-1]))
        footer = read_footer(store.backend, partition_path(str(tmp_path), SYMBOL, "1m", period))
        assert footer is not None
        assert footer.dtypes == klines.DTYPES
    assert store.last_open_time(SYMBOL, "1m") == int(klines.open_time_ms(candles)[-1])
    assert verify_store(store).findings == []


#: A reader's process: the store's reads and the gap check, then whether fastparquet came in.
READER_ONLY = """
import sys
from ost import gaps
from ost.store import CandleStore
store = CandleStore(sys.argv[1])
[period] = store.partitions("BTCUSDT", "1h")
store.load_klines("BTCUSDT", "1h")
store.last_open_time("BTCUSDT", "1h")
store.partition_extent("BTCUSDT", "1h", period)
print("fastparquet" in sys.modules)
"""


def test_the_store_reads_without_importing_fastparquet(store: CandleStore, tmp_path: Path) -> None:
    """Readers (load_klines, footers, ost gaps' module) never import fastparquet: pyarrow reads."""
    store.merge(SYMBOL, "1h", make_candles("1h", T0, 30))
    child = subprocess.run(
        [sys.executable, "-c", READER_ONLY, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert child.stdout.split() == ["False"]

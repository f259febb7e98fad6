"""The store heals: damaged or foreign files move to the quarantine, on real Parquet files."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import fastparquet
import filelock
import fsspec
import pandas as pd
import pyarrow.dataset as pds
import pytest
from candles import FASTPARQUET_VALUES, make_candles
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import assert_candles

from ost import intervals, klines
from ost.errors import PartitionCorrupt
from ost.store import (
    LOCK_STRIPES,
    CandleStore,
    Location,
    Quarantined,
    locate,
    parse_quarantined,
    partition_path,
    quarantine_path,
    read_by_consumers,
)

pytestmark = pytest.mark.filterwarnings(FASTPARQUET_VALUES)
SYMBOL = "BTCUSDT"
MINUTE = intervals.MINUTE_MS
T0 = intervals.date_ms(dt.date(2024, 2, 28)) + 22 * 60 * MINUTE
PERIOD = intervals.partition_start("1m", T0)


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """A store holding 100 one-minute candles from T0, in one partition."""
    store = CandleStore(str(tmp_path))
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 100))
    return store


def the_file(root: Path) -> Path:
    """The partition file of the store's candles."""
    return Path(partition_path(str(root), SYMBOL, "1m", PERIOD))


def rewrite(path: Path, frame: pd.DataFrame) -> None:
    """Replace ``path`` with ``frame`` as fastparquet writes it (no index)."""
    fastparquet.write(str(path), frame, write_index=False)


def candles_with(**changes: Callable[[pd.Series], pd.Series]) -> pd.DataFrame:
    """The store's candles with some columns changed."""
    frame = make_candles("1m", T0, 100)
    for column, change in changes.items():
        frame[column] = change(frame[column])
    return frame


#: Ways a partition file is damaged, each a function of its path.
DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(b"\x00not parquet at all\xff" * 40),
    "text prices": lambda path: rewrite(path, candles_with(open=lambda s: s.astype(str))),
    "integer open_time": lambda path: rewrite(
        path, candles_with(open_time=lambda s: s.astype("int64"))
    ),
    "naive times": lambda path: rewrite(
        path, candles_with(open_time=lambda s: s.dt.tz_localize(None))
    ),
    "microsecond times": lambda path: rewrite(
        path, candles_with(open_time=lambda s: s.astype("datetime64[us, UTC]"))
    ),
    "missing column": lambda path: rewrite(path, make_candles("1m", T0, 100).drop(columns="low")),
    "extra column": lambda path: rewrite(path, make_candles("1m", T0, 100).assign(note="x")),
    "rows of another partition": lambda path: rewrite(
        path, make_candles("1m", T0 + 3 * intervals.DAY_MS, 10)
    ),
    "unsorted rows": lambda path: rewrite(path, make_candles("1m", T0, 100).iloc[::-1]),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_every_damage_raises_partition_corrupt_naming_the_partition(
    store: CandleStore, tmp_path: Path, damage: str
) -> None:
    """Reads, the newest candle and merges all raise PartitionCorrupt, never a raw error.

    Rows out of order leave the footer's newest open time right: that one is not an error.
    """
    path = the_file(tmp_path)
    DAMAGE[damage](path)
    calls = [
        lambda: store.load_klines(SYMBOL, "1m"),
        lambda: store.merge(SYMBOL, "1m", make_candles("1m", T0 + 100 * MINUTE, 5)),
    ]
    if damage == "unsorted rows":
        assert store.last_open_time(SYMBOL, "1m") == T0 + 99 * MINUTE
    else:
        calls.append(lambda: store.last_open_time(SYMBOL, "1m"))
    for call in calls:
        with pytest.raises(PartitionCorrupt) as raised:
            call()
        assert (raised.value.symbol, raised.value.interval) == (SYMBOL, "1m")
        assert (raised.value.period, raised.value.path) == (PERIOD, str(path))
    assert store.partition_problem(SYMBOL, "1m", PERIOD) is not None


def test_an_impossible_stored_candle_is_a_problem_of_its_partition(
    store: CandleStore, tmp_path: Path
) -> None:
    """A stored candle whose high is below its low fails merges and partition_problem."""
    rewrite(the_file(tmp_path), candles_with(high=lambda s: s * 0.5))
    with pytest.raises(PartitionCorrupt, match="do not validate"):
        store.merge(SYMBOL, "1m", make_candles("1m", T0 + 100 * MINUTE, 5))
    assert "high is below" in (store.partition_problem(SYMBOL, "1m", PERIOD) or "")


def duckdb_rows(root: Path) -> int:
    """Rows of the whole dataset through DuckDB's glob."""
    [(rows,)] = duckdb.execute(
        "select count(*) from read_parquet(?, hive_partitioning = true)",
        [f"{root}/klines/**/*.parquet"],
    ).fetchall()
    return int(rows)


def consumers_rows(root: Path) -> tuple[int, int]:
    """Rows of the whole dataset through pyarrow and through DuckDB."""
    return pds.dataset(str(root / "klines"), partitioning="hive").count_rows(), duckdb_rows(root)


def test_quarantine_moves_the_file_out_of_the_dataset_under_its_own_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The damaged file keeps its bytes under quarantine/<stamp>/, readers work again at once."""
    store = CandleStore(str(tmp_path))
    store.merge(SYMBOL, "1m", make_candles("1m", T0, 300))  # two partitions
    path = the_file(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(Exception, match=r"magic|Parquet"):
        consumers_rows(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ost.store"):
        record = store.quarantine(SYMBOL, "1m", PERIOD)
    assert record is not None
    relative = str(path.relative_to(tmp_path))
    assert record.path == relative
    assert (record.symbol, record.interval, record.period, record.partition) == (
        SYMBOL,
        "1m",
        PERIOD,
        True,
    )
    assert record.range_ms == (intervals.date_ms(PERIOD), intervals.date_ms(PERIOD) + 1440 * MINUTE)
    moved = tmp_path / record.moved_to
    assert moved.read_bytes() == b"garbage"
    assert parse_quarantined(record.moved_to) == (record.at, relative)
    assert not path.exists()
    assert consumers_rows(tmp_path) == (300 - 120, 300 - 120)  # the next day's 180 remain
    [line] = [r.getMessage() for r in caplog.records if r.name == "ost.store"]
    assert relative in line
    assert record.moved_to in line
    assert "fetched again" in line
    assert store.take_quarantined() == [record]
    assert store.take_quarantined() == []


def test_quarantine_keeps_a_file_that_is_good_again(store: CandleStore, tmp_path: Path) -> None:
    """Checked again under the lock: a file replaced by a good one meanwhile stays where it is."""
    before = the_file(tmp_path).read_bytes()
    assert store.quarantine(SYMBOL, "1m", PERIOD) is None
    assert the_file(tmp_path).read_bytes() == before
    assert not (tmp_path / "quarantine").exists()


def test_two_quarantines_of_one_path_never_overwrite_each_other(
    store: CandleStore, tmp_path: Path
) -> None:
    """The same partition quarantined twice leaves two files, each with its own bytes."""
    records: list[Quarantined] = []
    for content in (b"first", b"second"):
        the_file(tmp_path).write_bytes(content)
        record = store.quarantine(SYMBOL, "1m", PERIOD)
        assert record is not None
        records.append(record)
    assert [(tmp_path / r.moved_to).read_bytes() for r in records] == [b"first", b"second"]


def test_healing_quarantines_refetches_and_runs_again(store: CandleStore, tmp_path: Path) -> None:
    """A damaged partition met by the attempt is moved aside, refetched, and the attempt redone."""
    candles = make_candles("1m", T0, 100)
    the_file(tmp_path).write_bytes(b"")
    attempts: list[int] = []
    refetched: list[Quarantined] = []

    def attempt() -> int | None:
        attempts.append(1)
        return store.last_open_time(SYMBOL, "1m")

    def refetch(record: Quarantined) -> None:
        refetched.append(record)
        store.merge(SYMBOL, "1m", candles)

    newest = store.healing(SYMBOL, "1m", attempt, refetch)
    assert newest == int(klines.open_time_ms(candles)[-1])
    assert len(attempts) == 2
    assert [record.period for record in refetched] == [PERIOD]
    assert_candles(store.load_klines(SYMBOL, "1m"), candles)


def test_healing_heals_a_partition_once_then_raises(store: CandleStore, tmp_path: Path) -> None:
    """A refetch that leaves the partition damaged again ends in its error, not a loop."""
    the_file(tmp_path).write_bytes(b"")

    def refetch(_record: Quarantined) -> None:
        the_file(tmp_path).write_bytes(b"damaged again")

    with pytest.raises(PartitionCorrupt):
        store.healing(SYMBOL, "1m", lambda: store.load_klines(SYMBOL, "1m"), refetch)
    assert len(store.take_quarantined()) == 1


def test_healing_leaves_other_streams_errors_alone(store: CandleStore, tmp_path: Path) -> None:
    """A damaged partition of another stream is raised, not quarantined."""
    the_file(tmp_path).write_bytes(b"")
    with pytest.raises(PartitionCorrupt):
        store.healing("ETHUSDT", "1m", lambda: store.load_klines(SYMBOL, "1m"), print)
    assert store.take_quarantined() == []
    assert the_file(tmp_path).exists()


def test_a_write_quarantines_foreign_files_readers_would_read(
    store: CandleStore, tmp_path: Path
) -> None:
    """A copy of part.parquet and a note beside it move out; names readers skip stay."""
    directory = the_file(tmp_path).parent
    shutil.copy(the_file(tmp_path), directory / "part (copy).parquet")
    (directory / "notes.txt").write_text("read by pyarrow as Parquet")
    (directory / ".hidden").write_text("skipped by both")
    (directory / "_SUCCESS").write_text("skipped by both")
    assert duckdb_rows(tmp_path) == 200  # every candle twice (and pyarrow fails on the note)
    store.merge(SYMBOL, "1m", make_candles("1m", T0 + 100 * MINUTE, 5))
    assert sorted(p.name for p in directory.iterdir()) == [".hidden", "_SUCCESS", "part.parquet"]
    moved = {r.path.rsplit("/", 1)[1]: r for r in store.take_quarantined()}
    assert set(moved) == {"part (copy).parquet", "notes.txt"}
    assert not any(record.partition for record in moved.values())
    assert consumers_rows(tmp_path) == (105, 105)


def test_a_temp_file_is_removed_only_while_no_writer_holds_its_partition(
    store: CandleStore, tmp_path: Path
) -> None:
    """remove_temp and is_writing try the partition's lock without waiting."""
    temp = the_file(tmp_path).parent / ".part-left.tmp"
    temp.write_bytes(b"PAR1 half")
    stripe = PERIOD.toordinal() % LOCK_STRIPES
    with filelock.FileLock(tmp_path / "locks" / f"{SYMBOL}-1m.{stripe}.lock"):
        assert store.is_writing(str(temp))
        assert not store.remove_temp(str(temp))
        assert temp.exists()
    assert not store.is_writing(str(temp))
    assert store.remove_temp(str(temp))
    assert not temp.exists()


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A unique ``memory://`` root, removed afterwards."""
    root = f"memory://ost-quarantine-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory://")):
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_quarantine_on_a_remote_root_goes_through_its_filesystem(memory_root: str) -> None:
    """On a memory:// root the damaged file moves to quarantine/ on that filesystem."""
    store = CandleStore(memory_root)
    candles = make_candles("1m", T0, 100)
    store.merge(SYMBOL, "1m", candles)
    fs = fsspec.filesystem("memory")
    path = partition_path(store.backend.root, SYMBOL, "1m", PERIOD)
    fs.pipe(path, b"garbage")
    newest = store.healing(
        SYMBOL,
        "1m",
        lambda: store.last_open_time(SYMBOL, "1m"),
        lambda _record: store.merge(SYMBOL, "1m", candles),
    )
    assert newest == int(klines.open_time_ms(candles)[-1])
    [record] = store.take_quarantined()
    assert fs.cat(f"{store.backend.root}/{record.moved_to}") == b"garbage"


PARTS = st.sampled_from(
    ["a", ".a", "_a", "a b", "x=1", "a.parquet", ".a.parquet", "_a.parquet", "part (copy).parquet"]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(PARTS, min_size=1, max_size=3), min_size=1, max_size=5, unique_by=tuple))
def test_read_by_consumers_is_what_pyarrow_and_duckdb_read(names: list[list[str]]) -> None:
    """The store's rule for foreign files matches the readers' own discovery, file by file."""
    template = make_candles("1m", T0, 3)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "klines"
        made = set()
        for parts in names:
            path = root.joinpath(*parts)
            if any(parent in made for parent in path.parents) or any(
                str(other).startswith(f"{path}/") for other in made
            ):
                continue  # a file cannot also be a directory
            path.parent.mkdir(parents=True, exist_ok=True)
            rewrite(path, template)
            made.add(path)
        arrow = {str(Path(f).relative_to(root)) for f in pds.dataset(str(root)).files}
        glob = duckdb.execute("select file from glob(?)", [f"{root}/**/*.parquet"]).fetchall()
        ducks = {str(Path(f).relative_to(root)) for (f,) in glob}
        relative = {str(path.relative_to(root)) for path in made}
        assert arrow | ducks == {name for name in relative if read_by_consumers(name)}


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    st.integers(0, 3),
)
def test_a_quarantine_path_gives_back_its_time_and_original_path(
    at: dt.datetime, attempt: int
) -> None:
    """parse_quarantined reads back what quarantine_path built."""
    original = "klines/symbol=BTCUSDT/interval=1m/period=2024-02-28/part (copy).parquet"
    built = quarantine_path("/data", f"/data/{original}", at, attempt)
    assert built.startswith("/data/quarantine/")
    assert parse_quarantined(built.removeprefix("/data/")) == (at, original)


@pytest.mark.parametrize(
    ("relative", "where"),
    [
        (
            "klines/symbol=BTCUSDT/interval=1h/period=2024-01-01/part.parquet",
            Location("BTCUSDT", "1h", dt.date(2024, 1, 1), is_partition_file=True),
        ),
        (
            "klines/symbol=BTCUSDT/interval=1h/period=2024-01-01/part (copy).parquet",
            Location("BTCUSDT", "1h", dt.date(2024, 1, 1)),
        ),
        (
            "klines/symbol=BTCUSDT/interval=1h/period=2024-02-15/part.parquet",
            Location("BTCUSDT", "1h"),  # not the start of a 1h (year) partition
        ),
        ("klines/symbol=BTCUSDT/interval=7m/x.parquet", Location("BTCUSDT")),
        ("klines/symbol=btc/interval=1h/period=2024-01-01/part.parquet", Location()),
        ("klines/README", Location()),
        ("gaps/symbol=BTCUSDT/interval=1h/exchange_gaps.json", Location()),
    ],
)
def test_locate_names_only_valid_hive_keys(relative: str, where: Location) -> None:
    """A path's symbol, interval and period count only where the layout would put them."""
    assert locate(relative) == where


def test_a_period_directory_that_starts_no_partition_is_not_the_stores(
    store: CandleStore, tmp_path: Path
) -> None:
    """`period=2024-02-15` of 1h (a year partition) is never read: it is no partition of it."""
    store.merge(SYMBOL, "1h", make_candles("1h", T0, 10))
    stray = Path(partition_path(str(tmp_path), SYMBOL, "1h", dt.date(2024, 2, 15)))
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"garbage")
    assert store.partitions(SYMBOL, "1h") == [dt.date(2024, 1, 1)]
    assert store.last_open_time(SYMBOL, "1h") == T0 + 9 * intervals.HOUR_MS
    assert len(store.load_klines(SYMBOL, "1h")) == 10

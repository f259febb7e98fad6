"""`ost verify [--repair] [--json]` on stores built with each kind of damage, over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastparquet
import filelock
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from commands import ost, ost_env
from hypothesis import given
from hypothesis import strategies as st
from moments import DAYS_SINCE_JAN_1, JAN_1, JAN_3_NOW
from oracle import assert_candles, closed_candles, simulator_candles
from readers import stored_candles

from ost import intervals, klines
from ost.backfill import backfill_stream
from ost.binance import BinanceClient
from ost.ingest import ingest_all
from ost.sim import SimHandle
from ost.store import LOCK_STRIPES, CandleStore, partition_path
from ost.verify import open_time_problems, repair_store, verify_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fast_retries")]

DAY = intervals.DAY_MS
MINUTE = intervals.MINUTE_MS
SYMBOLS = ("BTCUSDT", "ETHUSDT")
INTERVALS = ("1m", "15m", "1h", "1d")
STREAMS = [(s, i) for s in SYMBOLS for i in INTERVALS] + [("BNBUSDT", "1m")]


def ingested(sim: SimHandle, root: Path, streams: list[tuple[str, str]]) -> CandleStore:
    """A store holding every stream from 2026-01-01 up to now, ingested over real HTTP."""
    sim.configure(now_ms=JAN_3_NOW)
    store = CandleStore(str(root))
    with BinanceClient([sim.url], timeout_s=5.0, max_attempts=3) as client:
        outcomes = ingest_all(client, store, streams, lookback_days=float(DAYS_SINCE_JAN_1))
    assert all(outcome.ok for outcome in outcomes), outcomes
    return store


def part(root: Path, symbol: str, interval: str, day: dt.date) -> Path:
    """The partition file of ``symbol``/``interval`` holding the candles of ``day``."""
    period = intervals.partition_start(interval, intervals.date_ms(day))
    return Path(partition_path(str(root), symbol, interval, period))


def relative(root: Path, path: Path) -> str:
    """``path`` as the report names it: relative to the data dir."""
    return str(path.relative_to(root))


def read(path: Path) -> pd.DataFrame:
    """A partition file's candles, as the store wrote them."""
    return fastparquet.ParquetFile(str(path)).to_pandas()


def write(path: Path, frame: pd.DataFrame) -> None:
    """Replace a partition file with ``frame``, times in ms (as stored), as fastparquet writes."""
    frame = frame.reset_index(drop=True)
    for column in klines.TIME_COLUMNS:  # pandas arithmetic on times may change their unit
        frame[column] = frame[column].astype(klines.TIME_DTYPE)
    fastparquet.write(str(path), frame, write_index=False)


def with_microsecond_times(path: Path) -> None:
    """The same candles, times as TIMESTAMP(MICROS) written by pyarrow (fastparquet reads ms)."""
    table = pq.read_table(path)
    for name in klines.TIME_COLUMNS:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.timestamp("us", "UTC")))
    pq.write_table(table, path)


def newest_open_ms(path: Path) -> int:
    """The newest open time in a partition file, as pyarrow reads it."""
    column = pq.read_table(path, columns=["open_time"]).column("open_time")
    return int(column.cast(pa.int64()).to_numpy().max())


def damaged_store(sim: SimHandle, root: Path) -> tuple[set[tuple[str, str]], dict[str, bytes]]:
    """A store with each kind of damage in its own file: (kind, path) expected, damaged bytes."""
    store = ingested(sim, root, STREAMS)
    jan1, jan2, jan3 = (dt.date(2026, 1, day) for day in (1, 2, 3))
    files = {
        "truncated": part(root, "BTCUSDT", "1m", jan1),
        "empty": part(root, "BTCUSDT", "1m", jan2),
        "garbage": part(root, "ETHUSDT", "1m", jan1),
        "microseconds": part(root, "ETHUSDT", "1m", jan2),
        "text": part(root, "BTCUSDT", "15m", jan1),
        "twice": part(root, "ETHUSDT", "15m", jan1),
        "misaligned": part(root, "BTCUSDT", "1h", jan1),
        "impossible": part(root, "ETHUSDT", "1h", jan1),
        "misplaced": part(root, "BTCUSDT", "1d", jan1),
        "unsorted": part(root, "ETHUSDT", "1d", jan1),
    }
    path = files["truncated"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(b"\x89garbage\x00" * 300)
    with_microsecond_times(files["microseconds"])
    frame = read(files["text"])
    write(files["text"], frame.assign(open=frame["open"].astype(str)))
    frame = read(files["twice"])
    write(files["twice"], pd.concat([frame, frame.iloc[:7]]).sort_values("open_time"))
    frame = read(files["misaligned"])
    frame.loc[10, "open_time"] += pd.Timedelta(minutes=1)
    write(files["misaligned"], frame)
    frame = read(files["impossible"])
    frame.loc[5, "high"] = frame.loc[5, "low"] / 2
    write(files["impossible"], frame)
    frame = read(files["misplaced"])
    day_before = frame.iloc[:1].copy()
    for column in ("open_time", "close_time"):
        day_before[column] -= pd.Timedelta(days=1)
    write(files["misplaced"], pd.concat([day_before, frame]))
    write(files["unsorted"], read(files["unsorted"]).iloc[::-1])
    newest = part(root, "BTCUSDT", "1m", jan3)
    copy = newest.parent / "part (copy).parquet"
    copy.write_bytes(newest.read_bytes())
    readme = root / "klines" / "README"
    readme.write_text("not a candle")
    temp = part(root, "ETHUSDT", "1m", jan3).parent / ".part-killed.tmp"
    temp.write_bytes(b"PAR1 half a file")
    moved = store.quarantine("BNBUSDT", "1m", jan1, check=lambda: "moved aside by hand")
    assert moved is not None  # a quarantine whose refetch never ran
    kinds = {
        "truncated": "unreadable",
        "empty": "unreadable",
        "garbage": "unreadable",
        "microseconds": "schema",
        "text": "schema",
        "twice": "duplicate",
        "misaligned": "misaligned",
        "impossible": "invalid",
        "misplaced": "misplaced",
        "unsorted": "unsorted",
    }
    expected = {(kinds[name], relative(root, path)) for name, path in files.items()}
    expected |= {
        ("foreign", relative(root, copy)),
        ("foreign", relative(root, readme)),
        ("temp", relative(root, temp)),
        ("unrestored", moved.moved_to),
    }
    damaged = {relative(root, path): path.read_bytes() for path in (*files.values(), copy, readme)}
    return expected, damaged


def report_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report of an `ost verify --json` run."""
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_verify_finds_each_kind_of_damage_and_repair_leaves_the_store_exact(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Every damage is reported where it is; --repair quarantines, refetches: clean and exact."""
    expected, damaged = damaged_store(sim, tmp_path)
    baseline_end = {
        symbol: newest_open_ms(part(tmp_path, symbol, "1m", dt.date(2026, 1, 3))) + MINUTE
        for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    }
    env = ost_env(sim, tmp_path, OST_INTERVALS=",".join(INTERVALS))

    found = ost("verify", "--json", env=env)

    assert found.returncode == 1, found.stderr
    report = report_of(found)
    assert not report["clean"]
    got = {(f["kind"], f["path"]) for f in report["findings"] if f["kind"] != "dataset"}
    assert got == expected
    views = {view["reader"]: view for view in report["views"]}
    assert views["pyarrow"]["error"]  # what the backend meets today
    assert views["duckdb"]["error"]

    repaired = ost("verify", "--repair", "--json", env=env)

    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = report_of(repaired)
    assert after["clean"]
    assert after["findings"] == []
    actions = [each["action"] for each in after["repairs"]]
    assert "failed" not in actions
    assert actions.count("removed") == 1
    moved = {
        each["path"]: each["detail"] for each in after["repairs"] if each["action"] == "quarantined"
    }
    assert set(moved) == set(damaged)
    for original, content in damaged.items():
        assert (tmp_path / moved[original]).read_bytes() == content
    names = {path.name for path in (tmp_path / "klines").rglob("*") if path.is_file()}
    assert names == {"part.parquet"}
    now = sim.now_ms()
    for symbol, interval in STREAMS:
        end = baseline_end[symbol] if interval == "1m" else intervals.align(interval, now)
        want = simulator_candles(symbol, interval, JAN_1, end, now)
        assert_candles(stored_candles(tmp_path, symbol, interval), want, symbol, interval)
    assert ost("verify", env=env).returncode == 0


def test_a_clean_store_is_clean_and_repair_asks_binance_nothing(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Exit 0 with and without --repair; the readers agree on every candle; no request made."""
    ingested(sim, tmp_path, [("BTCUSDT", "15m"), ("ETHUSDT", "1h")])
    env = ost_env(sim, tmp_path)
    sim.reset()

    result = ost("verify", "--json", env=env)
    repaired = ost("verify", "--repair", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(result)
    rows = pds.dataset(str(tmp_path / "klines"), partitioning="hive").count_rows()
    assert report["candles"] == rows
    assert {view["reader"]: view["rows"] for view in report["views"]} == {
        "pyarrow": rows,
        "duckdb": rows,
    }
    assert repaired.returncode == 0
    assert "clean" in repaired.stdout
    assert sim.stats()["total"] == 0


def test_a_foreign_copy_shows_as_the_duplicates_the_backend_would_read(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A `part (copy).parquet`: foreign, and DuckDB's view counts each of its candles twice."""
    ingested(sim, tmp_path, [("BTCUSDT", "15m")])
    newest = part(tmp_path, "BTCUSDT", "15m", dt.date(2026, 1, 3))
    (newest.parent / "part (copy).parquet").write_bytes(newest.read_bytes())

    report = report_of(ost("verify", "--json", env=ost_env(sim, tmp_path)))

    rows = pq.read_metadata(newest).num_rows
    assert [f["kind"] for f in report["findings"]] == ["foreign", "dataset"]
    assert {view["reader"]: view["rows"] for view in report["views"]} == {
        "pyarrow": 2 * rows,
        "duckdb": 2 * rows,
    }
    assert report["views"][1]["duplicates"] == rows


def test_a_temp_file_of_a_running_writer_is_no_leftover(sim: SimHandle, tmp_path: Path) -> None:
    """While the partition's lock is held, its temp file is not reported; once free, it is."""
    ingested(sim, tmp_path, [("BTCUSDT", "1h")])
    period = dt.date(2026, 1, 1)
    temp = part(tmp_path, "BTCUSDT", "1h", period).parent / ".part-writing.tmp"
    temp.write_bytes(b"PAR1 being written")
    stripe = period.toordinal() % LOCK_STRIPES
    env = ost_env(sim, tmp_path)
    with filelock.FileLock(tmp_path / "locks" / f"BTCUSDT-1h.{stripe}.lock"):
        assert ost("verify", env=env).returncode == 0
        assert ost("verify", "--repair", env=env).returncode == 0
        assert temp.exists()
    leftover = ost("verify", "--json", env=env)
    assert leftover.returncode == 1
    assert [f["kind"] for f in report_of(leftover)["findings"]] == ["temp"]


@pytest.mark.parametrize("args", [["verify", "--nope"], ["verify", "--json=yes"], ["verify", "x"]])
def test_bad_arguments_exit_2(sim: SimHandle, tmp_path: Path, args: list[str]) -> None:
    """A usage error is one line on stderr, exit 2."""
    result = ost(*args, env=ost_env(sim, tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_data_dir_that_is_a_file_exits_2(sim: SimHandle, tmp_path: Path) -> None:
    """OST_DATA_DIR pointing at a file is refused on one line, exit 2."""
    data = tmp_path / "data"
    data.write_text("not a directory")
    result = ost("verify", env=ost_env(sim, data))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


#: `ost verify` in a process where DuckDB (the optional reader) cannot be imported.
WITHOUT_READERS = (
    "import sys; sys.modules['duckdb'] = None;"
    " from ost.cli import main; sys.argv = ['ost', *sys.argv[1:]]; main()"
)


def test_without_duckdb_verify_still_checks_with_pyarrow_and_fastparquet(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A missing reader is one warning line; a damaged file is still found (exit 1)."""
    ingested(sim, tmp_path, [("BTCUSDT", "1h")])
    env = ost_env(sim, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", WITHOUT_READERS, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    clean = run("verify")
    assert clean.returncode == 0, clean.stderr
    [warning] = clean.stderr.strip().splitlines()
    assert "duckdb not installed" in warning
    assert "verify" in warning  # the extra that brings them
    part(tmp_path, "BTCUSDT", "1h", dt.date(2026, 1, 1)).write_bytes(b"")
    damaged = run("verify", "--json")
    assert damaged.returncode == 1
    report = report_of(damaged)
    assert report["readers"]["duckdb"] is None
    assert [f["kind"] for f in report["findings"]] == ["unreadable", "dataset"]  # pyarrow's view


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A unique ``memory://`` root, removed afterwards."""
    root = f"memory://ost-verify-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory://")):
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_verify_and_repair_a_remote_root(
    sim: SimHandle, client: BinanceClient, memory_root: str
) -> None:
    """On a memory:// root both readers go through its filesystem; repair refetches over HTTP."""
    sim.configure(now_ms=JAN_3_NOW)
    store = CandleStore(memory_root)
    backfill_stream(client, store, "BTCUSDT", "1h", JAN_1, JAN_1 + DAY)
    fs = fsspec.filesystem("memory")
    path = partition_path(store.backend.root, "BTCUSDT", "1h", dt.date(2026, 1, 1))
    fs.pipe(path, b"garbage")
    fs.pipe(path.replace("part.parquet", "part (copy).parquet"), b"garbage too")

    report = verify_store(store)

    assert sorted(f.kind for f in report.findings) == [
        "dataset",
        "dataset",
        "foreign",
        "unreadable",
    ]
    repairs = repair_store(
        store,
        report,
        lambda symbol, interval, start, end: (
            backfill_stream(client, store, symbol, interval, start, end).written
        ),
    )
    assert [each.action for each in repairs] == ["quarantined", "quarantined", "refetched"]
    assert verify_store(store).clean
    assert_candles(
        store.load_klines("BTCUSDT", "1h"), closed_candles("BTCUSDT", "1h", JAN_1, sim.now_ms())
    )


PARTITIONED = st.sampled_from(["1m", "15m", "1h", "1w", "1M"])


@given(
    PARTITIONED,
    st.lists(st.integers(-3, 3), min_size=1, max_size=30),
    st.lists(st.integers(0, 59_999), min_size=1, max_size=30),
)
def test_open_time_problems_match_the_intervals_rules(
    interval: str, steps: list[int], jitters: list[int]
) -> None:
    """Each kind is reported exactly when the open times break its rule (checked one by one)."""
    period = dt.date(2024, 1, 1)
    start = intervals.date_ms(period)
    cursor, opens = start, []
    for step, jitter in zip(steps, jitters, strict=False):
        for _ in range(abs(step)):
            cursor = intervals.next_open(interval, cursor) if step > 0 else cursor - 3_600_000
        opens.append(cursor + (jitter if jitter % 7 == 0 else 0))
    open_ms = np.array(opens, dtype=np.int64)
    kinds = {kind for kind, _ in open_time_problems(interval, period, open_ms)}
    duplicated = len(set(opens)) < len(opens)
    assert ("duplicate" in kinds) == duplicated
    assert ("unsorted" in kinds) == (not duplicated and opens != sorted(opens))
    assert ("misaligned" in kinds) == (not all(intervals.is_aligned(interval, t) for t in opens))
    inside = [intervals.partition_start(interval, t) == period for t in opens]
    assert ("misplaced" in kinds) == (not all(inside))


def test_an_empty_store_is_clean(tmp_path: Path) -> None:
    """No file at all, or an empty klines/ directory: clean, and no reader is asked to read."""
    assert verify_store(CandleStore(str(tmp_path / "none"))).clean
    (tmp_path / "empty" / "klines").mkdir(parents=True)
    report = verify_store(CandleStore(str(tmp_path / "empty")))
    assert report.clean
    assert report.views == []

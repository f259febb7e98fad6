"""`ost ingest` as an operator runs it: exit statuses, bad input, SIGKILL at random instants."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
from commands import ost
from processes import Processes
from test_ingest import NOW

from ost import intervals, klines
from ost.sim import SimHandle
from ost.sim import klines as sim_klines
from ost.store import CandleStore

pytestmark = pytest.mark.slow


def ost_env(sim: SimHandle, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an `ost` subprocess pointed at the simulator and a data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OST_")}
    env.update(
        {
            "OST_BINANCE_BASE_URLS": sim.url,
            "OST_ARCHIVE_BASE_URL": sim.url,
            "OST_DATA_DIR": str(data_dir),
            "OST_SYMBOLS": "BTCUSDT,ETHUSDT",
            "OST_INTERVALS": "1m,15m",
            "OST_HTTP_TIMEOUT_S": "5",
            **extra,
        }
    )
    return env


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "--symbols", "../x"],
        ["ingest", "--intervals", "7m"],
        ["ingest", "--symbols", "btcusdt"],
        ["ingest", "--nope"],
    ],
)
def test_bad_input_exits_2_before_any_request_or_write(
    sim: SimHandle, tmp_path: Path, args: list[str]
) -> None:
    """One line on stderr, exit 2, no request to Binance and no file written."""
    data_dir = tmp_path / "data"
    result = ost(*args, env=ost_env(sim, data_dir))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("ost: error: ")
    assert sim.stats()["total"] == 0
    assert not data_dir.exists()


def test_bad_setting_exits_2(sim: SimHandle, tmp_path: Path) -> None:
    """A bad OST_* value is named on one line, exit 2."""
    result = ost("ingest", env=ost_env(sim, tmp_path, OST_HTTP_TIMEOUT_S="soon"))
    assert result.returncode == 2
    assert "OST_HTTP_TIMEOUT_S" in result.stderr


def test_one_failing_stream_stops_no_other_and_exits_1(sim: SimHandle, tmp_path: Path) -> None:
    """An unknown symbol fails its streams; the good one is stored; exit status 1."""
    sim.configure(now_ms=NOW)
    env = ost_env(sim, tmp_path, OST_INITIAL_LOOKBACK_DAYS="1")
    result = ost("ingest", "--symbols", "NOSUCHUSDT,BTCUSDT", "--intervals", "1h", env=env)
    assert result.returncode == 1
    assert "rejected" in result.stdout
    assert len(CandleStore(str(tmp_path)).load_klines("BTCUSDT", "1h")) == 24


def read_everywhere(data_dir: Path) -> None:
    """The store reads with pyarrow and DuckDB, with no duplicate candle in any stream."""
    root = data_dir / "klines"
    if not any(root.rglob("*.parquet")):  # killed before its first write
        return
    table = ds.dataset(str(root), partitioning="hive").to_table()
    frame = table.to_pandas()
    assert not frame.duplicated(["symbol", "interval", "open_time"]).any()
    glob = str(root / "**" / "*.parquet")
    source = f"read_parquet('{glob}', hive_partitioning=true)"
    dupes = duckdb.sql(
        "select count(*) from (select symbol, interval, open_time, count(*) c "  # noqa: S608  # a test's own temp path
        f"from {source} group by all having c > 1)"
    ).fetchall()
    assert dupes == [(0,)]
    assert duckdb.sql(f"select count(*) from {source}").fetchall() == [(len(frame),)]  # noqa: S608  # as above


def test_sigkill_at_random_instants_loses_nothing(
    sim: SimHandle, tmp_path: Path, processes: Processes
) -> None:
    """`ost ingest` killed again and again: always readable, never a duplicate, then complete."""
    sim.configure(now_ms=NOW, latency_ms=10)
    env = ost_env(sim, tmp_path, OST_INITIAL_LOOKBACK_DAYS="30")
    rng = random.Random(7)
    kills = 0
    for _ in range(10):
        child = processes.start(
            [sys.executable, "-m", "ost.cli", "ingest"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.8, 2.5))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait()
        read_everywhere(tmp_path)
    assert kills >= 5
    assert ost("ingest", env=env).returncode == 0
    read_everywhere(tmp_path)
    store = CandleStore(str(tmp_path))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for interval in ("1m", "15m"):
            start = intervals.align(interval, NOW - 30 * intervals.DAY_MS)
            end = intervals.align(interval, NOW)
            want = klines.parse_rows(sim_klines(symbol, interval, start, end, NOW), interval)
            assert klines.rows_equal(store.load_klines(symbol, interval), want)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".part-")]
    assert all(not p.name.endswith(".parquet") for p in leftovers)

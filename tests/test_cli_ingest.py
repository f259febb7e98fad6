"""`ost ingest` as an operator runs it: exit statuses, bad input, SIGKILL at random instants."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from commands import ost, ost_env
from moments import NOW
from oracle import assert_candles, closed_candles, lookback_start
from processes import Processes
from readers import read_everywhere

from ost.sim import SimHandle
from ost.store import CandleStore

pytestmark = pytest.mark.slow


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
    started = time.monotonic()
    assert ost("ingest", env=env).returncode == 0
    # The simulator's /api/v3/time stays at NOW, and the client carries Binance's clock forward
    # from its measure (as it must with the real one): on a loaded machine a run that outlasts
    # the open candle's close stores it too. What is stored up to NOW must be exact.
    ran_ms = int((time.monotonic() - started) * 1000) + 1
    binance_now_at_most = pd.Timestamp(NOW + ran_ms, unit="ms", tz="UTC")
    read_everywhere(tmp_path)
    store = CandleStore(str(tmp_path))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for interval in ("1m", "15m"):
            want = closed_candles(symbol, interval, lookback_start(interval, NOW, 30), NOW)
            got = store.load_klines(symbol, interval)
            assert_candles(got.iloc[: len(want)], want, symbol, interval)
            later = got.iloc[len(want) :]
            assert (later["close_time"] < binance_now_at_most).all(), (symbol, interval, later)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith(".part-")]
    assert all(not p.name.endswith(".parquet") for p in leftovers)

"""What `ost` prints when its output goes to a pipe or a file: readable retries, whole tables."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from ost.sim import SimHandle
from tests.commands import ost

RETRY_LINE = re.compile(r"^retry 1 in \d+\.\d s after BinanceUnavailable: .*503")


def sim_env(sim: SimHandle, data_dir: Path) -> dict[str, str]:
    """The environment of an `ost` run against the simulator, with a data dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "COLUMNS"))}
    env.update(OST_BINANCE_BASE_URLS=sim.url, OST_DATA_DIR=str(data_dir))
    return env


def test_a_retry_is_one_readable_line(sim: SimHandle, tmp_path: Path):
    """One 503 gives one line that says which retry, when and why; no bare stamina event."""
    sim.set_faults("5xx:status=503,count=1")
    run = ost("ingest", "--symbols", "BTCUSDT", "--intervals", "1d", env=sim_env(sim, tmp_path))
    assert run.returncode == 0, run.stderr
    assert "stamina.retry_scheduled" not in run.stderr + run.stdout
    retries = [line for line in run.stderr.splitlines() if line.startswith("retry ")]
    assert len(retries) == 1, run.stderr
    assert RETRY_LINE.match(retries[0]), retries[0]


def test_tables_are_not_cut_when_output_is_not_a_terminal(sim: SimHandle, tmp_path: Path):
    """Each stream's row of `ost ingest` is one whole line in a pipe, however wide it is."""
    env = sim_env(sim, tmp_path)
    run = ost("ingest", "--symbols", "BTCUSDT,NOPEUSDT", "--intervals", "1d", env=env)
    assert run.returncode == 1, run.stderr
    now = dt.datetime.fromtimestamp(sim.now_ms() / 1000, tz=dt.UTC)
    last_day = (now - dt.timedelta(days=1)).strftime("%Y-%m-%d 00:00")
    lines = run.stdout.splitlines()
    (btc,) = [line for line in lines if line.startswith("│ BTCUSDT")]
    (nope,) = [line for line in lines if line.startswith("│ NOPEUSDT")]
    assert last_day in btc, run.stdout
    assert " ok " in btc, run.stdout
    assert "failed" in nope, run.stdout
    (why,) = [line for line in lines if line.startswith("NOPEUSDT 1d:")]
    assert "Invalid symbol" in why, run.stdout
    assert why.rstrip().endswith(")"), run.stdout

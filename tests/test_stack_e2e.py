"""End to end: `ost up --simulate` with a real Prefect server and process worker.

`ost up` starts here with SIGINT ignored, as from `&` or a script: Ctrl-C must still stop it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from oracle import assert_candles, simulator_candles
from processes import Processes, alive

from ost import klines
from ost.stack import PROJECT_DIR, free_port
from ost.store import CandleStore

pytestmark = pytest.mark.slow
UP_TIMEOUT_S = 240


@dataclass
class Stack:
    """A running `ost up --simulate` and what a test needs to talk to it."""

    process: subprocess.Popen[bytes]
    processes: Processes
    log: Path
    env: dict[str, str]
    api: str
    data_dir: Path

    def output(self) -> str:
        """Everything `ost up` and its children printed so far."""
        return self.log.read_text(errors="replace")

    def run(
        self, *argv: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run a command with the stack's environment (PREFECT_API_URL set), or ``env``."""
        return self.processes.run(argv, env=env or self.env, cwd=PROJECT_DIR, timeout=timeout)

    def children(self) -> list[int]:
        """The PIDs of the children `ost up` says it started."""
        return [int(pid) for pid in re.findall(r"started [\w ]+ \(pid (\d+)\)", self.output())]

    def deployment(self, name: str) -> dict[str, object]:
        """The deployment as the Prefect API reports it."""
        response = httpx.get(f"{self.api}/deployments/name/{name}", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def flow_runs(self, deployment_id: object) -> int:
        """How many runs of the deployment there are, in any state."""
        body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
        response = httpx.post(f"{self.api}/flow_runs/count", json=body, timeout=10)
        response.raise_for_status()
        return int(response.json())

    def scheduled_runs(self, deployment_id: object) -> int:
        """How many runs of the deployment wait in state SCHEDULED."""
        body = {
            "flow_runs": {
                "deployment_id": {"any_": [deployment_id]},
                "state": {"type": {"any_": ["SCHEDULED"]}},
            }
        }
        response = httpx.post(f"{self.api}/flow_runs/count", json=body, timeout=10)
        response.raise_for_status()
        return int(response.json())


@pytest.fixture(scope="module")
def processes() -> Iterator[Processes]:
    """The module's children: `ost up` and the commands the tests run (killed at the end)."""
    with Processes() as owned:
        yield owned


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, processes: Processes) -> Iterator[Stack]:
    """`ost up --simulate` on free ports, own PREFECT_HOME and data dir, SIGINT ignored."""
    home = tmp_path_factory.mktemp("stack")
    server_port, metrics_port, sim_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_SERVER_API_PORT": str(server_port),
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "OST_DATA_DIR": str(home / "data"),
            "OST_METRICS_PORT": str(metrics_port),
            "OST_SYMBOLS": "BTCUSDT",
            "OST_INTERVALS": "1h",
            "OST_INITIAL_LOOKBACK_DAYS": "1",
        }
    )
    log = home / "ost-up.log"
    with log.open("wb") as out:
        process = processes.start(
            [sys.executable, "-m", "ost.cli", "up", "--simulate", "--sim-port", str(sim_port)],
            env=env,
            cwd=PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            sigint=signal.SIG_IGN,
            grace_s=120,  # `ost up` stops its children before it exits
        )
    api = f"http://127.0.0.1:{server_port}/api"
    running = Stack(process, processes, log, {**env, "PREFECT_API_URL": api}, api, home / "data")
    deadline = time.monotonic() + UP_TIMEOUT_S
    while "ost-ingest is up" not in running.output():
        assert process.poll() is None, running.output()[-3000:]
        assert time.monotonic() < deadline, running.output()[-3000:]
        time.sleep(1)
    for pid in running.children():
        processes.adopt(pid)
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)


def test_the_first_ingestion_runs_at_start(stack: Stack) -> None:
    """Right after start, a run of ingest-all that no schedule made stores Binance's candles."""
    ingest = stack.deployment("ingest-all/scheduled")
    body = {"flow_runs": {"deployment_id": {"any_": [ingest["id"]]}}}
    deadline = time.monotonic() + UP_TIMEOUT_S
    while True:
        response = httpx.post(f"{stack.api}/flow_runs/filter", json=body, timeout=10)
        response.raise_for_status()
        first = [run for run in response.json() if not run["auto_scheduled"]]
        if first and first[0]["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            break
        assert time.monotonic() < deadline, response.json()
        time.sleep(1)
    assert len(first) == 1
    assert first[0]["state_type"] == "COMPLETED", first[0]
    stored = CandleStore(str(stack.data_dir)).load_klines("BTCUSDT", "1h")
    assert 23 <= len(stored) <= 24  # OST_INITIAL_LOOKBACK_DAYS=1
    first_ms, last_ms = (int(x) for x in klines.open_time_ms(stored)[[0, -1]])
    want = simulator_candles("BTCUSDT", "1h", first_ms, last_ms + 1, last_ms + 3_600_000)
    assert_candles(stored, want)


def test_backfill_deployment_run_stores_the_candles(stack: Stack) -> None:
    """`prefect deployment run backfill/manual --param interval=1h --param days=2` completes."""
    result = stack.run(
        sys.executable,
        "-m",
        "prefect",
        "deployment",
        "run",
        "backfill/manual",
        "--param",
        "interval=1h",
        "--param",
        "days=2",
        "--watch",
        "--watch-timeout",
        "150",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    stored = CandleStore(str(stack.data_dir)).load_klines("BTCUSDT", "1h")
    assert 47 <= len(stored) <= 48
    first, last = (int(x) for x in klines.open_time_ms(stored)[[0, -1]])
    want = simulator_candles("BTCUSDT", "1h", first, last + 1, last + 3_600_000)
    assert_candles(stored, want)


def test_schedule_pause_stops_scheduled_runs_and_survives_a_redeploy(stack: Stack) -> None:
    """`ost schedule pause`: the API says paused, no run is scheduled, even after a redeploy."""
    ingest = stack.deployment("ingest-all/scheduled")
    deadline = time.monotonic() + 60
    while stack.scheduled_runs(ingest["id"]) == 0:  # the scheduler fills the next runs
        assert time.monotonic() < deadline
        time.sleep(1)
    result = stack.run(sys.executable, "-m", "ost.cli", "schedule", "pause")
    assert result.returncode == 0, result.stderr
    assert stack.deployment("ingest-all/scheduled")["paused"] is True
    time.sleep(5)  # two scheduler loops
    assert stack.scheduled_runs(ingest["id"]) == 0
    redeploy = stack.run(sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all")
    assert redeploy.returncode == 0, redeploy.stdout[-2000:]
    time.sleep(5)
    assert stack.scheduled_runs(ingest["id"]) == 0
    status = stack.run(sys.executable, "-m", "ost.cli", "status", "--json")
    assert json.loads(status.stdout)["ingest_schedule"] == "paused"
    resumed = stack.run(sys.executable, "-m", "ost.cli", "schedule", "resume")
    assert resumed.returncode == 0
    assert stack.deployment("ingest-all/scheduled")["paused"] is False


def test_disable_scheduler_brings_deployments_up_paused(stack: Stack) -> None:
    """With OST_DISABLE_SCHEDULER=true, the deploy step leaves ingest-all paused."""
    env = {**stack.env, "OST_DISABLE_SCHEDULER": "true"}
    step = subprocess.run(
        [sys.executable, "-m", "ost.flows.control", "after-deploy"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert step.returncode == 0, step.stderr
    assert "paused (OST_DISABLE_SCHEDULER=true)" in step.stdout
    assert stack.deployment("ingest-all/scheduled")["paused"] is True
    assert stack.deployment("watchdog/scheduled")["paused"] is False
    assert stack.run(sys.executable, "-m", "ost.cli", "schedule", "resume").returncode == 0


def test_the_banner_commands_work_as_written_in_another_terminal(
    stack: Stack, tmp_path: Path
) -> None:
    """What `ost up` tells a second terminal to type, run as written by bash, does what it says."""
    banner = stack.output().split("in another terminal in this directory:\n")[1]
    lines = [line.strip() for line in banner.split("Ctrl-C stops")[0].splitlines()]
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    if shutil.which("uv", path=path) is None or shutil.which("curl", path=path) is None:
        pytest.skip("no uv or curl on PATH for a second terminal")
    # A new terminal: none of the stack's settings, no virtualenv, plain `prefect` not on PATH.
    # Its own PREFECT_HOME (the user's ~/.prefect otherwise) and the stack's data dir.
    shell = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OST_", "PREFECT_")) and k != "VIRTUAL_ENV"
    }
    shell |= {"PATH": path, "PREFECT_HOME": str(tmp_path), "OST_DATA_DIR": str(stack.data_dir)}
    backfill = stack.deployment("backfill/manual")
    runs_before = stack.flow_runs(backfill["id"])
    result = stack.run("bash", "-e", "-o", "pipefail", "-c", "\n".join(lines), env=shell)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert any(line.startswith("uv run prefect ") for line in lines), lines
    sim_url = stack.env.get("OST_BINANCE_BASE_URLS", "")
    assert re.search(rf"{re.escape(sim_url)}\s*│\s*yes", result.stdout), result.stdout
    assert stack.flow_runs(backfill["id"]) == runs_before + 1
    assert stack.deployment("ingest-all/scheduled")["paused"] is True
    assert "ost_escalation_level" in result.stdout
    assert stack.run(sys.executable, "-m", "ost.cli", "schedule", "resume").returncode == 0


def test_metrics_server_is_up(stack: Stack) -> None:
    """The stack's `ost metrics` answers /healthz and serves ost_ metrics."""
    port = stack.env["OST_METRICS_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert "ost_escalation_level" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_ctrl_c_stops_everything_it_started(stack: Stack) -> None:
    """SIGINT to `ost up`, which started with SIGINT ignored, stops its four children."""
    pids = stack.children()
    assert len(pids) == 4  # simulator, Prefect server, worker, ost metrics
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=120) == 0
    assert [pid for pid in pids if alive(pid)] == []

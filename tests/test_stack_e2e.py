"""End to end: `ost up --simulate` with a real Prefect server and process worker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ost import klines
from ost.sim import klines as sim_klines
from ost.stack import PROJECT_DIR, free_port
from ost.store import CandleStore

pytestmark = pytest.mark.slow
UP_TIMEOUT_S = 240


@dataclass
class Stack:
    """A running `ost up --simulate` and what a test needs to talk to it."""

    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    api: str
    data_dir: Path

    def output(self) -> str:
        """Everything `ost up` and its children printed so far."""
        return self.log.read_text(errors="replace")

    def run(self, *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run a command with the stack's environment (PREFECT_API_URL set)."""
        return subprocess.run(
            argv,
            env=self.env,
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def deployment(self, name: str) -> dict[str, object]:
        """The deployment as the Prefect API reports it."""
        response = httpx.get(f"{self.api}/deployments/name/{name}", timeout=10)
        response.raise_for_status()
        return dict(response.json())

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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`ost up --simulate` on free ports, with its own PREFECT_HOME and data dir."""
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
        }
    )
    log = home / "ost-up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ost.cli", "up", "--simulate", "--sim-port", str(sim_port)],
            env=env,
            cwd=PROJECT_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    api = f"http://127.0.0.1:{server_port}/api"
    running = Stack(process, log, {**env, "PREFECT_API_URL": api}, api, home / "data")
    deadline = time.monotonic() + UP_TIMEOUT_S
    while "ost-ingest is up" not in running.output():
        assert process.poll() is None, running.output()[-3000:]
        assert time.monotonic() < deadline, running.output()[-3000:]
        time.sleep(1)
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)


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
    want = klines.parse_rows(sim_klines("BTCUSDT", "1h", first, last + 1, last + 3_600_000), "1h")
    assert klines.rows_equal(stored, want)


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
        [sys.executable, "-m", "flows.control", "after-deploy"],
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


def test_metrics_server_is_up(stack: Stack) -> None:
    """The stack's `ost metrics` answers /healthz and serves ost_ metrics."""
    port = stack.env["OST_METRICS_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    assert "ost_escalation_level" in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_ctrl_c_stops_everything_it_started(stack: Stack) -> None:
    """SIGINT to `ost up` stops the simulator, server, worker and metrics, and nothing else."""
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", stack.output())]
    assert len(pids) == 4
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=120) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` exited and only waits to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True

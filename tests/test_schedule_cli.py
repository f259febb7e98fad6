"""`ost schedule` and `ost status` with no Prefect server to ask: no temporary server, one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from processes import Processes

from ost.stack import free_port, wait_for


def no_server_env(tmp_path: Path, api_url: str | None) -> dict[str, str]:
    """A user's environment: a fresh PREFECT_HOME, and ``api_url`` (unset if None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "PREFECT_"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "OST_DATA_DIR": str(tmp_path / "data")}
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


NO_SERVER = [
    pytest.param(None, "PREFECT_API_URL is not set", id="unset"),
    pytest.param("http://127.0.0.1:{port}/api", "no Prefect server answers at", id="unanswered"),
]


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize(("api_url", "reason"), NO_SERVER)
def test_schedule_without_a_server_says_what_to_do_and_starts_none(
    processes: Processes, tmp_path: Path, action: str, api_url: str | None, reason: str
) -> None:
    """`ost schedule pause|resume`, no server: one `ost: error:` line, exit 2, no temporary one."""
    url = None if api_url is None else api_url.format(port=free_port())
    env = no_server_env(tmp_path, url)
    result = processes.run([sys.executable, "-m", "ost.cli", "schedule", action], env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"ost: error: {reason}"), lines[0]
    assert "ost up" in lines[0]
    # A temporary Prefect server keeps its SQLite database in PREFECT_HOME.
    assert not (tmp_path / "prefect" / "prefect.db").exists()


@pytest.mark.parametrize(("api_url", "reason"), NO_SERVER)
def test_status_without_a_server_says_the_schedule_is_unknown(
    processes: Processes, tmp_path: Path, api_url: str | None, reason: str
) -> None:
    """`ost status` with no server to ask: exit 0, the schedule's state unknown, and why."""
    url = None if api_url is None else api_url.format(port=free_port())
    env = no_server_env(tmp_path, url)
    result = processes.run([sys.executable, "-m", "ost.cli", "status"], env=env)
    assert result.returncode == 0, result.stderr
    assert f"ingest schedule: unknown ({reason}" in result.stdout, result.stdout
    assert not (tmp_path / "prefect" / "prefect.db").exists()


@pytest.mark.slow
def test_schedule_on_a_server_without_the_deployment_says_so(
    processes: Processes, tmp_path: Path
) -> None:
    """A Prefect server that answers but has nothing deployed: one line, exit 2; status says so."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = no_server_env(tmp_path, url) | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = [sys.executable, "-m", "prefect", "--no-prompt", "server", "start"]
    processes.start([*server, "--host", "127.0.0.1", "--port", str(port)], env=env)
    wait_for(f"{url}/health", "the Prefect server", timeout_s=180)
    result = processes.run([sys.executable, "-m", "ost.cli", "schedule", "pause"], env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ost: error: ingest-all/scheduled is not deployed"), lines[0]
    status = processes.run([sys.executable, "-m", "ost.cli", "status"], env=env)
    assert status.returncode == 0, status.stderr
    assert "ingest schedule: not deployed" in status.stdout, status.stdout

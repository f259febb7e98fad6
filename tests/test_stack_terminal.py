"""`ost up --simulate` in a real terminal: up without a keystroke, stopped by a closed terminal.

A Prefect server asks about profiles only when its output is a terminal (see PITFALLS.md), so
this runs `ost up` on a pseudo-terminal, as a user's shell would: its stdin, stdout and stderr
are the terminal, which is its session's controlling terminal. Nothing is ever written to it.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest
from processes import Processes, alive

from ost.stack import free_port

pytestmark = pytest.mark.slow
UP_TIMEOUT_S = 240
#: Liveness only: how long the stack may take to stop before the test calls it hung.
STOP_TIMEOUT_S = 90


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (binding it, as a server would, fails)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_ost_up_on_a_terminal_asks_nothing_and_a_closed_terminal_stops_it_all(
    processes: Processes, tmp_path: Path
) -> None:
    """On a pty, fresh PREFECT_HOME: up with no keystroke; hung up: every child and port gone."""
    server_port, sim_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "PREFECT_"))}
    env.update(
        {
            "TERM": "xterm-256color",
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_API_PORT": str(server_port),
            "OST_DATA_DIR": str(tmp_path / "data"),
            "OST_METRICS_PORT": str(metrics_port),
            "OST_SYMBOLS": "BTCUSDT",
            "OST_INTERVALS": "1h",
            "OST_INITIAL_LOOKBACK_DAYS": "1",
        }
    )
    argv = [sys.executable, "-m", "ost.cli", "up", "--simulate", "--sim-port", str(sim_port)]
    terminal = processes.start_on_terminal(argv, env=env, grace_s=STOP_TIMEOUT_S)
    output = terminal.read_until("ost-ingest is up", timeout_s=UP_TIMEOUT_S)
    assert "How would you like to proceed" not in output
    children = [int(pid) for pid in re.findall(r"started [\w ]+ \(pid (\d+)\)", output)]
    assert len(children) == 4  # simulator, Prefect server, worker, ost metrics
    for pid in children:
        processes.adopt(pid)
    ports = [server_port, sim_port, metrics_port]
    assert all(listening(port) for port in ports)

    terminal.hang_up()

    terminal.child.wait(timeout=STOP_TIMEOUT_S)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(map(alive, children)) or any(map(listening, ports)):
        assert time.monotonic() < deadline, (
            [pid for pid in children if alive(pid)],
            [port for port in ports if listening(port)],
        )
        time.sleep(0.1)

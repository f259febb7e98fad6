"""``ost sim --cpu-per-request-ms``: server CPU burnt on every request, as seen from outside."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ports import free_port
from processes import Processes

from ost.errors import BadInput
from ost.sim import SimConfig, SimHandle
from ost.sim.symbols import utc_ms
from ost.stack import wait_for

pytestmark = pytest.mark.slow


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of process ``pid``, from ``/proc/PID/stat`` (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_every_klines_request_burns_the_cpu_asked(processes: Processes):
    """20 klines requests at 25 ms each cost the simulator's process at least 0.5 s of CPU."""
    port, cpu_ms, requests = free_port(), 25, 20
    argv = [sys.executable, "-m", "ost.cli", "sim", "--port", str(port)]
    child = processes.start([*argv, "--cpu-per-request-ms", str(cpu_ms)], env=dict(os.environ))
    wait_for(f"http://127.0.0.1:{port}/_sim/ping", "the simulator")
    sim = SimHandle(f"http://127.0.0.1:{port}")
    params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": utc_ms("2024-01-01")}
    before = cpu_seconds(child.pid)
    with sim.client(timeout=10.0) as http:
        for _ in range(requests):
            assert http.get("/api/v3/klines", params=params).status_code == 200
    assert cpu_seconds(child.pid) - before >= requests * cpu_ms / 1000
    assert sim.configure(cpu_per_request_ms=0)["cpu_per_request_ms"] == 0
    sim.close()


def test_negative_cpu_is_refused():
    """A negative CPU per request is a bad setting, refused before the server starts."""
    with pytest.raises(BadInput, match="CPU per request"):
        SimConfig(cpu_per_request_ms=-1)

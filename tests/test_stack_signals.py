"""`ost up`'s stack stops the children it started, however it is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

#: A process that runs a Stack with one long-lived child, like `ost up` with its server.
STACK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from ost.stack import Stack
    with Stack(dict(os.environ), say=lambda line: print(line, flush=True)) as stack:
        try:
            stack.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
            print("up", flush=True)
            time.sleep(600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_stack_stops_its_children_on_ctrl_c_kill_and_hangup(sig: signal.Signals):
    """SIGINT, SIGTERM and SIGHUP all stop the child, which runs in a session of its own."""
    process = subprocess.Popen(
        [sys.executable, "-c", STACK_SCRIPT], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert process.stdout is not None
    started = process.stdout.readline()
    assert "started sleeper (pid " in started
    child = int(started.split("(pid ")[1].split(")")[0])
    assert process.stdout.readline().strip() == "up"
    assert alive(child)
    process.send_signal(sig)
    rest = process.communicate(timeout=60)[0]
    assert "interrupted" in rest
    assert "stopping sleeper" in rest
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)

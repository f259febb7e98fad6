"""`ost up`'s stack stops the children it started, however it is told to stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from processes import Processes, alive

#: A process that runs a Stack with two long-lived children, like `ost up` with its servers. Its
#: progress lines go to stdout, which may be a pipe or a terminal that is gone by the time it stops.
STACK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from ost.stack import Stack
    with Stack(dict(os.environ), say=lambda line: print(line, flush=True)) as stack:
        try:
            for name in ("first", "second"):
                stack.start(name, [sys.executable, "-c", "import time; time.sleep(600)"])
            print("up", flush=True)
            time.sleep(600)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """
)
STOPPED_WITHIN_S = 30


def children_of(output: str, processes: Processes) -> list[int]:
    """The PIDs of the children the Stack says it started, killed with the test if need be."""
    pids = [int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", output)]
    for pid in pids:
        processes.adopt(pid)
    return pids


def wait_gone(pids: list[int]) -> list[int]:
    """Wait until none of ``pids`` runs (or time runs out); the ones still running."""
    deadline = time.monotonic() + STOPPED_WITHIN_S
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_stack_stops_its_children_on_ctrl_c_kill_and_hangup(
    processes: Processes, sig: signal.Signals, inherited: signal.Handlers
) -> None:
    """SIGINT, SIGTERM and SIGHUP stop both children, even when SIGINT started ignored."""
    process = processes.start(
        [sys.executable, "-c", STACK_SCRIPT],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
        sigint=inherited,
    )
    assert process.stdout is not None
    started = [process.stdout.readline(), process.stdout.readline()]
    assert process.stdout.readline().strip() == "up"
    pids = children_of("".join(started), processes)
    assert len(pids) == 2
    assert all(alive(pid) for pid in pids)
    process.send_signal(sig)
    rest = process.communicate(timeout=60)[0]
    assert "interrupted" in rest
    assert "stopping first" in rest
    assert "stopping second" in rest
    assert wait_gone(pids) == []


def test_a_closed_pipe_does_not_stop_the_shutdown(processes: Processes) -> None:
    """Output to a pipe nobody reads any more (EPIPE) while stopping: both children still stop."""
    process = processes.start(
        [sys.executable, "-c", STACK_SCRIPT],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    started = [process.stdout.readline(), process.stdout.readline()]
    assert process.stdout.readline().strip() == "up"
    pids = children_of("".join(started), processes)
    assert len(pids) == 2
    process.stdout.close()  # every "stopping ..." line now fails with EPIPE
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert wait_gone(pids) == []


def test_a_closed_terminal_stops_the_children(processes: Processes) -> None:
    """The stack on a real pty, the terminal closed: SIGHUP, EIO on every line, children stop."""
    terminal = processes.start_on_terminal(
        [sys.executable, "-c", STACK_SCRIPT], env=dict(os.environ)
    )
    pids = children_of(terminal.read_until("up\r\n", timeout_s=60), processes)
    assert len(pids) == 2
    assert all(alive(pid) for pid in pids)
    terminal.hang_up()
    terminal.child.wait(timeout=60)
    assert wait_gone(pids) == []

"""`python -m alerts.receiver`, the drill's receiver: it prints what apprise really sends it."""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from ost.alerts.notify import Delivery, Notifier
from ost.alerts.policy import Kind, Level, Message
from processes import Processes

from ost.settings import load_settings

#: apprise 2.0 imports the stdlib's deprecated imghdr; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

WAIT_S = 30.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def lines_of(stream: IO[str]) -> queue.Queue[str]:
    """The lines of ``stream`` as they come, read by a thread."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines: queue.Queue[str], wanted: str) -> list[str]:
    """The lines read up to the first that contains ``wanted``; fails after :data:`WAIT_S`."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if wanted in seen[-1]:
            return seen
    pytest.fail(f"the receiver never printed {wanted!r}; it printed {seen}")


def test_receiver_prints_each_notification_apprise_sends(
    tmp_path: Path, processes: Processes
) -> None:
    """A real apprise json:// delivery to the receiver: accepted, and printed with its type."""
    port = free_port()
    child = processes.start(
        [sys.executable, "-m", "alerts.receiver", "--port", str(port)],
        env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines = lines_of(child.stdout)
    read_until(lines, f"listening: OST_APPRISE_URLS=json://127.0.0.1:{port}/simulacro")
    settings = load_settings(data_dir=str(tmp_path), apprise_urls=f"json://127.0.0.1:{port}/x")
    message = Message(Kind.ESCALATE, Level.ESCALATE, ("escalate",), "drill title", "line 1\nline 2")
    assert Notifier(settings).send(message) is Delivery.SENT
    printed = read_until(lines, "line 2")
    assert any(line.endswith("FAILURE  drill title") for line in printed), printed
    assert "line 1" in printed

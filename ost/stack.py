"""``ost up``: the single-machine stack, started as child processes and stopped on Ctrl-C.

Order: the simulator (with ``--simulate``), a Prefect server with SQLite under ``PREFECT_HOME``
(unless ``PREFECT_API_URL`` points at one), the work pool, ``prefect deploy --all`` (pauses are
kept, and ``OST_DISABLE_SCHEDULER=true`` pauses ingestion), one process worker, a first ingestion
run, and ``ost metrics``.

Children start in sessions of their own with SIGINT at its default (a background worker otherwise
ignores SIGINT, see PITFALLS.md), read nothing from the terminal (stdin is /dev/null, prefect runs
with ``--no-prompt`` and is given the server's address), and are stopped by process group, newest
first. ``ost up`` itself handles SIGINT, SIGTERM and SIGHUP, even when it inherited SIGINT ignored,
and an output error (a closed terminal) never cuts the shutdown short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_PORT = 4200
DEFAULT_SIM_PORT = 8900
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0

Say = Callable[[str], None]


@dataclass
class Stack:
    """The children ``ost up`` started, newest last, and the environment they share."""

    env: dict[str, str]
    say: Say
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _handlers: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> Stack:
        """Make SIGINT, SIGTERM and SIGHUP interrupt (Ctrl-C, ``kill``, a closed terminal).

        SIGINT too: Python leaves it ignored when it started ignored (``&``, a script, some CI).
        The children run in sessions of their own, so no signal reaches them but the ones
        :meth:`stop` sends: leaving by any of these signals must still stop them.
        """
        for sig in (signal.SIGINT, *_TERMINATING):
            self._handlers[sig] = signal.signal(sig, _interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop every child, then restore the signal handlers."""
        try:
            self.stop()
        finally:
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)
            self._handlers.clear()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a child in its own session, SIGINT at its default, and no terminal to read."""
        child = self._spawn(argv)
        self.children.append((name, child))
        self._say(f"started {name} (pid {child.pid}): {' '.join(argv)}")
        return child

    def run(self, name: str, argv: list[str]) -> None:
        """Run a short command to completion (stopped like the others if interrupted), or raise."""
        self._say(f"{name}: {' '.join(argv)}")
        child = self._spawn(argv)
        self.children.append((name, child))
        status = child.wait()
        self.children.remove((name, child))
        if status != 0:
            raise RuntimeError(f"{name} failed with status {status}: {' '.join(argv)}")

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603  # argv is built here, never from a shell string
            argv,
            cwd=PROJECT_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_default_sigint,  # noqa: PLW1509  # only resets one signal before exec
        )

    def _say(self, line: str) -> None:
        """Report progress; an output error (EIO, EPIPE: the terminal is gone) is ignored."""
        with contextlib.suppress(OSError):
            self.say(line)

    def check_alive(self) -> None:
        """Raise if a child has exited on its own."""
        for name, child in self.children:
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with status {child.returncode}")

    def stop(self) -> None:
        """Stop every child, newest first: SIGINT, then SIGTERM, then SIGKILL.

        A second Ctrl-C (``uv run`` forwards one too) or a SIGTERM must not cut the shutdown
        short.
        """
        previous = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, *_TERMINATING)
        }
        try:
            for name, child in reversed(self.children):
                _stop(name, child, self._say)
            self.children.clear()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


#: Signals that end ``ost up``, besides Ctrl-C's SIGINT.
_TERMINATING: Final = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(name: str, child: subprocess.Popen[bytes], say: Say) -> None:
    if child.poll() is not None:
        return
    say(f"stopping {name} (pid {child.pid})")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT_S)
        if child.poll() is not None:
            return


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, what: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Poll ``url`` until it answers 200, or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s:.0f}s")


def stack_env(simulate: bool, sim_port: int) -> tuple[dict[str, str], bool]:
    """The children's environment, and whether ``ost up`` must start its own Prefect server."""
    env = dict(os.environ)
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_HOME", str(PROJECT_DIR / ".prefect"))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    env["PREFECT_CLI_PROMPT"] = "false"  # as --no-prompt, for any prefect command a child runs
    own_server = not env.get("PREFECT_API_URL")
    if own_server:
        port = env.setdefault("PREFECT_SERVER_API_PORT", str(DEFAULT_SERVER_PORT))
        env["PREFECT_SERVER_API_HOST"] = env.get("PREFECT_SERVER_API_HOST", "127.0.0.1")
        env["PREFECT_API_URL"] = f"http://{env['PREFECT_SERVER_API_HOST']}:{port}/api"
    if simulate:
        sim_url = f"http://127.0.0.1:{sim_port}"
        env["OST_BINANCE_BASE_URLS"] = sim_url
        env["OST_ARCHIVE_BASE_URL"] = sim_url
    return env, own_server


def _ost(*args: str) -> list[str]:
    return [sys.executable, "-m", "ost.cli", *args]


def _control(*args: str) -> list[str]:
    return [sys.executable, "-m", "ost.flows.control", *args]


def _prefect(*args: str) -> list[str]:
    """A prefect command that never asks (``prefect server start`` on a terminal would)."""
    return [sys.executable, "-m", "prefect", "--no-prompt", *args]


@contextlib.contextmanager
def running_stack(simulate: bool, sim_port: int, say: Say) -> Iterator[Stack]:
    """Bring the stack up, yield it, and stop everything it started on the way out."""
    env, own_server = stack_env(simulate, sim_port)
    with Stack(env, say) as stack:
        if simulate:
            stack.start("simulator", _ost("sim", "--port", str(sim_port)))
            wait_for(f"http://127.0.0.1:{sim_port}/api/v3/ping", "the simulator")
        if own_server:
            host, port = env["PREFECT_SERVER_API_HOST"], env["PREFECT_SERVER_API_PORT"]
            stack.start(
                "prefect server", _prefect("server", "start", "--host", host, "--port", port)
            )
        wait_for(env["PREFECT_API_URL"] + "/health", "the Prefect server")
        deploy(stack)
        stack.start(
            "worker", _prefect("worker", "start", "--pool", "ost-pool", "--type", "process")
        )
        stack.run("first ingestion", _control("run-now"))
        stack.start("metrics", _ost("metrics"))
        yield stack


def deploy(stack: Stack) -> None:
    """Create the work pool, deploy prefect.yaml, and keep or apply the ingest pause."""
    stack.run("work pool", _control("ensure-pool"))
    stack.run("deploy", _prefect("deploy", "--all"))
    stack.run("pauses", _control("after-deploy"))

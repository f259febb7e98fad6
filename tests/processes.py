"""Children of tests, each in a process group of its own that is killed when the test ends.

Tests start processes through :class:`Processes` (the ``processes`` fixture of conftest.py, or
``with Processes() as processes:`` in a wider fixture) or :func:`run`. A child starts in a
session of its own (a process group that holds its children too), with SIGINT at its default
(it would inherit it ignored from a pytest started by ``&`` or a script) and /dev/null as stdin
unless told otherwise. When the test ends, passed, failed or timed out (pytest-timeout's signal
method fails the test, and teardown runs), its whole group gets SIGTERM, then SIGKILL. A
grandchild in a session of its own (`ost up`'s children) is :meth:`Processes.adopt`-ed, and its
group is killed too: nothing a test started outlives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

#: How long a group's leader has to exit after SIGTERM before the group gets SIGKILL.
GRACE_S = 10.0

File = int | IO[Any] | None
Handler = signal.Handlers | int


class Processes:
    """The children a test started; :meth:`close` kills each one's process group."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[Any]] = []
        self.groups: list[Group] = []
        self.terminals: list[Terminal] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def start(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        stdin: File = subprocess.DEVNULL,
        stdout: File = None,
        stderr: File = None,
        text: bool = False,
        sigint: Handler = signal.SIG_DFL,
        controlling_terminal: bool = False,
        grace_s: float = GRACE_S,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in a session of its own, SIGINT set to ``sigint`` (its default).

        With ``controlling_terminal``, its stdin (a terminal) becomes the session's controlling
        terminal, as a login shell's does: hanging it up sends the session SIGHUP. ``grace_s``
        is how long it may take to stop after SIGTERM (`ost up` stops its own children first).
        """

        def in_child() -> None:  # between fork and exec, after setsid
            signal.signal(signal.SIGINT, sigint)
            if controlling_terminal:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        child = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            text=text,
            start_new_session=True,
            preexec_fn=in_child,  # noqa: PLW1509  # two system calls, before any thread runs there
        )
        self.children.append(child)
        self.groups.append(Group(child.pid, started(child.pid), child, grace_s))
        return child

    def start_on_terminal(
        self, argv: Sequence[str], *, env: dict[str, str], grace_s: float = GRACE_S
    ) -> Terminal:
        """Start ``argv`` on a new pseudo-terminal, its controlling terminal, as a user would."""
        master, slave = os.openpty()
        try:
            child = self.start(
                argv,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                controlling_terminal=True,
                grace_s=grace_s,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        terminal = Terminal(child, master)
        self.terminals.append(terminal)
        return terminal

    def adopt(self, pid: int) -> None:
        """Kill the group that ``pid`` leads too (a grandchild in a session of its own)."""
        if (when := started(pid)) is not None:
            self.groups.append(Group(pid, when, None, GRACE_S))

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion, output captured; its group is killed when it is done."""
        child = self.start(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        finally:
            self.groups.pop().kill()
            self.children.remove(child)
        return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)

    def close(self) -> None:
        """Kill every group, newest first (a child's own shutdown gets its grace first)."""
        children = [group for group in self.groups if group.child is not None]
        adopted = [group for group in self.groups if group.child is None]
        for group in [*reversed(children), *reversed(adopted)]:
            group.kill()
        for terminal in self.terminals:
            terminal.hang_up()
        self.groups.clear()
        self.children.clear()
        self.terminals.clear()


@dataclass
class Terminal:
    """A child on a pseudo-terminal: the master side, and what the child wrote to it."""

    child: subprocess.Popen[Any]
    master: int | None
    output: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        """Everything read from the terminal so far."""
        return self.output.decode(errors="replace")

    def read_until(self, wanted: str, timeout_s: float) -> str:
        """Read until ``wanted`` shows up; fail if the terminal closes or time runs out."""
        deadline = time.monotonic() + timeout_s
        while wanted.encode() not in self.output:
            assert self.master is not None, "the terminal was hung up"
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} within {timeout_s:.0f}s:\n{self.text()[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: nothing holds the terminal's other side any more
                    chunk = b""
                assert chunk, f"the terminal closed before {wanted!r}:\n{self.text()[-3000:]}"
                self.output += chunk
        return self.text()

    def hang_up(self) -> None:
        """Close the master side: the kernel hangs the terminal up (SIGHUP to its session)."""
        if self.master is not None:
            os.close(self.master)
            self.master = None


@dataclass(frozen=True)
class Group:
    """A process group a test owns: its leader's PID and start time, its Popen if ours."""

    pid: int
    started: int | None
    child: subprocess.Popen[Any] | None
    grace_s: float

    def kill(self) -> None:
        """SIGTERM to the group, SIGKILL to what is left of it; reap the leader if it is ours.

        The group is signalled even when its leader already exited (what the leader started
        may still run), but never once its PID belongs to another process (PIDs are reused).
        """
        self._signal(signal.SIGTERM)
        self._wait_leader(self.grace_s)
        self._signal(signal.SIGKILL)
        if self.child is not None:
            self.child.wait()
            for stream in (self.child.stdin, self.child.stdout, self.child.stderr):
                if stream is not None:
                    stream.close()

    def _ours(self) -> bool:
        if self.child is not None and self.child.returncode is None:
            return True  # not reaped: the PID cannot have been reused
        now = started(self.pid)
        return now is None or now == self.started

    def _signal(self, sig: signal.Signals) -> None:
        if self._ours():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def _wait_leader(self, timeout_s: float) -> None:
        if self.child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.child.wait(timeout=timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        while alive(self.pid) and self._ours() and time.monotonic() < deadline:
            time.sleep(0.05)


def run(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """:meth:`Processes.run` for a caller that has no :class:`Processes` at hand."""
    with Processes() as processes:
        return processes.run(argv, env=env, cwd=cwd, timeout=timeout)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name, or None if there is no PID."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except OSError:
        return None


def started(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if no such process."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (state T in /proc/PID/stat)."""
    fields = _stat(pid)
    return fields is not None and fields[0] == "T"


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"

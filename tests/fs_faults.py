"""Real file-system faults for tests that run as root, where ``chmod`` stops no write.

Verified on these machines (root, ext4, util-linux): ``chmod 444`` does not stop root from
writing, but each of these does, for root too:

- ``chattr +i`` (immutable: no write, no new file in a directory, EPERM);
- a read-only bind mount (``mount --bind -o ro``, EROFS) or a small ``tmpfs`` filled up (ENOSPC),
  made inside a private mount namespace (``unshare -m``) that dies with the command, so nothing
  is left mounted whatever happens to the test;
- dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``): then ``chmod`` bites.

:func:`can` says whether each really stops a write here, so a test skips, saying why, where not.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

#: ``setpriv`` arguments that take away root's power to ignore file permissions.
NO_DAC = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def _succeeds(argv: Sequence[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    return subprocess.run(argv, capture_output=True, check=False, timeout=30).returncode == 0


@functools.cache
def can(fault: str) -> bool:
    """Whether ``fault`` (immutable, mount, no_dac) really stops a write on this machine."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "file"
        target.write_text("x")
        if fault == "immutable":
            if not _succeeds(["chattr", "+i", str(target)]):
                return False
            try:
                return not _succeeds(["sh", "-c", f"echo y >> '{target}'"])
            finally:
                _succeeds(["chattr", "-i", str(target)])
        if fault == "mount":
            tmpfs = f"mount -t tmpfs -o size=64k tmpfs '{scratch}'"
            return (
                _succeeds(["unshare", "-m", "sh", "-c", *_ro_then(scratch, ["true"])])
                and not _succeeds(
                    ["unshare", "-m", "sh", "-c", *_ro_then(scratch, ["touch", f"{scratch}/new"])]
                )
                and _succeeds(["unshare", "-m", "sh", "-c", tmpfs])
            )
        if fault == "no_dac":
            target.chmod(0o444)
            return _succeeds([*NO_DAC, "true"]) and not _succeeds(
                [*NO_DAC, "sh", "-c", f"echo y >> '{target}'"]
            )
    raise ValueError(fault)


def _ro_then(directory: str, argv: Sequence[str]) -> list[str]:
    return ['mount --bind -o ro "$1" "$1" && shift && exec "$@"', "sh", directory, *argv]


def read_only_mount(directory: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run with ``directory`` bind-mounted read-only, in a mount namespace of its own."""
    return ["unshare", "-m", "sh", "-c", *_ro_then(str(directory), argv)]


def full_tmpfs(directory: Path, argv: Sequence[str], *, keep: Sequence[Path] = ()) -> list[str]:
    """``argv`` run with a full tmpfs at ``directory``, in a mount namespace of its own.

    ``keep`` (files outside ``directory``: the mount hides what is in it) are copied in first.
    """
    script = (
        'dir="$1"; shift; mount -t tmpfs -o size=256k tmpfs "$dir" || exit 97; '
        'while [ "$1" != -- ]; do cp "$1" "$dir"/ || exit 98; shift; done; shift; '
        'head -c 100000000 /dev/zero > "$dir/.fill" 2>/dev/null; exec "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", str(directory), *map(str, keep), "--", *argv]


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i`` on ``paths`` for the block (undone afterwards, so the files can be removed)."""
    done: list[Path] = []
    try:
        for path in paths:
            subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["chattr", "-i", str(path)], check=True, capture_output=True)

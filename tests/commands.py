"""Running the `ost` command as a user does: a real subprocess, output captured."""

from __future__ import annotations

import subprocess
import sys

from processes import run


def ost(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `ost ARGS` to completion, in a process group that is killed when it is done."""
    return run([sys.executable, "-m", "ost.cli", *args], env=env, timeout=120)

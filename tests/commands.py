"""Running the `ost` command as a user does: a real subprocess, output captured."""

from __future__ import annotations

import subprocess
import sys


def ost(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `ost ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "ost.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

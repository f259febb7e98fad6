"""Running the `ost` command as a user does: a real subprocess, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from processes import run

from ost.sim import SimHandle


def ost(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `ost ARGS` to completion, in a process group that is killed when it is done."""
    return run([sys.executable, "-m", "ost.cli", *args], env=env, timeout=120)


def ost_env(sim: SimHandle, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an `ost` subprocess pointed at the simulator and a data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OST_")}
    env.update(
        {
            "OST_BINANCE_BASE_URLS": sim.url,
            "OST_ARCHIVE_BASE_URL": sim.url,
            "OST_DATA_DIR": str(data_dir),
            "OST_SYMBOLS": "BTCUSDT,ETHUSDT",
            "OST_INTERVALS": "1m,15m",
            "OST_HTTP_TIMEOUT_S": "5",
            **extra,
        }
    )
    return env

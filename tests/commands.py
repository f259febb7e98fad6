"""Running the `ost` command as a user does: a real subprocess, output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import stamina
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


@contextmanager
def in_process_runtime(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> Iterator[None]:
    """The flows' runtime built afresh from ``settings`` (OST_* values), closed after the block.

    Retries are stamina's test mode (2 attempts, no backoff).
    """
    from ost.runtime import current_runtime

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    current_runtime.cache_clear()
    try:
        with stamina.set_testing(True, attempts=2, cap=True):
            yield
    finally:
        current_runtime().close()
        current_runtime.cache_clear()

"""A stream lock held by a stuck process: announced with its PID, bounded, fails one stream.

The next run, once the holder is gone, catches up.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from moments import NOW
from processes import Processes

from ost import intervals
from ost.binance import BinanceClient
from ost.ledger import Ledger, ledger_path
from ost.runtime import Runtime
from ost.settings import load_settings
from ost.sim import SimHandle
from ost.store import CandleStore

pytestmark = pytest.mark.slow

#: A process that takes a partition's lock as a writer does, says so, and never lets it go.
HOLD = """
import datetime as dt, sys, time
from ost.store import CandleStore
store = CandleStore(sys.argv[1])
with store.lock("klines", sys.argv[2], sys.argv[3], dt.date.fromisoformat(sys.argv[4])):
    print("held", flush=True)
    time.sleep(3600)
"""


def runtime_for(sim: SimHandle, root: Path, store: CandleStore) -> Runtime:
    """The runtime of an ingestion of BTCUSDT and ETHUSDT 1h from the simulator into ``root``."""
    settings = load_settings(
        binance_base_urls=sim.url,
        data_dir=str(root),
        symbols="BTCUSDT,ETHUSDT",
        intervals="1h",
        initial_lookback_days=1,
    )
    client = BinanceClient([sim.url], timeout_s=10)
    return Runtime(settings, client, store, Ledger(ledger_path(str(root))))


def test_a_held_stream_lock_is_announced_bounded_and_fails_only_its_stream(
    sim: SimHandle, tmp_path: Path, processes: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    """The waiter names the holder's PID, gives up at its bound; the other stream is stored."""
    sim.configure(now_ms=NOW)
    period = intervals.partition_start("1h", NOW)
    holder = processes.start(
        [sys.executable, "-c", HOLD, str(tmp_path), "BTCUSDT", "1h", period.isoformat()],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"

    caplog.set_level(logging.WARNING, logger="ost.backend")
    store = CandleStore(str(tmp_path), lock_timeout=3, lock_announce_after=1)
    runtime = runtime_for(sim, tmp_path, store)
    locked, free = runtime.ingest_many(runtime.streams())
    runtime.close()

    [announced] = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert announced.startswith("BTCUSDT 1h: waiting for ")
    assert f"held by PID {holder.pid} (" in announced
    assert "gives up after 3 s" in announced
    assert (locked.symbol, locked.ok, locked.reason) == ("BTCUSDT", False, "stream_locked")
    assert locked.error is not None
    assert f"PID {holder.pid}" in locked.error
    assert "for over 3 s" in locked.error
    assert store.partitions("BTCUSDT", "1h") == []
    assert (free.symbol, free.ok) == ("ETHUSDT", True)
    assert free.written > 0

    holder.kill()
    holder.wait()
    again = runtime_for(sim, tmp_path, CandleStore(str(tmp_path)))
    caught_up = again.ingest("BTCUSDT", "1h")
    again.close()
    assert caught_up.ok
    assert caught_up.written == free.written


def test_a_lock_file_names_its_holder(tmp_path: Path) -> None:
    """While a writer holds a partition's lock, the lock file holds that writer's PID."""
    store = CandleStore(str(tmp_path))
    period = intervals.partition_start("1h", NOW)
    with store.lock("klines", "BTCUSDT", "1h", period):
        [lock_file] = (tmp_path / "locks").iterdir()
        assert lock_file.read_text().strip() == str(os.getpid())

"""A scheduled ingestion and a manual backfill of the same stream at the same time lose no rows.

The flows run the same core as `ost ingest` and `ost backfill`, so two concurrent `ost`
processes against one store are the race of the `ingest-all` schedule firing while an
operator's `backfill/manual` run is going, without a Prefect server in the way.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import ost_env
from moments import NOW
from oracle import assert_candles, simulator_candles
from processes import Processes
from readers import read_everywhere

from ost import intervals
from ost.sim import SimHandle
from ost.store import CandleStore

pytestmark = pytest.mark.slow

DAYS = 3
#: The backfill starts this many minutes before the ingestion's lookback, so that its pages of
#: 1000 candles straddle the ingestion's: the two write different rows of the same partitions.
EARLIER_MIN = 500
CANDLES = DAYS * 24 * 60 + EARLIER_MIN
ROUNDS = 8
#: A small latency, and a random extra delay on some answers, so that the two processes drift in
#: and out of step and often merge pages into the same partition at the same instant. (Without
#: the stream's lock, about half of the rounds lose rows or count them twice.)
LATENCY_MS = 2
JITTER = "slow:rate=0.2,delay=0.01"
PROCESS_TIMEOUT_S = 120


def start(
    processes: Processes, args: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start `ost ARGS` in the background, its output going to ``log``."""
    with log.open("wb") as out:
        return processes.start(
            [sys.executable, "-m", "ost.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def table_cell(output: str, column: int) -> int:
    """The number in ``column`` of the BTCUSDT 1m row of an `ost` result table."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|┃]", line)]
        if "BTCUSDT" in cells and "1m" in cells:
            row = cells[cells.index("BTCUSDT") :]
            return int(row[column])
    raise AssertionError(f"no BTCUSDT 1m row in:\n{output}")


def test_concurrent_ingest_and_backfill_of_one_stream_lose_no_row(
    sim: SimHandle, tmp_path: Path, processes: Processes
) -> None:
    """`ost ingest` and `ost backfill` of BTCUSDT 1m at once, 8 times: exactly Binance's rows."""
    sim.configure(now_ms=NOW, latency_ms=LATENCY_MS)
    sim.set_faults(JITTER)
    lookback = intervals.align("1m", NOW - DAYS * intervals.DAY_MS)
    first, stop = lookback - EARLIER_MIN * intervals.MINUTE_MS, intervals.align("1m", NOW)
    want = simulator_candles("BTCUSDT", "1m", first, stop, NOW)
    assert len(want) == CANDLES
    # `--start`, not `--days`: `--days` counts from the local clock, the ingestion's lookback from
    # Binance's clock (the simulator's, set back to NOW at each round: it runs on from there, and
    # a round must end before 10:07 closes). The backfill covers [first, stop), the ingestion
    # [lookback, stop) or, if the backfill stored some first, from the last stored candle:
    # [first, stop) is stored in the end, whichever writes first.
    since = dt.datetime.fromtimestamp(first / 1000, tz=dt.UTC).isoformat()
    commands = {
        "ingest": ["ingest", "--symbols", "BTCUSDT", "--intervals", "1m"],
        "backfill": [
            *("backfill", "--interval", "1m", "--start", since),
            *("--symbols", "BTCUSDT", "--source", "api"),
        ],
    }
    shares = []
    for number in range(ROUNDS):
        data = tmp_path / f"round-{number}"
        sim.configure(now_ms=NOW)
        env = ost_env(sim, data, OST_INITIAL_LOOKBACK_DAYS=str(DAYS), COLUMNS="200")
        leader, follower = ("ingest", "backfill") if number % 2 else ("backfill", "ingest")
        log = data.with_suffix(f".{leader}.log")
        children = {leader: start(processes, commands[leader], env, log)}
        time.sleep((0.0, 0.1, 0.2)[number % 3])
        log = data.with_suffix(f".{follower}.log")
        children[follower] = start(processes, commands[follower], env, log)
        try:
            statuses = {name: child.wait(PROCESS_TIMEOUT_S) for name, child in children.items()}
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.kill()
        outputs = {name: data.with_suffix(f".{name}.log").read_text() for name in children}
        assert statuses == {"ingest": 0, "backfill": 0}, outputs
        assert_candles(CandleStore(str(data)).load_klines("BTCUSDT", "1m"), want, number)
        read_everywhere(data)
        # Each process counts the open times that were not stored when its page was merged under
        # the stream's lock: together they stored every candle exactly once.
        new_by_ingest = table_cell(outputs["ingest"], 3)
        written_by_backfill = table_cell(outputs["backfill"], 4)
        assert new_by_ingest + written_by_backfill == CANDLES, outputs
        shares.append((new_by_ingest, written_by_backfill))
    # The race really happened: in some round both processes wrote part of the stream.
    assert any(ingest > 0 and backfill > 0 for ingest, backfill in shares), shares

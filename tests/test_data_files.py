"""The files beside the candles go through the store's backend: one atomic write, one lock.

On a real file system, across processes: writers of one stream's gap record in parallel lose no
gap, a writer killed at any instant leaves a whole record and no half-written file, a held lock
stops a write, a remote root's record is locked too, and the ledger's files take the same lock.
The lock files' names and the record's JSON are read as docs/CONTRACT.md describes them, not
through the code under test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import filelock
import fsspec
import pytest

from ost import ledger as ledger_module
from ost.errors import LedgerUnavailable, StreamLocked
from ost.gaps import Evidence, ExchangeGapLog, ProvenGap
from ost.ingest import StreamOutcome
from ost.ledger import Ledger
from ost.store import CandleStore

pytestmark = pytest.mark.slow

SYMBOL = "BTCUSDT"
MINUTE = 60_000
#: 2024-03-30 00:00 UTC.
T0 = 1_711_756_800_000
WRITERS = 3
GAPS_PER_WRITER = 15


def gap(number: int) -> ProvenGap:
    """Gap ``number``: 3 candles from T0 + 10 * number minutes, proven by a made-up answer."""
    start = T0 + number * 10 * MINUTE
    end = start + 3 * MINUTE
    request = f"/api/v3/klines?symbol={SYMBOL}&interval=1m&startTime={start}"
    return ProvenGap((start, end), Evidence("http://host.test", request, end, end + MINUTE))


def record_path(root: Path, symbol: str = SYMBOL, interval: str = "1m") -> Path:
    """The gap record of a stream, where docs/CONTRACT.md puts it."""
    return root / "gaps" / f"symbol={symbol}" / f"interval={interval}" / "exchange_gaps.json"


def recorded_starts(root: Path) -> list[int]:
    """The first open times of the gaps in the record, read as plain JSON."""
    body = json.loads(record_path(root).read_bytes())
    assert body["format"] == 2
    return [entry["first_open_ms"] for entry in body["gaps"]]


def record_one_by_one(root: str, numbers: list[int], start: object) -> None:
    """Child: wait for ``start``, then record each gap of ``numbers`` in a call of its own."""
    log = ExchangeGapLog.of(CandleStore(root))
    start.wait()  # type: ignore[attr-defined]  # a multiprocessing Barrier
    for number in numbers:
        log.record(SYMBOL, "1m", [gap(number)])


def record_forever(root: str, committed_path: str, first: int) -> None:
    """Child: record gaps ``first``, ``first + 1``, ... until killed, logging each once recorded."""
    log = ExchangeGapLog.of(CandleStore(root))
    with open(committed_path, "a") as committed:
        for number in itertools.count(first):
            log.record(SYMBOL, "1m", [gap(number)])
            committed.write(f"{number}\n")
            committed.flush()


def committed_numbers(committed_path: Path) -> list[int]:
    """The gaps the child's log says were recorded (complete lines only)."""
    text = committed_path.read_text() if committed_path.exists() else ""
    return [int(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_writers_of_one_gap_record_in_parallel_lose_no_gap(tmp_path: Path) -> None:
    """Three processes recording gaps into one record at once: the record holds every one."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    numbers = [list(range(writer, WRITERS * GAPS_PER_WRITER, WRITERS)) for writer in range(WRITERS)]
    writers = [
        context.Process(target=record_one_by_one, args=(str(tmp_path), mine, start))
        for mine in numbers
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    every = range(WRITERS * GAPS_PER_WRITER)
    assert recorded_starts(tmp_path) == [T0 + number * 10 * MINUTE for number in every]
    assert sorted(path.name for path in record_path(tmp_path).parent.iterdir()) == [
        "exchange_gaps.json"
    ]
    assert (tmp_path / "locks" / f"{SYMBOL}-1m.gaps.lock").is_file()


def test_a_gap_record_writer_killed_at_any_instant_leaves_a_whole_record(tmp_path: Path) -> None:
    """Killed at random instants: the record always parses, keeps what was recorded, never torn."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ost.gaps", "test_data_files"])
    committed_path = tmp_path / "committed.log"
    directory = record_path(tmp_path).parent
    rng = random.Random(20261125)
    kills = killed_mid_write = reads = 0
    deadline = time.monotonic() + 15
    while kills < 12 or (killed_mid_write < 1 and time.monotonic() < deadline):
        writer = context.Process(
            target=record_forever, args=(str(tmp_path), str(committed_path), kills * 10_000)
        )
        writer.start()
        done = len(committed_numbers(committed_path))
        while len(committed_numbers(committed_path)) == done:  # its first record
            assert writer.is_alive()
            time.sleep(0.002)
        until = time.monotonic() + rng.uniform(0.0, 0.05)
        while time.monotonic() < until:  # readers take no lock, and never see a torn record
            recorded_starts(tmp_path)
            reads += 1
        os.kill(writer.pid or 0, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        kills += 1

        names = {path.name for path in directory.iterdir()}
        temps = {name for name in names if name.endswith(".tmp")}
        assert names - temps == {"exchange_gaps.json"}
        assert all(name.startswith(".") for name in temps)  # hidden from every reader
        killed_mid_write += bool(temps)
        starts = set(recorded_starts(tmp_path))
        assert {gap(number).candles[0] for number in committed_numbers(committed_path)} <= starts
    assert killed_mid_write > 0, f"{kills} kills, none mid-write"
    assert reads > 0
    ExchangeGapLog.of(CandleStore(str(tmp_path))).record(SYMBOL, "1m", [gap(-1)])
    assert sorted(path.name for path in directory.iterdir()) == ["exchange_gaps.json"]


def test_a_held_gap_record_lock_stops_the_write(tmp_path: Path) -> None:
    """While another holder has locks/SYMBOL-INTERVAL.gaps.lock, a record waits, then fails."""
    log = ExchangeGapLog.of(CandleStore(str(tmp_path), lock_timeout=0.2, lock_announce_after=0.1))
    lock_file = tmp_path / "locks" / f"{SYMBOL}-1m.gaps.lock"
    lock_file.parent.mkdir()
    with filelock.FileLock(lock_file), pytest.raises(StreamLocked, match=f"{SYMBOL} 1m"):
        log.record(SYMBOL, "1m", [gap(0)])
    assert not record_path(tmp_path).exists()
    assert log.record(SYMBOL, "1m", [gap(0)]) == [gap(0).candles]
    assert lock_file.read_text().strip() == str(os.getpid())  # its last holder, this process


@pytest.fixture
def machine_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's temp dir, where a remote root's locks go: a fresh one (restored after)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A unique ``memory://`` root, removed afterwards."""
    root = f"memory://ost-data-files-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory://")):
        fs.rm(root.removeprefix("memory://"), recursive=True)


def test_a_remote_roots_gap_record_is_locked_in_the_machines_temp_dir(
    machine_temp: Path, memory_root: str
) -> None:
    """An fsspec root's record is written under a lock too, in $TMPDIR/ost-locks/<hash>/."""
    log = ExchangeGapLog.of(CandleStore(memory_root))
    assert log.record(SYMBOL, "1h", [gap(0)]) == [gap(0).candles]
    [lock_file] = (machine_temp / "ost-locks").glob("*/*")
    assert lock_file.name == f"{SYMBOL}-1h.gaps.lock"
    fs = fsspec.filesystem("memory")
    record = f"{memory_root.removeprefix('memory://')}/gaps/symbol={SYMBOL}/interval=1h"
    assert [path.rsplit("/", 1)[-1] for path in fs.ls(record, detail=False)] == [
        "exchange_gaps.json"
    ]


def test_the_ledgers_lock_is_the_one_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's first write takes ledger.sqlite3.init.lock; held elsewhere, it is 'locked'."""
    monkeypatch.setattr(ledger_module, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "state" / "ledger.sqlite3"
    path.parent.mkdir()
    outcome = StreamOutcome(SYMBOL, "1m", ok=True, written=3, last_open_ms=T0, seconds=0.1)
    at = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
    with filelock.FileLock(f"{path}.init.lock"), pytest.raises(LedgerUnavailable) as locked:
        Ledger(path).record_outcome(outcome, at)
    assert locked.value.fault == "locked"
    Ledger(path).record_outcome(outcome, at)
    assert Path(f"{path}.init.lock").read_text().strip() == str(os.getpid())

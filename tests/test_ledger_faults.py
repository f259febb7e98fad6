"""A ledger that is locked, corrupt, read-only or full costs no candle (issue 10, item 3).

``ost ingest`` and ``ost backfill`` run as real subprocesses against the simulator over real
HTTP, with each fault made for real: another process holding ``BEGIN EXCLUSIVE``, garbage bytes,
``chattr +i``, a read-only bind mount, root without CAP_DAC_OVERRIDE under ``chmod``, a full
tmpfs (:mod:`fs_faults` says what stops root on these machines). Every stream's candles are
stored exactly as the simulator serves them, the exit status is the contract's, the failure is
one warning line, and ``ost status`` answers (exit 0) and shows the ledger as unavailable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from commands import ost
from fs_faults import NO_DAC, can, full_tmpfs, immutable, read_only_mount
from ost.alerts.policy import LadderConfig
from prometheus_client import generate_latest
from test_cli_ingest import ost_env
from test_ingest import NOW, expected, lookback_start

from ost import klines
from ost.binance import RequestLog
from ost.errors import LedgerUnavailable
from ost.ingest import StreamOutcome
from ost.ledger import BINANCE_REQUESTS, CANDLES_WRITTEN, Bookkeeping, Ledger, ledger_path
from ost.metrics import build_registry
from ost.sim import SimHandle
from ost.store import CandleStore

needs_immutable = pytest.mark.skipif(
    not can("immutable"), reason="chattr +i stops no write here (not root, or no attributes)"
)
needs_mount = pytest.mark.skipif(
    not can("mount"), reason="no private mount namespace here (unshare -m, mount)"
)
needs_no_dac = pytest.mark.skipif(
    not can("no_dac"), reason="setpriv cannot take CAP_DAC_OVERRIDE away here"
)

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
STREAMS = [(symbol, interval) for symbol in ("BTCUSDT", "ETHUSDT") for interval in ("1m", "15m")]
OST = [sys.executable, "-m", "ost.cli"]


def ok(written: int = 3) -> StreamOutcome:
    """A successful outcome of BTCUSDT 15m that stored ``written`` candles."""
    return StreamOutcome("BTCUSDT", "15m", ok=True, written=written, last_open_ms=1, seconds=0.1)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A ledger in a fresh temporary directory."""
    return Ledger(tmp_path / "state" / "ledger.sqlite3")


# ---- in process: what a refused record becomes ------------------------------------------------


@needs_immutable
def test_an_immutable_ledger_fails_at_once_as_read_only_and_still_reads(ledger: Ledger) -> None:
    """With chattr +i (which stops root too) a write raises read_only at once; reads answer."""
    ledger.record_outcome(ok(), T0)
    with immutable(ledger.path):
        with pytest.raises(LedgerUnavailable) as denied:
            Ledger(ledger.path).record_outcome(ok(), T0 + MIN)
        assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 3
        health = ledger.health()
    assert denied.value.fault == "read_only"
    assert (health.fault, health.readable) == ("read_only", True)


@needs_immutable
def test_bookkeeping_warns_once_counts_each_record_and_clears_on_recovery(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """Three records into a read-only ledger: none raises, one warning, three counts; then ok."""
    ledger.record_outcome(ok(), T0)
    books = Bookkeeping(ledger)
    with immutable(ledger.path), caplog.at_level(logging.WARNING, logger="ost.ledger"):
        for minute in (1, 2, 3):
            books.record("an outcome", lambda it, at=T0 + minute * MIN: it.record_outcome(ok(), at))
        failing = ledger.health()
    (warning,) = [record.getMessage() for record in caplog.records]
    assert "cannot be written" in warning
    assert 'ost_ledger_errors_total{reason="read_only"}' in warning
    assert ledger.error_counts()["read_only"] == 3
    assert failing.fault == "read_only"
    assert failing.since is not None
    books.record("an outcome", lambda it: it.record_outcome(ok(), T0 + 4 * MIN))
    assert ledger.health().available
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 6
    assert ledger.error_counts()["read_only"] == 3


@needs_immutable
def test_request_counts_that_cannot_be_recorded_stay_for_the_next_record(ledger: Ledger) -> None:
    """A failed record_requests gives its counts back to the log; the next record has them."""
    ledger.record_outcome(ok(), T0)
    log = RequestLog()
    for _ in range(5):
        log.count("https://api.binance.com", "200")
    with immutable(ledger.path), pytest.raises(LedgerUnavailable):
        ledger.record_requests(log)
    assert log.answers == Counter({("https://api.binance.com", "200"): 5})
    ledger.record_requests(log)
    assert ledger.counter(BINANCE_REQUESTS, base_url="https://api.binance.com", status="200") == 5
    assert +log.answers == Counter()


@needs_immutable
def test_ledger_errors_are_served_as_a_metric_with_every_reason(ledger: Ledger) -> None:
    """ost_ledger_errors_total{reason} counts the records the ledger refused; 0 for the rest."""
    ledger.record_outcome(ok(), T0)
    books = Bookkeeping(ledger)
    with immutable(ledger.path):
        books.record("an outcome", lambda it: it.record_outcome(ok(), T0 + MIN))
        books.record("an outcome", lambda it: it.record_outcome(ok(), T0 + 2 * MIN))
    text = generate_latest(build_registry(ledger, LadderConfig(streams=()))).decode()
    assert 'ost_ledger_errors_total{reason="read_only"} 2.0' in text
    for reason in ("locked", "corrupt", "full", "io"):
        assert f'ost_ledger_errors_total{{reason="{reason}"}} 0.0' in text


# ---- `ost ingest`, `ost backfill`, `ost status` as an operator meets the faults -------------


def assert_every_candle_stored(data_dir: Path) -> None:
    """Each stream holds exactly the simulator's closed candles of its one-day lookback."""
    store = CandleStore(str(data_dir))
    for symbol, interval in STREAMS:
        want = expected(symbol, interval, lookback_start(interval, NOW, 1), NOW)
        got = store.load_klines(symbol, interval)
        assert len(got) == len(want) > 0, (symbol, interval)
        assert klines.rows_equal(got, want), (symbol, interval)


def environment(sim: SimHandle, data_dir: Path) -> dict[str, str]:
    """An `ost` subprocess's environment: the simulator at NOW, 2 x 2 streams, a day back."""
    sim.configure(now_ms=NOW)
    return ost_env(sim, data_dir, OST_INITIAL_LOOKBACK_DAYS="1")


def seeded_ledger(data_dir: Path) -> Path:
    """A ledger written once (its tables exist), as any store that ran before has; its path."""
    path = ledger_path(str(data_dir))
    Ledger(path).ensure_streams([])
    return path


def run(argv: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (an `ost` command, maybe wrapped) to completion, output captured."""
    return subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=180, check=False
    )


def ledger_lines(stderr: str) -> list[str]:
    """What a run said about the ledger on stderr (other warnings, a clock's skew, aside)."""
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if "ingestion ledger" in line]


def ledger_report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``ledger`` part of an `ost status --json` that exited 0."""
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)["ledger"]
    return report


@contextmanager
def write_lock_held_by_another_process(path: Path) -> Iterator[None]:
    """A separate process holding ``BEGIN EXCLUSIVE`` on the ledger, until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "db.execute('DELETE FROM counters')\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.mark.slow
def test_a_locked_ledger_costs_no_candle_and_status_answers(sim: SimHandle, tmp_path: Path) -> None:
    """Another process holds BEGIN EXCLUSIVE: ingest and backfill store all, exit 0; one warning."""
    data = tmp_path / "data"
    env = environment(sim, data)
    path = seeded_ledger(data)
    with write_lock_held_by_another_process(path):
        before = ost("status", "--json", env=env)  # reads take no write lock
        ingested = ost("ingest", env=env)
        backfilled = ost(
            "backfill", "--interval", "1h", "--start", "2026-11-18", "--end", "2026-11-19",
            env=environment(sim, tmp_path / "backfill"),
        )  # fmt: skip
        during = ost("status", "--json", env=env)
    assert ledger_report(before)["state"] == "ok"  # nothing has failed to record yet
    assert ingested.returncode == 0, ingested.stderr
    (warning,) = ledger_lines(ingested.stderr)
    assert "is locked by another process" in warning
    assert_every_candle_stored(data)
    assert ledger_report(during)["state"] == "unavailable"
    assert ledger_report(during)["fault"] == "locked"
    assert Ledger(path).error_counts()["locked"] >= 1
    assert backfilled.returncode == 0, backfilled.stderr
    start = int(dt.datetime(2026, 11, 18, tzinfo=dt.UTC).timestamp() * 1000)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        want = expected(symbol, "1h", start, start + 2 * 86_400_000)
        got = CandleStore(str(tmp_path / "backfill")).load_klines(symbol, "1h")
        assert len(got) == len(want) == 48
        assert klines.rows_equal(got, want)
    again = ost("ingest", env=env)  # the lock released: the next run records again
    assert (again.returncode, ledger_lines(again.stderr)) == (0, [])
    assert ledger_report(ost("status", "--json", env=env))["state"] == "ok"


@pytest.mark.slow
def test_a_garbage_ledger_is_moved_aside_announced_and_costs_no_candle(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Garbage bytes: status says corrupt (exit 0); ingest keeps them aside, says so, stores all."""
    data = tmp_path / "data"
    env = environment(sim, data)
    path = ledger_path(str(data))
    path.parent.mkdir(parents=True)
    garbage = bytes(range(256)) * 40
    path.write_bytes(garbage)
    assert ledger_report(ost("status", "--json", env=env))["fault"] == "corrupt"
    result = ost("ingest", env=env)
    assert result.returncode == 0, result.stderr
    (kept,) = path.parent.glob("ledger.sqlite3.corrupt-*")
    assert kept.read_bytes() == garbage
    (announced,) = ledger_lines(result.stderr)
    assert "moved aside" in announced
    assert kept.name in announced
    assert_every_candle_stored(data)
    assert Ledger(path).counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="1m") == 1440
    assert ledger_report(ost("status", "--json", env=env))["state"] == "ok"


def wrapped(how: str, state: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` as it must run to meet the read-only ledger made ``how``."""
    if how == "mount":
        return read_only_mount(state, argv)
    if how == "no_dac":
        return [*NO_DAC, *argv]
    return list(argv)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("mount", marks=needs_mount, id="read-only-bind-mount"),
        pytest.param("immutable", marks=needs_immutable, id="chattr-immutable"),
        pytest.param("no_dac", marks=needs_no_dac, id="chmod-without-CAP_DAC_OVERRIDE"),
    ],
)
def test_a_read_only_ledger_costs_no_candle(sim: SimHandle, tmp_path: Path, how: str) -> None:
    """A ledger that cannot be written, three real ways: every candle stored, exit 0."""
    data = tmp_path / "data"
    env = environment(sim, data)
    path = seeded_ledger(data)
    if how == "no_dac":
        path.parent.chmod(0o555)
        path.chmod(0o444)
    with immutable(path, path.parent) if how == "immutable" else nullcontext():
        result = run(wrapped(how, path.parent, [*OST, "ingest"]), env)
        report = ledger_report(run(wrapped(how, path.parent, [*OST, "status", "--json"]), env))
    assert result.returncode == 0, result.stderr
    (warning,) = ledger_lines(result.stderr)
    assert "cannot be written" in warning
    assert_every_candle_stored(data)
    assert (report["state"], report["fault"]) == ("unavailable", "read_only")


@pytest.mark.slow
@needs_mount
def test_a_full_disk_under_the_ledger_costs_no_candle(sim: SimHandle, tmp_path: Path) -> None:
    """The ledger's file system full (a filled tmpfs): every candle stored, exit 0, one warning."""
    data = tmp_path / "data"
    env = environment(sim, data)
    path = seeded_ledger(data)
    saved = tmp_path / path.name  # the tmpfs hides the state dir: its ledger goes in a copy
    shutil.copy(path, saved)
    result = run(full_tmpfs(path.parent, [*OST, "ingest"], keep=[saved]), env)
    status = run(full_tmpfs(path.parent, [*OST, "status", "--json"], keep=[saved]), env)
    assert result.returncode == 0, result.stderr
    (warning,) = ledger_lines(result.stderr)
    assert "full file system" in warning
    assert_every_candle_stored(data)
    assert (ledger_report(status)["state"], ledger_report(status)["fault"]) == (
        "unavailable",
        "full",
    )

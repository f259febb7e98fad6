"""The ingestion ledger: location, stream state, counters, run failures, concurrent processes."""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import re
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from ost.alerts.policy import Kind, LadderState, Level
from ost.binance import RequestLog
from ost.errors import LedgerUnavailable, StoreError
from ost.ingest import StreamOutcome
from ost.ledger import (
    BINANCE_REQUESTS,
    CANDLES_WRITTEN,
    FAILURES,
    INGESTIONS,
    RUN_FAILURES,
    USED_WEIGHT,
    Bookkeeping,
    Ledger,
    bounded_label,
    ledger_path,
)
from ost.settings import load_settings

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def ok(symbol: str = "BTCUSDT", interval: str = "15m", written: int = 3) -> StreamOutcome:
    """A successful outcome that stored ``written`` candles."""
    return StreamOutcome(
        symbol, interval, ok=True, written=written, last_open_ms=1_000, seconds=0.1
    )


def failed(
    symbol: str = "BTCUSDT", interval: str = "15m", reason: str = "unavailable"
) -> StreamOutcome:
    """A failed outcome with ``reason``."""
    return StreamOutcome(
        symbol, interval, ok=False, written=0, last_open_ms=None, seconds=0.1, reason=reason,
        error=f"every base URL failed ({reason})\nsecond line",
    )  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A ledger in a fresh temporary directory."""
    return Ledger(tmp_path / "state" / "ledger.sqlite3")


def test_location_of_a_local_store(tmp_path: Path) -> None:
    """A local data_dir (plain or file://) keeps its ledger in <data_dir>/state/."""
    expected = tmp_path / "state" / "ledger.sqlite3"
    assert ledger_path(str(tmp_path)) == expected
    assert ledger_path(f"file://{tmp_path}") == expected
    assert Ledger.for_settings(load_settings(data_dir=str(tmp_path))).path == expected


def test_location_of_a_remote_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote fsspec data_dir puts the ledger in $XDG_STATE_HOME/ost/, else ~/.local/state."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert ledger_path("s3://bucket/candles") == tmp_path / "ost" / "ledger.sqlite3"
    monkeypatch.delenv("XDG_STATE_HOME")
    expected = Path("~/.local/state/ost/ledger.sqlite3").expanduser()
    assert ledger_path("memory://candles") == expected


def test_database_is_in_wal_mode(ledger: Ledger) -> None:
    """The ledger file uses write-ahead logging, so readers never block writers."""
    ledger.record_outcome(ok(), T0)
    with sqlite3.connect(ledger.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failure_starts_and_success_ends_failing_since(ledger: Ledger) -> None:
    """failing_since is the first failure after the last success, and a success clears it."""
    ledger.record_outcome(ok(), T0)
    ledger.record_outcome(failed(), T0 + MIN)
    ledger.record_outcome(failed(reason="bad_payload"), T0 + 2 * MIN)
    state = ledger.stream_states()[("BTCUSDT", "15m")]
    assert state.failing_since == T0 + MIN
    assert state.last_success_at == T0
    assert state.last_attempt_at == T0 + 2 * MIN
    assert state.last_reason == "bad_payload"
    assert state.last_error == "every base URL failed (bad_payload)"
    assert state.last_open_ms == 1_000

    ledger.record_outcome(ok(), T0 + 3 * MIN)
    state = ledger.stream_states()[("BTCUSDT", "15m")]
    assert state.failing_since is None
    assert state.last_success_at == T0 + 3 * MIN
    assert (state.last_reason, state.last_error) == (None, None)


def test_outcomes_arriving_out_of_order(ledger: Ledger) -> None:
    """A late success older than a recorded failure leaves the stream failing, and vice versa."""
    ledger.record_outcome(failed(), T0 + 2 * MIN)
    ledger.record_outcome(ok(), T0 + MIN)
    state = ledger.stream_states()[("BTCUSDT", "15m")]
    assert state.failing_since == T0 + 2 * MIN
    assert state.last_success_at == T0 + MIN

    ledger.record_outcome(ok(symbol="ETHUSDT"), T0 + 5 * MIN)
    ledger.record_outcome(failed(symbol="ETHUSDT"), T0 + 4 * MIN)
    eth = ledger.stream_states()[("ETHUSDT", "15m")]
    assert eth.failing_since is None
    assert eth.last_success_at == T0 + 5 * MIN
    assert eth.last_attempt_at == T0 + 5 * MIN


def test_outcomes_move_the_counters(ledger: Ledger) -> None:
    """Failures count by reason, candles by stream, attempts by result."""
    ledger.record_outcomes([ok(written=5), failed(), failed(), ok(written=0)], T0)
    ledger.record_outcome(failed(symbol="ETHUSDT", interval="1h", reason="rate_limited"), T0)
    btc = {"symbol": "BTCUSDT", "interval": "15m"}
    assert ledger.counter(FAILURES, **btc, reason="unavailable") == 2
    assert ledger.counter(FAILURES, symbol="ETHUSDT", interval="1h", reason="rate_limited") == 1
    assert ledger.counter(CANDLES_WRITTEN, **btc) == 5
    assert ledger.counter(INGESTIONS, **btc, result="ok") == 2
    assert ledger.counter(INGESTIONS, **btc, result="failed") == 2
    assert len(ledger.counters(FAILURES)) == 2


def test_backfilled_candles_count_without_touching_health(ledger: Ledger) -> None:
    """record_written adds to candles_written_total and leaves the stream's state alone."""
    ledger.record_outcome(failed(), T0)
    ledger.record_written("BTCUSDT", "15m", 500)
    ledger.record_written("BTCUSDT", "15m", 0)
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 500
    state = ledger.stream_states()[("BTCUSDT", "15m")]
    assert (state.failing_since, state.last_success_at) == (T0, None)


def test_reasons_stay_bounded(ledger: Ledger) -> None:
    """A free-text reason becomes a short lowercase label; a missing one becomes 'error'."""
    assert bounded_label("Weird Reason: HTTP 503!" * 5) == "weird_reason_http_503_weird_reason_http"
    assert bounded_label(None) == "error"
    ledger.record_outcome(failed(reason=""), T0)
    assert ledger.counters(FAILURES) == {
        (("interval", "15m"), ("reason", "error"), ("symbol", "BTCUSDT")): 1
    }


def test_requests_are_added_and_weight_set(ledger: Ledger) -> None:
    """Each client's request log adds to the totals; the used weight is the last one seen."""
    for weight in (40, 12):
        log = RequestLog()
        log.count("https://api.binance.com", "200")
        log.count("https://api.binance.com", "503")
        log.count("https://api1.binance.com", "error")
        log.used_weight = weight
        ledger.record_requests(log)
    assert ledger.counter(BINANCE_REQUESTS, base_url="https://api.binance.com", status="503") == 2
    assert (
        ledger.counter(BINANCE_REQUESTS, base_url="https://api1.binance.com", status="error") == 2
    )
    assert ledger.gauge(USED_WEIGHT) == 12


def test_a_log_recorded_twice_counts_once(ledger: Ledger) -> None:
    """Recording a long-lived client's log again adds only what it counted since."""
    log = RequestLog()
    log.count("https://api.binance.com", "200")
    ledger.record_requests(log)
    ledger.record_requests(log)
    log.count("https://api.binance.com", "200")
    ledger.record_requests(log)
    assert ledger.counter(BINANCE_REQUESTS, base_url="https://api.binance.com", status="200") == 2


def test_run_failure_marks_only_streams_without_an_outcome(ledger: Ledger) -> None:
    """A crashed run fails the streams that recorded nothing since it started, and counts once."""
    ledger.record_outcome(ok(), T0)
    ledger.record_outcome(ok(symbol="ETHUSDT"), T0 + 2 * MIN)
    marked = ledger.record_run_failure(
        [("BTCUSDT", "15m"), ("ETHUSDT", "15m")],
        reason="crashed",
        started_at=T0 + MIN,
        at=T0 + 3 * MIN,
    )
    assert marked == [("BTCUSDT", "15m")]
    states = ledger.stream_states()
    assert states[("BTCUSDT", "15m")].failing_since == T0 + 3 * MIN
    assert states[("BTCUSDT", "15m")].last_reason == "crashed"
    assert states[("ETHUSDT", "15m")].failing_since is None
    assert ledger.counter(FAILURES, symbol="BTCUSDT", interval="15m", reason="crashed") == 1
    assert ledger.counter(RUN_FAILURES, reason="crashed") == 1


def test_ladder_state_round_trip(ledger: Ledger) -> None:
    """The ladder's state reads back as saved, unread, per scope; an unknown scope reads empty."""
    assert ledger.ladder() == {}
    state = {"level": 3, "anything": {"the ledger": ["never", "reads", None, 1.5]}}
    ledger.save_ladder(state, at=T0 + MIN)
    assert ledger.ladder() == state
    assert ledger.snapshot().ladders == {"overall": state}
    assert ledger.ladder("other") == {}


#: The ``ladder`` table of the ledgers written before the ladder's state became a JSON object.
OLD_LADDER_TABLE = """
CREATE TABLE ladder (
    scope TEXT PRIMARY KEY,
    level INTEGER NOT NULL,
    outage_since REAL,
    notified TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID
"""


def test_an_older_ledger_keeps_its_ladder_state(ledger: Ledger) -> None:
    """An older ledger's ladder row reads as the same state, until the ladder saves a new one."""
    ledger.prepare_writes()
    with closing(sqlite3.connect(ledger.path, isolation_level=None)) as db:
        db.execute("DROP TABLE ladder_state")  # the older ledger had only the columns
        db.execute(OLD_LADDER_TABLE)
        db.execute(
            "INSERT INTO ladder VALUES ('overall', 3, ?, 'alert,escalate', ?)",
            (T0.timestamp(), (T0 + MIN).timestamp()),
        )
    older = Ledger(ledger.path)
    expected = LadderState(Level.ESCALATE, T0, frozenset({Kind.ALERT, Kind.ESCALATE}))
    assert LadderState.from_json(older.ladder()) == expected
    assert LadderState.from_json(older.snapshot().ladders["overall"]) == expected
    older.save_ladder(LadderState().to_json(), at=T0 + 2 * MIN)
    assert LadderState.from_json(Ledger(ledger.path).ladder()) == LadderState()


def test_ensure_streams_keeps_first_sighting(ledger: Ledger) -> None:
    """ensure_streams records when a stream was first known, once."""
    ledger.ensure_streams([("BTCUSDT", "15m")], T0)
    ledger.ensure_streams([("BTCUSDT", "15m")], T0 + MIN)
    state = ledger.stream_states()[("BTCUSDT", "15m")]
    assert state.known_since == T0
    assert state.last_success_at is None


def test_naive_datetimes_are_refused(ledger: Ledger) -> None:
    """A naive datetime is ambiguous, so it is refused rather than guessed."""
    with pytest.raises(ValueError, match="naive"):
        ledger.record_outcome(ok(), dt.datetime(2026, 1, 1))  # naive on purpose


def test_unreadable_ledger_raises_store_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database raises StoreError naming the ledger."""
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="ingestion ledger"):
        Ledger(path).check()


def record_many(path: str, symbol: str, rounds: int, start: Barrier) -> None:
    """Child: wait for ``start``, then record ``rounds`` failures and successes of one stream."""
    ledger = Ledger(path)
    start.wait()
    for _ in range(rounds):
        ledger.record_outcome(failed(symbol=symbol))
        ledger.record_outcome(ok(symbol="BTCUSDT", written=2))


@pytest.mark.slow
def test_concurrent_processes_lose_no_count(ledger: Ledger) -> None:
    """Six processes recording at once: every failure and every candle is counted."""
    processes, rounds = 6, 60
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    symbols = [f"SYM{index}USDT" for index in range(processes)]
    children = [
        context.Process(target=record_many, args=(str(ledger.path), symbol, rounds, start))
        for symbol in symbols
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    for symbol in symbols:
        assert (
            ledger.counter(FAILURES, symbol=symbol, interval="15m", reason="unavailable") == rounds
        )
    total = processes * rounds
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 2 * total
    assert ledger.counter(INGESTIONS, symbol="BTCUSDT", interval="15m", result="ok") == total


# ---- reads never take a write lock; a corrupt ledger heals ------------------------------------


def test_reading_a_ledger_not_written_yet_creates_nothing(tmp_path: Path) -> None:
    """Every read of a ledger that does not exist yet answers empty, and creates no file."""
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    ledger.check()
    snapshot = ledger.snapshot()
    assert (snapshot.streams, snapshot.counters, snapshot.gauges) == ({}, {}, {})
    assert ledger.stream_states() == {}
    assert ledger.ladder() == {}
    assert ledger.health().available
    assert not (tmp_path / "state").exists()


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holding ``BEGIN EXCLUSIVE`` on the ledger, with a write pending."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("DELETE FROM counters")  # not committed: no reader may see it
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.mark.slow
def test_reads_answer_while_another_connection_holds_the_write_lock(ledger: Ledger) -> None:
    """Under BEGIN EXCLUSIVE elsewhere, reads see what is committed; a write fails as locked."""
    ledger.record_outcome(ok(), T0)
    with write_lock_held(ledger.path):
        assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 3
        assert Ledger(ledger.path).snapshot().streams[("BTCUSDT", "15m")].last_success_at == T0
        with pytest.raises(LedgerUnavailable) as locked:
            ledger.record_outcome(ok(), T0 + MIN)
    assert locked.value.fault == "locked"
    assert f"fuser {ledger.path}" in str(locked.value)
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 3


def test_a_garbage_ledger_is_moved_aside_kept_and_recreated(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader says it is corrupt, moving nothing; a writer keeps it aside and starts anew."""
    ledger.path.parent.mkdir(parents=True)
    garbage = b"this is not a database " * 300
    ledger.path.write_bytes(garbage)
    with pytest.raises(LedgerUnavailable) as corrupt:
        ledger.check()
    assert corrupt.value.fault == "corrupt"
    assert not ledger.health().readable
    assert ledger.path.read_bytes() == garbage
    with caplog.at_level(logging.WARNING, logger="ost.ledger"):
        ledger.record_outcome(ok(), T0)
    (kept,) = ledger.path.parent.glob("ledger.sqlite3.corrupt-*")
    assert re.fullmatch(r"ledger\.sqlite3\.corrupt-\d{8}T\d{6}Z", kept.name)
    assert kept.read_bytes() == garbage
    (announced,) = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert kept.name in announced
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 3
    assert ledger.error_counts()["corrupt"] == 1
    assert ledger.health().available


def test_a_writers_first_read_of_a_garbage_ledger_moves_it_aside_and_reads_the_new_one(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """Bookkeeping.read (a run reading before it records) heals first: one line, no default."""
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_bytes(b"garbage" * 1000)
    with caplog.at_level(logging.WARNING, logger="ost.ledger"):
        states = Bookkeeping(ledger).read("the streams", lambda it: it.stream_states(), None)
    assert states == {}
    (line,) = [record.getMessage() for record in caplog.records]
    assert "moved aside" in line
    assert len(list(ledger.path.parent.glob("ledger.sqlite3.corrupt-*"))) == 1


def test_a_damaged_page_is_found_by_quick_check_and_moved_aside(ledger: Ledger) -> None:
    """Damage that a plain read does not notice (another table's page) is found by a writer."""
    ledger.record_outcomes([failed(symbol=f"S{number}USDT") for number in range(200)], T0)
    with closing(sqlite3.connect(ledger.path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        query = "SELECT rootpage FROM sqlite_master WHERE name = 'counters'"
        (root,) = db.execute(query).fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    damaged = bytearray(ledger.path.read_bytes())
    damaged[(root - 1) * page : root * page] = b"\xff" * page
    ledger.path.write_bytes(damaged)
    assert len(ledger.stream_states()) == 200  # the streams' pages are intact
    Ledger(ledger.path).record_outcome(ok(), T0 + MIN)  # a new process's first write checks it
    (kept,) = ledger.path.parent.glob("ledger.sqlite3.corrupt-*")
    assert kept.read_bytes() == bytes(damaged)
    assert list(ledger.stream_states()) == [("BTCUSDT", "15m")]


def record_once(path: str, symbol: str, start: Barrier) -> None:
    """Child: wait for ``start``, then record one success of ``symbol``'s 15m stream."""
    ledger = Ledger(path)
    start.wait()
    ledger.record_outcome(ok(symbol=symbol))


@pytest.mark.slow
def test_processes_finding_a_garbage_ledger_together_move_it_aside_once(ledger: Ledger) -> None:
    """Four processes' first writes into garbage: one move, and every record is in the new one."""
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_bytes(b"garbage" * 1000)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    symbols = [f"SYM{index}USDT" for index in range(4)]
    children = [
        context.Process(target=record_once, args=(str(ledger.path), symbol, start))
        for symbol in symbols
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert len(list(ledger.path.parent.glob("ledger.sqlite3.corrupt-*"))) == 1
    assert sorted(symbol for symbol, _ in ledger.stream_states()) == symbols
    assert ledger.error_counts()["corrupt"] == 1


# ---- bookkeeping: a ledger failure is a warning, a count and a status line --------------------


@pytest.mark.slow
def test_after_a_locked_record_the_next_ones_are_counted_not_tried(ledger: Ledger) -> None:
    """A held lock costs one busy timeout: the records after it are only counted."""
    ledger.record_outcome(ok(), T0)
    books = Bookkeeping(ledger)
    tried: list[int] = []

    def write(it: Ledger) -> None:
        tried.append(1)
        it.record_outcome(ok(), T0 + MIN)

    with write_lock_held(ledger.path):
        for _ in range(3):
            books.record("an outcome", write)
        assert ledger.health().fault == "locked"
    assert len(tried) == 1
    assert ledger.error_counts()["locked"] == 3
    Bookkeeping(ledger).record("an outcome", write)  # another run, the lock released
    assert ledger.health().available
    assert ledger.counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") == 6


# ---- the race: request counts are drained under the lock that counting takes ------------------


def iterate_then_subtract(log: RequestLog) -> Counter[tuple[str, str]]:
    """The old record_requests' way of taking the counts: iterate, then subtract, no lock."""
    taken = Counter({key: count for key, count in log.answers.items() if count > 0})
    log.answers.subtract(taken)
    return taken


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Threads switch every microsecond, so that a race shows within a few rounds."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def hammer(
    take: Callable[[RequestLog], Counter[tuple[str, str]]],
    *,
    threads: int = 4,
    per_thread: int = 20_000,
    hosts: int = 512,
) -> tuple[int, int, int]:
    """Threads count answers while ``take`` drains the log again and again.

    Returns (counts made, counts taken, errors raised by ``take``); the last take runs after the
    threads are done.
    """
    log = RequestLog()
    taken: Counter[tuple[str, str]] = Counter()
    errors = 0
    start = threading.Barrier(threads + 1)

    def count(thread: int) -> None:
        start.wait()
        for number in range(per_thread):
            log.count(f"https://api{number % hosts}.binance.com", str(thread))

    workers = [threading.Thread(target=count, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    while any(worker.is_alive() for worker in workers):
        try:
            taken.update(take(log))
        except RuntimeError:  # "dictionary changed size during iteration"
            errors += 1
    for worker in workers:
        worker.join()
    taken.update(take(log))
    return threads * per_thread, sum(taken.values()), errors


@pytest.mark.usefixtures("eager_thread_switches")
def test_the_old_iterate_then_subtract_races_with_counting_threads() -> None:
    """The contrast: the old way loses counts or breaks its iteration within 20 rounds."""
    rounds = (hammer(iterate_then_subtract) for _ in range(20))
    assert any(made != taken or errors for made, taken, errors in rounds)


@pytest.mark.usefixtures("eager_thread_switches")
def test_drain_takes_every_count_exactly_once_while_threads_count() -> None:
    """Under the same hammering, RequestLog.drain takes each count once, and never raises."""
    for _ in range(5):
        made, taken, errors = hammer(RequestLog.drain)
        assert (taken, errors) == (made, 0)


@pytest.mark.usefixtures("eager_thread_switches")
def test_recorded_requests_equal_the_counts_that_threads_made(ledger: Ledger) -> None:
    """Ledger.record_requests, again and again while 4 threads count: exact totals, no error.

    New hosts keep coming while it records (as a long backfill's answers do), which the old
    iterate-then-subtract broke on ("dictionary changed size during iteration") in every run.
    """

    def record(log: RequestLog) -> Counter[tuple[str, str]]:
        ledger.record_requests(log)
        return Counter()

    ledger.ensure_streams([])  # the schema first, so that recording starts with the counting
    made = errors = 0
    for _ in range(4):
        round_made, _, round_errors = hammer(record, per_thread=10_000, hosts=10_000)
        made, errors = made + round_made, errors + round_errors
    assert errors == 0
    assert sum(ledger.counters(BINANCE_REQUESTS).values()) == made

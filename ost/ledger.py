"""The ingestion ledger: what every ingestion attempt did, whichever process made it.

Flow runs, ``ost ingest`` and ``ost backfill`` each record their outcomes here; the metrics server
and the watchdog read it. So both work while Prefect's server is down, and every count survives
a restart of any process. It is one SQLite file (stdlib ``sqlite3``) in WAL mode, written in
short ``BEGIN IMMEDIATE`` transactions with a 10 s busy timeout, so many processes can record
at once without losing a count.

**Where it lives.** ``<OST_DATA_DIR>/state/ledger.sqlite3`` when ``OST_DATA_DIR`` is a local path
(``file://`` URLs included); when it is a remote fsspec URL (``s3://...``), SQLite cannot live
there, so the ledger goes to ``$XDG_STATE_HOME/ost/ledger.sqlite3`` (``~/.local/state/ost/``).
SQLite's locking needs a local filesystem: not NFS.

**What it holds: aggregates, never an event log**, so a scrape reads a few rows whatever the
uptime:

- ``counters``: monotonic counts by name and bounded labels (symbol, interval, reason, base_url,
  status, level, result); never run IDs or timestamps.
- ``streams``: one row per (symbol, interval): last success, last attempt, ``failing_since``
  (the first failure after the last success, NULL while healthy), the failure's reason and a
  short error, the last stored candle's open time.
- ``gauges``: Binance's last reported used weight.
- ``ladder``: the escalation ladder's persisted state per scope (see :mod:`alerts.policy`).

No apprise URL, token or other secret is ever written here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import filelock

from ost.errors import StoreError

if TYPE_CHECKING:
    from ost.binance import RequestLog
    from ost.ingest import StreamOutcome
    from ost.settings import Settings

LEDGER_FILE: Final = "ledger.sqlite3"
BUSY_TIMEOUT_S: Final = 10.0
ERROR_CHARS: Final = 300
REASON_CHARS: Final = 40

FAILURES: Final = "failures_total"
INGESTIONS: Final = "ingestions_total"
CANDLES_WRITTEN: Final = "candles_written_total"
BINANCE_REQUESTS: Final = "binance_requests_total"
NOTIFICATIONS: Final = "notifications_total"
RUN_FAILURES: Final = "run_failures_total"
USED_WEIGHT: Final = "binance_used_weight"
OVERALL: Final = "overall"

#: Labels as sorted (name, value) pairs: hashable, and the same whatever the order given.
Labels = tuple[tuple[str, str], ...]
Stream = tuple[str, str]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gauges (
    name TEXT NOT NULL,
    labels TEXT NOT NULL,
    value REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    symbol TEXT NOT NULL,
    interval TEXT NOT NULL,
    known_since REAL,
    last_success_at REAL,
    last_attempt_at REAL,
    failing_since REAL,
    last_reason TEXT,
    last_error TEXT,
    last_open_ms INTEGER,
    PRIMARY KEY (symbol, interval)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ladder (
    scope TEXT PRIMARY KEY,
    level INTEGER NOT NULL,
    outage_since REAL,
    notified TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""

_INSERT_STREAM: Final = """
INSERT INTO streams (symbol, interval, known_since, last_success_at, last_attempt_at,
                     failing_since, last_reason, last_error, last_open_ms)
VALUES (:symbol, :interval, :at, :success_at, :at, :failing_since, :reason, :error, :open_ms)
"""

#: A success moves ``last_success_at`` forward and ends the failure, unless a later failure is
#: already recorded (outcomes of concurrent processes can arrive out of order).
_RECORD_SUCCESS: Final = (
    _INSERT_STREAM
    + """
ON CONFLICT (symbol, interval) DO UPDATE SET
    known_since = COALESCE(known_since, :at),
    last_success_at = MAX(COALESCE(last_success_at, :at), :at),
    last_attempt_at = MAX(COALESCE(last_attempt_at, :at), :at),
    failing_since = CASE WHEN failing_since > :at THEN failing_since END,
    last_reason = CASE WHEN failing_since > :at THEN last_reason END,
    last_error = CASE WHEN failing_since > :at THEN last_error END,
    last_open_ms = MAX(COALESCE(last_open_ms, :open_ms), COALESCE(:open_ms, last_open_ms))
"""
)

#: A failure starts (or keeps) ``failing_since``, unless a later success is already recorded.
_RECORD_FAILURE: Final = (
    _INSERT_STREAM
    + """
ON CONFLICT (symbol, interval) DO UPDATE SET
    known_since = COALESCE(known_since, :at),
    last_attempt_at = MAX(COALESCE(last_attempt_at, :at), :at),
    failing_since = CASE WHEN last_success_at > :at THEN failing_since
                         ELSE MIN(COALESCE(failing_since, :at), :at) END,
    last_reason = CASE WHEN last_success_at > :at THEN last_reason ELSE :reason END,
    last_error = CASE WHEN last_success_at > :at THEN last_error ELSE :error END,
    last_open_ms = MAX(COALESCE(last_open_ms, :open_ms), COALESCE(:open_ms, last_open_ms))
"""
)

_ADD_COUNT: Final = """
INSERT INTO counters (name, labels, value) VALUES (?, ?, ?)
ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value
"""


@dataclass(frozen=True)
class StreamState:
    """What the ledger knows of one stream; times are aware UTC datetimes."""

    symbol: str
    interval: str
    known_since: dt.datetime | None = None
    last_success_at: dt.datetime | None = None
    last_attempt_at: dt.datetime | None = None
    failing_since: dt.datetime | None = None
    last_reason: str | None = None
    last_error: str | None = None
    last_open_ms: int | None = None

    @property
    def failing(self) -> bool:
        """Whether the last recorded outcome of this stream is a failure."""
        return self.failing_since is not None


@dataclass(frozen=True)
class LadderRecord:
    """The escalation ladder's persisted state for one scope (see :mod:`alerts.policy`)."""

    level: int = 0
    outage_since: dt.datetime | None = None
    notified: frozenset[str] = frozenset()
    updated_at: dt.datetime | None = None


@dataclass(frozen=True)
class LedgerSnapshot:
    """Everything in the ledger, read in one transaction (what a scrape needs)."""

    streams: dict[Stream, StreamState]
    counters: dict[str, dict[Labels, int]]
    gauges: dict[str, dict[Labels, float]]
    ladders: dict[str, LadderRecord]


def ledger_path(data_dir: str) -> Path:
    """Where the ledger of a store at ``data_dir`` lives (see the module docstring)."""
    if data_dir.startswith("file://"):
        data_dir = data_dir.removeprefix("file://")
    elif "://" in data_dir:
        state_home = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
        return Path(state_home).expanduser() / "ost" / LEDGER_FILE
    return Path(data_dir).expanduser() / "state" / LEDGER_FILE


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def bounded_label(text: str | None, default: str = "error") -> str:
    """``text`` as a short label value (lowercase letters, digits, ``_``): labels stay bounded."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", (text or "").lower())[:REASON_CHARS].strip("_")
    return cleaned or default


def short_error(text: str | None) -> str | None:
    """The first line of an error message, cut to :data:`ERROR_CHARS` characters."""
    if not text:
        return None
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line[:ERROR_CHARS] or None


def _labels_key(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _labels_tuple(key: str) -> Labels:
    return tuple(sorted((str(name), str(value)) for name, value in json.loads(key).items()))


def _epoch(at: dt.datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"{at!r} is naive: the ledger takes aware datetimes")
    return at.timestamp()


def _datetime(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


class Ledger:
    """The ingestion ledger in the SQLite file at ``path``; safe to share between processes.

    Each call opens its own short-lived connection, so one object can serve several threads.
    A SQLite failure is raised as :class:`~ost.errors.StoreError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._schema_ready = False

    @classmethod
    def for_settings(cls, settings: Settings) -> Ledger:
        """The ledger of ``settings.data_dir`` (see :func:`ledger_path`)."""
        return cls(ledger_path(settings.data_dir))

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # ---- recording --------------------------------------------------------------------------

    def record_outcome(self, outcome: StreamOutcome, at: dt.datetime | None = None) -> None:
        """Record one stream's ingestion outcome: its state, and the counters it moves."""
        self.record_outcomes([outcome], at)

    def record_outcomes(
        self, outcomes: Iterable[StreamOutcome], at: dt.datetime | None = None
    ) -> None:
        """Record several outcomes at once, in one transaction."""
        epoch = _epoch(at or utcnow())
        with self._transaction() as db:
            for outcome in outcomes:
                self._apply_outcome(db, outcome, epoch)

    def record_written(self, symbol: str, interval: str, written: int) -> None:
        """Count candles stored outside an ingestion pass (a backfill, a gap repair).

        Only ``candles_written_total`` moves: a backfill says nothing of the live ingestion's
        health, so the stream's state (last success, failing since) is left alone.
        """
        if written <= 0:
            return
        with self._transaction() as db:
            self._add(db, CANDLES_WRITTEN, {"symbol": symbol, "interval": interval}, written)

    def record_run_failure(
        self,
        streams: Iterable[Stream],
        *,
        reason: str = "run_failed",
        error: str | None = None,
        started_at: dt.datetime | None = None,
        at: dt.datetime | None = None,
    ) -> list[Stream]:
        """Record a flow run that failed or crashed before its streams reported an outcome.

        Each of ``streams`` without an attempt recorded since ``started_at`` (all of them when
        ``started_at`` is None) counts as one failed ingestion with ``reason``: its
        ``failing_since`` starts, and ``failures_total{symbol,interval,reason}`` moves, so the
        watchdog and the metrics see the run's failure like any other. ``run_failures_total
        {reason}`` counts the run itself. Returns the streams marked as failed.
        """
        epoch = _epoch(at or utcnow())
        label = bounded_label(reason, "run_failed")
        since = None if started_at is None else _epoch(started_at)
        marked: list[Stream] = []
        with self._transaction() as db:
            for symbol, interval in streams:
                if since is not None and self._attempted_since(db, symbol, interval, since):
                    continue
                self._apply_failure(
                    db,
                    symbol,
                    interval,
                    at=epoch,
                    reason=label,
                    error=short_error(error),
                    open_ms=None,
                )
                marked.append((symbol, interval))
            self._add(db, RUN_FAILURES, {"reason": label}, 1)
        return marked

    def record_requests(self, log: RequestLog) -> None:
        """Add the requests ``log`` counted since the last call, and set the used weight.

        The counts recorded are taken out of ``log.answers`` once committed, so a long-lived
        client's log can be recorded after every stream without counting anything twice.
        """
        taken = Counter({key: count for key, count in log.answers.items() if count > 0})
        with self._transaction() as db:
            for (base_url, status), count in taken.items():
                self._add(db, BINANCE_REQUESTS, {"base_url": base_url, "status": status}, count)
            if log.used_weight is not None:
                self._set_gauge(db, USED_WEIGHT, {}, float(log.used_weight))
        log.answers.subtract(taken)

    def record_notification(self, level: str, result: str, count: int = 1) -> None:
        """Count ``count`` notification deliveries at ``level`` with ``result`` (sent, failed..)."""
        with self._transaction() as db:
            self._add(db, NOTIFICATIONS, {"level": level, "result": result}, count)

    def ensure_streams(self, streams: Iterable[Stream], at: dt.datetime | None = None) -> None:
        """Start tracking streams not seen before: ``known_since`` = ``at``, nothing else."""
        epoch = _epoch(at or utcnow())
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO streams (symbol, interval, known_since) VALUES (?, ?, ?)",
                [(symbol, interval, epoch) for symbol, interval in streams],
            )

    def save_ladder(self, record: LadderRecord, scope: str = OVERALL) -> None:
        """Persist the escalation ladder's state for ``scope``."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO ladder (scope, level, outage_since, notified, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    scope,
                    record.level,
                    None if record.outage_since is None else _epoch(record.outage_since),
                    ",".join(sorted(record.notified)),
                    _epoch(record.updated_at or utcnow()),
                ),
            )

    # ---- reading ----------------------------------------------------------------------------

    def stream_states(self) -> dict[Stream, StreamState]:
        """Every stream the ledger knows, by (symbol, interval)."""
        with self._connection() as db:
            return _read_streams(db)

    def counters(self, name: str) -> dict[Labels, int]:
        """Every label set of counter ``name`` with its value."""
        with self._connection() as db:
            return _read_counters(db).get(name, {})

    def counter(self, name: str, **labels: str) -> int:
        """The value of counter ``name`` for exactly ``labels`` (0 if never counted)."""
        with self._connection() as db:
            row = db.execute(
                "SELECT value FROM counters WHERE name = ? AND labels = ?",
                (name, _labels_key(labels)),
            ).fetchone()
        return int(row[0]) if row else 0

    def gauge(self, name: str, **labels: str) -> float | None:
        """The last value set for gauge ``name`` with ``labels``, or None."""
        with self._connection() as db:
            row = db.execute(
                "SELECT value FROM gauges WHERE name = ? AND labels = ?",
                (name, _labels_key(labels)),
            ).fetchone()
        return float(row[0]) if row else None

    def ladder(self, scope: str = OVERALL) -> LadderRecord:
        """The escalation ladder's persisted state for ``scope`` (the initial one if none)."""
        with self._connection() as db:
            return _read_ladders(db).get(scope, LadderRecord())

    def snapshot(self) -> LedgerSnapshot:
        """Everything at once, from one consistent read transaction."""
        with self._connection() as db:
            db.execute("BEGIN")
            try:
                return LedgerSnapshot(
                    streams=_read_streams(db),
                    counters=_read_counters(db),
                    gauges=_read_gauges(db),
                    ladders=_read_ladders(db),
                )
            finally:
                db.execute("COMMIT")

    def check(self) -> None:
        """Raise :class:`~ost.errors.StoreError` unless the ledger can be opened and read."""
        with self._connection() as db:
            db.execute("SELECT count(*) FROM streams").fetchone()

    # ---- internals --------------------------------------------------------------------------

    def _apply_outcome(self, db: sqlite3.Connection, outcome: StreamOutcome, at: float) -> None:
        if outcome.ok:
            db.execute(
                _RECORD_SUCCESS,
                _stream_params(outcome.symbol, outcome.interval, at, outcome.last_open_ms),
            )
            self._add(db, INGESTIONS, _result_labels(outcome.symbol, outcome.interval, "ok"), 1)
        else:
            self._apply_failure(
                db,
                outcome.symbol,
                outcome.interval,
                at=at,
                reason=bounded_label(outcome.reason),
                error=short_error(outcome.error),
                open_ms=outcome.last_open_ms,
            )
        if outcome.written:
            labels = {"symbol": outcome.symbol, "interval": outcome.interval}
            self._add(db, CANDLES_WRITTEN, labels, outcome.written)

    def _apply_failure(
        self,
        db: sqlite3.Connection,
        symbol: str,
        interval: str,
        *,
        at: float,
        reason: str,
        error: str | None,
        open_ms: int | None,
    ) -> None:
        db.execute(
            _RECORD_FAILURE,
            _stream_params(symbol, interval, at, open_ms, reason=reason, error=error),
        )
        self._add(db, FAILURES, {"symbol": symbol, "interval": interval, "reason": reason}, 1)
        self._add(db, INGESTIONS, _result_labels(symbol, interval, "failed"), 1)

    @staticmethod
    def _attempted_since(db: sqlite3.Connection, symbol: str, interval: str, since: float) -> bool:
        row = db.execute(
            "SELECT last_attempt_at FROM streams WHERE symbol = ? AND interval = ?",
            (symbol, interval),
        ).fetchone()
        return bool(row and row[0] is not None and row[0] >= since)

    @staticmethod
    def _add(db: sqlite3.Connection, name: str, labels: Mapping[str, str], count: int) -> None:
        db.execute(_ADD_COUNT, (name, _labels_key(labels), count))

    @staticmethod
    def _set_gauge(
        db: sqlite3.Connection, name: str, labels: Mapping[str, str], value: float
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO gauges (name, labels, value, updated_at) VALUES (?, ?, ?, ?)",
            (name, _labels_key(labels), value, utcnow().timestamp()),
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock at once (waiting up to the timeout)."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection (autocommit; transactions explicit), closed afterwards."""
        try:
            if not self._schema_ready:
                self._create_schema()
            db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"ingestion ledger {self.path}: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise StoreError(f"ingestion ledger {self.path}: {exc}") from exc
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and faster
        return db

    def _create_schema(self) -> None:
        """Create the tables and switch to WAL, one process at a time.

        Changing the journal mode ignores SQLite's busy timeout, so processes that open a new
        ledger together would fail with "database is locked"; a file lock serializes them.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(f"{self.path}.init.lock", timeout=BUSY_TIMEOUT_S):
            self._create_schema_locked()
        self._schema_ready = True

    def _create_schema_locked(self) -> None:
        db = self._connect()
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("COMMIT")
        finally:
            db.close()


def _stream_params(
    symbol: str,
    interval: str,
    at: float,
    open_ms: int | None,
    *,
    reason: str | None = None,
    error: str | None = None,
) -> dict[str, object]:
    """The parameters of the stream upserts: a failure when ``reason`` is given."""
    failed = reason is not None
    return {
        "symbol": symbol,
        "interval": interval,
        "at": at,
        "success_at": None if failed else at,
        "failing_since": at if failed else None,
        "reason": reason,
        "error": error,
        "open_ms": open_ms,
    }


def _result_labels(symbol: str, interval: str, result: str) -> dict[str, str]:
    return {"symbol": symbol, "interval": interval, "result": result}


def _read_streams(db: sqlite3.Connection) -> dict[Stream, StreamState]:
    rows = db.execute(
        "SELECT symbol, interval, known_since, last_success_at, last_attempt_at, failing_since,"
        " last_reason, last_error, last_open_ms FROM streams ORDER BY symbol, interval"
    ).fetchall()
    return {
        (row[0], row[1]): StreamState(
            symbol=row[0],
            interval=row[1],
            known_since=_datetime(row[2]),
            last_success_at=_datetime(row[3]),
            last_attempt_at=_datetime(row[4]),
            failing_since=_datetime(row[5]),
            last_reason=row[6],
            last_error=row[7],
            last_open_ms=row[8],
        )
        for row in rows
    }


def _read_counters(db: sqlite3.Connection) -> dict[str, dict[Labels, int]]:
    counters: dict[str, dict[Labels, int]] = {}
    for name, labels, value in db.execute("SELECT name, labels, value FROM counters"):
        counters.setdefault(name, {})[_labels_tuple(labels)] = int(value)
    return counters


def _read_gauges(db: sqlite3.Connection) -> dict[str, dict[Labels, float]]:
    gauges: dict[str, dict[Labels, float]] = {}
    for name, labels, value in db.execute("SELECT name, labels, value FROM gauges"):
        gauges.setdefault(name, {})[_labels_tuple(labels)] = float(value)
    return gauges


def _read_ladders(db: sqlite3.Connection) -> dict[str, LadderRecord]:
    rows = db.execute("SELECT scope, level, outage_since, notified, updated_at FROM ladder")
    return {
        scope: LadderRecord(
            level=int(level),
            outage_since=_datetime(outage_since),
            notified=frozenset(item for item in notified.split(",") if item),
            updated_at=_datetime(updated_at),
        )
        for scope, level, outage_since, notified, updated_at in rows
    }

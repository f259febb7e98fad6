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

**Its files go through the store's primitives.** The ledger keeps this place (SQLite needs a path
on a local disk that every process agrees on, which an fsspec URL is not), and SQLite does the
database's own I/O and locking. Every other file of the ledger goes through a
:class:`~ost.backend.LocalBackend` of its directory, like the candle store's files: the errors
file is replaced with the backend's one atomic write, a corrupt ledger is moved aside with its
``move``, and the ledger's lock files (``ledger.sqlite3.init.lock``, ``ledger-errors.json.lock``,
beside it, where every process that opens this ledger finds them) are taken with its one lock.

**What it holds: aggregates, never an event log**, so a scrape reads a few rows whatever the
uptime:

- ``counters``: monotonic counts by name and bounded labels (symbol, interval, reason, base_url,
  status, level, result); never run IDs or timestamps.
- ``streams``: one row per (symbol, interval): last success, last attempt, ``failing_since``
  (the first failure after the last success, NULL while healthy), the failure's reason and a
  short error, the last stored candle's open time.
- ``gauges``: Binance's last reported used weight; the clock skew last measured per host; per
  host, until when it is banned (not called before, see :class:`ost.pacing.HostBans`).
- ``ladder_state``: the escalation ladder's state per scope, a JSON object that
  :mod:`alerts.policy` makes and reads; the ledger never looks inside it. An earlier version
  kept the same fields as the columns of a ``ladder`` table: such a row reads as the same object
  until the ladder saves its state again.

No apprise URL, token or other secret is ever written here.

**Reads never take a write lock.** A reader opens the file read-only (``mode=ro``), never
creates it or its schema (a ledger not written yet reads as empty), and waits at most
:data:`READ_BUSY_TIMEOUT_S`; so ``ost status`` and ``/metrics`` answer while another process
holds the write lock. Where WAL's ``-shm`` file cannot be made (a read-only directory, a full
disk), it reads the file as immutable.

**The candles before the bookkeeping.** A failure to use the ledger is a
:class:`~ost.errors.LedgerUnavailable` whose ``fault`` is ``locked``, ``corrupt``, ``read_only``,
``full`` or ``io``. Ingestion and backfill write through :class:`Bookkeeping`, which turns it into
one warning line, a count in ``ledger-errors.json`` beside the ledger (the
``ost_ledger_errors_total{reason}`` metric: a count kept in the broken ledger itself would be
lost with it) and a line of ``ost status``; the candles are stored all the same. A writer that
finds the file corrupt (``PRAGMA quick_check``) moves it aside, renamed
``ledger.sqlite3.corrupt-<UTC time>`` (with its ``-wal`` and ``-shm``), creates a new one and
says so; its counters start again from zero, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import filelock

from ost.backend import LocalBackend
from ost.clock import ClockReading
from ost.errors import LedgerUnavailable, Locked, StoreError
from ost.intervals import Stream
from ost.timefmt import file_stamp, json_time

if TYPE_CHECKING:
    from ost.binance import RequestLog
    from ost.ingest import StreamOutcome
    from ost.settings import Settings

log = logging.getLogger(__name__)

LEDGER_FILE: Final = "ledger.sqlite3"
#: The ledger's own failures, beside it (see the module docstring).
ERRORS_FILE: Final = "ledger-errors.json"
BUSY_TIMEOUT_S: Final = 10.0
#: How long a reader waits for a lock: only a rollback-journal writer or a checkpoint blocks it.
READ_BUSY_TIMEOUT_S: Final = 2.0
#: After a record failed on a locked ledger, the next ones of the process are skipped (counted)
#: for this long, so a held lock costs a run one busy timeout, not one per stream.
LOCKED_PAUSE_S: Final = 60.0
ERROR_CHARS: Final = 300
REASON_CHARS: Final = 40

FAILURES: Final = "failures_total"
INGESTIONS: Final = "ingestions_total"
CANDLES_WRITTEN: Final = "candles_written_total"
BINANCE_REQUESTS: Final = "binance_requests_total"
NOTIFICATIONS: Final = "notifications_total"
RUN_FAILURES: Final = "run_failures_total"
#: Files of the candle store moved to its quarantine (see :mod:`ost.store`), per stream.
QUARANTINED: Final = "store_quarantined_total"
USED_WEIGHT: Final = "binance_used_weight"
#: Binance's clock minus the local one, in seconds, per host (see :mod:`ost.clock`).
CLOCK_SKEW: Final = "clock_skew_seconds"
#: Until when (Unix time) a host is not called: a 429/418 asked for longer than a run waits.
HOST_BANNED_UNTIL: Final = "host_banned_until_seconds"
OVERALL: Final = "overall"

#: Why the ledger could not be used: :attr:`LedgerUnavailable.fault`, the metric's ``reason``.
LOCKED: Final = "locked"
CORRUPT: Final = "corrupt"
READ_ONLY: Final = "read_only"
FULL: Final = "full"
IO: Final = "io"
FAULTS: Final = (LOCKED, CORRUPT, READ_ONLY, FULL, IO)

_T = TypeVar("_T")

#: Labels as sorted (name, value) pairs: hashable, and the same whatever the order given.
Labels = tuple[tuple[str, str], ...]

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
CREATE TABLE IF NOT EXISTS ladder_state (
    scope TEXT PRIMARY KEY,
    state TEXT NOT NULL,
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
class LedgerHealth:
    """Whether ingestion can record in the ledger (``fault`` None), or why not and since when."""

    fault: str | None = None
    error: str | None = None
    since: dt.datetime | None = None
    #: Whether it can be read at all (a locked or read-only ledger can; a corrupt one cannot).
    readable: bool = True

    @property
    def available(self) -> bool:
        """Whether nothing stops the ledger from being read and written."""
        return self.fault is None

    def to_dict(self) -> dict[str, Any]:
        """As ``ost status --json`` shows it."""
        return {
            "state": "ok" if self.available else "unavailable",
            "fault": self.fault,
            "error": self.error,
            "since": json_time(self.since),
        }


@dataclass(frozen=True)
class LedgerSnapshot:
    """Everything in the ledger, read in one transaction (what a scrape needs)."""

    streams: dict[Stream, StreamState]
    counters: dict[str, dict[Labels, int]]
    gauges: dict[str, dict[Labels, float]]
    #: The ladder's state by scope, as :meth:`Ledger.save_ladder` kept it.
    ladders: dict[str, dict[str, Any]]


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
    A SQLite or file system failure is raised as :class:`~ost.errors.LedgerUnavailable` (a
    :class:`~ost.errors.StoreError`); ingestion writes through :class:`Bookkeeping`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: The ledger's directory, through which its files other than the database go.
        self._files = LocalBackend(str(self.path.parent))
        self._schema_ready = False

    @classmethod
    def for_settings(cls, settings: Settings) -> Ledger:
        """The ledger of ``settings.data_dir`` (see :func:`ledger_path`)."""
        return cls(ledger_path(settings.data_dir))

    @classmethod
    def empty(cls) -> Ledger:
        """A ledger with nothing in it, for reading only: a stand-in for one that cannot be read.

        Its path can never exist (under ``/dev/null``), so it reads as empty, and a write fails.
        """
        return cls(Path(os.devnull) / LEDGER_FILE)

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

    def record_quarantined(self, streams: Iterable[tuple[str, str]]) -> None:
        """Count one file moved to the store's quarantine for each ``(symbol, interval)``.

        A file outside any stream (a foreign file at the top of ``klines/``) has empty labels.
        """
        moved = list(streams)
        if not moved:
            return
        with self._transaction() as db:
            for symbol, interval in moved:
                self._add(db, QUARANTINED, {"symbol": symbol, "interval": interval}, 1)

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
                marked.append(Stream(symbol, interval))
            self._add(db, RUN_FAILURES, {"reason": label}, 1)
        return marked

    def record_requests(self, log: RequestLog) -> None:
        """Add the requests ``log`` counted since the last call, and set the used weight.

        The counts are drained from ``log`` under its lock (its client's threads go on counting),
        and given back if they cannot be committed, so a long-lived client's log can be recorded
        after every stream without counting anything twice or losing a count.
        """
        taken = log.drain()
        try:
            with self._transaction() as db:
                for (base_url, status), count in taken.items():
                    labels = {"base_url": base_url, "status": status}
                    self._add(db, BINANCE_REQUESTS, labels, count)
                if log.used_weight is not None:
                    self._set_gauge(db, USED_WEIGHT, {}, float(log.used_weight))
        except BaseException:
            log.give_back(taken)
            raise

    def record_clock_skew(self, reading: ClockReading) -> None:
        """Set the skew last measured from ``reading.host`` (Binance's clock minus ours)."""
        with self._transaction() as db:
            self._set_gauge(db, CLOCK_SKEW, {"host": reading.host}, reading.offset_ms / 1000)

    def record_host_bans(self, bans: Mapping[str, int]) -> None:
        """Keep ``bans`` (host -> end, epoch ms): no run calls such a host before its end.

        A recorded ban only ever moves later, whichever process records what.
        """
        if not bans:
            return
        with self._transaction() as db:
            for host, until_ms in bans.items():
                labels = _labels_key({"host": host})
                db.execute(
                    "INSERT INTO gauges (name, labels, value, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (name, labels) DO UPDATE SET value = MAX(value, excluded.value),"
                    " updated_at = excluded.updated_at",
                    (HOST_BANNED_UNTIL, labels, until_ms / 1000, utcnow().timestamp()),
                )

    def host_bans(self) -> dict[str, int]:
        """Every ban recorded (host -> end, epoch ms), ended ones included."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT labels, value FROM gauges WHERE name = ?", (HOST_BANNED_UNTIL,)
            ).fetchall()
        bans: dict[str, int] = {}
        for labels, value in rows:
            bans[dict(_labels_tuple(labels)).get("host", "")] = round(value * 1000)
        return bans

    def last_clock_skew(self) -> ClockReading | None:
        """The skew measured last, whichever host it came from, and when; None if never."""
        with self._connection() as db:
            row = db.execute(
                "SELECT labels, value, updated_at FROM gauges WHERE name = ?"
                " ORDER BY updated_at DESC LIMIT 1",
                (CLOCK_SKEW,),
            ).fetchone()
        if row is None:
            return None
        host = dict(_labels_tuple(row[0])).get("host", "")
        return ClockReading(host, round(float(row[1]) * 1000), _datetime(float(row[2])))

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

    def save_ladder(
        self, state: Mapping[str, Any], scope: str = OVERALL, at: dt.datetime | None = None
    ) -> None:
        """Keep the escalation ladder's ``state`` for ``scope``, as of ``at`` (default now).

        ``state`` is a JSON object that :mod:`alerts.policy` makes; the ledger stores it as is.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO ladder_state (scope, state, updated_at) VALUES (?, ?, ?)",
                (scope, json.dumps(dict(state), sort_keys=True), _epoch(at or utcnow())),
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

    def ladder(self, scope: str = OVERALL) -> dict[str, Any]:
        """The escalation ladder's state last kept for ``scope``; empty if none was."""
        with self._connection() as db:
            return _read_ladders(db).get(scope, {})

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
        """Raise :class:`~ost.errors.LedgerUnavailable` unless the ledger can be read.

        A ledger not written yet reads as an empty one: that is no failure.
        """
        with self._connection() as db:
            db.execute("SELECT count(*) FROM streams").fetchone()

    def prepare_writes(self) -> None:
        """Create the ledger (or its tables), or move a corrupt one aside and start a new one.

        Every first write does this; a writer that reads first (see :meth:`Bookkeeping.read`)
        calls it when the ledger reads as corrupt. Raises :class:`~ost.errors.LedgerUnavailable`.
        """
        self._schema_ready = False
        with self._write_connection():
            pass

    # ---- its own failures (``ledger-errors.json`` beside it) -----------------------------------

    @property
    def errors_path(self) -> Path:
        """Where the ledger's own failures are counted (a count in the ledger could not be)."""
        return self.path.with_name(ERRORS_FILE)

    def note_failure(self, error: LedgerUnavailable) -> None:
        """Count a record that failed or was skipped, and mark the ledger failing (if not yet).

        Raises :class:`~ost.errors.LedgerUnavailable` when even that file cannot be written.
        """
        self._note(error.fault, short_error(error.args[0]), failing=True)

    def note_recovery(self) -> None:
        """A record was committed: the ledger is no longer failing (the counts stay)."""
        if _read_json(self.errors_path).get("failing") is not None:
            self._update_errors(lambda data: data.pop("failing", None))

    def error_counts(self) -> dict[str, int]:
        """Failures of the ledger by fault, every fault of :data:`FAULTS` included (0 if none)."""
        counts = _read_json(self.errors_path).get("counts", {})
        return {fault: int(counts.get(fault, 0)) for fault in FAULTS}

    def health(self) -> LedgerHealth:
        """Whether ingestion can record in the ledger: what ``ost status`` shows of it."""
        try:
            self.check()
        except LedgerUnavailable as exc:
            return LedgerHealth(exc.fault, short_error(exc.args[0]), readable=False)
        failing = _read_json(self.errors_path).get("failing")
        if failing is not None:
            since = _datetime(failing.get("since"))
            return LedgerHealth(str(failing.get("fault", IO)), failing.get("error"), since)
        fault = self._write_fault()
        if fault is not None:
            what = _FAULT_TEXT[fault][0]
            return LedgerHealth(fault, f"the ingestion ledger {self.path} {what}")
        return LedgerHealth()

    def _write_fault(self) -> str | None:
        """READ_ONLY or FULL when the ledger plainly cannot be written, without writing to it."""
        if self.path.exists() and not os.access(self.path, os.W_OK):
            return READ_ONLY
        return _filesystem_fault(self.path.parent)

    def _note(self, fault: str, error: str | None, *, failing: bool) -> None:
        def change(data: dict[str, Any]) -> None:
            counts = data.setdefault("counts", {})
            counts[fault] = int(counts.get(fault, 0)) + 1
            if failing and data.get("failing") is None:
                data["failing"] = {"since": utcnow().timestamp(), "fault": fault, "error": error}

        self._update_errors(change)

    def _update_errors(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Apply ``change`` to the errors file, under its lock, replacing it atomically."""
        path = self.errors_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock(f"{path.name}.lock"):
                data = _read_json(path)
                change(data)
                self._files.write_bytes(str(path), json.dumps(data, sort_keys=True).encode())
        except (OSError, StoreError) as exc:  # a lock held past the wait included
            raise self._unavailable(_cause(exc)) from exc

    def _lock(self, name: str) -> AbstractContextManager[None]:
        """The lock file ``name`` beside the ledger, waited for up to the busy timeout."""
        return self._files.lock(name, "the ingestion ledger", timeout=BUSY_TIMEOUT_S)

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
        with self._write_connection() as db:
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
        """A read-only connection, closed afterwards: no write lock, no file or schema created.

        A ledger not written yet (no file, or no tables) reads as an empty one.
        """
        try:
            db = self._connect_reader()
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            db.close()

    @contextmanager
    def _write_connection(self) -> Iterator[sqlite3.Connection]:
        """A read-write connection (autocommit; transactions explicit), closed afterwards."""
        try:
            if not self._schema_ready:
                self._create_schema()
            db = self._connect()
        except LedgerUnavailable:
            raise
        except (sqlite3.Error, OSError, StoreError, _Malformed) as exc:
            raise self._unavailable(_cause(exc)) from exc
        try:
            yield db
        except sqlite3.Error as exc:
            error = self._unavailable(exc)
            if error.fault == CORRUPT:
                self._schema_ready = False  # the next write checks it, and moves it aside
            raise error from exc
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL mode, and faster
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        if not self.path.exists():
            return _empty_ledger()
        uri = self.path.absolute().as_uri()
        try:
            db = _open_read_only(f"{uri}?mode=ro")
        except sqlite3.OperationalError as exc:
            # WAL needs its -shm file, which a read-only directory or a full disk cannot hold.
            if not _error_name(exc).startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR")):
                raise
            db = _open_read_only(f"{uri}?immutable=1")
        if db is None:
            return _empty_ledger()
        return db

    def _create_schema(self) -> None:
        """Create the tables and switch to WAL, one process at a time; heal a corrupt file.

        Changing the journal mode ignores SQLite's busy timeout, so processes that open a new
        ledger together would fail with "database is locked"; a file lock serializes them. Under
        the same lock, a file that fails ``PRAGMA quick_check`` is moved aside and replaced, so
        two processes never both move it (the second would move the new one).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(f"{self.path.name}.init.lock"):
            try:
                self._create_schema_locked()
            except (sqlite3.DatabaseError, _Malformed) as exc:
                if _fault_of(exc, self.path.parent) != CORRUPT:
                    raise
                self._move_aside(exc)
                self._create_schema_locked()
                self._note(CORRUPT, short_error(str(exc)), failing=False)
        self._schema_ready = True

    def _create_schema_locked(self) -> None:
        db = self._connect()
        try:
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if verdict != "ok":
                raise _Malformed(f"PRAGMA quick_check: {' '.join(str(verdict).split())}")
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("COMMIT")
        finally:
            db.close()

    def _move_aside(self, cause: BaseException) -> None:
        """Rename the corrupt ledger (and its -wal, -shm) with the UTC time; announce it."""
        stamp = file_stamp(utcnow())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        number = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
            number += 1
        self._files.move(str(self.path), str(target))
        for suffix in ("-wal", "-shm"):
            if Path(f"{self.path}{suffix}").exists():
                self._files.move(f"{self.path}{suffix}", f"{target}{suffix}")
        log.warning(
            "The ingestion ledger %s was corrupt (%s): moved aside to %s, and a new one"
            " created; its counts start again from zero. The candles are not affected.",
            self.path,
            short_error(str(cause)),
            target.name,
        )

    def _unavailable(self, exc: BaseException) -> LedgerUnavailable:
        """``exc`` (SQLite's, the file system's) as the error the operator reads."""
        fault = _fault_of(exc, self.path.parent)
        what, advice = _FAULT_TEXT[fault]
        advice = advice.format(path=self.path, directory=self.path.parent)
        return LedgerUnavailable(
            f"the ingestion ledger {self.path} {what} ({exc}): {advice}", fault=fault
        )


class Bookkeeping:
    """How ingestion and backfill use the ledger: the candles come first.

    :meth:`record` runs one write, :meth:`read` one read. A
    :class:`~ost.errors.LedgerUnavailable` from either is, by design, not raised (this is the one
    place where a ledger failure is caught): it is one warning line per outage (its first
    failure), a count in ``ost_ledger_errors_total{reason}`` (writes), and ``ost status`` shows
    the ledger as unavailable until a later record commits. The stream it was about is not
    failed, and the next one is not stopped.

    A ``locked`` failure costs the busy timeout, so the records of the next ``locked_pause_s``
    seconds are skipped (and counted): a held lock costs a run one wait, not one per stream.
    Other faults fail at once, so every record is tried. Request counts that could not be
    recorded stay in the client's log, for the next record. Safe to share between threads.
    """

    def __init__(self, ledger: Ledger, *, locked_pause_s: float = LOCKED_PAUSE_S) -> None:
        self.ledger = ledger
        self.locked_pause_s = locked_pause_s
        self._lock = threading.Lock()
        self._outage: LedgerUnavailable | None = None
        self._skip_until = 0.0
        self._mark_checked = False

    def record(self, what: str, write: Callable[[Ledger], object]) -> None:
        """Run ``write(ledger)``, recording ``what``; a ledger failure is reported, not raised."""
        with self._lock:
            skipped = self._outage if time.monotonic() < self._skip_until else None
        if skipped is not None:
            self._count(skipped)
            return
        try:
            write(self.ledger)
        except LedgerUnavailable as exc:
            self._failed(what, exc)
            return
        with self._lock:
            clear_mark = self._outage is not None or not self._mark_checked
            self._outage, self._mark_checked = None, True
        if clear_mark:
            try:
                self.ledger.note_recovery()
            except LedgerUnavailable as exc:
                self._failed("the end of its outage", exc)

    def read(self, what: str, read: Callable[[Ledger], _T], default: _T) -> _T:
        """``read(ledger)``, which reads ``what``; ``default``, and the warning, if it cannot.

        A corrupt ledger is moved aside first (this is a writer's read), then read anew.
        """
        try:
            try:
                return read(self.ledger)
            except LedgerUnavailable as exc:
                if exc.fault != CORRUPT:
                    raise
                self.ledger.prepare_writes()
                return read(self.ledger)
        except LedgerUnavailable as exc:
            self._failed(what, exc, counted=False)
            return default

    def _failed(self, what: str, error: LedgerUnavailable, *, counted: bool = True) -> None:
        with self._lock:
            first = self._outage is None
            self._outage = error
            if error.fault == LOCKED:
                self._skip_until = time.monotonic() + self.locked_pause_s
        uncounted = self._count(error) if counted else None
        if not first:
            return
        skipping = (
            f" The records of the next {self.locked_pause_s:g} s are skipped."
            if error.fault == LOCKED
            else ""
        )
        if not counted:
            outcome, count = "read", ""
        elif uncounted is not None:
            outcome, count = "recorded", f" Not counted either: {uncounted.args[0]}."
        else:
            outcome = "recorded"
            count = f' Counted in ost_ledger_errors_total{{reason="{error.fault}"}}.'
        text = str(error)
        log.warning(
            "%s%s; %s is not %s.%s%s", text[:1].upper(), text[1:], what, outcome, skipping, count
        )

    def _count(self, error: LedgerUnavailable) -> LedgerUnavailable | None:
        """Count ``error``; the error that stopped even that, if any (a read-only or full disk)."""
        try:
            self.ledger.note_failure(error)
        except LedgerUnavailable as exc:
            return exc
        return None


class _Malformed(Exception):
    """``PRAGMA quick_check`` found the ledger file damaged."""


#: Fault -> (what the ledger is, what the operator should do); ``{path}``, ``{directory}``.
_FAULT_TEXT: Final = {
    LOCKED: (
        "is locked by another process",
        "find the process that holds it with `fuser {path}`",
    ),
    CORRUPT: ("is corrupt", "the next ingestion moves it aside and starts a new one"),
    READ_ONLY: ("cannot be written", "make {directory} and the files in it writable"),
    FULL: ("is on a full file system", "free space on the file system of {directory}"),
    IO: ("cannot be used", "check {directory} and its disk"),
}
#: SQLite's error names (prefixes) that say the fault themselves.
_SQLITE_FAULTS: Final = (
    (("SQLITE_BUSY", "SQLITE_LOCKED"), LOCKED),
    (("SQLITE_NOTADB", "SQLITE_CORRUPT"), CORRUPT),
    (("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH"), READ_ONLY),
    (("SQLITE_FULL",), FULL),
)
#: The tables of every ledger, whichever version made it (``ladder_state`` is newer).
_LEDGER_TABLES: Final = frozenset({"counters", "gauges", "streams"})


def _error_name(exc: BaseException) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


def _fault_of(exc: BaseException, directory: Path) -> str:
    """Why ``exc`` stopped the ledger, as one of :data:`FAULTS`."""
    if isinstance(exc, filelock.Timeout | Locked):
        return LOCKED
    if isinstance(exc, _Malformed):
        return CORRUPT
    name = _error_name(exc)
    for prefixes, fault in _SQLITE_FAULTS:
        if name.startswith(prefixes):
            return fault
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return FULL
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return READ_ONLY
    # "unable to open database file", "disk I/O error": the file system may say why.
    return _filesystem_fault(directory) or IO


def _cause(exc: BaseException) -> BaseException:
    """What says why a file of the ledger failed: the error behind a backend's StoreError."""
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _filesystem_fault(directory: Path) -> str | None:
    """READ_ONLY or FULL when the file system that holds ``directory`` says so, else None.

    IO when ``directory`` cannot be one (a file stands where it or a parent should be).
    """
    existing = directory
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return IO
    try:
        stats = os.statvfs(existing)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY or not os.access(existing, os.W_OK):
        return READ_ONLY
    if stats.f_bavail == 0:
        return FULL
    return None


def _open_read_only(uri: str) -> sqlite3.Connection | None:
    """A read-only connection to the ledger at ``uri``; None if it holds no tables yet."""
    db = sqlite3.connect(uri, uri=True, timeout=READ_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except BaseException:
        db.close()
        raise
    if not {row[0] for row in rows} >= _LEDGER_TABLES:
        db.close()
        return None
    return db


def _empty_ledger() -> sqlite3.Connection:
    """A ledger in memory, with its tables and no rows: how one not written yet reads."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(_SCHEMA)
    return db


def _read_json(path: Path) -> dict[str, Any]:
    """The errors file's content; empty when it is missing or unreadable (it counts anew)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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
        Stream(row[0], row[1]): StreamState(
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


def _read_ladders(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The ladder's state by scope; a scope kept only in an older ledger's columns too."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ladders: dict[str, dict[str, Any]] = {}
    if "ladder" in tables:  # the older ledger's columns, as the JSON object they meant
        rows = db.execute("SELECT scope, level, outage_since, notified FROM ladder")
        for scope, level, outage_since, notified in rows:
            names = sorted(name for name in notified.split(",") if name)
            ladders[scope] = {"level": level, "outage_since": outage_since, "notified": names}
    if "ladder_state" in tables:
        for scope, state in db.execute("SELECT scope, state FROM ladder_state"):
            ladders[scope] = json.loads(state)
    return ladders

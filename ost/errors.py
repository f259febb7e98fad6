"""Every error that ost-ingest raises on purpose, in one tree.

::

    OstError                       base; ``hint`` says what the operator should do
    ├── BadInput                   a symbol, interval, date or setting is wrong (CLI exit 2)
    ├── BinanceError               Binance did not give us valid candles
    │   ├── BinanceUnavailable     every base URL failed: connection, timeout or 5xx (retried)
    │   ├── BinanceRefused         every base URL refused us: 403 (WAF) or 451 (not retried)
    │   │   └── RestrictedLocation 451 everywhere: data-api.binance.vision is the way out
    │   ├── HostsBanned            every base URL is banned (429/418) past what a run waits
    │   ├── BinanceRejected        a 4xx answer: the request itself is wrong (never retried)
    │   │   └── RateLimited        429 or 418 for a short while: retried after ``retry_after`` s
    │   ├── BadPayload             the body is not klines JSON: truncated, HTML page (retried)
    │   │   └── InvalidCandle      a row is well-formed but impossible (never retried)
    │   └── Incomplete             candles of the range neither sent nor proven absent by Binance
    ├── StoreError                 the candle store cannot be read or written
    │   ├── StoreCorrupt           a stored file does not read as a valid partition
    │   │   └── PartitionCorrupt   one partition file: quarantined and fetched again by ingestion
    │   ├── LedgerUnavailable      the ingestion ledger cannot be read or written (not the candles)
    │   └── Locked                 another process held a lock file past the wait
    │       └── StreamLocked       ... a stream's write lock: only that stream fails
    ├── ArchiveError               a data.binance.vision file is missing or fails its checksum
    └── NotifyError                no apprise target accepted a notification

Each error has a short ``reason``, a bounded label used in metrics and in the ingestion record.
Nothing catches one of these to log it and carry on as if it had worked: a stream that fails
says so, and the caller decides (``ost ingest`` goes on with the other streams, exits 1).
The one exception, by design, is :class:`LedgerUnavailable` while ingestion and backfill record
what they did: :class:`ost.ledger.Bookkeeping` turns it into a warning, a count in
``ost_ledger_errors_total{reason}`` and a line of ``ost status``, because the candles come first.
:class:`PartitionCorrupt` is caught only to heal the store (:meth:`ost.store.CandleStore.healing`):
the file is moved to the quarantine and its range fetched again, or the stream fails.

The exit statuses that errors and reports end in (``EXIT_*``, ``docs/CONTRACT.md``) are here
too, each once, for the commands, the flows and the reports that compute one.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, Final

#: Everything done, nothing wrong.
EXIT_OK: Final = 0
#: A stream, a check or a delivery failed (the others were still done).
EXIT_FAILED: Final = 1
#: A bad argument or setting (:class:`BadInput`), or a usage error: before any request or write.
EXIT_BAD_INPUT: Final = 2
#: ``ost gaps``: every stream was checked, and candles are missing.
EXIT_GAPS: Final = 3
#: Stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED: Final = 130


class OstError(Exception):
    """Base of every error this project raises on purpose."""

    reason: ClassVar[str] = "error"
    hint: ClassVar[str] = "See the runbook, docs/runbooks/binance-caido.md."

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message} ({self.hint})" if self.hint else message


class BadInput(OstError, ValueError):
    """A command-line argument or setting is invalid; nothing was requested or written."""

    reason = "bad_input"
    hint = "Fix the value and run the command again."


class BinanceError(OstError):
    """Binance did not give us valid candles."""

    reason = "binance"


class BinanceUnavailable(BinanceError):
    """No base URL answered usefully: connection failures, timeouts or 5xx answers."""

    reason = "unavailable"
    hint = (
        "Binance or the network is down: check `ost ping`; the store keeps serving the last "
        "valid data, and the next scheduled run fills the gap."
    )


class BinanceRefused(BinanceError):
    """Every base URL refused this client itself: 403 (Binance's WAF) or 451 (its location).

    A refusal is about one host or one location, not the request: each base URL is tried in
    turn, and this is raised only when all of them refuse (or are banned, see
    :class:`HostsBanned`). It is not retried within the run: the next run tries again.
    """

    reason = "refused"
    hint = (
        "Binance's WAF refused this IP (HTTP 403), often for too many requests: wait a few "
        "minutes, lower the load, and check `ost ping`."
    )


class RestrictedLocation(BinanceRefused):
    """Every base URL answered 451: Binance serves no API to this client's location."""

    reason = "restricted_location"
    hint = (
        "Binance refuses this location (HTTP 451, what api.binance.com answers from several "
        "countries and cloud regions): https://data-api.binance.vision, Binance's "
        "market-data-only host, serves the same klines; put it in OST_BINANCE_BASE_URLS."
    )


class HostsBanned(BinanceError):
    """Every base URL is rate-limited or banned (429/418) for longer than a run waits.

    Each such host was marked "not before T" (in the ledger), so no run calls it before T, and
    knocking never extends its ban; the next run after T calls it again.
    """

    reason = "banned"
    hint = (
        "Binance banned this IP for too many requests: nothing is sent to a banned host before "
        "its ban ends (`ost status` shows when); the next run after that catches up."
    )


class BinanceRejected(BinanceError):
    """Binance answered 4xx: the request itself is wrong, so retrying cannot help."""

    reason = "rejected"
    hint = "Check the symbol and interval (`ost ping` shows the base URLs in use)."

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(BinanceRejected):
    """Binance answered 429 (over the weight budget) or 418 (IP banned after ignoring 429s).

    Raised for a ``Retry-After`` short enough to be waited out within the run (at most
    :data:`ost.pacing.MAX_WAIT_IN_RUN_S`); a longer one bans the host (:class:`HostsBanned`).
    """

    reason = "rate_limited"
    hint = "Too many requests from this IP: lower concurrency or wait for Retry-After."

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Incomplete(BinanceError):
    """Binance answered, but candles of the range are neither stored nor proven exchange-side.

    Raised (by a flow's task) for a stream left ``incomplete``: the message says how many
    candles are still missing, where, and why. Nothing of it was written off as an exchange gap.
    """

    reason = "incomplete"
    hint = (
        "Nothing was written off as exchange-side: once Binance answers again, "
        "`ost gaps --repair` for the range fills it."
    )

    @classmethod
    def of_stream(cls, symbol: str, interval: str, missing: str) -> Incomplete:
        """``SYMBOL INTERVAL: incomplete, MISSING``: MISSING says how many, where and why."""
        return cls(f"{symbol} {interval}: incomplete, {missing}")


class BadPayload(BinanceError):
    """The answer could not be parsed as klines: truncated JSON, an HTML page, wrong shape."""

    reason = "bad_payload"
    hint = "A proxy or Binance returned garbage; it is retried, and nothing of it was stored."


class InvalidCandle(BadPayload):
    """A kline row is well-formed but impossible (high below open, misaligned time, ...)."""

    reason = "invalid_candle"
    hint = "Nothing of this batch was stored; report it if it persists across runs."


class StoreError(OstError):
    """The candle store could not be read or written."""

    reason = "store"
    hint = "Check OST_DATA_DIR: free space, permissions, and that the path or URL is right."


class StoreCorrupt(StoreError):
    """A stored Parquet file does not read back as a valid partition."""

    reason = "store_corrupt"
    hint = (
        "Move the named file aside: what it held is fetched again from Binance"
        " (`ost verify --repair` does it for a partition file)."
    )


class PartitionCorrupt(StoreCorrupt):
    """One partition file cannot be read, has another schema, or holds rows it cannot hold.

    It names the partition (``symbol``, ``interval``, ``period``, ``path``), so that ingestion
    and backfill can quarantine it (:meth:`ost.store.CandleStore.quarantine`) and fetch its range
    again in the same run; ``problem`` is what is wrong with it, without the hint.
    """

    hint = (
        "Run `ost verify --repair`: it moves the file to $OST_DATA_DIR/quarantine/ and fetches"
        " its range again (ingestion and backfill do it themselves when they meet it)."
    )

    def __init__(
        self, problem: str, *, symbol: str, interval: str, period: dt.date, path: str
    ) -> None:
        super().__init__(f"{path}: {problem}")
        self.problem = problem
        self.symbol = symbol
        self.interval = interval
        self.period = period
        self.path = path


class LedgerUnavailable(StoreError):
    """The ingestion ledger (``state/ledger.sqlite3``) cannot be read or written.

    ``fault`` says why, as a bounded label: ``locked`` (another process holds its write lock
    past the busy timeout), ``corrupt``, ``read_only``, ``full`` or ``io``. Ingestion and
    backfill store their candles all the same (see :class:`ost.ledger.Bookkeeping`).
    """

    reason = "ledger"
    hint = (
        "The candles are stored all the same; only the record that the metrics, the watchdog"
        " and `ost status` read is missing."
    )

    def __init__(self, message: str, *, fault: str) -> None:
        super().__init__(message)
        self.fault = fault


class Locked(StoreError):
    """Another process held a lock file for longer than a writer waits (see :mod:`ost.backend`).

    The message names the lock file and the PID written in it.
    """

    reason = "locked"
    hint = "Another process holds the lock (its PID is above): if it is stuck, stop it."
    #: Who gives up when the wait runs out, and what that costs, as the messages say it.
    waiter: ClassVar[str] = "this writer"
    outcome: ClassVar[str] = "the file it guards was not changed"


class StreamLocked(Locked):
    """Another process held a stream's write lock for longer than a writer waits.

    Only that stream fails; the message names the lock file and the PID written in it.
    """

    reason = "stream_locked"
    waiter = "this stream"
    outcome = "this stream is not written in this run"
    hint = (
        "Another process is writing this stream (its PID is above): if it is stuck, stop it; "
        "the next run catches up. The other streams were not affected."
    )


class ArchiveError(OstError):
    """A data.binance.vision archive file is missing or does not match its checksum."""

    reason = "archive"
    hint = "That day is taken from the API instead; nothing of the file was stored."


class NotifyError(OstError):
    """No apprise target accepted a notification."""

    reason = "notify"
    hint = "Check OST_APPRISE_URLS / OST_APPRISE_CONFIG with `ost notify-test`."

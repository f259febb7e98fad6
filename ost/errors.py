"""Every error that ost-ingest raises on purpose, in one tree.

::

    OstError                       base; ``hint`` says what the operator should do
    ├── BadInput                   a symbol, interval, date or setting is wrong (CLI exit 2)
    ├── BinanceError               Binance did not give us valid candles
    │   ├── BinanceUnavailable     every base URL failed: connection, timeout or 5xx (retried)
    │   ├── BinanceRejected        a 4xx answer: the request itself is wrong (never retried)
    │   │   └── RateLimited        429 or 418: wait ``retry_after`` seconds (retried after it)
    │   └── BadPayload             the body is not klines JSON: truncated, HTML page (retried)
    │       └── InvalidCandle      a row is well-formed but impossible (never retried)
    ├── StoreError                 the candle store cannot be read or written
    │   └── StoreCorrupt           a stored file does not read as a valid partition
    ├── ArchiveError               a data.binance.vision file is missing or fails its checksum
    └── NotifyError                no apprise target accepted a notification

Each error has a short ``reason``, a bounded label used in metrics and in the ingestion record.
Nothing catches one of these to log it and carry on as if it had worked: a stream that fails
says so, and the caller decides (``ost ingest`` goes on with the other streams, exits 1).
"""

from __future__ import annotations

from typing import ClassVar


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


class BinanceRejected(BinanceError):
    """Binance answered 4xx: the request itself is wrong, so retrying cannot help."""

    reason = "rejected"
    hint = "Check the symbol and interval (`ost ping` shows the base URLs in use)."

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(BinanceRejected):
    """Binance answered 429 (over the weight budget) or 418 (IP banned after ignoring 429s)."""

    reason = "rate_limited"
    hint = "Too many requests from this IP: lower concurrency or wait for Retry-After."

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


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
    hint = "Move the named file aside and run `ost backfill` for its range."


class ArchiveError(OstError):
    """A data.binance.vision archive file is missing or does not match its checksum."""

    reason = "archive"
    hint = "That day is taken from the API instead; nothing of the file was stored."


class NotifyError(OstError):
    """No apprise target accepted a notification."""

    reason = "notify"
    hint = "Check OST_APPRISE_URLS / OST_APPRISE_CONFIG with `ost notify-test`."

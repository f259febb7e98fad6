"""The Binance REST client: one retry layer, host failover, weight pacing, strict parsing.

- Every request has ``OST_HTTP_TIMEOUT_S`` and up to ``OST_MAX_ATTEMPTS`` attempts, retried by
  stamina with exponential backoff and jitter. :func:`retry_hook` decides: transport errors, 5xx
  and garbled bodies are retried, a 4xx never, and a 429/418 after exactly its ``Retry-After``.
- An attempt walks ``OST_BINANCE_BASE_URLS`` from the host that last worked, moving on at a
  connection failure or a 5xx, and remembers the host that answers. A timeout ends the attempt
  (the next one starts at the next host), so one slow host costs one timeout, not one per host.
- Every request first reserves its weight with :class:`~ost.pacing.WeightPacer`.
- "Closed" is judged by Binance's clock (``/api/v3/time``, offset cached), not the local one.

The transport is injectable (``httpx.Client(transport=...)``) and nothing here imports prefect.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
import pandas as pd
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from ost import intervals, klines
from ost.errors import (
    BadPayload,
    BinanceRejected,
    BinanceUnavailable,
    InvalidCandle,
    RateLimited,
)
from ost.klines import Columns
from ost.pacing import WeightPacer
from ost.settings import Settings

PAGE_LIMIT: Final = 1000
WEIGHT: Final[dict[str, int]] = {
    "/api/v3/klines": 2,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
}
_WINDOW_MS: Final = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
USER_AGENT: Final = "ost-ingest/0.1"


def retry_hook(exc: Exception) -> bool | float:
    """Stamina's ``on=``: seconds to wait for 429/418, True for transient errors, else False."""
    if isinstance(exc, RateLimited):
        return exc.retry_after
    if isinstance(exc, InvalidCandle | BinanceRejected):
        return False
    return isinstance(exc, BinanceUnavailable | BadPayload)


RETRY_LOG: Final = logging.getLogger("ost.retry")


def log_retry(details: RetryDetails) -> None:
    """One readable line per scheduled retry: when, which retry, and why.

    stamina's own logging hook puts everything in ``extra`` and logs the bare event name
    ``stamina.retry_scheduled``, which is all a plain handler (or none) shows.
    """
    cause = details.caused_by
    RETRY_LOG.warning(
        "retry %d in %.1f s after %s: %s",
        details.retry_num,
        details.wait_for,
        type(cause).__name__,
        cause,
    )


set_on_retry_hooks([log_retry])


def attempts(
    on: Callable[[Exception], bool | float], max_attempts: int
) -> Iterable[stamina.Attempt]:
    """The project's one retry policy: exponential backoff with jitter, bounded by attempts.

    Backoff starts at 0.5 s and is capped at 10 s, plus up to 1 s of jitter; ``on`` decides what
    is retried (and may return the seconds to wait, as for ``Retry-After``).
    """
    return stamina.retry_context(
        on=on,
        attempts=max_attempts,
        timeout=None,
        wait_initial=0.5,
        wait_max=10.0,
        wait_jitter=1.0,
    )


@dataclass
class RequestLog:
    """What the client saw: answers per (base URL, status), and Binance's last weight count."""

    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    used_weight: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, base_url: str, status: str) -> None:
        """Count one answer (or ``"error"`` for a transport failure) from ``base_url``.

        Requests of a backfill run in several threads, and ``+=`` on a Counter is not atomic.
        """
        with self._lock:
            self.answers[(base_url, status)] += 1


@dataclass(frozen=True)
class Pong:
    """How one base URL answered ``ost ping``."""

    base_url: str
    ok: bool
    latency_ms: float | None
    skew_ms: int | None
    used_weight: int | None
    error: str | None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context httpx builds by default (certifi's CAs), built once per process.

    Building one reads the CA bundle, about 16 ms; every client (one per flow task) would
    otherwise pay that. An SSLContext is safe to share between clients and threads.
    """
    return httpx.create_ssl_context()


class BinanceClient:
    """Klines from Binance over ``base_urls``, resilient to the faults of a real network."""

    def __init__(
        self,
        base_urls: list[str],
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        transport: httpx.BaseTransport | None = None,
        pacer: WeightPacer | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.max_attempts = max_attempts
        self.log = RequestLog()
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
            verify=tls_context(),
        )
        self._preferred = 0
        self._offset_ms: int | None = None
        self._limits_known = False
        self.pacer = pacer or WeightPacer(server_now_ms=self.server_now_ms)

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.BaseTransport | None = None
    ) -> BinanceClient:
        """A client configured by ``OST_BINANCE_BASE_URLS``, timeout and attempts."""
        return cls(
            settings.binance_base_urls,
            timeout_s=settings.http_timeout_s,
            max_attempts=settings.max_attempts,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """The base URL that answered last (the one the next request tries first)."""
        return self.base_urls[self._preferred]

    # ---- time ---------------------------------------------------------------------------------

    @property
    def server_offset_ms(self) -> int | None:
        """Binance's clock minus ours, once :meth:`sync_time` has measured it."""
        return self._offset_ms

    def server_now_ms(self) -> int:
        """Binance's clock: the local clock plus the offset measured by ``/api/v3/time``."""
        return int(time.time() * 1000) + (self._offset_ms or 0)

    def sync_time(self) -> int:
        """Measure and cache the offset of Binance's clock from ours, in milliseconds."""
        sent = time.time() * 1000
        body = self._get_json("/api/v3/time", {})
        received = time.time() * 1000
        server_time = body.get("serverTime") if isinstance(body, dict) else None
        if type(server_time) is not int:
            raise BadPayload(f"/api/v3/time answered {body!r:.80} without an integer serverTime")
        self._offset_ms = int(server_time - (sent + received) / 2)
        return self._offset_ms

    # ---- klines -------------------------------------------------------------------------------

    def klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int = PAGE_LIMIT
    ) -> pd.DataFrame:
        """One page: up to ``limit`` candles opening in ``[start_ms, end_ms)``, parsed strictly."""
        return klines.frame_from_columns(
            self.kline_columns(symbol, interval, start_ms, end_ms, limit)
        )

    def kline_columns(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, limit: int = PAGE_LIMIT
    ) -> Columns:
        """Like :meth:`klines`, as numpy columns (what a backfill buffers until it writes)."""
        intervals.check_symbol(symbol)
        intervals.check_interval(interval)
        self._learn_rate_limits()
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": start_ms,
            "endTime": end_ms - 1,
            "limit": limit,
        }
        for attempt in self._attempts():
            with attempt:
                return klines.parse_columns(self._get_json_once("/api/v3/klines", params), interval)
        raise AssertionError("unreachable: stamina raises after the last attempt")

    def closed_klines(
        self, symbol: str, interval: str, start_ms: int, end_ms: int | None = None
    ) -> Iterator[pd.DataFrame]:
        """Every closed candle from ``start_ms`` to ``end_ms`` (default: now), page by page.

        A candle is closed when its interval has ended by Binance's clock. Pages are yielded as
        they arrive, so a caller can store each before asking for the next.
        """
        if self._offset_ms is None:
            self.sync_time()
        now = self.server_now_ms()
        end = min(end_ms if end_ms is not None else now, intervals.align(interval, now))
        cursor = start_ms
        while cursor < end:
            page = self.klines(symbol, interval, cursor, end)
            if page.empty:
                return
            page = page[klines.open_time_ms(page) < end].reset_index(drop=True)
            if not page.empty:
                yield page
            last = int(klines.open_time_ms(page)[-1]) if not page.empty else end
            cursor = intervals.next_open(interval, last)
            if len(page) < PAGE_LIMIT:
                return

    # ---- diagnostics --------------------------------------------------------------------------

    def ping_all(self) -> list[Pong]:
        """Ask every base URL for ``/api/v3/time`` once: reachable, latency, skew, used weight."""
        return [self._ping(base_url) for base_url in self.base_urls]

    def _ping(self, base_url: str) -> Pong:
        sent = time.time()
        try:
            response = self._http.get(base_url + "/api/v3/time")
            response.raise_for_status()
            server_time = int(response.json()["serverTime"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return Pong(base_url, False, None, None, None, _describe(exc))
        received = time.time()
        return Pong(
            base_url,
            True,
            round((received - sent) * 1000, 1),
            int(server_time - (sent + received) * 500),
            _used_weight(response),
            None,
        )

    # ---- requests -----------------------------------------------------------------------------

    def _attempts(self) -> Iterable[stamina.Attempt]:
        return attempts(retry_hook, self.max_attempts)

    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        for attempt in self._attempts():
            with attempt:
                return self._get_json_once(path, params)
        raise AssertionError("unreachable: stamina raises after the last attempt")

    def _get_json_once(self, path: str, params: dict[str, Any]) -> Any:
        response = self._send(path, params)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "unknown content type")
            raise BadPayload(
                f"{response.url.host} answered {path} with a body that is not JSON ({kind}, "
                f"{len(response.content)} bytes)"
            ) from None

    def _send(self, path: str, params: dict[str, Any]) -> httpx.Response:
        """One attempt: walk the base URLs from the preferred one until one answers below 500."""
        self.pacer.acquire(WEIGHT.get(path, 1))
        failures: list[str] = []
        count = len(self.base_urls)
        for step in range(count):
            index = (self._preferred + step) % count
            base_url = self.base_urls[index]
            sent_at = self.server_now_ms()
            try:
                response = self._http.get(base_url + path, params=params)
            except httpx.TimeoutException as exc:
                self.log.count(base_url, "timeout")
                self._preferred = (index + 1) % count
                raise BinanceUnavailable(f"{base_url}{path} timed out: {_describe(exc)}") from exc
            except httpx.TransportError as exc:
                self.log.count(base_url, "error")
                failures.append(f"{base_url}: {_describe(exc)}")
                continue
            self.log.count(base_url, str(response.status_code))
            self._observe_weight(response, sent_at)
            if response.status_code >= 500:
                failures.append(f"{base_url}: HTTP {response.status_code}")
                continue
            self._preferred = index
            _raise_for_4xx(response)
            return response
        raise BinanceUnavailable(f"no base URL answered {path}: " + "; ".join(failures))

    def _observe_weight(self, response: httpx.Response, sent_at_ms: int) -> None:
        used = _used_weight(response)
        if used is not None:
            self.log.used_weight = used
            self.pacer.observe(used, sent_at_ms)
        if response.status_code in (418, 429):
            self.pacer.exhaust()

    def _learn_rate_limits(self) -> None:
        """Adopt the REQUEST_WEIGHT limit of exchangeInfo once per client."""
        if self._limits_known:
            return
        self._limits_known = True
        body = self._get_json("/api/v3/exchangeInfo", {})
        for limit in body.get("rateLimits", []) if isinstance(body, dict) else []:
            kind, unit = limit.get("rateLimitType"), limit.get("interval")
            if kind == "REQUEST_WEIGHT" and unit in _WINDOW_MS:
                window = _WINDOW_MS[limit["interval"]] * int(limit.get("intervalNum", 1))
                self.pacer.configure(limit=int(limit["limit"]), window_ms=window)
                return


def _raise_for_4xx(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    code, message = _binance_error(response)
    where = f"{response.request.url.path} on {response.url.host}"
    if status in (418, 429):
        retry_after = float(response.headers.get("Retry-After", "60"))
        raise RateLimited(
            f"HTTP {status} from {where}: {message}; retry after {retry_after:g}s",
            status=status,
            retry_after=retry_after,
        )
    raise BinanceRejected(f"HTTP {status} from {where}: {message}", status=status, code=code)


def _binance_error(response: httpx.Response) -> tuple[int | None, str]:
    """Binance's ``{"code": -1121, "msg": "Invalid symbol."}``, or the body's first characters."""
    try:
        body = response.json()
        return int(body["code"]), f"{body['msg']} (code {body['code']})"
    except (ValueError, KeyError, TypeError):
        return None, response.text[:120]


def _used_weight(response: httpx.Response) -> int | None:
    value = response.headers.get("X-MBX-USED-WEIGHT-1M")
    return int(value) if value and value.isdigit() else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

"""The Binance REST client: one retry layer, host failover, weight pacing, strict parsing.

- Every request has ``OST_HTTP_TIMEOUT_S`` and up to ``OST_MAX_ATTEMPTS`` attempts, retried by
  the project's one retry helper (:func:`ost.retry.retrying`: stamina, exponential backoff and
  jitter). :func:`ost.retry.retry_hook` decides: transport errors, 5xx and garbled bodies are
  retried, a 4xx never, and a 429/418 after exactly its ``Retry-After`` when that is at most
  :data:`~ost.pacing.MAX_WAIT_IN_RUN_S`.
- ``OST_HTTP_TIMEOUT_S`` bounds each request as a whole, connect, headers and body
  (:mod:`ost.transport`): a body that trickles in is cut at the timeout.
- An attempt walks ``OST_BINANCE_BASE_URLS`` from the host that last worked, moving on at a
  connection failure, a 5xx, a host's refusal (403 from Binance's WAF, 451 for a restricted
  location) or a ban, and remembers the host that answers. A timeout ends the attempt (the next
  one starts at the next host), so one slow host costs one timeout, not one per host. When every
  host refuses, one error says so (:class:`~ost.errors.BinanceRefused`; for 451
  :class:`~ost.errors.RestrictedLocation`, which names data-api.binance.vision).
- A 429 or 418 whose ``Retry-After`` is longer than a run waits is a ban: the host is called no
  more before its end (:class:`~ost.pacing.HostBans`, kept in the ledger for the next runs by
  :class:`~ost.runtime.Runtime`), so a ban is never extended by knocking on it.
- Base URLs are named by their label, ``scheme://host[:port]`` (:mod:`ost.urls`), in every
  message, count and record; credentials in one are sent as basic auth, never shown.
- Every request first reserves its weight with :class:`~ost.pacing.WeightPacer`.
- "Closed" is judged by the earlier of the local clock and Binance's (``/api/v3/time``, offset
  cached): :meth:`BinanceClient.now_ms`, and :mod:`ost.clock` for what it means. The local clock
  is injectable too (``clock=``), so a clock that runs ahead needs no patching of ``time``.
- A klines page comes with who answered what (:class:`KlinePage`: host and request), which is
  an exchange-side gap's evidence; :meth:`BinanceClient.closed_klines` reads on after a short
  page until its end (:mod:`ost.paging`), never taking a short or empty page for the end.

The transport is injectable (``httpx.Client(transport=...)``) and nothing here imports prefect.
"""

from __future__ import annotations

import datetime as dt
import functools
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx
import orjson
import pandas as pd

from ost import kline_body, klines
from ost.clock import (
    ClockReading,
    LocalClock,
    closed_mask,
    closed_stop,
    earlier_now,
    system_ms,
)
from ost.errors import (
    BadPayload,
    BinanceError,
    BinanceRefused,
    BinanceRejected,
    BinanceUnavailable,
    HostsBanned,
    RateLimited,
    RestrictedLocation,
)
from ost.intervals import Interval, Symbol
from ost.klines import Columns
from ost.pacing import MAX_WAIT_IN_RUN_S, HostBans, WeightPacer
from ost.retry import RATE_LIMITS, RETRY_LOG, rate_limit_wait, retrying
from ost.timefmt import terminal_time
from ost.transport import deadline_transport, request_deadline
from ost.urls import host_of, split_credentials, url_label

if TYPE_CHECKING:
    from ost.paging import Findings
from ost.settings import Settings

PAGE_LIMIT: Final = 1000
KLINES_PATH: Final = "/api/v3/klines"
EXCHANGE_INFO_PATH: Final = "/api/v3/exchangeInfo"
WEIGHT: Final[dict[str, int]] = {
    KLINES_PATH: 2,
    EXCHANGE_INFO_PATH: 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
}
_WINDOW_MS: Final = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
USER_AGENT: Final = "ost-ingest/0.1"
#: Answers by which a host refuses this client itself, not the request: the next one is tried.
REFUSALS: Final = {403: "refused by Binance's WAF", 451: "restricted location"}


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

    def drain(self) -> Counter[tuple[str, str]]:
        """Take every count made so far out of the log, under the lock that :meth:`count` takes.

        Iterating ``answers`` and subtracting from it later, without the lock, races with the
        threads that count: a new key breaks the iteration, and a count made in between is lost.
        """
        with self._lock:
            taken = +self.answers  # a copy of the positive counts
            self.answers.clear()
        return taken

    def give_back(self, taken: Counter[tuple[str, str]]) -> None:
        """Put counts taken by :meth:`drain` back (they could not be recorded), under the lock."""
        with self._lock:
            self.answers.update(taken)


@dataclass(frozen=True)
class Endpoint:
    """One configured base URL as the client uses it."""

    #: The base URL without its user and password: what httpx is given.
    url: str
    #: How it is named everywhere: ``scheme://host[:port]`` (:func:`ost.urls.url_label`).
    label: str
    #: Its host and port, as a ban names it.
    host: str
    #: Its credentials, sent as basic auth (None: none in the URL).
    auth: httpx.BasicAuth | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        """The endpoint of a configured base URL (credentials taken apart)."""
        bare, credentials = split_credentials(base_url.rstrip("/"))
        auth = None if credentials is None else httpx.BasicAuth(*credentials)
        return cls(bare, url_label(bare), host_of(bare), auth)


@dataclass(frozen=True)
class _Failure:
    """Why one base URL gave no answer in one walk, for the error that ends the walk."""

    label: str
    #: ``transient`` (retried), ``refused`` (403/451) or ``banned``.
    kind: str
    why: str
    status: int | None = None


TRANSIENT: Final = "transient"
REFUSED: Final = "refused"
BANNED: Final = "banned"


@dataclass(frozen=True)
class KlinePage:
    """One ``/api/v3/klines`` answer: its candles, who answered, and what was asked."""

    columns: Columns
    #: The label of the base URL that answered (``scheme://host[:port]``), and the request's
    #: path and query (``base_url + request`` asks it again, credentials aside).
    base_url: str
    request: str
    #: Binance's clock when the answer arrived.
    answered_at_ms: int


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
        clock: LocalClock = system_ms,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one base URL is needed")
        self.endpoints = [Endpoint.of(url) for url in base_urls]
        #: The base URLs by their labels (no credentials): what every message names.
        self.base_urls = [endpoint.label for endpoint in self.endpoints]
        self.max_attempts = max_attempts
        #: Every request's retries (:func:`ost.retry.retrying`, the HTTP policy).
        self._retry = retrying(max_attempts)
        self.timeout_s = timeout_s
        self.log = RequestLog()
        #: Unless another is injected, httpx's own transport, bounded by a deadline per request.
        self._transport = transport or deadline_transport(verify=tls_context())
        self._http = httpx.Client(
            transport=self._transport,
            timeout=timeout_s,
            headers={"User-Agent": USER_AGENT},
            verify=tls_context(),
        )
        self._preferred = 0
        self._offset_ms: int | None = None
        #: The local clock (epoch ms); Binance's is this plus the offset :meth:`sync_time` measures.
        self.local_ms = clock
        #: The last measure of Binance's clock (host and offset), once :meth:`sync_time` ran.
        self.clock_reading: ClockReading | None = None
        self._limits_known = False
        self.pacer = pacer or WeightPacer(server_now_ms=self.server_now_ms)
        #: Hosts not to call before a time (long Retry-After); the runtime loads and records them.
        self.bans = HostBans(clock_ms=clock)

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
    def http(self) -> httpx.Client:
        """The HTTP client it sends through (its pool, timeout, user agent), to share.

        The backfill reads the archive through it, so one connection pool serves both.
        """
        return self._http

    @property
    def base_url(self) -> str:
        """The label of the base URL that answered last (the one the next request tries first)."""
        return self.base_urls[self._preferred]

    # ---- time ---------------------------------------------------------------------------------

    @property
    def server_offset_ms(self) -> int | None:
        """Binance's clock minus ours, once :meth:`sync_time` has measured it."""
        return self._offset_ms

    def server_now_ms(self) -> int:
        """Binance's clock: the local clock plus the offset measured by ``/api/v3/time``.

        What the weight windows are counted by; never what decides "closed" (:meth:`now_ms`).
        """
        return self.local_ms() + (self._offset_ms or 0)

    def now_ms(self) -> int:
        """The "now" of every decision about closed candles: the earlier of the two clocks.

        Measures Binance's clock first if this client has not yet (one ``/api/v3/time``).
        """
        if self._offset_ms is None:
            self.sync_time()
        return earlier_now(self.local_ms(), self._offset_ms)

    def sync_time(self) -> int:
        """Measure and cache the offset of Binance's clock from ours, in milliseconds."""
        sent = self.local_ms()
        body = self._get_json("/api/v3/time", {})
        received = self.local_ms()
        server_time = body.get("serverTime") if isinstance(body, dict) else None
        if type(server_time) is not int:
            raise BadPayload(f"/api/v3/time answered {body!r:.80} without an integer serverTime")
        self._offset_ms = server_time - (sent + received) // 2
        # _get_json leaves the host that answered preferred.
        self.clock_reading = ClockReading(host_of(self.base_url), self._offset_ms)
        return self._offset_ms

    # ---- klines -------------------------------------------------------------------------------

    def klines(
        self,
        symbol: Symbol,
        interval: Interval,
        start_ms: int,
        end_ms: int,
        limit: int = PAGE_LIMIT,
    ) -> pd.DataFrame:
        """One page: up to ``limit`` candles opening in ``[start_ms, end_ms)``, parsed strictly."""
        return klines.frame_from_columns(
            self.kline_columns(symbol, interval, start_ms, end_ms, limit)
        )

    def kline_columns(
        self,
        symbol: Symbol,
        interval: Interval,
        start_ms: int,
        end_ms: int,
        limit: int = PAGE_LIMIT,
    ) -> Columns:
        """Like :meth:`klines`, as numpy columns (what a backfill buffers until it writes)."""
        return self.kline_page(symbol, interval, start_ms, end_ms, limit).columns

    def kline_page(
        self,
        symbol: Symbol,
        interval: Interval,
        start_ms: int,
        end_ms: int | None,
        limit: int = PAGE_LIMIT,
    ) -> KlinePage:
        """One page: up to ``limit`` candles from ``start_ms``, and who answered what.

        The candles open in ``[start_ms, end_ms)``; with ``end_ms`` None the request has no
        ``endTime``, and the answer holds the next candles wherever they are (even the one still
        open). The host and the request are what an exchange-side gap's evidence names.
        """
        self._learn_rate_limits()
        params: dict[str, Any] = {"symbol": symbol, "interval": interval, "startTime": start_ms}
        if end_ms is not None:
            params["endTime"] = end_ms - 1
        params["limit"] = limit
        return self._retry(self._kline_page_once, params, interval)

    def _kline_page_once(self, params: dict[str, Any], interval: str) -> KlinePage:
        """One attempt at a klines page (:meth:`kline_page`)."""
        response = self._send(KLINES_PATH, params)
        columns = _kline_columns(response, interval)
        return KlinePage(
            columns,
            base_url=url_label(str(response.request.url)),
            request=response.request.url.raw_path.decode("ascii"),
            answered_at_ms=self.server_now_ms(),
        )

    def closed_klines(
        self,
        symbol: Symbol,
        interval: Interval,
        start_ms: int,
        end_ms: int | None = None,
        *,
        findings: Findings | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Every closed candle from ``start_ms`` to ``end_ms`` (default: now), page by page.

        A candle is closed by its own ``close_time`` and the earlier of the two clocks
        (:func:`ost.clock.closed_mask`), wherever it is in its page. Pages are yielded as they
        arrive, so a caller can store each before asking for the next. A short page is not the
        end: reading goes on to the end (:func:`ost.paging.read_range`), and what the answers
        proved about holes, or left unanswered, is added to ``findings``.
        """
        from ost.paging import Findings, read_range  # noqa: PLC0415  # ost ping needs no store

        now = self.now_ms()
        end = min(end_ms if end_ms is not None else now, closed_stop(interval, now))
        seen = findings if findings is not None else Findings()
        for step in read_range(self, symbol, interval, start_ms, end):
            seen.add(step)
            page = klines.frame_from_columns(step.columns)
            opens = klines.open_time_ms(page)
            keep = closed_mask(interval, opens, klines.close_time_ms(page), now) & (opens < end)
            page = page[keep].reset_index(drop=True)
            if not page.empty:
                yield page

    # ---- diagnostics --------------------------------------------------------------------------

    def ping_all(self) -> list[Pong]:
        """Ask every base URL for ``/api/v3/time`` once: reachable, latency, skew, used weight.

        A banned host is not asked (that would extend its ban); a long 429/418 bans one.
        """
        return [self._ping(endpoint) for endpoint in self.endpoints]

    def _ping(self, endpoint: Endpoint) -> Pong:
        label = endpoint.label
        if (until := self.bans.until(endpoint.host)) is not None:
            return Pong(label, False, None, None, None, f"{_banned(until)}: not asked")
        started = time.perf_counter()
        sent = self.local_ms()
        try:
            response = self._get(endpoint, "/api/v3/time", {})
            if response.status_code in RATE_LIMITS:
                wait = self._retry_after(response)
                if wait > MAX_WAIT_IN_RUN_S:
                    self._ban(endpoint, response, wait)
            if response.status_code >= 400:
                return Pong(label, False, None, None, _used_weight(response), _status(response))
            server_time = int(response.json()["serverTime"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return Pong(label, False, None, None, None, _describe(exc))
        received = self.local_ms()
        return Pong(
            label,
            True,
            round((time.perf_counter() - started) * 1000, 1),
            server_time - (sent + received) // 2,
            _used_weight(response),
            None,
        )

    # ---- requests -----------------------------------------------------------------------------

    def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        return self._retry(self._get_json_once, path, params)

    def _get_json_once(self, path: str, params: dict[str, Any]) -> Any:
        return _json_of(self._send(path, params), path)

    def _get(self, endpoint: Endpoint, path: str, params: dict[str, Any]) -> httpx.Response:
        """One GET of ``path`` from ``endpoint``, bounded as a whole by ``OST_HTTP_TIMEOUT_S``.

        The client builds the request (its headers, its timeout, the endpoint's basic auth) and
        its transport sends it: the client's per-request cookie, redirect and hook machinery,
        of which Binance's API needs none (no cookies, no redirects followed), cost a quarter
        of a klines request's CPU (``benchmarks/cpu_per_page.py``). The query is encoded by the
        standard library and given in the URL: httpx's merge of a ``params`` dict into the URL
        cost as much as the rest of building the request. The body is read whole.
        """
        query = urllib.parse.urlencode(params)
        url = f"{endpoint.url}{path}?{query}" if query else endpoint.url + path
        request = self._http.build_request("GET", url)
        if endpoint.auth is not None:
            request = next(endpoint.auth.sync_auth_flow(request))
        with request_deadline(self.timeout_s):
            response = self._transport.handle_request(request)
            response.request = request
            try:
                response.read()  # closes the stream: the connection goes back to the pool
            except BaseException:
                response.close()
                raise
        return response

    def _send(self, path: str, params: dict[str, Any]) -> httpx.Response:
        """One attempt: walk the base URLs from the preferred one until one answers.

        A connection failure, a 5xx, a refusal (403, 451) or a ban (a host banned before, or a
        429/418 asking for longer than :data:`MAX_WAIT_IN_RUN_S`) moves on to the next base URL;
        a banned host is not called. A timeout ends the attempt.
        """
        self.pacer.acquire(WEIGHT.get(path, 1))
        failures: list[_Failure] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            label = endpoint.label
            if (until := self.bans.until(endpoint.host)) is not None:
                failures.append(_Failure(label, BANNED, f"{_banned(until)} (not called)"))
                continue
            sent_at = self.server_now_ms()
            try:
                response = self._get(endpoint, path, params)
            except httpx.TimeoutException as exc:
                self.log.count(label, "timeout")
                self._preferred = (index + 1) % count
                raise BinanceUnavailable(
                    f"{label}{path} timed out: no whole answer within OST_HTTP_TIMEOUT_S="
                    f"{self.timeout_s:g} s ({_describe(exc)})"
                ) from exc
            except httpx.TransportError as exc:
                self.log.count(label, "error")
                failures.append(_Failure(label, TRANSIENT, _describe(exc)))
                continue
            status = response.status_code
            self.log.count(label, str(status))
            self._observe_weight(response, sent_at)
            if status >= 500:
                failures.append(_Failure(label, TRANSIENT, f"HTTP {status}"))
                continue
            if status in REFUSALS:
                failures.append(_Failure(label, REFUSED, _status(response), status))
                continue
            if status in RATE_LIMITS:
                wait = self._retry_after(response)
                if wait > MAX_WAIT_IN_RUN_S:  # a ban: never slept in the run
                    until = self._ban(endpoint, response, wait)
                    why = f"{_status(response)}, Retry-After {_retry_after_header(response)}"
                    failures.append(_Failure(label, BANNED, f"{why}: {_banned(until)}", status))
                    continue
                self._preferred = index
                self.pacer.exhaust()  # Binance says the window is spent
                raise _rate_limited(response, label, wait)
            self._preferred = index
            _raise_for_4xx(response, label)
            return response
        raise _none_answered(path, failures)

    def _retry_after(self, response: httpx.Response) -> float:
        """What a 429/418 asks to rest, by Binance's clock (:func:`ost.retry.rate_limit_wait`).

        A 429 without a usable value rests until this client's weight window turns over.
        """
        binance_now = dt.datetime.fromtimestamp(self.server_now_ms() / 1000, tz=dt.UTC)
        window_rest = self.pacer.seconds_to_turnover()
        return rate_limit_wait(response, now=binance_now, window_rest_s=window_rest)

    def _ban(self, endpoint: Endpoint, response: httpx.Response, wait: float) -> int:
        """Call ``endpoint``'s host no more for ``wait`` seconds, and say so; the ban's end.

        For a 429/418 asking for longer than :data:`MAX_WAIT_IN_RUN_S`; the end is epoch ms by
        the local clock.
        """
        until = self.local_ms() + round(wait * 1000)
        if not self.bans.ban(endpoint.host, until):
            return until  # banned already, by a request in flight at the same time: said once
        RETRY_LOG.warning(
            "%s answered %s with Retry-After %s: no request goes to it before %s UTC",
            endpoint.label,
            _status(response),
            _retry_after_header(response),
            terminal_time(until),
        )
        return until

    def _observe_weight(self, response: httpx.Response, sent_at_ms: int) -> None:
        used = _used_weight(response)
        if used is not None:
            self.log.used_weight = used
            self.pacer.observe(used, sent_at_ms)

    def exchange_info(self) -> Any:
        """The whole ``/api/v3/exchangeInfo`` (weight 20): every symbol, and the rate limits.

        Its REQUEST_WEIGHT limit is adopted by the pacer (:meth:`adopt_rate_limits`).
        """
        self._limits_known = True
        body = self._get_json(EXCHANGE_INFO_PATH, {})
        self.adopt_rate_limits(body.get("rateLimits", []) if isinstance(body, dict) else [])
        return body

    def adopt_rate_limits(self, limits: Iterable[Any]) -> None:
        """Pace by the REQUEST_WEIGHT limit among exchangeInfo's ``rateLimits``.

        Then no klines request asks exchangeInfo for it: a run that has the list of symbols
        kept (:mod:`ost.universe`) passes its limits here.
        """
        self._limits_known = True
        for limit in limits:
            kind = limit.get("rateLimitType") if isinstance(limit, dict) else None
            unit = limit.get("interval") if isinstance(limit, dict) else None
            if kind == "REQUEST_WEIGHT" and unit in _WINDOW_MS:
                window = _WINDOW_MS[limit["interval"]] * int(limit.get("intervalNum", 1))
                self.pacer.configure(limit=int(limit["limit"]), window_ms=window)
                return

    def _learn_rate_limits(self) -> None:
        """Adopt the REQUEST_WEIGHT limit of exchangeInfo once per client."""
        if not self._limits_known:
            self.exchange_info()


def _json_of(response: httpx.Response, path: str) -> Any:
    """The body of ``response`` as JSON, or :class:`BadPayload`."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        kind = response.headers.get("content-type", "unknown content type")
        raise BadPayload(
            f"{response.url.host} answered {path} with a body that is not JSON ({kind}, "
            f"{len(response.content)} bytes)"
        ) from None


def _kline_columns(response: httpx.Response, interval: str) -> Columns:
    """A klines answer's candles, parsed strictly and validated, or :class:`InvalidCandle`.

    A body in Binance's canonical form is converted in one step (:mod:`ost.kline_body`); any
    other goes through JSON and :func:`ost.klines.parse_columns`, which decide what is refused
    and how it is said.
    """
    columns = kline_body.normalized_columns(response.content)
    if columns is None:
        return klines.parse_columns(_json_of(response, KLINES_PATH), interval)
    klines.validate_columns(columns, interval)
    return columns


def _raise_for_4xx(response: httpx.Response, label: str) -> None:
    """Raise :class:`BinanceRejected` for a 4xx answer from the base URL ``label``."""
    status = response.status_code
    if status < 400:
        return
    code, message = _binance_error(response)
    where = f"{response.request.url.path} on {label}"
    raise BinanceRejected(f"HTTP {status} from {where}: {message}", status=status, code=code)


def _rate_limited(response: httpx.Response, label: str, wait: float) -> RateLimited:
    """A 429/418 from ``label`` to be waited out (``wait`` seconds), then retried."""
    status = response.status_code
    _, message = _binance_error(response)
    return RateLimited(
        f"HTTP {status} from {response.request.url.path} on {label}: {message}; retry after "
        f"{wait:g}s",
        status=status,
        retry_after=wait,
    )


def _none_answered(path: str, failures: list[_Failure]) -> BinanceError:
    """The one error of a walk in which no base URL answered: why, grouped by reason.

    Retried (:class:`BinanceUnavailable`) while any host failed for a passing reason; else every
    host refused or is banned, which no retry inside the run can change.
    """
    grouped: dict[str, list[str]] = {}
    for failure in failures:
        grouped.setdefault(failure.why, []).append(failure.label)
    why = "; ".join(f"{reason} from {', '.join(labels)}" for reason, labels in grouped.items())
    kinds = {failure.kind for failure in failures}
    if TRANSIENT in kinds or not failures:
        return BinanceUnavailable(f"no base URL answered {path}: {why}")
    if BANNED in kinds:
        return HostsBanned(f"every base URL is banned or refused {path}: {why}")
    if any(failure.status == 451 for failure in failures):
        return RestrictedLocation(f"every base URL refused {path}: {why}")
    return BinanceRefused(f"every base URL refused {path}: {why}")


def _status(response: httpx.Response) -> str:
    """An error answer's status, named: ``HTTP 451 (restricted location)``."""
    status = response.status_code
    named = REFUSALS.get(status) or RATE_LIMITS.get(status)
    return f"HTTP {status} ({named})" if named else f"HTTP {status}"


def _retry_after_header(response: httpx.Response) -> str:
    """The Retry-After header as sent (quoted, at most 40 characters), or ``none``."""
    value = response.headers.get("Retry-After")
    return "none" if value is None else repr(value[:40])


def _banned(until_ms: int) -> str:
    """``banned until 2026-05-01 12:00 UTC``."""
    return f"banned until {terminal_time(until_ms)} UTC"


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

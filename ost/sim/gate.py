"""The outermost ASGI layer: latency, faults, request weight and counters, before any route.

It wraps the Starlette app and sees uvicorn's own ``send``, which lets it drop a connection
without a response (``reset`` and ``down`` faults) by aborting uvicorn's transport. Only
``/api/...`` and ``/data/...`` pass through it; the admin endpoints go straight to the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson

from ost.sim import archive
from ost.sim.faults import Fault
from ost.sim.limits import Verdict, weight_of
from ost.sim.state import SimState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>CloudFront</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS: Final = {
    200: "OK",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Gate:
    """ASGI middleware applying the simulator's latency, faults and rate limit."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection event: gated if it is for the API or the archive."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/api/", "/data/")):
            await self.app(scope, receive, send)
            return
        state = self.state
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await self._gated(scope, receive, send, path)
        finally:
            state.in_flight -= 1

    async def _gated(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        state = self.state
        key = stats_key(path)
        if state.config.latency_ms:
            await asyncio.sleep(state.config.latency_ms / 1000)
        if state.faults.pick(path, aborting=True) is not None:
            state.record(key, "dropped")
            await drop_connection(send)
            return
        extra: Headers = []
        if path.startswith("/api/"):
            client = scope.get("client") or ("unknown", 0)
            verdict = state.limiter.admit(client[0], weight_of(path), state.now_ms())
            extra = weight_headers(verdict.used, state.config.weight_window_s)
            if verdict.status != 200:
                await self._refuse(verdict, extra, _Counted(send, state, key, []))
                return
        counted = _Counted(send, state, key, extra)
        fault = state.faults.pick(path, aborting=False)
        if fault is None:
            await self.app(scope, receive, counted)
        else:
            await self._inject(fault, scope, receive, counted)

    async def _refuse(self, verdict: Verdict, headers: Headers, send: Send) -> None:
        config = self.state.config
        if verdict.status == 429:
            message = (
                f"Too much request weight used; current limit is {config.weight_limit} request "
                f"weight per {window_words(config.weight_window_s)}. Please use WebSocket "
                "Streams for live updates to avoid polling the API."
            )
        else:
            message = (
                f"Way too much request weight used; IP banned until {verdict.banned_until_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
        body = orjson.dumps({"code": -1003, "msg": message})
        headers = [*headers, (b"retry-after", str(verdict.retry_after_s).encode())]
        await send_body(send, verdict.status, body, b"application/json;charset=UTF-8", headers)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the server is stopping (so that it stops at once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.state.stopping and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.05))

    async def _inject(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        book = self.state.faults
        if fault.kind == "slow":
            await self._sleep(fault.delay)
            await self.app(scope, receive, send)
        elif fault.kind == "5xx":
            await send_server_error(send, book.server_error_status(fault))
        elif fault.kind == "html":
            await send_html(send, fault.status or 200)
        else:
            status, headers, body = await capture(self.app, scope, receive)
            if status == 200:
                body = _mangle(fault, body, book.impossible_mode(fault))
            await send_body(send, status, body, None, headers)


class _Counted:
    """A ``send`` that adds headers to the response start and counts its status."""

    def __init__(self, send: Send, state: SimState, key: str, extra: Headers) -> None:
        self.send = send
        self.state = state
        self.key = key
        self.extra = extra

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.state.record(self.key, str(message["status"]))
            message["headers"] = [*message.get("headers", []), *self.extra]
        await self.send(message)


def _mangle(fault: Fault, body: bytes, mode: str) -> bytes:
    if fault.kind == "truncated":
        return body[: len(body) // 2]
    if fault.kind == "corrupt_zip":
        return archive.corrupt(body)
    return impossible_rows(body, mode)


def impossible_rows(body: bytes, mode: str) -> bytes:
    """A klines body with its middle row made impossible (``high_low`` or ``misaligned``)."""
    rows = orjson.loads(body)
    if not rows:
        return body
    row = rows[len(rows) // 2]
    if mode == "high_low":
        row[2] = f"{float(row[3]) * 0.5:.8f}"
    else:
        row[0] += 1
    return orjson.dumps(rows)


def stats_key(path: str) -> str:
    """How a path is counted: API paths as they are, archive files by daily/monthly."""
    if path.startswith("/data/"):
        return "/".join(path.split("/")[:5])
    return path


def window_words(window_s: int) -> str:
    """Binance's words for a window: ``1 MINUTE``, ``2 SECOND``."""
    if window_s % 60 == 0:
        return f"{window_s // 60} MINUTE"
    return f"{window_s} SECOND"


def weight_headers(used: int, window_s: int) -> Headers:
    """``X-MBX-USED-WEIGHT`` headers (the ``-1M`` one always, as clients read it)."""
    value = str(used).encode()
    headers = [(b"x-mbx-used-weight", value), (b"x-mbx-used-weight-1m", value)]
    if window_s != 60:
        number, unit = window_words(window_s).split()
        headers.append((f"x-mbx-used-weight-{number}{unit[0]}".lower().encode(), value))
    return headers


async def drop_connection(send: Send) -> None:
    """Close the client's connection at once, with no response (like a reset or a dead host).

    uvicorn's ``send`` is a method of its request cycle, which holds the transport.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("simulated connection drop (no transport to abort)")
    transport.abort()
    await asyncio.sleep(0)  # let uvicorn see the connection lost, so it sends nothing more


async def send_body(
    send: Send, status: int, body: bytes, content_type: bytes | None, headers: Headers
) -> None:
    """Send a complete response; its content-length is set from ``body``."""
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    if content_type is not None:
        kept = [(k, v) for k, v in kept if k.lower() != b"content-type"]
        kept.append((b"content-type", content_type))
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_html(send: Send, status: int) -> None:
    """An HTML error page, as a CDN or proxy in front of Binance sends."""
    reason = _REASONS.get(status, "Error")
    page = _HTML_PAGE.format(status=status, reason=reason).encode()
    await send_body(send, status, page, b"text/html; charset=utf-8", [])


async def send_server_error(send: Send, status: int) -> None:
    """A 5xx: Binance's JSON for 503, a proxy's HTML page for 500 and 502."""
    if status != 503:
        await send_html(send, status)
        return
    body = orjson.dumps(
        {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
    )
    await send_body(send, status, body, b"application/json;charset=UTF-8", [])


async def capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
    """Run ``app`` and return its status, headers and whole body instead of sending them."""
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return int(start["status"]), list(start.get("headers", [])), b"".join(chunks)

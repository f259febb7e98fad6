"""A deadline for a whole HTTP request: connect, send, headers and body, as one bound.

httpx's timeouts bound each network operation: a connect, a write, one read. A body that
trickles in (2 bytes a second) never lets a read time out, so it keeps a request going for
hours. Here every network operation of a request is given at most the time left before the
request's deadline, so the request as a whole ends by it, whatever the server does:

- :func:`request_deadline` sets the deadline of the requests the calling thread makes inside it
  (httpx's sync client does all of a request's I/O in the thread that sends it);
- :func:`deadline_transport` is httpx's own transport whose network operations each wait at most
  ``min(their own timeout, the time left)``; past the deadline, the next one raises httpx's
  timeout error (``ReadTimeout`` while reading), saying the whole request took too long.

The client (:class:`ost.binance.BinanceClient`) uses this transport unless it is given another
one (a test's ``httpx.MockTransport``), which then brings its own bounds. Outside a
:func:`request_deadline` block the transport is plain httpx.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_current = threading.local()


@contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Requests made by this thread inside the block end ``seconds`` from now at the latest."""
    before = getattr(_current, "deadline", None)
    _current.deadline = (time.monotonic() + seconds, seconds)
    try:
        yield
    finally:
        _current.deadline = before


def _bounded(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """``timeout``, cut to the time left before this thread's deadline (raise once it passed)."""
    deadline: tuple[float, float] | None = getattr(_current, "deadline", None)
    if deadline is None:
        return timeout
    end, seconds = deadline
    left = end - time.monotonic()
    if left <= 0:
        raise error(f"the whole request took over {seconds:g} s (OST_HTTP_TIMEOUT_S)")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections bounded by the thread's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def deadline_transport(*, verify: ssl.SSLContext) -> httpx.HTTPTransport:
    """The transport of httpx, every network operation bounded by :func:`request_deadline`.

    httpx takes no network backend, so the one of its connection pool is wrapped; a version of
    httpx or httpcore that builds its pool otherwise fails here, at start, never silently.
    """
    transport = httpx.HTTPTransport(verify=verify)
    pool = transport._pool  # httpx's connection pool: where httpcore takes its network backend
    if not isinstance(pool, httpcore.ConnectionPool) or not isinstance(
        getattr(pool, "_network_backend", None), httpcore.NetworkBackend
    ):
        raise TypeError(f"httpx {httpx.__version__}: no network backend to bound by a deadline")
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return transport

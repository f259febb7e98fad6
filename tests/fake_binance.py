"""A fake Binance for ``httpx.MockTransport`` unit tests: valid rows, the routes around klines."""

from __future__ import annotations

from collections.abc import Callable

import httpx

MINUTE = 60_000
T0 = 1_700_000_040_000  # aligned to the minute

Handler = Callable[[httpx.Request], httpx.Response]


def kline_row(open_ms: int, price: float = 100.0) -> list[object]:
    """A valid 1m kline row as Binance sends it."""
    return [
        open_ms,
        f"{price:.8f}",
        f"{price + 1:.8f}",
        f"{price - 1:.8f}",
        f"{price:.8f}",
        "1.0",
        open_ms + MINUTE - 1,
        "100.0",
        3,
        "0.5",
        "50.0",
        "0",
    ]


def routed(klines_handler: Handler, now_ms: int = T0 + 10 * MINUTE) -> Handler:
    """A fake Binance: time and exchangeInfo answer normally, klines go to ``klines_handler``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/time":
            return httpx.Response(200, json={"serverTime": now_ms})
        if request.url.path == "/api/v3/exchangeInfo":
            return httpx.Response(200, json={"rateLimits": []})
        return klines_handler(request)

    return handle

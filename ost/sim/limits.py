"""Binance's request-weight limit, per client IP, in fixed windows of server time.

Each request costs a weight (klines 2, exchangeInfo 20, ping and time 1). Windows are aligned to
multiples of their length in server time, as Binance's minute. A request that would take the
window's total past the limit is refused with 429 (``Retry-After``: seconds until the window
ends) and costs nothing; after more than ``ban_after`` further requests in the same window, the
IP is banned for ``ban_windows`` windows: 418 on every request, ``Retry-After`` until the ban ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

#: Request weight of each endpoint (others: 1).
WEIGHTS: Final[dict[str, int]] = {
    "/api/v3/klines": 2,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
}


def weight_of(path: str) -> int:
    """The request weight of ``path``."""
    return WEIGHTS.get(path, 1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the limiter decided: ``status`` 200 (go on), 429 or 418."""

    status: int
    used: int
    retry_after_s: int = 0
    #: For a 418: when the ban ends (server time, ms).
    banned_until_ms: int = 0


@dataclass(slots=True)
class _Client:
    window_start: int = -1
    used: int = 0
    refused: int = 0
    banned_until: int = 0


@dataclass(slots=True)
class WeightLimiter:
    """Weight used per IP in the current window, 429s, and bans."""

    limit: int = 6000
    window_s: int = 60
    ban_after: int = 2
    ban_windows: int = 2
    clients: dict[str, _Client] = field(default_factory=dict)

    @property
    def window_ms(self) -> int:
        """The window length in ms."""
        return self.window_s * 1000

    def _client(self, ip: str, now_ms: int) -> _Client:
        client = self.clients.setdefault(ip, _Client())
        window_start = now_ms // self.window_ms * self.window_ms
        if client.window_start != window_start:
            client.window_start, client.used, client.refused = window_start, 0, 0
        return client

    def used(self, ip: str, now_ms: int) -> int:
        """Weight used by ``ip`` in the window containing ``now_ms``."""
        return self._client(ip, now_ms).used

    def admit(self, ip: str, weight: int, now_ms: int) -> Verdict:
        """Count a request of ``weight`` from ``ip``, or refuse it."""
        client = self._client(ip, now_ms)
        if client.banned_until > now_ms:
            return self._banned(client, now_ms)
        if client.used + weight <= self.limit:
            client.used += weight
            return Verdict(200, client.used)
        client.refused += 1
        if client.refused > 1 + self.ban_after:
            client.banned_until = now_ms + self.ban_windows * self.window_ms
            return self._banned(client, now_ms)
        window_end = client.window_start + self.window_ms
        return Verdict(429, client.used, _seconds(window_end - now_ms))

    @staticmethod
    def _banned(client: _Client, now_ms: int) -> Verdict:
        wait = _seconds(client.banned_until - now_ms)
        return Verdict(418, client.used, wait, banned_until_ms=client.banned_until)

    def reset(self) -> None:
        """Forget all weight, refusals and bans."""
        self.clients.clear()


def _seconds(ms: int) -> int:
    """Whole seconds to wait for ``ms``, at least 1."""
    return max(1, math.ceil(ms / 1000))

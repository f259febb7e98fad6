"""Request-weight pacing: stay inside Binance's per-IP weight budget so that a 418 never comes.

Binance counts request weight in a fixed window (a minute in production) and reports what this IP
has used in the ``X-MBX-USED-WEIGHT-1M`` header of every answer. The pacer mirrors that count:
before a request it reserves the request's weight, and if the window cannot hold it, it sleeps
until the window turns over (by Binance's clock, not the local one). Each answer's header then
corrects the count. It is thread-safe, so concurrent requests share one budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Binance's production limit: 6,000 request weight per minute per IP.
DEFAULT_WEIGHT_LIMIT = 6000
DEFAULT_WINDOW_MS = 60_000
#: Wait this long past a window's turn before spending again, for clock skew between us and Binance.
TURNOVER_MARGIN_MS = 50


@dataclass
class WeightPacer:
    """A shared budget of request weight per window of server time."""

    limit: int = DEFAULT_WEIGHT_LIMIT
    window_ms: int = DEFAULT_WINDOW_MS
    server_now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    sleep: Callable[[float], None] = time.sleep
    _used: int = 0
    _window: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    waited_s: float = 0.0

    def configure(self, *, limit: int, window_ms: int) -> None:
        """Adopt the budget that exchangeInfo's REQUEST_WEIGHT rate limit announces."""
        with self._lock:
            self.limit, self.window_ms = limit, window_ms

    def acquire(self, weight: int) -> None:
        """Reserve ``weight`` in the current window, sleeping until one can hold it."""
        while True:
            with self._lock:
                now = self.server_now_ms()
                self._roll(now)
                if self._used + weight <= self.limit or self._used == 0:
                    self._used += weight
                    return
                pause_s = ((self._window + 1) * self.window_ms - now + TURNOVER_MARGIN_MS) / 1000
            self.waited_s += pause_s
            self.sleep(pause_s)

    def observe(self, used: int, sent_at_ms: int) -> None:
        """Take Binance's count (``X-MBX-USED-WEIGHT-1M``) for a request sent at ``sent_at_ms``.

        A count from a request sent in an earlier window says nothing of the current one.
        """
        with self._lock:
            self._roll(self.server_now_ms())
            if sent_at_ms // self.window_ms == self._window:
                self._used = max(self._used, used)

    def exhaust(self) -> None:
        """Spend what is left of the window (after a 429: Binance says it is spent)."""
        with self._lock:
            self._roll(self.server_now_ms())
            self._used = max(self._used, self.limit)

    @property
    def used(self) -> int:
        """Weight counted in the current window."""
        with self._lock:
            self._roll(self.server_now_ms())
            return self._used

    def _roll(self, now_ms: int) -> None:
        window = now_ms // self.window_ms
        if window != self._window:
            self._window, self._used = window, 0

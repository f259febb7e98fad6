"""Request-weight pacing: stay inside Binance's per-IP weight budget so that a 418 never comes.

Binance counts request weight in a fixed window (a minute in production) and reports what this IP
has used in the ``X-MBX-USED-WEIGHT-1M`` header of every answer. The pacer mirrors that count:
before a request it reserves the request's weight, and if the window cannot hold it, it sleeps
until the window turns over (by Binance's clock, not the local one). Each answer's header then
corrects the count. It is thread-safe, so concurrent requests share one budget.

When Binance refuses for the rate anyway (429, or 418 once it banned the IP), its ``Retry-After``
says how long to rest: :func:`retry_after_s` reads it, in seconds or as an HTTP date, with a sane
default for a missing or nonsensical value. A wait of at most :data:`MAX_WAIT_IN_RUN_S` is slept
(and retried); a longer one is a ban, never slept inside a run: the host goes into
:class:`HostBans` ("not before T"), which the client skips and the ledger keeps for the next runs.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from ost.clock import system_ms

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
    #: Binance's clock; the client passes its own (the local clock until it has measured).
    server_now_ms: Callable[[], int] = system_ms
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

    def seconds_to_turnover(self) -> float:
        """How long until the current window turns over (by Binance's clock), margin included.

        What Binance's own Retry-After of a 429 says: when the IP's count starts again.
        """
        with self._lock:
            now = self.server_now_ms()
            self._roll(now)
            return ((self._window + 1) * self.window_ms - now + TURNOVER_MARGIN_MS) / 1000

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


# ---- Retry-After and bans -----------------------------------------------------------------------

#: The longest Retry-After slept inside a run: one of Binance's weight windows (a minute). A 429's
#: Retry-After is the rest of the current window, so it is always waited out; anything longer (a
#: 418 ban lasts 2 minutes to 3 days) is recorded as a ban and skipped, never slept.
MAX_WAIT_IN_RUN_S: Final = 60.0
#: The wait of a 418 whose Retry-After is missing or nonsensical: Binance's shortest ban.
DEFAULT_BAN_S: Final = 120.0
#: The longest ban believed: Binance's longest (3 days); a larger Retry-After is cut to it.
MAX_BAN_S: Final = 3 * 86_400.0
_SECONDS: Final = re.compile(r"\s*(\d+(?:\.\d*)?)\s*")


def retry_after_s(value: str | None, *, now: dt.datetime, default: float) -> float:
    """A ``Retry-After`` header as seconds to wait from ``now``, at most :data:`MAX_BAN_S`.

    Either delay-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT``, read by
    :func:`email.utils.parsedate_to_datetime`; a date already past means 0). A missing value, a
    negative one or anything else that is neither gives ``default``.
    """
    if value is None:
        return default
    seconds: float
    if match := _SECONDS.fullmatch(value):
        seconds = float(match[1])
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):  # what it raises for text that is no date
            return default
        if when.tzinfo is None:  # "-0000" or no zone: RFC 5322 means UTC
            when = when.replace(tzinfo=dt.UTC)
        seconds = max(0.0, (when - now).total_seconds())
    return min(seconds, MAX_BAN_S)  # a number too large for a float is inf: cut too


@dataclass
class HostBans:
    """Hosts not to call before a time: each a ``host[:port]`` and an epoch ms (local clock).

    A ban only ever moves later (:meth:`ban` keeps the later end), so a knock can never shorten
    one; and since the client calls no banned host, none is ever extended by knocking. Bans set
    here are kept for the ledger until :meth:`take_unrecorded`. Thread-safe.
    """

    clock_ms: Callable[[], int] = system_ms
    _until: dict[str, int] = field(default_factory=dict)
    _unrecorded: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def until(self, host: str) -> int | None:
        """When ``host``'s ban ends (epoch ms), if it is banned now; else None."""
        with self._lock:
            end = self._until.get(host)
        return end if end is not None and end > self.clock_ms() else None

    def ban(self, host: str, until_ms: int) -> bool:
        """Call ``host`` no more before ``until_ms``, unless banned for longer already.

        Returns whether it is a new ban (the host was not banned a moment ago).
        """
        now = self.clock_ms()
        with self._lock:
            before = self._until.get(host, 0)
            if until_ms > before:
                self._until[host] = until_ms
                self._unrecorded[host] = until_ms
        return before <= now

    def load(self, bans: Mapping[str, int]) -> None:
        """Adopt bans recorded by earlier runs (the ledger's), keeping the later end of each."""
        with self._lock:
            for host, until_ms in bans.items():
                self._until[host] = max(until_ms, self._until.get(host, 0))

    def current(self) -> dict[str, int]:
        """Every host banned now, with the end of its ban."""
        now = self.clock_ms()
        with self._lock:
            return {host: end for host, end in self._until.items() if end > now}

    def take_unrecorded(self) -> dict[str, int]:
        """The bans set since the last call (to record them), taken out under the lock."""
        with self._lock:
            taken, self._unrecorded = self._unrecorded, {}
        return taken

    def give_back(self, taken: Mapping[str, int]) -> None:
        """Put bans taken by :meth:`take_unrecorded` back (they could not be recorded)."""
        with self._lock:
            for host, until_ms in taken.items():
                self._unrecorded[host] = max(until_ms, self._unrecorded.get(host, 0))

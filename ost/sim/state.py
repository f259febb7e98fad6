"""The running simulator's mutable state: settings, clock, weight limiter, faults and counters.

It lives in the server's event loop; the admin endpoints change it, the gate and the routes
read it. Nothing here is shared between threads.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Any

from ost.sim.config import SimConfig, parse_stopped
from ost.sim.faults import FaultBook, parse_faults
from ost.sim.limits import WeightLimiter
from ost.sim.symbols import Listing

#: The status of a symbol that trades.
TRADING = "TRADING"
#: What :meth:`SimState.status` says of a symbol gone from exchangeInfo.
DELISTED = "DELISTED"


class SimState:
    """Everything a running simulator remembers."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.limiter = WeightLimiter()
        self.faults = FaultBook(parse_faults(config.faults), seed=config.seed)
        self.requests: Counter[tuple[str, str]] = Counter()
        #: klines requests that reached the route, by their ``symbol`` parameter.
        self.klines_by_symbol: Counter[str] = Counter()
        self.refused_429 = 0
        self.banned_418 = 0
        #: API and archive requests being served now (latency included), and the most at once.
        self.in_flight = 0
        self.max_in_flight = 0
        #: Set when the server is stopping: slow faults stop sleeping.
        self.stopping = False
        #: The symbols ``config.stopped`` stopped: their status, and since when (server ms).
        self.stopped: dict[str, tuple[str, int]] = {}
        self._apply_limits()
        self._apply_stopped()

    def now_ms(self) -> int:
        """Server time: real time plus the configured clock offset."""
        return time.time_ns() // 1_000_000 + self.config.clock_offset_ms

    def configure(self, **changes: Any) -> SimConfig:
        """Change settings (``now_ms`` sets the clock offset so that the server's time is it)."""
        if "now_ms" in changes:
            now = int(changes.pop("now_ms"))
            changes["clock_offset_ms"] = now - time.time_ns() // 1_000_000
        seed_changed = "seed" in changes
        self.config = dataclasses.replace(self.config, **changes)
        self._apply_limits()
        self._apply_stopped()
        if seed_changed:
            self.faults.random.seed(self.config.seed)
        return self.config

    def _apply_limits(self) -> None:
        limiter = self.limiter
        if limiter.window_s != self.config.weight_window_s:
            limiter.reset()
        limiter.limit = self.config.weight_limit
        limiter.window_s = self.config.weight_window_s
        limiter.ban_after = self.config.ban_after
        limiter.ban_windows = self.config.ban_windows

    def _apply_stopped(self) -> None:
        """Stop the symbols that ``config.stopped`` names, now (those stopped before stay so)."""
        wanted = parse_stopped(self.config.stopped)
        now = self.now_ms()
        self.stopped = {
            symbol: (status, self.stopped.get(symbol, (status, now))[1])
            for symbol, status in wanted.items()
        }

    def status(self, listing: Listing, now_ms: int) -> str:
        """``listing``'s status at ``now_ms``: TRADING, BREAK (its halt), or as ``stopped`` says."""
        if listing.symbol in self.stopped:
            return self.stopped[listing.symbol][0]
        return TRADING if listing.trading(now_ms) else "BREAK"

    def market_now(self, listing: Listing, now_ms: int) -> int:
        """The instant ``listing``'s candles stand at: now, or the last before it stopped."""
        stopped = self.stopped.get(listing.symbol)
        market_now = listing.market_now(now_ms)
        return market_now if stopped is None else min(market_now, stopped[1] - 1)

    def record(self, path_key: str, outcome: str) -> None:
        """Count one answer (``outcome`` is the status, or ``dropped``)."""
        self.requests[path_key, outcome] += 1
        if outcome == "429":
            self.refused_429 += 1
        elif outcome == "418":
            self.banned_418 += 1

    def reset(self) -> None:
        """Forget counters, used weight and bans (faults and settings stay)."""
        self.requests.clear()
        self.klines_by_symbol.clear()
        self.refused_429 = 0
        self.banned_418 = 0
        self.max_in_flight = self.in_flight
        self.faults.fired.clear()
        self.limiter.reset()

    def stats(self) -> dict[str, Any]:
        """Counters for ``GET /_sim/stats``."""
        now = self.now_ms()
        by_path: dict[str, dict[str, int]] = {}
        for (path, outcome), count in sorted(self.requests.items()):
            by_path.setdefault(path, {})[outcome] = count
        return {
            "server_time": now,
            "requests": by_path,
            "total": sum(self.requests.values()),
            "klines_by_symbol": dict(sorted(self.klines_by_symbol.items())),
            "status_429": self.refused_429,
            "status_418": self.banned_418,
            "max_in_flight": self.max_in_flight,
            "weight_used": {ip: self.limiter.used(ip, now) for ip in sorted(self.limiter.clients)},
            "weight_limit": self.config.weight_limit,
            "weight_window_s": self.config.weight_window_s,
            "faults_fired": dict(self.faults.fired),
            "faults": [fault.as_dict() for fault in self.faults.faults],
        }

"""When a candle is closed: by the earlier of two clocks, the local one and Binance's.

A candle is *closed* (final, safe to store) when its ``close_time`` is before "now" and its
interval has ended by "now", where "now" is the earlier of the local clock and Binance's clock
(the local clock plus the offset that ``/api/v3/time`` measured, see :func:`earlier_now`). Either
clock alone can be wrong: a host whose NTP stopped, a proxy or a host whose ``/api/v3/time``
lies. The earlier of the two is never later than the true time while at least one of them is
right, so an open candle is never stored; the price of the wrong one is lag, never a wrong
candle, and the next run catches up once the clocks agree again.

Every decision about "closed" goes through :func:`closed_stop` (the first open time that is not
closed yet: the end of what a backfill asks for, and of what a gap check expects) or
:func:`closed_mask` (which rows of a page are closed, judged by their own ``close_time``, never by
their place in the page), both fed by one "now", always :func:`earlier_now` of the local clock
(:func:`system_ms`, or the client's injected one) and an offset: the one just measured
(:meth:`ost.binance.BinanceClient.now_ms`, for ingestion, backfill and ``ost gaps --repair``), or
for a gap check that asks Binance nothing (``ost gaps``), the one last recorded in the ledger. So
``ost gaps`` with and without ``--repair`` agree on what is closed, given the same offset.
The freshness that ``ost status`` and the watchdog judge is lag against the local clock alone
(:func:`alerts.policy.freshness`): a Binance clock that lags shows there as lag, beside the
skew warning, rather than being hidden by it.

A skew past ``OST_MAX_CLOCK_SKEW`` is reported (:meth:`ClockReading.warning`), by every run that
measures it, ``ost ping``, ``ost status`` and the ``ost_clock_skew_seconds{host}`` metric.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ost import intervals
from ost.timefmt import json_time, setting_duration, skew_seconds, terminal_time
from ost.urls import host_of as host_of  # noqa: PLC0414  # re-exported: ost.urls' one label

if TYPE_CHECKING:  # the ledger and `ost status` import this module: no numpy at run time
    import numpy as np

#: A local clock: the current time as epoch milliseconds (injectable, so tests need no patching).
LocalClock = Callable[[], int]


def system_ms() -> int:
    """The local clock (the host's wall clock) as epoch milliseconds."""
    return time.time_ns() // 1_000_000


def earlier_now(local_ms: int, offset_ms: int | None) -> int:
    """The earlier of the local clock and Binance's (``local_ms + offset_ms``).

    With no offset known (Binance never asked) it is the local clock alone.
    """
    return local_ms + min(0, offset_ms or 0)


def closed_stop(interval: str, now_ms: int) -> int:
    """The open time of the first candle not closed by ``now_ms``: the one that holds it.

    Every candle opening before it has ended (its full close, ``next_open - 1``, is before
    ``now_ms``); the candle opening at it has not.
    """
    return intervals.align(interval, now_ms)


def closed_mask(
    interval: str, open_ms: np.ndarray, close_ms: np.ndarray, now_ms: int
) -> np.ndarray:
    """Which candles are closed by ``now_ms``: ``close_time`` before it, and the interval ended.

    Both, because a halted candle's ``close_time`` is early (the 2023-03-24 12:39 candle): until
    its interval has ended, trading may resume inside it and change it.
    """
    closed: np.ndarray = (close_ms < now_ms) & (open_ms < closed_stop(interval, now_ms))
    return closed


@dataclass(frozen=True)
class ClockReading:
    """One measure of Binance's clock: ``offset_ms`` = Binance's clock minus the local one."""

    host: str
    offset_ms: int
    #: When it was measured, for a reading read back from the ledger (``ost status``).
    measured_at: dt.datetime | None = None

    def measured_when(self) -> str:
        """When it was measured, like ``2026-12-01 21:00`` (UTC), or ``-`` if unknown."""
        at = self.measured_at
        return terminal_time(None if at is None else round(at.timestamp() * 1000))

    def as_dict(self, limit: dt.timedelta) -> dict[str, object]:
        """JSON-ready, for ``ost status --json``."""
        return {
            "host": self.host,
            "skew_seconds": self.offset_ms / 1000,
            "measured_at": json_time(self.measured_at),
            "max_skew_seconds": limit.total_seconds(),
            "over_max": self.exceeds(limit),
        }

    def status_line(self, limit: dt.timedelta) -> str:
        """The line of ``ost status``: the skew, where and when it was seen, and its verdict."""
        setting = f"OST_MAX_CLOCK_SKEW={setting_duration(limit)}"
        verdict = (
            f"over {setting}: check this host's NTP and `ost ping`"
            if self.exceeds(limit)
            else f"within {setting}"
        )
        return (
            f"clock skew: {skew_seconds(self.offset_ms)} (Binance's clock at {self.host} minus the"
            f" local one, measured {self.measured_when()} UTC), {verdict}"
        )

    def exceeds(self, limit: dt.timedelta) -> bool:
        """Whether the clocks disagree by more than ``limit``."""
        return abs(self.offset_ms) > limit.total_seconds() * 1000

    def warning(self, limit: dt.timedelta) -> str | None:
        """The one-line warning for a skew past ``limit`` (``OST_MAX_CLOCK_SKEW``), else None."""
        if not self.exceeds(limit):
            return None
        ahead = "ahead of" if self.offset_ms > 0 else "behind"
        earlier = "the local one" if self.offset_ms > 0 else "Binance's"
        when = "" if self.measured_at is None else f" as last measured, {self.measured_when()} UTC"
        return (
            f"clock skew: Binance's clock at {self.host} is {abs(self.offset_ms) / 1000:.1f} s "
            f"{ahead} the local clock{when} (more than OST_MAX_CLOCK_SKEW="
            f"{setting_duration(limit)}); "
            f"candles count as closed by the earlier clock, {earlier}, so no open candle is "
            "stored, but they arrive late if that clock is the wrong one. Check this host's NTP "
            "(timedatectl status) and `ost ping`."
        )

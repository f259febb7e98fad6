"""The instants tests set the simulator's clock to, shared by the modules that need the same one."""

from __future__ import annotations

import datetime as dt
from typing import Final


def utc_ms(text: str) -> int:
    """Epoch ms of an ISO date or date-time, read as UTC."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


#: "Now" of most ingestion tests: mid-candle for every interval from 15m up.
NOW: Final = utc_ms("2026-11-20T10:07:30")
#: The real 2023-03-24 12:39 candle's close_time: Binance's halt closed it early.
EARLY_CLOSE_MS: Final = 1679661581646
#: "Now" of the healing and verify tests: the 15m and 1h candles stay as they are for 7.5 minutes.
JAN_3_NOW: Final = utc_ms("2026-01-03T10:07:30")
#: 2026-01-01 00:00: where those tests' streams start, the start of their newest partition.
JAN_1: Final = utc_ms("2026-01-01")
#: ``OST_INITIAL_LOOKBACK_DAYS`` that starts every stream at :data:`JAN_1` from :data:`JAN_3_NOW`.
DAYS_SINCE_JAN_1: Final = "2.42"

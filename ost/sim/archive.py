"""The data.binance.vision archive: daily and monthly kline zips and their ``.CHECKSUM`` files.

Paths, as the real archive::

    /data/spot/daily/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM-DD}.zip[.CHECKSUM]
    /data/spot/monthly/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM}.zip[.CHECKSUM]

A zip holds one CSV of the same base name: no header, the 12 columns, exactly the candles the
API serves for that day or month, with open and close times in microseconds for candles from
2025-01-01 on, milliseconds before. ``.CHECKSUM`` is ``<sha256 of the zip>  <name>.zip`` and a
newline. Zips are built deterministically (fixed entry timestamps), so their checksum is stable.

Availability (server time): a daily file exists for days up to the day before yesterday
(``day <= today - 2``), a monthly file for months before the current one. Only intervals of one
day or less are archived (1s to 1d). A file also needs at least one candle (none before a
listing). Anything else is 404.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Final

from ost.sim import market, timegrid
from ost.sim.symbols import find_listing
from ost.sim.timegrid import DAY_MS

_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)
_NAME_RE: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\w+)-(?P<period>\d{4}-\d{2}(?:-\d{2})?)"
    r"\.zip(?P<checksum>\.CHECKSUM)?$"
)
ARCHIVED_INTERVALS: Final = tuple(
    name for name, length in timegrid.LENGTH_MS.items() if length is not None and length <= DAY_MS
)


@dataclass(frozen=True, slots=True)
class ArchiveRequest:
    """One archive file: its period ``[start_ms, end_ms)`` and whether it is the checksum."""

    symbol: str
    interval: str
    span: str  # "daily" or "monthly"
    start_ms: int
    end_ms: int
    zip_name: str
    checksum: bool


def parse_request(span: str, symbol: str, interval: str, filename: str) -> ArchiveRequest | None:
    """The archive file a path names, or None when the path is not one the archive could hold."""
    match = _NAME_RE.fullmatch(filename)
    if span not in ("daily", "monthly") or match is None:
        return None
    if (match["symbol"], match["interval"]) != (symbol, interval):
        return None
    if interval not in ARCHIVED_INTERVALS or find_listing(symbol) is None:
        return None
    period = _period(span, match["period"])
    if period is None:
        return None
    start_ms, end_ms = period
    zip_name = filename.removesuffix(".CHECKSUM")
    return ArchiveRequest(
        symbol, interval, span, start_ms, end_ms, zip_name, bool(match["checksum"])
    )


def _period(span: str, text: str) -> tuple[int, int] | None:
    """``[start_ms, end_ms)`` of a ``YYYY-MM-DD`` day or ``YYYY-MM`` month."""
    try:
        if span == "daily":
            day = dt.date.fromisoformat(text)
            return timegrid.day_start_ms(day), timegrid.day_start_ms(day + dt.timedelta(days=1))
        first = dt.date.fromisoformat(f"{text}-01")
    except ValueError:
        return None
    start = timegrid.day_start_ms(first)
    return start, timegrid.next_open("1M", start)


def is_published(request: ArchiveRequest, now_ms: int) -> bool:
    """Whether the archive has published this period yet (see the module docstring)."""
    if request.span == "daily":
        today = now_ms // DAY_MS * DAY_MS
        return request.end_ms <= today - DAY_MS
    return request.end_ms <= timegrid.candle_open("1M", now_ms)


def zip_bytes(request: ArchiveRequest) -> bytes | None:
    """The zip of a published period, or None when it would hold no candle."""
    return _build_zip(
        request.symbol, request.interval, request.start_ms, request.end_ms, request.zip_name
    )


@functools.lru_cache(maxsize=128)
def _build_zip(
    symbol: str, interval: str, start_ms: int, end_ms: int, zip_name: str
) -> bytes | None:
    # The period has ended, so "now" at its last instant closes every candle in it.
    candles = market.candles(symbol, interval, start_ms, end_ms, end_ms - 1)
    if not len(candles):
        return None
    entry = zipfile.ZipInfo(zip_name.removesuffix(".zip") + ".csv", date_time=_ZIP_DATE)
    entry.compress_type = zipfile.ZIP_DEFLATED
    entry.create_system = 3
    entry.external_attr = 0o644 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(entry, candles.csv_bytes())
    return buffer.getvalue()


def checksum_text(zip_data: bytes, zip_name: str) -> bytes:
    """The ``.CHECKSUM`` file of a zip."""
    return f"{hashlib.sha256(zip_data).hexdigest()}  {zip_name}\n".encode()


def corrupt(zip_data: bytes) -> bytes:
    """The zip with a byte of its compressed data flipped: it no longer matches its checksum."""
    middle = len(zip_data) // 2
    return zip_data[:middle] + bytes([zip_data[middle] ^ 0xFF]) + zip_data[middle + 1 :]

"""Which archive files a backfill reads: the months and days worth a file, the rest from the API.

``archive`` reads every day before today that misses candles; ``auto`` only the days at least
two days old, and only where a file pays off (see :mod:`ost.backfill`). A month is read from its
monthly zip when at least half of its days miss candles (1s excepted: its days are read one by
one, to bound memory); last month's zip, if not published yet, is replaced by its daily zips
(:func:`fallback_days`). Whatever no file planned here fills comes from the API.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Final, Literal, get_args

from ost import intervals
from ost.archive import ArchiveFile, daily_file, is_archived, monthly_file
from ost.binance import PAGE_LIMIT
from ost.errors import BadInput
from ost.gaps import Range, candle_count, intersect
from ost.intervals import Interval, Symbol

Source = Literal["api", "archive", "auto"]
SOURCES: Final[tuple[str, ...]] = get_args(Source)

#: Requests an archive file costs: the zip and its ``.CHECKSUM``.
FILE_REQUESTS: Final = 2
#: ``auto`` reads the archive only for days that ended at least this long before today began.
AUTO_ARCHIVE_LAG_MS: Final = intervals.DAY_MS
#: A monthly zip is read when at least this share of the month's days miss candles.
MONTHLY_MIN_DAY_SHARE: Final = 0.5
#: Months with more candles than this (1s) are read day by day, to bound memory.
MONTHLY_MAX_CANDLES: Final = 100_000


def check_source(source: str) -> Source:
    """``source`` if it is ``api``, ``archive`` or ``auto``, else :class:`BadInput`."""
    if source not in SOURCES:
        raise BadInput(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    return source  # type: ignore[return-value]  # narrowed by the membership test above


def plan_archive(
    symbol: Symbol, interval: Interval, todo: list[Range], now_ms: int, source: str
) -> list[ArchiveFile]:
    """The archive files to read for ``todo``, oldest first (see the module docstring)."""
    if not todo or not is_archived(interval):
        return []
    today = _day_start(now_ms)
    cutoff = today if source == "archive" else today - AUTO_ARCHIVE_LAG_MS
    this_month = intervals.align("1M", now_ms)
    files: list[ArchiveFile] = []
    month = intervals.align("1M", todo[0][0])
    while month < min(cutoff, todo[-1][1]):
        month_file = monthly_file(symbol, interval, month)
        if month_file.end_ms <= min(cutoff, this_month) and _month_pays_off(
            month_file, todo, source
        ):
            files.append(month_file)
        else:
            files += plan_days(todo, month_file, cutoff=cutoff, source=source)
        month = month_file.end_ms
    return files


def plan_days(
    todo: list[Range], month: ArchiveFile, *, cutoff: int, source: str
) -> list[ArchiveFile]:
    """The daily files to read for the part of ``todo`` in ``month`` that ends by ``cutoff``."""
    files = []
    for day_start in range(month.start_ms, min(month.end_ms, cutoff), intervals.DAY_MS):
        day = daily_file(month.symbol, month.interval, _date(day_start))
        if day.end_ms <= cutoff and _pays_off(month.interval, wanted_in(todo, day), source):
            files.append(day)
    return files


def fallback_days(
    todo: list[Range], missing: ArchiveFile, *, now_ms: int, source: str
) -> list[ArchiveFile]:
    """The daily files that replace ``missing``, a file the archive does not hold; often none.

    Only last month's zip may be missing for want of time (it is published some days into the
    month); an older one, or a daily zip, is really absent, and its candles come from the API.
    """
    if missing.span != "monthly" or missing.end_ms != intervals.align("1M", now_ms):
        return []
    return plan_days(todo, missing, cutoff=_day_start(now_ms), source=source)


def wanted_in(todo: list[Range], file: ArchiveFile) -> list[Range]:
    """The part of ``todo`` that ``file`` covers."""
    return intersect(todo, [(file.start_ms, file.end_ms)])


def _month_pays_off(month: ArchiveFile, todo: list[Range], source: str) -> bool:
    if intervals.count_between(month.interval, month.start_ms, month.end_ms) > MONTHLY_MAX_CANDLES:
        return False
    part = wanted_in(todo, month)
    days = range(month.start_ms, month.end_ms, intervals.DAY_MS)
    missing_days = sum(1 for day in days if intersect(part, [(day, day + intervals.DAY_MS)]))
    return missing_days >= MONTHLY_MIN_DAY_SHARE * len(days) and _pays_off(
        month.interval, part, source
    )


def _pays_off(interval: str, part: list[Range], source: str) -> bool:
    """Whether reading a file for ``part`` is worth it: always for ``archive``, if non-empty."""
    if not part:
        return False
    if source == "archive":
        return True
    return math.ceil(candle_count(interval, part) / PAGE_LIMIT) >= FILE_REQUESTS


def _day_start(ms: int) -> int:
    return ms // intervals.DAY_MS * intervals.DAY_MS


def _date(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()

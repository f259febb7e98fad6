"""The project's time formats: every text form of a time or a duration it writes, each once.

One function per format, named for where the text goes. Several are part of the interface and
keep their exact form (docs/CONTRACT.md): :func:`report_time` (``ost gaps``), :func:`json_time`
(``ost status --json``), :func:`alert_time` (the alerts' texts), :func:`file_stamp` and
:func:`quarantine_stamp` (file names that sort in time order).
"""

from __future__ import annotations

import datetime as dt
from typing import Final

#: ``quarantine/<stamp>/``: the UTC time to the microsecond, so that moves sort in time order.
_QUARANTINE_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"


def moment(ms: int) -> dt.datetime:
    """Epoch milliseconds as an aware datetime in UTC."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def terminal_time(ms: int | None) -> str:
    """``2024-12-31 23:59`` (UTC), ``-`` for None: times in the commands' tables and lines."""
    if ms is None:
        return "-"
    return moment(ms).strftime("%Y-%m-%d %H:%M")


def alert_time(at: dt.datetime | None) -> str:
    """``2026-11-03 12:00:00 UTC``, ``-`` for None: times in the alerts' texts."""
    return "-" if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report_time(ms: int) -> str:
    """ISO-8601 UTC like ``2023-03-24T12:40:00Z`` (milliseconds only when there are some).

    The times of ``ost gaps`` (its report, its JSON, the exchange-side gap records), in the form
    that ``ost gaps --start`` takes back.
    """
    return (
        moment(ms)
        .isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
        .replace("+00:00", "Z")
    )


def json_time(at: dt.datetime | None) -> str | None:
    """``2026-11-03T12:00:00.123456+00:00`` (Python's ISO form, in UTC), None for None.

    The times of ``ost status --json``.
    """
    return None if at is None else at.astimezone(dt.UTC).isoformat()


def file_stamp(at: dt.datetime) -> str:
    """``20261103T120000Z``: the UTC time to the second, in a file's name (the corrupt ledger's)."""
    return at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def quarantine_stamp(at: dt.datetime) -> str:
    """``20261103T120000.123456Z``: the name of one quarantine move's directory."""
    return at.astimezone(dt.UTC).strftime(_QUARANTINE_STAMP)


def parse_quarantine_stamp(stamp: str) -> dt.datetime:
    """The time that :func:`quarantine_stamp` wrote (aware, UTC); ValueError for other text."""
    return dt.datetime.strptime(stamp, _QUARANTINE_STAMP).replace(tzinfo=dt.UTC)


def arrival_time(at: dt.datetime) -> str:
    """``12:00:00``: when a notice reached the drills' receiver (``python -m alerts.receiver``)."""
    return at.strftime("%H:%M:%S")


def human_duration(span: dt.timedelta) -> str:
    """``45 s``, ``31 min``, ``1 h 5 min``, ``2 d 3 h``: a duration for people."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs and minutes < 10 else f"{minutes} min"
    return f"{secs} s"


def skew_seconds(skew_ms: int) -> str:
    """``+7200.0 s``: a signed clock skew in seconds."""
    return f"{skew_ms / 1000:+.1f} s"


def setting_duration(limit: dt.timedelta) -> str:
    """``5s``, ``1.5s``: a duration setting as an operator would type it."""
    return f"{limit.total_seconds():g}s"

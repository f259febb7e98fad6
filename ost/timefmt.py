"""Formatting of epoch milliseconds for people."""

from __future__ import annotations

import datetime as dt


def iso_ms(ms: int | None) -> str:
    """``2024-12-31 23:59`` (UTC) for epoch milliseconds, ``-`` for None."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")

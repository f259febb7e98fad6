"""What one stream's backfill did (:class:`BackfillResult`), and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ost.gaps import Range
from ost.intervals import Interval, Symbol

#: ``progress(done_candles, total_candles)`` after each stored page or file.
Progress = Callable[[int, int], None]
#: ``progress(symbol, interval, done_candles, total_candles)`` for a multi-stream backfill.
StreamProgress = Callable[[Symbol, Interval, int, int], None]


@dataclass
class BackfillResult:
    """What one stream's backfill did. ``missing`` counts the candles it set out to fill.

    ``ok`` only when the range is complete (every hole left proven exchange-side); else
    ``incomplete`` is the one line that says what is still missing and why, or ``error`` why
    the stream failed. ``written`` counts the candles really stored.
    """

    symbol: Symbol
    interval: Interval
    start_ms: int
    end_ms: int
    source: str
    ok: bool = True
    missing: int = 0
    written: int = 0
    from_archive: int = 0
    from_api: int = 0
    archive_files: list[str] = field(default_factory=list)
    archive_missing: list[str] = field(default_factory=list)
    archive_refused: list[str] = field(default_factory=list)
    api_pages: int = 0
    exchange_gaps: list[Range] = field(default_factory=list)
    seconds: float = 0.0
    reason: str | None = None
    error: str | None = None
    #: Candles of the range still missing afterwards (not proven exchange-side).
    still_missing: int = 0
    #: How many, where and why, in one line, when ``still_missing``.
    incomplete: str | None = None
    #: The recorded gaps that ``recheck`` forgot before asking Binance again.
    rechecked: list[Range] = field(default_factory=list)

    @property
    def status(self) -> Literal["ok", "incomplete", "failed"]:
        """``failed`` (an error), ``incomplete`` (candles still missing), or ``ok``."""
        if self.error is not None:
            return "failed"
        return "incomplete" if self.still_missing else "ok"

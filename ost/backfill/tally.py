"""What one stream's backfill has settled so far: the counts, the progress, the verdict."""

from __future__ import annotations

from ost.backfill.result import BackfillResult, Progress
from ost.gaps import Range, Unanswered, candle_count, incomplete_line, subtract
from ost.intervals import Interval, Symbol


class StreamTally:
    """Counts what the archive and the API paths store, reports progress, and judges the end.

    ``todo`` is what the stream set out to fill; the paths :meth:`settle` what they hand to the
    store and what they prove absent, and :meth:`conclude` says what is left.
    """

    def __init__(
        self, result: BackfillResult, todo: list[Range], progress: Progress | None
    ) -> None:
        self.result = result
        self.todo = todo
        self.progress = progress
        self.done = 0
        #: What is settled of ``todo``: candles handed to the store, and proven gaps.
        self.settled: list[Range] = []
        #: The ranges Binance answered nothing for (not even a later candle).
        self.unanswered: list[Unanswered] = []

    @property
    def symbol(self) -> Symbol:
        """The stream's symbol."""
        return self.result.symbol

    @property
    def interval(self) -> Interval:
        """The stream's interval."""
        return self.result.interval

    def report(self, settled: int) -> None:
        """Count ``settled`` more candles as done and tell the progress callback."""
        self.done += settled
        if self.progress is not None:
            self.progress(self.done, self.result.missing)

    def settle(self, ranges: list[Range]) -> None:
        """Count ``ranges`` as settled: handed to the store, or proven absent."""
        self.settled += ranges

    def leave_unanswered(self, unanswered: Unanswered) -> None:
        """Note a range Binance answered nothing for: it stays missing."""
        self.unanswered.append(unanswered)

    def count_archive_writes(self, added: int) -> None:
        """Count ``added`` new candles stored from the archive."""
        self.result.written += added
        self.result.from_archive += added

    def count_api_writes(self, added: int) -> None:
        """Count ``added`` new candles stored from the API."""
        self.result.written += added
        self.result.from_api += added

    def conclude(self) -> None:
        """Judge the result: ``ok`` only if every candle of ``todo`` is stored or proven absent.

        Every candle handed to the writers is stored (a merge that fails raises), so what is
        left is exactly what neither the store nor a proven gap holds.
        """
        left = subtract(self.todo, self.settled)
        self.result.still_missing = candle_count(self.interval, left)
        self.result.ok = not left
        if left:
            self.result.reason = "incomplete"
            self.result.incomplete = incomplete_line(self.interval, left, self.unanswered)

"""``ost gaps --repair``: backfill what is missing of many streams, then check them again."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Unpack

from ost.backfill.result import BackfillResult
from ost.backfill.streams import StreamsOptions, backfill_streams
from ost.binance import BinanceClient
from ost.errors import EXIT_FAILED
from ost.gaps import CandleRange, GapReport, StreamGaps, gap_report
from ost.intervals import Stream
from ost.store import CandleStore


@dataclass(frozen=True)
class RepairOutcome:
    """What ``ost gaps --repair`` did: the backfills, then the gap check after them."""

    backfills: list[BackfillResult]
    report: GapReport

    def exit_status(self) -> int:
        """1 if a backfill failed, else the report's status (0, or 3 if gaps remain)."""
        if any(result.status == "failed" for result in self.backfills):
            return EXIT_FAILED
        return self.report.exit_status()


def repair_gaps(
    client: BinanceClient,
    store: CandleStore,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    **options: Unpack[StreamsOptions],
) -> RepairOutcome:
    """Backfill what is missing in ``[start_ms, end_ms)`` for each stream, then check again.

    ``options`` go to :func:`~ost.backfill.streams.backfill_streams` (``source``, ``workers``,
    ...). ``recheck`` first forgets the exchange-side gaps recorded in the range, so that Binance
    is asked about them again: a wrong record is undone, a real gap recorded anew with its
    evidence. The report says why candles are still missing, and which records were rechecked.
    """
    # The check judges "closed" at the instant the repair began: every backfill measures its
    # own "now" at or after it, so a candle that closes meanwhile is never reported missing.
    now = client.now_ms()
    results = backfill_streams(client, store, streams, start_ms, end_ms, **options)
    report = gap_report(store, streams, start_ms, end_ms, now)
    explained = [
        _explained(stream, result) for stream, result in zip(report.streams, results, strict=True)
    ]
    return RepairOutcome(results, GapReport(explained, checked_at_ms=report.checked_at_ms))


def _explained(stream: StreamGaps, result: BackfillResult) -> StreamGaps:
    """``stream`` with what its backfill said: why candles are missing, what was rechecked."""
    return dataclasses.replace(
        stream,
        why=result.incomplete or result.error or stream.why,
        rechecked=tuple(CandleRange.of(stream.interval, gap) for gap in result.rechecked),
    )

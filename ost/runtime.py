"""The objects one process works with, built once from the settings: client, store, ledger.

Commands and flow runs both go through :class:`Runtime`, so an ingestion, a backfill or a gap
check does the same work, and leaves the same record, whoever started it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ost.backfill import BackfillResult, Progress, StreamProgress, backfill_stream, repair
from ost.binance import BinanceClient
from ost.gaps import GapReport, gap_report
from ost.ingest import StreamOutcome, ingest_all, ingest_or_report
from ost.ledger import Ledger
from ost.settings import Settings, load_settings
from ost.store import CandleStore

Stream = tuple[str, str]


@dataclass
class Runtime:
    """Settings plus the long-lived objects built from them."""

    settings: Settings
    client: BinanceClient
    store: CandleStore
    ledger: Ledger

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Build the client, the store and the ledger that ``settings`` describe."""
        return cls(
            settings,
            BinanceClient.from_settings(settings),
            CandleStore(settings.data_dir),
            Ledger.for_settings(settings),
        )

    def streams(
        self, symbols: Sequence[str] | None = None, intervals: Sequence[str] | None = None
    ) -> list[Stream]:
        """Every (symbol, interval) pair, by default the configured ones."""
        return [
            (symbol, interval)
            for symbol in symbols or self.settings.symbols
            for interval in intervals or self.settings.intervals
        ]

    def ingest(self, symbol: str, interval: str) -> StreamOutcome:
        """Ingest one stream and record its outcome; a failure comes back in the outcome."""
        outcome = ingest_or_report(
            self.client,
            self.store,
            symbol,
            interval,
            lookback_days=self.settings.initial_lookback_days,
        )
        self.record(outcome)
        return outcome

    def ingest_many(self, streams: Sequence[Stream]) -> list[StreamOutcome]:
        """Ingest streams in turn, recording each outcome; a failed one stops no other."""
        return ingest_all(
            self.client,
            self.store,
            streams,
            lookback_days=self.settings.initial_lookback_days,
            on_outcome=self.record,
        )

    def record(self, outcome: StreamOutcome) -> None:
        """Leave an ingestion's outcome, and the requests it made, in the ledger."""
        self.ledger.record_outcome(outcome)
        self.ledger.record_requests(self.client.log)

    def backfill(
        self,
        symbol: str,
        interval: str,
        start_ms: int,
        end_ms: int,
        *,
        source: str,
        progress: Progress | None = None,
        streams_at_once: int = 1,
    ) -> BackfillResult:
        """Backfill one stream and record what it wrote; raise on failure.

        ``streams_at_once`` streams share ``OST_MAX_CONCURRENCY`` requests in flight.
        """
        try:
            result = backfill_stream(
                self.client,
                self.store,
                symbol,
                interval,
                start_ms,
                end_ms,
                source=source,
                archive_base_url=self.settings.archive_base_url,
                progress=progress,
                workers=max(1, self.settings.max_concurrency // max(1, streams_at_once)),
            )
        finally:
            self.ledger.record_requests(self.client.log)
        self.record_backfill(result)
        return result

    def record_backfill(self, result: BackfillResult) -> None:
        """Count the candles a backfill wrote, and the requests it made."""
        self.ledger.record_written(result.symbol, result.interval, result.written)
        self.ledger.record_requests(self.client.log)

    def check_gaps(
        self,
        streams: Sequence[Stream],
        start_ms: int,
        end_ms: int,
        *,
        repair_gaps: bool = False,
        progress: StreamProgress | None = None,
    ) -> tuple[GapReport, int]:
        """The gap report of ``streams`` over the range, after a repair if asked; and the status."""
        if not repair_gaps:
            report = gap_report(self.store, streams, start_ms, end_ms, int(time.time() * 1000))
            return report, report.exit_status()
        outcome = repair(
            self.client,
            self.store,
            streams,
            start_ms,
            end_ms,
            archive_base_url=self.settings.archive_base_url,
            progress=progress,
            workers=self.settings.max_concurrency,
        )
        for result in outcome.backfills:
            self.record_backfill(result)
        return outcome.report, outcome.exit_status()

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


@functools.cache
def current_runtime() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    return Runtime.from_settings(load_settings())

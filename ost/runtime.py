"""The objects one process works with, built once from the settings: client, store, ledger.

Commands and flow runs both go through :class:`Runtime`, so an ingestion records its outcome in
the same way whoever started it.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

from ost.binance import BinanceClient
from ost.ingest import StreamOutcome, ingest_or_report
from ost.settings import Settings, load_settings
from ost.store import CandleStore


@dataclass
class Runtime:
    """Settings plus the long-lived objects built from them."""

    settings: Settings
    client: BinanceClient
    store: CandleStore
    _record_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Build the client and the store that ``settings`` describe."""
        return cls(settings, BinanceClient.from_settings(settings), CandleStore(settings.data_dir))

    def streams(
        self, symbols: list[str] | None = None, intervals: list[str] | None = None
    ) -> list[tuple[str, str]]:
        """Every (symbol, interval) pair, by default the configured ones."""
        return [
            (symbol, interval)
            for symbol in symbols or self.settings.symbols
            for interval in intervals or self.settings.intervals
        ]

    def ingest(self, symbol: str, interval: str) -> StreamOutcome:
        """Ingest one stream and record its outcome; failures come back in the outcome."""
        outcome = ingest_or_report(
            self.client,
            self.store,
            symbol,
            interval,
            lookback_days=self.settings.initial_lookback_days,
        )
        self.record(outcome)
        return outcome

    def record(self, outcome: StreamOutcome) -> None:
        """Leave the outcome in the ingestion ledger (metrics and the watchdog read it)."""
        with self._record_lock:
            pass

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


@functools.cache
def current_runtime() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    return Runtime.from_settings(load_settings())

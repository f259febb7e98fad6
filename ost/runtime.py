"""The objects one process works with, built once from the settings: client, store, ledger.

Commands and flow runs both go through :class:`Runtime`, so an ingestion, a backfill or a gap
check does the same work, and leaves the same record, whoever started it. The store's directory
is checked when it is opened (:func:`open_store`), before any request or write. Every record
goes through :class:`~ost.ledger.Bookkeeping`: a ledger that cannot take it (locked, corrupt,
read-only, full) never costs a candle.

The client, the backfill and the ingestion are imported when first used, so that a command that
asks Binance nothing (``ost gaps`` without ``--repair``: :func:`stored_gap_report`) starts
without httpx.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ost.clock import ClockReading, earlier_now
from ost.errors import BadInput
from ost.gaps import GapReport, gap_report
from ost.intervals import Interval, Stream, Symbol
from ost.ledger import Bookkeeping, Ledger
from ost.settings import Settings, load_settings
from ost.store import CandleStore
from ost.universe import Selection, Universe, end_stream

if TYPE_CHECKING:
    from ost.backfill import BackfillResult, Progress, StreamProgress
    from ost.binance import BinanceClient
    from ost.ingest import StreamOutcome


@dataclass
class Runtime:
    """Settings plus the long-lived objects built from them."""

    settings: Settings
    client: BinanceClient
    store: CandleStore
    ledger: Ledger
    bookkeeping: Bookkeeping = field(init=False, repr=False)
    #: The run's view of Binance's spot symbols: patterns, and symbols that stopped trading.
    universe: Universe = field(init=False, repr=False)
    _recorded_clock: ClockReading | None = field(default=None, init=False, repr=False)
    _ledger_clock: ClockReading | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.bookkeeping = Bookkeeping(self.ledger)
        self.universe = Universe.for_settings(self.settings, self.client)
        # The hosts that earlier runs were told not to call yet: this one calls them no more.
        self.client.bans.load(
            self.bookkeeping.read("the hosts banned", lambda ledger: ledger.host_bans(), {})
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        """Build the store, the client and the ledger that ``settings`` describe.

        A data dir that cannot be used raises :class:`~ost.errors.BadInput` (see
        :func:`open_store`), before anything is requested or written.
        """
        from ost.binance import BinanceClient

        store = open_store(settings.data_dir)
        return cls(
            settings,
            BinanceClient.from_settings(settings),
            store,
            Ledger.for_settings(settings),
        )

    def resolve(self, selection: Selection | None = None, *, fresh: bool = True) -> list[Symbol]:
        """The symbols of ``selection`` (default ``OST_SYMBOLS``): patterns from exchangeInfo.

        See :meth:`ost.universe.Universe.resolve`; ``fresh`` False takes the listing kept
        whatever its age (``ost gaps``, which asks Binance nothing when it can).
        """
        chosen = selection or Selection.of(self.settings.symbols)
        return self.universe.resolve(chosen, fresh=fresh)

    def streams(
        self, symbols: Sequence[Symbol] | None = None, intervals: Sequence[Interval] | None = None
    ) -> list[Stream]:
        """Every (symbol, interval) pair, by default the configured ones (resolved)."""
        return [
            Stream(symbol, interval)
            for symbol in (self.resolve() if symbols is None else symbols)
            for interval in (self.settings.intervals if intervals is None else intervals)
        ]

    def ingest(self, symbol: Symbol, interval: Interval) -> StreamOutcome:
        """Ingest one stream and record its outcome; a failure comes back in the outcome.

        A stream whose symbol no longer trades ends (:func:`ost.universe.end_stream`) once it
        stored what Binance still has: its answers say so (:meth:`Universe.confirm`).
        """
        from ost.ingest import ingest_or_report

        outcome = ingest_or_report(
            self.client,
            self.store,
            symbol,
            interval,
            lookback_days=self.settings.initial_lookback_days,
        )
        if (why := self.universe.confirm(outcome)) is not None:
            outcome = end_stream(outcome, why)
        self.record(outcome)
        return outcome

    def ingest_many(self, streams: Sequence[Stream], *, workers: int = 1) -> list[StreamOutcome]:
        """Ingest streams, ``workers`` at once, each through :meth:`ingest`; one failing stops none.

        The outcomes come back in the order of ``streams``; the client's pacer keeps the threads
        inside one weight budget.
        """
        if workers <= 1 or len(streams) <= 1:
            return [self.ingest(symbol, interval) for symbol, interval in streams]
        at_once = min(workers, len(streams))
        with ThreadPoolExecutor(at_once, thread_name_prefix="ost-ingest") as run:
            return list(run.map(lambda stream: self.ingest(*stream), streams))

    def record(self, outcome: StreamOutcome) -> None:
        """Leave an ingestion's outcome, and the requests it made, in the ledger.

        A stream that ended is no success and no failure: only the candles it wrote count.
        """
        if outcome.ended is None:
            self.bookkeeping.record(
                f"the outcome of {outcome.symbol} {outcome.interval}",
                lambda ledger: ledger.record_outcome(outcome),
            )
        elif outcome.written:
            self.bookkeeping.record(
                f"the candles {outcome.symbol} {outcome.interval} wrote",
                lambda ledger: ledger.record_written(
                    outcome.symbol, outcome.interval, outcome.written
                ),
            )
        self.record_requests()
        self.record_clock()
        self.record_quarantined()

    def record_quarantined(self) -> None:
        """Count in the ledger the files the store moved to its quarantine since the last call."""
        moved = [(each.symbol or "", each.interval or "") for each in self.store.take_quarantined()]
        if moved:
            self.bookkeeping.record(
                "the files quarantined", lambda ledger: ledger.record_quarantined(moved)
            )

    def record_requests(self) -> None:
        """Leave the requests the client made since the last record in the ledger.

        With them go the hosts it was told not to call before a time, for the next runs (kept
        for the next record if the ledger cannot take them now).
        """
        self.bookkeeping.record(
            "the requests made", lambda ledger: ledger.record_requests(self.client.log)
        )
        bans = self.client.bans.take_unrecorded()
        if bans:
            self.bookkeeping.record(
                "the hosts banned", lambda ledger: self._record_bans(ledger, bans)
            )

    def _record_bans(self, ledger: Ledger, bans: dict[str, int]) -> None:
        """Record ``bans``; give them back to the client if the ledger cannot take them."""
        try:
            ledger.record_host_bans(bans)
        except BaseException:
            self.client.bans.give_back(bans)
            raise

    def record_clock(self) -> None:
        """Leave the client's measure of Binance's clock in the ledger, once per measure."""
        reading = self.client.clock_reading
        if reading is not None and reading is not self._recorded_clock:
            self.bookkeeping.record(
                "the clock skew", lambda ledger: ledger.record_clock_skew(reading)
            )
            self._recorded_clock = reading

    def clock_reading(self) -> ClockReading | None:
        """The skew this runtime worked with: measured now, or read from the ledger (gaps)."""
        return self.client.clock_reading or self._ledger_clock

    def clock_warning(self) -> str | None:
        """The warning line of a skew past ``OST_MAX_CLOCK_SKEW`` this runtime saw, else None."""
        reading = self.clock_reading()
        return None if reading is None else reading.warning(self.settings.max_clock_skew)

    def backfill_stream(
        self,
        symbol: Symbol,
        interval: Interval,
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
        from ost.backfill import backfill_stream

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
            self.record_requests()
            self.record_clock()
            self.record_quarantined()
        self.record_backfill(result)
        return result

    def record_backfill(self, result: BackfillResult) -> None:
        """Count the candles a backfill wrote, and the requests it made."""
        self.bookkeeping.record(
            f"the candles the backfill of {result.symbol} {result.interval} wrote",
            lambda ledger: ledger.record_written(result.symbol, result.interval, result.written),
        )
        self.record_requests()
        self.record_clock()
        self.record_quarantined()

    def check_gaps(
        self,
        streams: Sequence[Stream],
        start_ms: int,
        end_ms: int,
        *,
        repair: bool = False,
        recheck: bool = False,
        progress: StreamProgress | None = None,
    ) -> tuple[GapReport, int]:
        """The gap report of ``streams`` over the range, after a repair if asked; and the status.

        ``recheck`` forgets the recorded exchange-side gaps of the range and repairs (it implies
        ``repair``), so that Binance is asked about them again.
        """
        if not (repair or recheck):
            report, self._ledger_clock = stored_gap_report(
                self.store, self.bookkeeping, streams, start_ms, end_ms, self.client.local_ms()
            )
            return report, report.exit_status()
        from ost.backfill import repair_gaps

        outcome = repair_gaps(
            self.client,
            self.store,
            streams,
            start_ms,
            end_ms,
            archive_base_url=self.settings.archive_base_url,
            progress=progress,
            workers=self.settings.max_concurrency,
            recheck=recheck,
        )
        for result in outcome.backfills:
            self.record_backfill(result)
        return outcome.report, outcome.exit_status()

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def stored_gap_report(  # noqa: PLR0917  # the arguments of Runtime.check_gaps, and the clock
    store: CandleStore,
    bookkeeping: Bookkeeping,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    local_ms: int,
) -> tuple[GapReport, ClockReading | None]:
    """The gap report of what ``store`` holds, and the clock skew it took from the ledger.

    It asks Binance nothing (it works while Binance is down): the clocks' offset is the one last
    recorded, and "now" the earlier of the clocks (``local_ms`` the local one), as everywhere.
    """
    reading = bookkeeping.read(
        "the clock skew last measured", lambda ledger: ledger.last_clock_skew(), None
    )
    offset_ms = None if reading is None else reading.offset_ms
    now = earlier_now(local_ms, offset_ms)
    return gap_report(store, streams, start_ms, end_ms, now), reading


def open_store(data_dir: str) -> CandleStore:
    """The candle store at ``data_dir``; :class:`~ost.errors.BadInput` if it cannot be used.

    Checked without writing anything: a local path (or one of its parents) that is a file, or a
    directory that cannot be listed, is refused with one line naming it. A path that does not
    exist yet is created by the first write; remote URLs are left to their filesystem.
    """
    store = CandleStore(data_dir)
    if store.backend.is_local:
        _check_local_dir(data_dir, store.backend.root)
    return store


def _check_local_dir(data_dir: str, root: str) -> None:
    """Refuse a local data dir that is (or lies under) a file, or cannot be listed."""
    probe = root
    while True:
        try:
            mode = os.stat(probe).st_mode
        except (FileNotFoundError, NotADirectoryError):
            if os.path.dirname(probe) == probe:
                return
            probe = os.path.dirname(probe)
            continue
        except OSError as exc:
            raise BadInput(f"OST_DATA_DIR {data_dir!r}: {probe} {_cannot(exc)}") from None
        break
    if not stat.S_ISDIR(mode):
        raise BadInput(f"OST_DATA_DIR {data_dir!r}: {probe} is a file, not a directory")
    for directory in (root, os.path.join(root, "klines")):
        try:
            with os.scandir(directory):
                pass
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BadInput(f"OST_DATA_DIR {data_dir!r}: {directory} {_cannot(exc)}") from None


def _cannot(exc: OSError) -> str:
    return f"cannot be read ({exc.strerror or type(exc).__name__})"


@functools.cache
def current_runtime() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    return Runtime.from_settings(load_settings())

"""Backfill: fill a range of a stream's closed candles from the API or the archive, idempotently.

:func:`backfill_stream` computes what is missing in ``[start, end)``: the closed candles (by the
earlier of the local clock and Binance's, :mod:`ost.clock`) that are neither stored nor inside a
recorded exchange-side gap (:mod:`ost.gaps`), reading only the partitions that overlap the range.
It fetches only that, and stores every archive file and every API page as it arrives, so a
backfill that is killed keeps what it fetched and the next run fetches only the rest. A range
already complete costs no request.

Sources:

``api``
    ``/api/v3/klines`` pages of 1000 candles (:meth:`~ost.binance.BinanceClient.klines`).
``archive``
    data.binance.vision first (:mod:`ost.archive`), for intervals of 1s to 1d: a month before the
    current one with missing candles on at least half of its days comes from its monthly zip (1s
    excepted: a month of 1s is 2.6 million rows, so its days come from daily zips), every other
    day before today with missing candles from its daily zip (last month's zip, if not published
    yet, is replaced by its daily zips). What the archive lacks (404: the newest days, a monthly
    zip not yet published) or refuses (a zip that fails its checksum, a
    bad CSV, a server that stays down) comes from the API, and so do the candles a zip does not
    hold, so that only the API decides what an exchange-side gap is.
``auto``
    The archive for the days at least two days old (today - 2 and before, UTC), file by file,
    where a file pays off: when the candles it would fill need at least as many API pages as the
    file costs requests (2, the zip and its checksum), i.e. at least 1001 candles, about a day of
    1m, a month of 15m, or any day of 1s; the API for the rest. Under that rule 1h and longer
    intervals always use the API (a month of 1h is 720 candles, one page).

Exchange-side gaps need evidence. The API is asked for each missing range page by page until
its end (:mod:`ost.paging`: a short page is not the end of the data). A hole is recorded in
:class:`~ost.gaps.ExchangeGapLog`, with its evidence, only when an answer proves it (a later
candle shows that Binance skipped it); recorded gaps are skipped by every later backfill and gap
check. A range Binance answered nothing for, not even a later candle, is left missing.

A stream's result is ``ok`` only when its range is complete, every hole left proven
exchange-side; otherwise it is ``incomplete``, and :attr:`BackfillResult.incomplete` says in one
line how many candles are still missing, where, and why.

Nothing here imports prefect: the flows wrap these functions.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import math
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar, get_args

import numpy as np
import pandas as pd

from ost import intervals, klines
from ost.archive import (
    Archive,
    ArchiveFile,
    daily_file,
    is_archived,
    monthly_file,
    parse_zip,
)
from ost.binance import PAGE_LIMIT, BinanceClient
from ost.errors import EXIT_FAILED, ArchiveError, BadInput, OstError
from ost.gaps import (
    CandleRange,
    ExchangeGapLog,
    GapReport,
    Range,
    StreamGaps,
    Unanswered,
    candle_count,
    closed_stop,
    first_open_from,
    gap_report,
    incomplete_line,
    intersect,
    missing_ranges,
    runs_of,
    subtract,
)
from ost.intervals import Stream
from ost.paging import Page, read_range, read_step
from ost.settings import DEFAULT_MAX_CONCURRENCY, load_settings
from ost.store import CandleStore, Quarantined, split_by_partition

Item = TypeVar("Item")
Done = TypeVar("Done")

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
#: Streams one :func:`backfill` runs at once. Many short streams (``--interval all --days 1``)
#: are bound by round trips, so they overlap; more than 4 would only add parse threads.
STREAMS_AT_ONCE: Final = 4
#: Partition writers per stream. Writing is mostly Python under the GIL, so more threads
#: only add contention; two let one fsync while the other encodes.
WRITERS: Final = 2

#: ``progress(done_candles, total_candles)`` after each stored page or file.
Progress = Callable[[int, int], None]
#: ``progress(symbol, interval, done_candles, total_candles)`` for a multi-stream backfill.
StreamProgress = Callable[[str, str, int, int], None]


@dataclass
class BackfillResult:
    """What one stream's backfill did. ``missing`` counts the candles it set out to fill.

    ``ok`` only when the range is complete (every hole left proven exchange-side); else
    ``incomplete`` is the one line that says what is still missing and why, or ``error`` why
    the stream failed. ``written`` counts the candles really stored.
    """

    symbol: str
    interval: str
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


def check_source(source: str) -> Source:
    """``source`` if it is ``api``, ``archive`` or ``auto``, else :class:`BadInput`."""
    if source not in SOURCES:
        raise BadInput(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    return source  # type: ignore[return-value]  # narrowed by the membership test above


def backfill_stream(  # noqa: PLR0917  # the signature promised to the CLI and the flows
    client: BinanceClient,
    store: CandleStore,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
    progress: Progress | None = None,
    workers: int = DEFAULT_MAX_CONCURRENCY,
    recheck: bool = False,
) -> BackfillResult:
    """Fill the closed candles of ``[start_ms, end_ms)`` that are missing; raise on a failure.

    ``archive_base_url`` defaults to ``OST_ARCHIVE_BASE_URL``. Whatever was stored before a
    failure stays stored; running again resumes. ``recheck`` first forgets the exchange-side
    gaps recorded in the range, so that Binance is asked about them again.
    """
    intervals.check_symbol(symbol)
    intervals.check_interval(interval)
    chosen = check_source(source)
    started = time.perf_counter()
    now = client.now_ms()  # the earlier of the two clocks: see ost.clock
    first = first_open_from(interval, start_ms)
    stop = max(first, closed_stop(interval, end_ms, now))
    gap_log = ExchangeGapLog.of(store)
    rechecked = (
        gap_log.forget(symbol, interval, (first, first_open_from(interval, end_ms)))
        if recheck
        else []
    )
    refetched: list[BackfillResult] = []  # damaged partitions met: quarantined, fetched again

    def refetch(quarantined: Quarantined) -> None:
        again = refetch_quarantined(
            client, store, quarantined, source=chosen, archive_base_url=archive_base_url
        )
        refetched.extend([again] if again is not None else [])

    stored = store.healing(
        symbol, interval, lambda: missing_ranges(store, symbol, interval, first, stop), refetch
    )
    todo = subtract(stored, gap_log.load(symbol, interval))
    result = BackfillResult(
        symbol,
        interval,
        first,
        stop,
        chosen,
        missing=candle_count(interval, todo),
        rechecked=rechecked,
    )
    for again in refetched:
        result.written += again.written
        result.from_archive += again.from_archive
        result.from_api += again.from_api
    run = _Run(client, store, result, progress=progress, now_ms=now, todo=todo)
    run.report(0)
    if chosen != "api" and is_archived(interval) and todo:
        base_url = archive_base_url or load_settings().archive_base_url
        # The client's connection pool serves the archive too (same timeout and user agent).
        archive = Archive(base_url, client._http, max_attempts=client.max_attempts)
        files = plan_archive(symbol, interval, todo, now, chosen)
        todo = run.from_archive(archive, files, todo, workers)
    for missing in todo:
        run.from_api(missing, workers)
    run.conclude()
    run.result.seconds = time.perf_counter() - started
    return run.result


def refetch_quarantined(
    client: BinanceClient,
    store: CandleStore,
    quarantined: Quarantined,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
) -> BackfillResult | None:
    """Fetch again the candles of a quarantined partition: a backfill of its whole range.

    None for a file that was not a partition's own (its rows were never the store's).
    """
    span = quarantined.range_ms
    if span is None or quarantined.symbol is None or quarantined.interval is None:
        return None
    return backfill_stream(
        client,
        store,
        quarantined.symbol,
        quarantined.interval,
        *span,
        source=source,
        archive_base_url=archive_base_url,
    )


def backfill(
    client: BinanceClient,
    store: CandleStore,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
    progress: StreamProgress | None = None,
    on_result: Callable[[BackfillResult], None] | None = None,
    workers: int = DEFAULT_MAX_CONCURRENCY,
    recheck: bool = False,
) -> list[BackfillResult]:
    """:func:`backfill_stream` for each stream, several at once; a failed one is reported.

    Up to ``STREAMS_AT_ONCE`` streams run at once and share ``workers`` requests in flight
    (at least one each), inside the client's one weight budget. ``on_result`` is called in this
    thread, and the results come back, in the streams' order.
    """
    chosen = check_source(source)
    at_once = max(1, min(len(streams), STREAMS_AT_ONCE, workers))

    def run(stream: Stream) -> BackfillResult:
        symbol, interval = stream
        started = time.perf_counter()
        try:
            return backfill_stream(
                client,
                store,
                symbol,
                interval,
                start_ms,
                end_ms,
                source=chosen,
                archive_base_url=archive_base_url,
                progress=_bind_progress(progress, symbol, interval),
                workers=max(1, workers // at_once),
                recheck=recheck,
            )
        except OstError as exc:
            return BackfillResult(
                symbol,
                interval,
                start_ms,
                end_ms,
                chosen,
                ok=False,
                seconds=time.perf_counter() - started,
                reason=exc.reason,
                error=str(exc),
            )

    results = []
    with contextlib.closing(in_order_concurrently(run, streams, at_once)) as outcomes:
        for result in outcomes:
            if on_result is not None:
                on_result(result)
            results.append(result)
    return results


def _bind_progress(progress: StreamProgress | None, symbol: str, interval: str) -> Progress | None:
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(symbol, interval, done, total)

    return report


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


def repair(
    client: BinanceClient,
    store: CandleStore,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    *,
    source: str = "api",
    archive_base_url: str | None = None,
    progress: StreamProgress | None = None,
    workers: int = DEFAULT_MAX_CONCURRENCY,
    recheck: bool = False,
) -> RepairOutcome:
    """Backfill what is missing in ``[start_ms, end_ms)`` for each stream, then check again.

    ``recheck`` first forgets the exchange-side gaps recorded in the range, so that Binance is
    asked about them again: a wrong record is undone, a real gap recorded anew with its evidence.
    The report says why candles are still missing, and which records were rechecked.
    """
    # The check judges "closed" at the instant the repair began: every backfill measures its
    # own "now" at or after it, so a candle that closes meanwhile is never reported missing.
    now = client.now_ms()
    results = backfill(
        client,
        store,
        streams,
        start_ms,
        end_ms,
        source=source,
        archive_base_url=archive_base_url,
        progress=progress,
        workers=workers,
        recheck=recheck,
    )
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


# ---- planning the archive ----------------------------------------------------------------------


def plan_archive(
    symbol: str, interval: str, todo: list[Range], now_ms: int, source: str
) -> list[ArchiveFile]:
    """The archive files to read for ``todo``, oldest first (see the module docstring)."""
    if not todo or not is_archived(interval):
        return []
    today = now_ms // intervals.DAY_MS * intervals.DAY_MS
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
        if day.end_ms <= cutoff and _pays_off(month.interval, _inside(todo, day), source):
            files.append(day)
    return files


def _month_pays_off(month: ArchiveFile, todo: list[Range], source: str) -> bool:
    if intervals.count_between(month.interval, month.start_ms, month.end_ms) > MONTHLY_MAX_CANDLES:
        return False
    part = _inside(todo, month)
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


def _inside(todo: list[Range], file: ArchiveFile) -> list[Range]:
    return intersect(todo, [(file.start_ms, file.end_ms)])


def _date(ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()


# ---- running one stream ------------------------------------------------------------------------

#: What downloading a file gave: its verified zip, None (not in the archive), or why it was
#: refused.
_Fetched = tuple[ArchiveFile, bytes | ArchiveError | None]


class _Run:
    """One stream's backfill in progress: stores what arrives, records gaps, reports progress."""

    def __init__(
        self,
        client: BinanceClient,
        store: CandleStore,
        result: BackfillResult,
        *,
        progress: Progress | None,
        now_ms: int,
        todo: list[Range],
    ) -> None:
        self.client = client
        self.store = store
        self.gap_log = ExchangeGapLog.of(store)
        self.result = result
        self.progress = progress
        self.now_ms = now_ms
        self.done = 0
        self.todo = todo
        #: What is settled of ``todo``: candles handed to the store, and proven gaps.
        self.settled: list[Range] = []
        #: The ranges Binance answered nothing for (not even a later candle).
        self.unanswered: list[Unanswered] = []

    @property
    def symbol(self) -> str:
        """The stream's symbol."""
        return self.result.symbol

    @property
    def interval(self) -> str:
        """The stream's interval."""
        return self.result.interval

    def report(self, settled: int) -> None:
        """Count ``settled`` more candles as done and tell the progress callback."""
        self.done += settled
        if self.progress is not None:
            self.progress(self.done, self.result.missing)

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

    # -- the archive

    def from_archive(
        self, archive: Archive, files: list[ArchiveFile], todo: list[Range], workers: int
    ) -> list[Range]:
        """Store what ``files`` hold of ``todo``; the ranges still missing afterwards.

        Files are downloaded ``workers`` at once and their partitions written by ``WRITERS``
        threads, so downloads, parsing and fsyncs overlap.
        """
        filled: list[Range] = []
        fetched = contextlib.closing(self._fetch_all(archive, files, todo, workers))
        writer = _Writer(self.store, self.symbol, self.interval, WRITERS)
        with writer, fetched as outcomes:
            for file, outcome in outcomes:
                filled += self._take(file, outcome, todo, writer)
            self._count_archive_writes(writer.drain())
        self.settled += filled
        return subtract(todo, filled)

    def _take(
        self,
        file: ArchiveFile,
        outcome: bytes | ArchiveError | None,
        todo: list[Range],
        writer: _Writer,
    ) -> list[Range]:
        """Store what one file gave of ``todo`` and note its fate; the ranges it filled.

        Zips are parsed here, in the consuming thread, not in the download threads: a monthly
        file takes about 30 MB while parsed, and each thread that parses keeps its own malloc
        arena at that peak (8 downloaders parsing cost 280 MB of RSS).
        """
        if outcome is None:
            self.result.archive_missing.append(file.name)
            return []
        candles = outcome if isinstance(outcome, ArchiveError) else _parsed_or_error(outcome, file)
        if isinstance(candles, ArchiveError):
            self.result.archive_refused.append(f"{file.name}: {candles}")
            return []
        self.result.archive_files.append(file.name)
        return self._store_archive_rows(candles, _inside(todo, file), writer)

    def _store_archive_rows(
        self, frame: pd.DataFrame, wanted: list[Range], writer: _Writer
    ) -> list[Range]:
        """Hand the rows of ``frame`` inside ``wanted`` to the writers; the ranges they fill."""
        open_ms = klines.open_time_ms(frame)
        keep = np.zeros(len(open_ms), dtype=bool)
        for start, end in wanted:
            keep |= (open_ms >= start) & (open_ms < end)
        rows = frame if keep.all() else frame[keep].reset_index(drop=True)
        if rows.empty:
            return []
        for _, partition in split_by_partition(self.interval, rows):
            self._count_archive_writes(writer.submit(partition))
        self.report(len(rows))
        return runs_of(self.interval, klines.open_time_ms(rows))

    def _count_archive_writes(self, added: int) -> None:
        self.result.written += added
        self.result.from_archive += added

    def _fetch_all(
        self, archive: Archive, files: list[ArchiveFile], todo: list[Range], workers: int
    ) -> Generator[_Fetched, None, None]:
        """Each file's outcome in order, downloading up to ``workers`` files ahead."""
        fetched = contextlib.closing(
            in_order_concurrently(lambda file: self._fetch_one(archive, file, todo), files, workers)
        )
        with fetched as outcomes:
            for outcome in outcomes:
                yield from outcome

    def _fetch_one(self, archive: Archive, file: ArchiveFile, todo: list[Range]) -> list[_Fetched]:
        """One file's outcome; a monthly zip not published yet falls back to its daily zips."""
        outcome = _fetch_or_error(archive, file)
        if outcome is not None or not self._may_fall_back(file):
            return [(file, outcome)]
        cutoff = self.now_ms // intervals.DAY_MS * intervals.DAY_MS
        days = plan_days(todo, file, cutoff=cutoff, source=self.result.source)
        return [(file, None), *((day, _fetch_or_error(archive, day)) for day in days)]

    def _may_fall_back(self, file: ArchiveFile) -> bool:
        """Only last month's zip may be missing for want of time; older ones are really absent."""
        return file.span == "monthly" and file.end_ms == intervals.align("1M", self.now_ms)

    # -- the API

    def from_api(self, missing: Range, workers: int = 1) -> None:
        """Fetch ``missing`` from the API, storing it partition by partition; record proven gaps.

        ``missing`` ends at most at the current candle's open (:func:`ost.clock.closed_stop`, by
        the earlier of the local clock and Binance's, measured at the start), so every candle
        asked for is closed. Reading follows :mod:`ost.paging`: a short page is not the end, a
        hole is recorded exchange-side only with an answer that proves it, and what Binance
        answered nothing for stays missing. Requests run ``workers`` at a time (the client's
        pacer keeps them in the weight budget); pages are taken in time order and written once
        per partition, so memory stays bounded.
        """
        partitions = _PartitionBuffer(self.interval)
        with _Writer(self.store, self.symbol, self.interval, WRITERS) as writer:
            for page in self._api_pages(missing, workers):
                self.result.api_pages += 1
                self._take_findings(page)
                for complete in partitions.add(page.columns):
                    self._count_api_writes(writer.submit(complete))
                self.report(candle_count(self.interval, [page.settled]))
            for rest in partitions.flush():
                self._count_api_writes(writer.submit(rest))
            self._count_api_writes(writer.drain())

    def _api_pages(self, missing: Range, workers: int) -> Iterator[Page]:
        """The pages of ``missing`` in time order (:func:`ost.paging.read_range`).

        The first request runs alone from the range's start: Binance answers it with the first
        1000 candles that exist, which skips a symbol's pre-listing time in one request. The
        rest is cut into windows of 1000 candles, each read to its end, concurrently.
        """
        start, end = missing
        first = read_step(self.client, self.symbol, self.interval, start, end)
        yield first
        cursor = first.settled[1]
        if first.unanswered is not None or cursor >= end:
            return
        step = intervals.FIXED_INTERVAL_MS.get(self.interval)
        if step is None or workers <= 1:  # 1M: calendar months, a page at a time
            yield from read_range(self.client, self.symbol, self.interval, cursor, end)
            return
        windows = [
            (at, min(at + PAGE_LIMIT * step, end)) for at in range(cursor, end, PAGE_LIMIT * step)
        ]
        fetched = contextlib.closing(in_order_concurrently(self._read_window, windows, workers))
        with fetched as read:
            for pages in read:
                yield from pages

    def _read_window(self, window: Range) -> list[Page]:
        """Every page of one window (one, unless a page came back short)."""
        return list(read_range(self.client, self.symbol, self.interval, *window))

    def _take_findings(self, page: Page) -> None:
        """Record what ``page`` proved; keep what it settled, and what it left unanswered."""
        self.result.exchange_gaps += self.gap_log.record(self.symbol, self.interval, page.proven)
        if page.unanswered is not None:
            self.unanswered.append(page.unanswered)
            return
        self.settled += [gap.candles for gap in page.proven]
        self.settled += runs_of(self.interval, page.columns["open_time"])

    def _count_api_writes(self, added: int) -> None:
        self.result.written += added
        self.result.from_api += added


def in_order_concurrently(
    work: Callable[[Item], Done], items: Sequence[Item], workers: int
) -> Generator[Done, None, None]:
    """``work(item)`` for each item, ``workers`` at a time, yielded in the items' order.

    At most ``workers`` results wait ahead of the consumer, so memory stays bounded however
    long the list. Closing the generator cancels what has not started.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers))
    pending: deque[concurrent.futures.Future[Done]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Writer:
    """Partition merges of one stream, ``workers`` at a time (their fsyncs overlap).

    Each merge takes its partition's lock, so neighbouring partitions are written at once. At
    most ``workers`` merges wait, which bounds the rows held in memory; leaving the block waits
    for every merge, and an error of one is raised by the next call.
    """

    def __init__(self, store: CandleStore, symbol: str, interval: str, workers: int) -> None:
        self.store, self.symbol, self.interval = store, symbol, interval
        self.workers = max(1, workers)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
        self.pending: deque[concurrent.futures.Future[int]] = deque()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pool.shutdown(wait=True)

    def submit(self, rows: pd.DataFrame) -> int:
        """Start merging ``rows``; the new candles of the merges that finished meanwhile."""
        self.pending.append(self.pool.submit(self.store.merge, self.symbol, self.interval, rows))
        added = 0
        while self.pending and (len(self.pending) > self.workers or self.pending[0].done()):
            added += self.pending.popleft().result()
        return added

    def drain(self) -> int:
        """Wait for every merge; the new candles they stored."""
        added = 0
        while self.pending:
            added += self.pending.popleft().result()
        return added


class _PartitionBuffer:
    """Pages in time order, handed back a whole partition at a time (one write each).

    Pages are held as numpy columns; a frame is built once per partition, when it is handed
    back.
    """

    def __init__(self, interval: str) -> None:
        self.interval = interval
        self.pages: list[klines.Columns] = []

    def add(self, page: klines.Columns) -> list[pd.DataFrame]:
        """Keep ``page``; return the rows of the partitions it shows to be complete."""
        opens = page["open_time"]
        if not len(opens):
            return []
        newest = intervals.partition_start(self.interval, int(opens[-1]))
        boundary = intervals.date_ms(newest)
        if opens[0] >= boundary:  # the page opens the newest partition, or stays inside it
            done = self.pages if self.pages and self._held_before(boundary) else []
            self.pages = [*([] if done else self.pages), page]
            return [_frame(done)] if done else []
        cut = int(np.searchsorted(opens, boundary))
        done = [*self.pages, klines.take(page, slice(None, cut))]
        self.pages = [klines.take(page, slice(cut, None))]
        return [_frame(done)]

    def _held_before(self, boundary: int) -> bool:
        """Whether the rows held all open before ``boundary`` (they are in time order)."""
        return int(self.pages[-1]["open_time"][-1]) < boundary

    def flush(self) -> list[pd.DataFrame]:
        """Everything still held."""
        held = [page for page in self.pages if len(page["open_time"])]
        self.pages = []
        return [_frame(held)] if held else []


def _frame(pages: list[klines.Columns]) -> pd.DataFrame:
    """One stored-schema frame of consecutive pages."""
    return klines.frame_from_columns(klines.concat(pages))


def _fetch_or_error(archive: Archive, file: ArchiveFile) -> bytes | ArchiveError | None:
    try:
        return archive.download(file)
    except ArchiveError as exc:
        return exc


def _parsed_or_error(data: bytes, file: ArchiveFile) -> pd.DataFrame | ArchiveError:
    try:
        return parse_zip(data, file)
    except ArchiveError as exc:
        return exc

"""Gap checking: which candles of a range are missing from the store, and which Binance never had.

A *range* here is a half-open ``[start_ms, end_ms)`` of open times whose bounds are open times of
the stream's interval; reports show it as ``[first_missing, last_missing]`` plus a count.

**Exchange-side gaps** are ranges where Binance itself has no candles (a trading halt such as
BTCUSDT 2023-03-24 12:40-13:59, an outage, or the time before a symbol's listing), and only those
that Binance has proven: :mod:`ost.paging` finds them, as the holes in an answer to a request
from at or before the hole's start whose next candle opens after the hole. An empty answer
proves nothing. :mod:`ost.backfill` and :mod:`ost.ingest` record them per stream, each with its
:class:`Evidence` (the host, the request, the first candle after the hole), in::

    <OST_DATA_DIR>/gaps/symbol=<SYMBOL>/interval=<INTERVAL>/exchange_gaps.json

(outside ``klines/``, which holds only the candle dataset; the path is the store's
:func:`~ost.store.stream_path`). It goes through the store's backend like a partition file: each
change is a read-modify-write under the record's lock (``locks/<SYMBOL>-<INTERVAL>.gaps.lock``,
:meth:`~ost.store.CandleStore.lock`) that ends in the backend's atomic write (a temp file in the
same directory, flushed and fsynced, then ``os.replace`` and an fsync of the directory; one
upload on an object store). Its content is ``{"format": 2, "symbol", "interval", "gaps":
[{"first_open_time", "last_open_time", "first_open_ms", "last_open_ms", "candles", "evidence":
{"host", "request", "next_open_time", "next_open_ms", "answered_at", "answered_at_ms"}}, ...]}``,
sorted and not overlapping, ISO times in UTC. A record of format 1 (before evidence) is still
read, but an entry without evidence counts for nothing: its candles are missing (listed as
``unverified``) until Binance is asked again, and the next write of the file drops it.
:meth:`ExchangeGapLog.forget` (``ost gaps --recheck``) forgets the recorded gaps of a range, so
that a wrong record can always be undone.

:func:`check_gaps` counts a candle as **missing** when it is closed (opens before the current
candle by ``now_ms``), lies in the checked range, is not stored and is not inside a recorded
exchange-side gap. A range before a stream's first stored candle is missing too until a backfill
has asked Binance for it: a symbol's time before its listing then becomes a recorded
exchange-side gap, so ``ost gaps --repair`` settles it once and for all.

Exit statuses (``ost gaps``, see CONTRACT.md): 0 nothing missing (exchange-side gaps excepted),
3 gaps remain, 1 a stream could not be checked. The repair itself is
:func:`ost.backfill.repair_gaps`, which backfills the missing ranges and checks again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from ost import clock, intervals, klines
from ost.errors import EXIT_FAILED, EXIT_GAPS, EXIT_OK, OstError, StoreCorrupt
from ost.intervals import Interval, Stream, Symbol
from ost.store import GAPS_DIR, CandleStore, Extent, stream_path
from ost.timefmt import report_time

#: A half-open range ``[start_ms, end_ms)`` of open times; both bounds are open times.
Range = tuple[int, int]

#: Format 2 gives every gap its evidence; format 1 (no evidence) is still read.
GAPS_FORMAT: Final = 2
READABLE_GAPS_FORMATS: Final = (1, GAPS_FORMAT)
#: How many ranges per stream the markdown report lists before it summarises the rest.
MARKDOWN_MAX_RANGES: Final = 20
#: How many ranges a one-line message names before it summarises the rest.
LINE_MAX_RANGES: Final = 3
UNVERIFIED_WHY: Final = (
    "{count} of them are recorded as exchange-side without evidence (by an older ost), which "
    "counts for nothing: `ost gaps --repair` asks Binance again"
)


# ---- ranges of open times ----------------------------------------------------------------------


def first_open_from(interval: str, ms: int) -> int:
    """The first open time of ``interval`` at or after ``ms``."""
    aligned = intervals.align(interval, ms)
    return aligned if aligned >= ms else intervals.next_open(interval, aligned)


def closed_stop(interval: str, end_ms: int, now_ms: int) -> int:
    """The exclusive bound of the closed candles opening before ``end_ms``, by ``now_ms``.

    ``now_ms`` is the one "now" of :mod:`ost.clock` (the earlier of the local clock and Binance's).
    """
    return min(first_open_from(interval, end_ms), clock.closed_stop(interval, now_ms))


def last_open(interval: str, candles: Range) -> int:
    """The open time of the last candle of a non-empty range."""
    return intervals.align(interval, candles[1] - 1)


def candle_count(interval: str, ranges: Iterable[Range]) -> int:
    """How many candles ``ranges`` hold."""
    return sum(intervals.count_between(interval, start, end) for start, end in ranges)


def merged(ranges: Iterable[Range]) -> list[Range]:
    """``ranges`` sorted, with the overlapping or touching ones joined, empty ones dropped."""
    result: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """The parts of ``ranges`` outside every one of ``holes``."""
    cuts = merged(holes)
    result: list[Range] = []
    for start, end in merged(ranges):
        cursor = start
        for cut_start, cut_end in cuts:
            if cut_end <= cursor or cut_start >= end:
                continue
            if cut_start > cursor:
                result.append((cursor, cut_start))
            cursor = max(cursor, cut_end)
        if cursor < end:
            result.append((cursor, end))
    return result


def intersect(ranges: Iterable[Range], others: Iterable[Range]) -> list[Range]:
    """The parts of ``ranges`` that are also inside ``others``."""
    listed = merged(ranges)
    return subtract(listed, subtract(listed, others))


def runs_of(interval: str, open_ms: np.ndarray) -> list[Range]:
    """Sorted, unique open times as ranges of consecutive candles."""
    if len(open_ms) == 0:
        return []
    opens = np.asarray(open_ms, dtype=np.int64)
    if interval in intervals.FIXED_INTERVAL_MS:
        nexts = opens + intervals.FIXED_INTERVAL_MS[interval]
    else:
        nexts = np.array([intervals.next_open(interval, int(t)) for t in opens], dtype=np.int64)
    breaks = np.flatnonzero(opens[1:] != nexts[:-1]) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(opens)]]) - 1
    return [(int(opens[a]), int(nexts[b])) for a, b in zip(starts, ends, strict=True)]


# ---- what the store holds ----------------------------------------------------------------------


def stored_runs(
    store: CandleStore,
    symbol: Symbol,
    interval: Interval,
    first: int,
    stop: int,
    *,
    footers: bool = False,
) -> list[Range]:
    """The stored candles in ``[first, stop)`` as ranges, from one listing of the stream.

    Every partition is read, once: a damaged one raises :class:`~ost.errors.PartitionCorrupt`,
    which a backfill heals. With ``footers`` (the gap check), a partition whose footer shows it
    complete (:func:`is_complete`) is not read: its candles are all stored. Only the others are
    read. The ranges are the same (the tests compare the two), unless a file's pages are damaged
    behind an intact footer, which ``ost verify`` finds.
    """
    runs: list[Range] = []
    for period in store.periods_between(symbol, interval, first, stop):
        low = max(first, intervals.date_ms(period))
        high = min(stop, intervals.partition_end_ms(interval, period))
        if footers and is_complete(
            interval, period, store.partition_extent(symbol, interval, period)
        ):
            # Every candle of the period is stored: those opening in [low, high) make one run.
            oldest, newest = first_open_from(interval, low), intervals.align(interval, high - 1)
            if oldest <= newest:
                runs.append((oldest, intervals.next_open(interval, newest)))
            continue
        frame = store.read_partition(symbol, interval, period)
        if frame is not None:
            opens = klines.open_time_ms(frame)
            runs.extend(runs_of(interval, opens[(opens >= low) & (opens < high)]))
    return merged(runs)


def is_complete(interval: Interval, period: dt.date, extent: Extent | None) -> bool:
    """Whether a partition whose footer states ``extent`` holds every candle of its period.

    The store keeps a partition's open times sorted, unique and aligned to the interval, so
    as many rows as the period has candles, from its first candle to its last, are all of them.
    """
    if extent is None:
        return False
    start = first_open_from(interval, intervals.date_ms(period))
    end = intervals.partition_end_ms(interval, period)
    return (
        start < end
        and extent.rows == intervals.count_between(interval, start, end)
        and extent.first_open_ms == start
        and extent.last_open_ms == last_open(interval, (start, end))
    )


def missing_ranges(
    store: CandleStore,
    symbol: Symbol,
    interval: Interval,
    first: int,
    stop: int,
    *,
    footers: bool = False,
) -> list[Range]:
    """The open-time ranges in ``[first, stop)`` that the store does not hold (see stored_runs)."""
    if first >= stop:
        return []
    stored = stored_runs(store, symbol, interval, first, stop, footers=footers)
    return subtract([(first, stop)], stored)


# ---- the record of exchange-side gaps ----------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Binance's proof of a hole: its answer to a request from at or before the hole's start.

    In that answer the next candle opens after the hole, so Binance skipped the hole's candles.
    """

    #: The base URL that answered.
    host: str
    #: The request as sent, path and query (``host + request`` asks it again).
    request: str
    #: The open time of the first candle after the hole, in that answer.
    next_open_ms: int
    #: Binance's clock when the answer arrived.
    answered_at_ms: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in a fixed order."""
        return {
            "host": self.host,
            "request": self.request,
            "next_open_time": report_time(self.next_open_ms),
            "next_open_ms": self.next_open_ms,
            "answered_at": report_time(self.answered_at_ms),
            "answered_at_ms": self.answered_at_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        """The evidence that :meth:`as_dict` wrote."""
        return cls(
            str(data["host"]),
            str(data["request"]),
            int(data["next_open_ms"]),
            int(data["answered_at_ms"]),
        )


@dataclass(frozen=True)
class ProvenGap:
    """Candles ``[start, end)`` that Binance does not have, and the answer that proves it."""

    candles: Range
    evidence: Evidence


@dataclass(frozen=True)
class Unanswered:
    """Candles that Binance was asked for and answered nothing about, not even a later candle.

    Missing, never exchange-side: the request without ``endTime`` found no candle up to now.
    """

    candles: Range
    #: The base URL that answered the last request, and that request (path and query).
    host: str
    request: str


class ExchangeGapLog:
    """The exchange-side gaps recorded per stream under ``<data_dir>/gaps/``, with evidence.

    Its files are the store's: read, written and locked through ``store``'s backend.
    """

    def __init__(self, store: CandleStore) -> None:
        self.store = store

    @classmethod
    def of(cls, store: CandleStore) -> ExchangeGapLog:
        """The log that lives beside ``store``'s candles."""
        return cls(store)

    def path(self, symbol: Symbol, interval: Interval) -> str:
        """The JSON file of one stream."""
        return self.store.backend.path(stream_path(GAPS_DIR, symbol, interval))

    def load(self, symbol: Symbol, interval: Interval) -> list[Range]:
        """The stream's proven exchange-side gaps, merged and sorted (unverified ones left out)."""
        proven, _ = self.entries(symbol, interval)
        return merged(gap.candles for gap in proven)

    def unverified(self, symbol: Symbol, interval: Interval) -> list[Range]:
        """The stream's records without evidence (by an older ost): they count for nothing."""
        return merged(self.entries(symbol, interval)[1])

    def entries(self, symbol: Symbol, interval: Interval) -> tuple[list[ProvenGap], list[Range]]:
        """The stream's record as written: the proven gaps, and the ranges without evidence."""
        path = self.path(symbol, interval)
        data = self.store.backend.read_bytes(path)
        if data is None:
            return [], []
        try:
            return _parse_record(interval, json.loads(data))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreCorrupt(f"{path} is not a record of exchange-side gaps: {exc!r}") from exc

    def record(self, symbol: Symbol, interval: Interval, gaps: Iterable[ProvenGap]) -> list[Range]:
        """Add proven ``gaps`` to the stream's record; the parts that were not recorded before.

        Writing the record drops its entries without evidence.
        """
        new = sorted((gap for gap in gaps if gap.candles[0] < gap.candles[1]), key=_by_start)
        if not new:
            return []
        with self.store.lock(GAPS_DIR, symbol, interval):
            proven, _ = self.entries(symbol, interval)
            known = merged(gap.candles for gap in proven)
            added: list[ProvenGap] = []
            for gap in new:
                pieces = subtract([gap.candles], [*known, *(each.candles for each in added)])
                added += [ProvenGap(piece, gap.evidence) for piece in pieces]
            if added:
                self._write(symbol, interval, sorted([*proven, *added], key=_by_start))
        return merged(gap.candles for gap in added)

    def forget(self, symbol: Symbol, interval: Interval, within: Range) -> list[Range]:
        """Forget every recorded gap inside ``within`` (cutting those that straddle it).

        What was forgotten comes back; writing the record drops its entries without evidence.
        """
        with self.store.lock(GAPS_DIR, symbol, interval):
            proven, unverified = self.entries(symbol, interval)
            forgotten = intersect([*(gap.candles for gap in proven), *unverified], [within])
            if not forgotten:
                return []
            kept = [
                ProvenGap(piece, gap.evidence)
                for gap in proven
                for piece in subtract([gap.candles], [within])
            ]
            self._write(symbol, interval, kept)
        return forgotten

    def _write(self, symbol: Symbol, interval: Interval, gaps: list[ProvenGap]) -> None:
        body = {
            "format": GAPS_FORMAT,
            "symbol": symbol,
            "interval": interval,
            "gaps": [_entry(interval, gap) for gap in gaps],
        }
        data = (json.dumps(body, indent=2) + "\n").encode()
        self.store.backend.write_bytes(self.path(symbol, interval), data)


def _parse_record(interval: str, body: Any) -> tuple[list[ProvenGap], list[Range]]:
    """A record's proven gaps and its ranges without evidence; ValueError if it is no record."""
    if body["format"] not in READABLE_GAPS_FORMATS:
        raise ValueError(f"format {body['format']!r} is not one of {READABLE_GAPS_FORMATS}")
    proven: list[ProvenGap] = []
    unverified: list[Range] = []
    for gap in body["gaps"]:
        candles = (
            int(gap["first_open_ms"]),
            intervals.next_open(interval, int(gap["last_open_ms"])),
        )
        if gap.get("evidence") is None:
            unverified.append(candles)
        else:
            proven.append(ProvenGap(candles, Evidence.from_dict(gap["evidence"])))
    return proven, unverified


def _entry(interval: str, gap: ProvenGap) -> dict[str, Any]:
    """A proven gap as its record's JSON: the candles, then the evidence."""
    return {**CandleRange.of(interval, gap.candles).as_dict(), "evidence": gap.evidence.as_dict()}


def _by_start(gap: ProvenGap) -> int:
    return gap.candles[0]


# ---- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandleRange:
    """Consecutive candles ``[first_open_ms, last_open_ms]`` (both open times), and how many."""

    first_open_ms: int
    last_open_ms: int
    candles: int

    @classmethod
    def of(cls, interval: str, candles: Range) -> CandleRange:
        """The candles of a half-open range."""
        return cls(candles[0], last_open(interval, candles), candle_count(interval, [candles]))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO times and epoch ms."""
        return {
            "first_open_time": report_time(self.first_open_ms),
            "last_open_time": report_time(self.last_open_ms),
            "first_open_ms": self.first_open_ms,
            "last_open_ms": self.last_open_ms,
            "candles": self.candles,
        }

    def __str__(self) -> str:
        if self.candles == 1:
            return f"{report_time(self.first_open_ms)} (1 candle)"
        first, last = report_time(self.first_open_ms), report_time(self.last_open_ms)
        return f"{first} … {last} ({self.candles} candles)"


@dataclass(frozen=True)
class StreamGaps:
    """The gap check of one stream over the closed candles of ``[start_ms, end_ms)``."""

    symbol: Symbol
    interval: Interval
    start_ms: int
    end_ms: int
    expected: int = 0
    missing: tuple[CandleRange, ...] = ()
    exchange_side: tuple[CandleRange, ...] = ()
    error: str | None = None
    #: The missing candles that an older ost recorded as exchange-side without evidence.
    unverified: tuple[CandleRange, ...] = ()
    #: The recorded gaps that ``--recheck`` forgot before asking Binance again.
    rechecked: tuple[CandleRange, ...] = ()
    #: Why candles are still missing, in one line (after a repair, or for unverified records).
    why: str | None = None

    @property
    def missing_candles(self) -> int:
        """How many candles are missing (exchange-side gaps excepted)."""
        return sum(gap.candles for gap in self.missing)

    @property
    def missing_ranges(self) -> list[Range]:
        """The missing candles as half-open ranges, ready for a backfill."""
        return [
            (gap.first_open_ms, intervals.next_open(self.interval, gap.last_open_ms))
            for gap in self.missing
        ]

    def exit_status(self) -> int:
        """1 if the check failed, 3 if candles are missing, else 0."""
        if self.error is not None:
            return EXIT_FAILED
        return EXIT_GAPS if self.missing else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in a fixed order."""
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "start": report_time(self.start_ms),
            "end": report_time(self.end_ms),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "expected_candles": self.expected,
            "missing_candles": self.missing_candles,
            "missing": [gap.as_dict() for gap in self.missing],
            "exchange_gaps": [gap.as_dict() for gap in self.exchange_side],
            "error": self.error,
            "unverified_records": [gap.as_dict() for gap in self.unverified],
            "rechecked": [gap.as_dict() for gap in self.rechecked],
            "why": self.why,
        }


@dataclass(frozen=True)
class GapReport:
    """The gap check of several streams: JSON for machines, markdown for people."""

    streams: list[StreamGaps] = field(default_factory=list)
    checked_at_ms: int | None = None

    def exit_status(self) -> int:
        """0 nothing missing (exchange-side gaps excepted), 3 gaps remain, 1 a check failed."""
        statuses = {stream.exit_status() for stream in self.streams}
        for status in (EXIT_FAILED, EXIT_GAPS):
            if status in statuses:
                return status
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in a fixed order."""
        return {
            "checked_at": report_time(self.checked_at_ms)
            if self.checked_at_ms is not None
            else None,
            "exit_status": self.exit_status(),
            "missing_candles": sum(stream.missing_candles for stream in self.streams),
            "streams": [stream.as_dict() for stream in self.streams],
        }

    def to_json(self) -> str:
        """The report for ``ost gaps --json``: stable keys, ISO times and epoch ms."""
        return json.dumps(self.as_dict(), indent=2)

    def to_markdown(self) -> str:
        """The report as markdown, for a Prefect artifact and the terminal."""
        verdict = {
            EXIT_OK: "no missing candles",
            EXIT_GAPS: f"**{self.as_dict()['missing_candles']} missing candles**",
            EXIT_FAILED: "**a check failed**",
        }[self.exit_status()]
        lines = [
            f"# Gap check: {verdict}",
            "",
            "| stream | checked (UTC) | expected | missing | exchange-side gaps |",
            "|---|---|---:|---:|---:|",
        ]
        lines += [_summary_row(stream) for stream in self.streams]
        for stream in self.streams:
            lines += _details(stream)
        return "\n".join(lines) + "\n"


def _summary_row(stream: StreamGaps) -> str:
    checked = f"{report_time(stream.start_ms)} → {report_time(stream.end_ms)}"
    if stream.error is not None:
        return f"| {stream.symbol} {stream.interval} | {checked} | - | error | - |"
    exchange = sum(gap.candles for gap in stream.exchange_side)
    return (
        f"| {stream.symbol} {stream.interval} | {checked} | {stream.expected} "
        f"| {stream.missing_candles} | {exchange} |"
    )


def _details(stream: StreamGaps) -> list[str]:
    lines: list[str] = []
    if stream.error is not None:
        lines += ["", f"## {stream.symbol} {stream.interval}: check failed", "", stream.error]
    if stream.why is not None:
        lines += ["", f"## {stream.symbol} {stream.interval}: why candles are missing", ""]
        lines.append(stream.why)
    sections = (
        ("missing", stream.missing),
        ("exchange-side gaps", stream.exchange_side),
        ("recorded without evidence (counted as missing)", stream.unverified),
        ("rechecked: forgotten, then asked again", stream.rechecked),
    )
    for title, gaps in sections:
        if gaps:
            lines += ["", f"## {stream.symbol} {stream.interval}: {title}", ""]
            lines += [f"- {gap}" for gap in gaps[:MARKDOWN_MAX_RANGES]]
            if len(gaps) > MARKDOWN_MAX_RANGES:
                lines.append(f"- … and {len(gaps) - MARKDOWN_MAX_RANGES} more ranges")
    return lines


# ---- checking ----------------------------------------------------------------------------------


def check_gaps(  # noqa: PLR0917  # the signature promised to the CLI and the flows
    store: CandleStore, symbol: Symbol, interval: Interval, start_ms: int, end_ms: int, now_ms: int
) -> StreamGaps:
    """The missing and exchange-side ranges of one stream's closed candles in ``[start, end)``."""
    first = first_open_from(interval, start_ms)
    stop = max(first, closed_stop(interval, end_ms, now_ms))
    absent = missing_ranges(store, symbol, interval, first, stop, footers=True)
    log = ExchangeGapLog.of(store)
    recorded = log.load(symbol, interval)
    unverified = intersect(subtract(absent, recorded), log.unverified(symbol, interval))
    return StreamGaps(
        symbol,
        interval,
        first,
        stop,
        expected=intervals.count_between(interval, first, stop),
        missing=_candle_ranges(interval, subtract(absent, recorded)),
        exchange_side=_candle_ranges(interval, intersect(absent, recorded)),
        unverified=_candle_ranges(interval, unverified),
        why=UNVERIFIED_WHY.format(count=candle_count(interval, unverified)) if unverified else None,
    )


def gap_report(
    store: CandleStore,
    streams: Sequence[Stream],
    start_ms: int,
    end_ms: int,
    now_ms: int,
) -> GapReport:
    """:func:`check_gaps` for each stream; a stream that cannot be checked is reported failed."""
    return GapReport(
        [_check_or_report(store, stream, start_ms, end_ms, now_ms) for stream in streams],
        checked_at_ms=now_ms,
    )


def _check_or_report(
    store: CandleStore, stream: Stream, start_ms: int, end_ms: int, now_ms: int
) -> StreamGaps:
    symbol, interval = stream
    try:
        return check_gaps(store, symbol, interval, start_ms, end_ms, now_ms)
    except OstError as exc:
        return StreamGaps(symbol, interval, start_ms, end_ms, error=str(exc))


def _candle_ranges(interval: str, ranges: Iterable[Range]) -> tuple[CandleRange, ...]:
    return tuple(CandleRange.of(interval, gap) for gap in ranges)


def ranges_text(interval: str, ranges: Sequence[Range]) -> str:
    """Ranges of candles for one line: the first few, and how many more."""
    shown = ", ".join(str(CandleRange.of(interval, each)) for each in ranges[:LINE_MAX_RANGES])
    more = len(ranges) - LINE_MAX_RANGES
    return f"{shown} and {more} more ranges" if more > 0 else shown


def incomplete_line(interval: str, left: Sequence[Range], unanswered: Sequence[Unanswered]) -> str:
    """How many candles of ``left`` are still missing, where, and why, in one line."""
    reasons = []
    for each in unanswered:
        part = intersect(left, [each.candles])
        if part:
            reasons.append(
                f"Binance ({each.host}) answered nothing for {ranges_text(interval, part)}; "
                "not recorded as an exchange gap, because no later candle proves it"
            )
    unexplained = subtract(left, [each.candles for each in unanswered])
    if unexplained:
        reasons.append(f"{ranges_text(interval, unexplained)} not stored; run it again")
    count = candle_count(interval, left)
    return f"{count} candles still missing: {'; '.join(reasons)}"

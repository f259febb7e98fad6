"""``ost verify``: the candle store as its consumers read it, and its repair.

Every file under ``$OST_DATA_DIR/klines/`` is looked at. Each partition file (``part.parquet`` of a
valid ``symbol=/interval=/period=`` directory) is read whole by each reader: pyarrow (the
reference Parquet implementation, and the store's own reader: :func:`ost.store.read_frame`),
fastparquet and DuckDB, each the way the backend uses it. fastparquet reads only the files whose
footer pyarrow decoded: its thrift decoder crashes the process on some damaged footers
(``tests/test_store_damage.py``), and pyarrow has reported those already. Then the whole
dataset is read as the README shows, by ``pyarrow.dataset`` with hive partitioning and by
DuckDB's ``read_parquet('klines/**/*.parquet', hive_partitioning=true)``.

What is found (:class:`Finding`, by ``kind``):

``unreadable``  a reader cannot read the partition file (truncated, empty, garbage, no access)
``schema``      its columns or types are not the interface's (docs/CONTRACT.md), for some reader
``duplicate``   an open time is in it more than once
``unsorted``    its open times do not increase (the store cannot merge into it)
``misaligned``  an open time is not one of the interval's
``misplaced``   a row lies outside its own partition (the one its open time names)
``invalid``     an impossible candle (high below low, ...), which a merge into it refuses
``foreign``     a file that pyarrow or DuckDB reads but that is no partition's ``part.parquet``
                (``part (copy).parquet``, a README, a file in a misnamed directory): readers
                return its rows beside the store's, twice over for a copy
``temp``        a writer's temp file that no writer holds: the leftover of a killed writer
``unrestored``  a quarantined partition whose range is not all stored again (the refetch that
                follows a quarantine failed or was cut short)
``dataset``     what the consumers' reads of the whole dataset get: an error, or duplicates

DuckDB is optional (the ``verify`` extra, and the dev dependencies): without it, its checks are
skipped and the report says so in one line; pyarrow's and fastparquet's always run (both are
main dependencies, and fastparquet is imported here only).

:func:`repair_store` (``--repair``) quarantines every damaged partition file (after checking it
again under the partition's lock, :meth:`CandleStore.quarantine`), every foreign file, removes the
temp leftovers, and fetches the quarantined and unrestored ranges again through the backfill
(``refetch``); ``ost verify`` then checks again, and reports what it did and what is left.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from ost import intervals, klines
from ost.backend import is_temp
from ost.errors import EXIT_FAILED, EXIT_OK, InvalidCandle, OstError, StoreCorrupt
from ost.gaps import (
    ExchangeGapLog,
    Range,
    candle_count,
    closed_stop,
    first_open_from,
    merged,
    missing_ranges,
    subtract,
)
from ost.intervals import Interval, Stream, Symbol
from ost.store import (
    KLINES_DIR,
    QUARANTINE_DIR,
    CandleStore,
    Location,
    klines_dir,
    locate,
    parse_quarantined,
    partition_path,
    read_by_consumers,
    read_frame,
    relative_path,
    schema_problem,
)
from ost.timefmt import terminal_time

#: Kinds of damage in a partition file: it is quarantined and its range fetched again.
PARTITION_KINDS: Final = (
    "unreadable",
    "schema",
    "duplicate",
    "unsorted",
    "misaligned",
    "misplaced",
    "invalid",
)
KINDS: Final = (*PARTITION_KINDS, "foreign", "temp", "unrestored", "dataset")
EXTRA_HINT: Final = (
    "install the verify extra: uv sync --extra verify, or pip install 'ost-ingest[verify]'"
)
#: DuckDB's queries: one partition file (its path is no hive path to DuckDB here), whole; then
#: the dataset, as the README reads it. hash() of every column makes DuckDB decode every page.
DUCKDB_FILE_TYPES: Final = "DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = false)"
DUCKDB_FILE_SCAN: Final = (
    "SELECT count(*), sum(hash(COLUMNS(*))) FROM read_parquet(?, hive_partitioning = false)"
)
DUCKDB_DATASET: Final = (
    "SELECT count(*), count(DISTINCT (symbol, interval, open_time))"
    " FROM read_parquet(?, hive_partitioning = true)"
)
#: How much of a reader's error a finding quotes.
DETAIL_CHARS: Final = 200

#: A partition: symbol, interval and the first day of its period.
Partition = tuple[Symbol, Interval, dt.date]
#: ``refetch(symbol, interval, start_ms, end_ms)``: the backfill of a range; raises on failure.
Refetch = Callable[[Symbol, Interval, int, int], int]


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the store; ``path`` is relative to the data dir."""

    kind: str
    path: str
    detail: str
    symbol: Symbol | None = None
    interval: Interval | None = None
    period: dt.date | None = None

    def to_dict(self) -> dict[str, Any]:
        """As ``--json`` shows it."""
        data = asdict(self)
        data["period"] = None if self.period is None else self.period.isoformat()
        return data


@dataclass(frozen=True)
class View:
    """What one consumer's read of the whole dataset returned: rows and duplicates, or an error."""

    reader: str
    rows: int | None = None
    duplicates: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Repair:
    """One thing ``--repair`` did (or failed to do)."""

    action: str  # quarantined, removed, refetched, failed
    path: str | None = None
    detail: str = ""
    symbol: Symbol | None = None
    interval: Interval | None = None
    written: int | None = None


@dataclass
class Report:
    """What ``ost verify`` found in the store at ``data_dir``."""

    data_dir: str
    partitions: int = 0
    candles: int = 0
    #: reader -> its version, or None when it is not installed.
    readers: dict[str, str | None] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing is wrong (as far as the installed readers can tell)."""
        return not self.findings

    def exit_status(self) -> int:
        """0 when the store is clean, 1 when it is not."""
        return EXIT_OK if self.clean else EXIT_FAILED

    def missing_readers(self) -> list[str]:
        """The optional readers that are not installed."""
        return [name for name, version in self.readers.items() if version is None]

    def to_dict(self) -> dict[str, Any]:
        """As ``--json`` shows it."""
        return {
            "clean": self.clean,
            "exit_status": self.exit_status(),
            "data_dir": self.data_dir,
            "partitions": self.partitions,
            "candles": self.candles,
            "readers": self.readers,
            "findings": [finding.to_dict() for finding in self.findings],
            "views": [asdict(view) for view in self.views],
            "repairs": [asdict(each) for each in self.repairs],
        }

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(self.to_dict(), indent=2)


# ---- the readers --------------------------------------------------------------------------------


def _optional(name: str) -> Any | None:
    """The module ``name`` if it is installed, else None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class _Readers:
    """The readers installed here, and what each expects of a file of the interface."""

    def __init__(self, store: CandleStore) -> None:
        self.store = store
        self.pyarrow: Any = importlib.import_module("pyarrow")
        self.dataset: Any = importlib.import_module("pyarrow.dataset")
        self.fastparquet: Any = importlib.import_module("fastparquet")  # only verify reads with it
        self.duckdb = _optional("duckdb")
        expected = klines.empty_frame()
        self.con: Any = None
        if self.duckdb is not None:
            self.con = self.duckdb.connect()
            if not store.backend.is_local:
                self.con.register_filesystem(store.backend.fs)
            self.con.register("expected", expected)
            self.duckdb_types = self._types("DESCRIBE SELECT * FROM expected")

    def versions(self) -> dict[str, str | None]:
        return {
            name: None if module is None else str(module.__version__)
            for name, module in (
                ("pyarrow", self.pyarrow),
                ("fastparquet", self.fastparquet),
                ("duckdb", self.duckdb),
            )
        }

    def _types(self, describe: str, *params: str) -> list[tuple[str, str]]:
        rows = self.con.execute(describe, list(params)).fetchall()
        return [(str(row[0]), str(row[1])) for row in rows]

    # -- one file

    def pyarrow_frame(self, path: str) -> tuple[pd.DataFrame | None, list[tuple[str, str]]]:
        """The file as the store reads it (pyarrow), and the problems pyarrow sees."""
        try:
            frame = read_frame(self.store.backend, path)
        except StoreCorrupt as exc:
            return None, [("unreadable", f"pyarrow: {_short(exc.__cause__)}")]
        except OstError as exc:
            return None, [("unreadable", f"pyarrow: {_short(exc.args[0])}")]
        if frame is None:
            return None, [("unreadable", "pyarrow: the file is gone")]
        problem = schema_problem(frame)
        return frame, [("schema", f"pyarrow: {problem}")] if problem else []

    def fastparquet_problems(self, path: str) -> list[tuple[str, str]]:
        """The problems fastparquet sees reading the whole file (one that pyarrow could read)."""
        try:
            with self.store.backend.open_input(path) as handle:
                frame = self.fastparquet.ParquetFile(handle).to_pandas()
        except Exception as exc:  # noqa: BLE001  # a damaged file fails fastparquet in many ways
            return [("unreadable", f"fastparquet: {_short(exc)}")]
        problem = schema_problem(frame)
        return [("schema", f"fastparquet: {problem}")] if problem else []

    def duckdb_problems(self, path: str) -> list[tuple[str, str]]:
        """The problems DuckDB sees reading the whole file (every column, every row)."""
        if self.con is None:
            return []
        url = self.store.backend.url_of(path)
        try:
            types = self._types(DUCKDB_FILE_TYPES, url)
            self.con.execute(DUCKDB_FILE_SCAN, [url]).fetchall()
        except Exception as exc:  # noqa: BLE001  # DuckDB's errors for a damaged file vary
            return [("unreadable", f"duckdb: {_short(exc)}")]
        if types != self.duckdb_types:
            return [("schema", f"duckdb: {_type_difference(types, self.duckdb_types)}")]
        return []

    # -- the whole dataset, as the consumers read it

    def views(self) -> list[View]:
        """The whole dataset read as the README shows, by each optional reader installed."""
        root = klines_dir(self.store.backend.root)
        views = [self._pyarrow_view(root)]
        if self.con is not None:
            views.append(self._duckdb_view(root))
        return views

    def _pyarrow_view(self, root: str) -> View:
        backend = self.store.backend
        options: dict[str, Any] = {"partitioning": "hive"}
        if not backend.is_local:
            fs = importlib.import_module("pyarrow.fs")
            options["filesystem"] = fs.PyFileSystem(fs.FSSpecHandler(backend.fs))
        try:
            dataset = self.dataset.dataset(root, **options)
            rows = sum(batch.num_rows for batch in dataset.to_batches())
        except Exception as exc:  # noqa: BLE001  # whatever the backend would get
            return View("pyarrow", error=_short(exc))
        return View("pyarrow", rows=rows)

    def _duckdb_view(self, root: str) -> View:
        glob = self.store.backend.url_of(posixpath.join(root, "**", "*.parquet"))
        try:
            [(rows, distinct)] = self.con.execute(DUCKDB_DATASET, [glob]).fetchall()
        except Exception as exc:  # noqa: BLE001  # whatever the backend would get
            return View("duckdb", error=_short(exc))
        return View("duckdb", rows=int(rows), duplicates=int(rows) - int(distinct))


# ---- checking ----------------------------------------------------------------------------------


def verify_store(store: CandleStore, *, now_ms: int | None = None) -> Report:
    """What is wrong with the store, as its consumers read it (see the module docstring).

    Nothing is written (a temp file is checked by trying its partition's lock, without waiting).
    ``now_ms`` (default: the local clock) bounds the ranges that quarantined partitions must
    have again.
    """
    readers = _Readers(store)
    report = Report(store.backend.url, readers=readers.versions())
    root = store.backend.root
    flagged: set[Partition] = set()
    for path in store.backend.find(klines_dir(root)):
        relative = relative_path(root, path)
        where = locate(relative)
        if where.is_partition_file:
            findings, candles = _check_partition(readers, path, relative, where)
            report.partitions += 1
            report.candles += candles
            report.findings += findings
            if findings and where.symbol and where.interval and where.period:
                flagged.add((where.symbol, where.interval, where.period))
        elif is_temp(posixpath.basename(path)) and where.period is not None:
            if not store.is_writing(path):
                report.findings.append(
                    _finding(
                        "temp", relative, "a writer's temp file, left by a killed writer", where
                    )
                )
        elif read_by_consumers(relative.removeprefix(f"{KLINES_DIR}/")):
            report.findings.append(
                _finding("foreign", relative, "not a partition file, but readers read it", where)
            )
    report.findings += _unrestored(store, flagged, now_ms)
    foreign = any(finding.kind == "foreign" for finding in report.findings)
    report.views = readers.views() if report.partitions or foreign else []  # else nothing to read
    for view in report.views:
        if view.error is not None:
            detail = f"{view.reader} cannot read the dataset: {view.error}"
            report.findings.append(Finding("dataset", KLINES_DIR, detail))
        elif view.duplicates:
            detail = f"{view.reader} returns {view.duplicates} duplicate candles"
            report.findings.append(Finding("dataset", KLINES_DIR, detail))
    return report


def _check_partition(
    readers: _Readers, path: str, relative: str, where: Location
) -> tuple[list[Finding], int]:
    """The findings of one partition file, and how many candles it holds."""
    if where.interval is None or where.period is None:  # pragma: no cover  # a partition file
        return [], 0
    problems, candles = _file_problems(readers, path, where.interval, where.period)
    findings = [_finding(kind, relative, detail, where) for kind, detail in problems.items()]
    return findings, candles


def _file_problems(
    readers: _Readers, path: str, interval: str, period: dt.date
) -> tuple[dict[str, str], int]:
    """What the readers find wrong with the partition file ``path``, and its candle count.

    Problems are by kind, each with the first detail found.
    """
    frame, found = readers.pyarrow_frame(path)
    if frame is not None:  # else fastparquet might crash on what pyarrow refused
        found += readers.fastparquet_problems(path)
    by_kind: dict[str, list[str]] = {}
    for kind, detail in (*found, *readers.duckdb_problems(path)):
        by_kind.setdefault(kind, []).append(detail)
    problems = {kind: _first_and_others(details) for kind, details in by_kind.items()}
    if problems or frame is None:
        return problems, 0
    open_ms = klines.open_time_ms(frame)
    for kind, detail in open_time_problems(interval, period, open_ms):
        problems.setdefault(kind, detail)
    if not problems:
        try:
            klines.validate(frame, interval)
        except InvalidCandle as exc:
            problems["invalid"] = str(exc.args[0])
    return problems, len(open_ms)


def _recheck(
    readers: _Readers, path: str, interval: str, period: dt.date
) -> Callable[[], str | None]:
    """A check of one partition file for :meth:`CandleStore.quarantine`: its problems, or None."""

    def check() -> str | None:
        problems, _ = _file_problems(readers, path, interval, period)
        return "; ".join(f"{kind}: {detail}" for kind, detail in problems.items()) or None

    return check


def open_time_problems(
    interval: str, period: dt.date, open_ms: np.ndarray
) -> Iterator[tuple[str, str]]:
    """Duplicate, unsorted, misaligned and misplaced open times of one partition, by kind."""
    if len(open_ms) == 0:
        return
    values, counts = np.unique(open_ms, return_counts=True)
    if (counts > 1).any():
        first = int(values[np.argmax(counts > 1)])
        yield (
            "duplicate",
            f"{int((counts > 1).sum())} open times more than once, from {terminal_time(first)}",
        )
    elif not bool((np.diff(open_ms) > 0).all()):
        yield "unsorted", "open times do not increase"
    aligned = _aligned(interval, open_ms)
    if not aligned.all():
        yield (
            "misaligned",
            f"{int((~aligned).sum())} open times are not {interval} ones,"
            f" from {terminal_time(int(open_ms[~aligned][0]))}",
        )
    start, end = intervals.date_ms(period), intervals.partition_end_ms(interval, period)
    outside = (open_ms < start) | (open_ms >= end)
    if outside.any():
        yield (
            "misplaced",
            f"{int(outside.sum())} rows outside the partition"
            f" [{terminal_time(start)}, {terminal_time(end)}),"
            f" from {terminal_time(int(open_ms[outside][0]))}",
        )


def _aligned(interval: str, open_ms: np.ndarray) -> np.ndarray:
    """Per open time, whether it is one of ``interval``'s (:func:`ost.intervals.is_aligned`)."""
    step = intervals.FIXED_INTERVAL_MS.get(interval)
    if step is None:  # 1M: calendar months
        return np.array([intervals.is_aligned(interval, int(ms)) for ms in open_ms], dtype=bool)
    phase = intervals.align(interval, 0)  # the weeks' Monday offset; 0 for every other interval
    aligned: np.ndarray = (open_ms - phase) % step == 0
    return aligned


def _unrestored(store: CandleStore, flagged: set[Partition], now_ms: int | None) -> list[Finding]:
    """Quarantined partitions whose range (up to their quarantine) is not all stored again."""
    root = store.backend.root
    latest: dict[Partition, tuple[dt.datetime, str]] = {}
    for path in store.backend.find(posixpath.join(root, QUARANTINE_DIR)):
        parsed = parse_quarantined(relative_path(root, path))
        if parsed is None:
            continue
        at, original = parsed
        where = locate(original)
        if not (where.is_partition_file and where.symbol and where.interval and where.period):
            continue
        key = (where.symbol, where.interval, where.period)
        if key not in flagged and (key not in latest or latest[key][0] < at):
            latest[key] = (at, relative_path(root, path))
    findings = []
    for (symbol, interval, period), (at, relative) in sorted(latest.items()):
        where = Location(symbol, interval, period)
        name = partition_name(store, symbol, interval, period)
        try:
            todo = _unrestored_ranges(store, (symbol, interval, period), at, now_ms)
        except OstError as exc:  # reported as the finding: its range cannot be checked
            detail = f"cannot tell whether the range of {name} is stored again: {exc}"
            findings.append(_finding("unrestored", relative, detail, where))
            continue
        if todo:
            detail = (
                f"{candle_count(interval, todo)} candles of the range of {name} are not stored"
                f" again, from {terminal_time(todo[0][0])}"
            )
            findings.append(_finding("unrestored", relative, detail, where))
    return findings


def _unrestored_ranges(
    store: CandleStore, partition: Partition, at: dt.datetime, now_ms: int | None
) -> list[Range]:
    """The candles of a quarantined partition missing now, of those it could have held.

    Those are the candles closed when it was quarantined, and older than the stream's newest
    stored candle: later ones are the next ingestion's to fetch, like any new candle.
    """
    symbol, interval, _ = partition
    first, stop = _quarantined_range(partition, at, now_ms)
    newest = store.last_open_time(symbol, interval)
    stop = first if newest is None else min(stop, newest)
    if first >= stop:
        return []
    todo = missing_ranges(store, symbol, interval, first, stop)
    return subtract(todo, ExchangeGapLog.of(store).load(symbol, interval))


def _quarantined_range(partition: Partition, at: dt.datetime, now_ms: int | None) -> Range:
    """The open times of a partition's candles that were closed when it was quarantined."""
    _, interval, period = partition
    moved_ms = int(at.timestamp() * 1000)
    if now_ms is not None:
        moved_ms = min(moved_ms, now_ms)
    first = first_open_from(interval, intervals.date_ms(period))
    return first, max(
        first, closed_stop(interval, intervals.partition_end_ms(interval, period), moved_ms)
    )


def partition_name(store: CandleStore, symbol: Symbol, interval: Interval, period: dt.date) -> str:
    """The partition file's path relative to the data dir."""
    root = store.backend.root
    return relative_path(root, partition_path(root, symbol, interval, period))


# ---- repairing ---------------------------------------------------------------------------------


def repair_store(store: CandleStore, report: Report, refetch: Refetch) -> list[Repair]:
    """Quarantine what ``report`` found damaged or foreign, remove temp leftovers, fetch again.

    Each partition file is checked again under its lock before it is moved (a writer may have
    replaced it since). The ranges of the quarantined partitions, and the unrestored ranges, are
    fetched again by ``refetch``; a failure of one is reported, and the others go on.
    """
    readers = _Readers(store)
    root = store.backend.root
    repairs: list[Repair] = []
    ranges: dict[Stream, list[Range]] = {}
    partitions = {
        (finding.symbol, finding.interval, finding.period)
        for finding in report.findings
        if finding.kind in PARTITION_KINDS
    }
    for symbol, interval, period in sorted(partitions, key=str):
        if symbol is None or interval is None or period is None:
            continue
        path = partition_path(root, symbol, interval, period)
        check = _recheck(readers, path, interval, period)
        record = store.quarantine(symbol, interval, period, check=check)
        if record is not None and record.range_ms is not None:
            repairs.append(Repair("quarantined", record.path, record.moved_to, symbol, interval))
            ranges.setdefault(Stream(symbol, interval), []).append(record.range_ms)
    for finding in report.findings:
        path = posixpath.join(root, finding.path)
        if finding.kind == "foreign":
            moved = store.quarantine_file(path, "is a foreign file that readers would read")
            if moved is not None:
                repairs.append(
                    Repair("quarantined", moved.path, moved.moved_to, moved.symbol, moved.interval)
                )
        elif finding.kind == "temp" and store.remove_temp(path):
            repairs.append(
                Repair("removed", finding.path, "temp leftover", finding.symbol, finding.interval)
            )
        elif (
            finding.kind == "unrestored" and finding.symbol and finding.interval and finding.period
        ):
            parsed = parse_quarantined(finding.path)
            if parsed is not None:  # the backfill fetches only what is missing of the range
                partition = (finding.symbol, finding.interval, finding.period)
                span = _quarantined_range(partition, parsed[0], None)
                ranges.setdefault(Stream(finding.symbol, finding.interval), []).append(span)
    for (symbol, interval), todo in sorted(ranges.items()):
        for start, end in merged(todo):
            repairs.append(_refetched(refetch, symbol, interval, start, end))
    return repairs


def _refetched(
    refetch: Refetch, symbol: Symbol, interval: Interval, start: int, end: int
) -> Repair:
    span = f"[{terminal_time(start)}, {terminal_time(end)})"
    try:
        written = refetch(symbol, interval, start, end)
    except OstError as exc:
        return Repair("failed", None, f"fetching {span} again: {exc}", symbol, interval)
    return Repair("refetched", None, span, symbol, interval, written=written)


# ---- helpers -----------------------------------------------------------------------------------


def _finding(kind: str, relative: str, detail: str, where: Location) -> Finding:
    return Finding(kind, relative, detail, where.symbol, where.interval, where.period)


def _first_and_others(details: list[str]) -> str:
    """The first reader's detail, naming the other readers that saw the same kind of problem."""
    others = [detail.split(":", 1)[0] for detail in details[1:]]
    return details[0] + (f" (and {', '.join(others)})" if others else "")


def _type_difference(got: list[tuple[str, str]], want: list[tuple[str, str]]) -> str:
    """The first column whose name or type differs from the interface's."""
    if [name for name, _ in got] != [name for name, _ in want]:
        return f"columns {[name for name, _ in got]}, not {[name for name, _ in want]}"
    for (name, kind), (_, expected) in zip(got, want, strict=True):
        if kind != expected:
            return f"column {name} is {kind}, not {expected}"
    return "types differ"  # pragma: no cover  # unequal lists differ in a name or a type


def _short(error: object) -> str:
    """An error's text on one line, at most ``DETAIL_CHARS`` long."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"

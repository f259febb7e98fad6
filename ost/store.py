"""The candle store: one Parquet file per stream and time partition, rewritten atomically.

Layout (``root`` is ``OST_DATA_DIR``, a local path or an fsspec URL); every path of a stream's
file comes from one function, :func:`stream_path`::

    <root>/klines/symbol=<SYMBOL>/interval=<INTERVAL>/period=<YYYY-MM-DD>/part.parquet
    <root>/gaps/symbol=<SYMBOL>/interval=<INTERVAL>/exchange_gaps.json   (see :mod:`ost.gaps`)
    <root>/locks/<SYMBOL>-<INTERVAL>.<0-15>.lock   (a partition's, striped by its date)
    <root>/locks/<SYMBOL>-<INTERVAL>.gaps.lock     (the gap record's)
    <root>/quarantine/<YYYYMMDDTHHMMSS.ffffffZ>/klines/...   (files moved out of the dataset)

A root that is not local keeps its ``locks/`` in this machine's temp dir (see :mod:`ost.backend`).

``period`` is the first day of the candle's time partition (:func:`ost.intervals.partition_start`:
a day, a month or a year, see ``PARTITION_SPAN``). A file holds only the stored ``COLUMNS`` of
:mod:`ost.klines`, sorted by a unique ``open_time``; ``symbol``, ``interval`` and ``period`` come
from the hive path, so ``pyarrow.dataset.dataset(<root>/klines, partitioning="hive")`` and DuckDB's
``read_parquet('<root>/klines/**/*.parquet', hive_partitioning=true)`` read the whole store.

Write protocol (:meth:`CandleStore.merge`, a template method over the raw I/O of its
:class:`~ost.backend.Backend`): the incoming frame is checked (columns, dtypes, and
:func:`ost.klines.validate`) before anything is touched. Then for each partition it touches, under
the partition's lock: read the stored file, drop the stored rows whose ``open_time`` comes again
(the newest fetch wins), concatenate, sort, validate, and write the whole partition with the
backend's one atomic write, :meth:`~ost.backend.Backend.replace`:

1. write ``.part-<random>.tmp`` in the partition's directory (a leading dot and no ``.parquet``
   suffix: neither DuckDB's glob nor pyarrow ever reads it), flush and ``fsync`` it;
2. ``os.replace`` it onto ``part.parquet`` and ``fsync`` the directory.

A process killed at any instant leaves either the old or the new ``part.parquet``, plus at worst a
stale temp file, which the next write into that directory removes. On a remote filesystem the
file is written locally and uploaded with one ``put``, which object stores apply atomically.

Healing (:meth:`CandleStore.healing`): a partition file that cannot be read, has another schema
or holds rows it cannot hold raises :class:`~ost.errors.PartitionCorrupt`. Ingestion and backfill
then :meth:`~CandleStore.quarantine` it: under the partition's lock, checked again, it is moved to
``<root>/quarantine/<UTC stamp>/`` under its own relative path (outside ``klines/``, so readers of
the dataset work again at once, and putting it back is one move), one warning line says so, and
the caller fetches the partition's range again. A file beside ``part.parquet`` that a reader would
read too (``part (copy).parquet``: pyarrow reads every file whose path has no component starting
with ``.`` or ``_``, DuckDB's glob every ``*.parquet``) is quarantined by the next write into that
directory, since readers would return its rows twice. ``ost verify`` (:mod:`ost.verify`) checks
every file as pyarrow and DuckDB read it.

The lock is taken per partition, so a long backfill and a 15-minute update of the same stream
interleave. Readers take no lock: each file is parsed through one open handle, footer and rows
alike, so a concurrent replace cannot mix two versions. An update of a few candles lists only
the directory of the newest partition and reads and writes only that partition, so its cost does
not grow with the history.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import numpy as np
import pandas as pd

from ost import intervals, klines
from ost.backend import LOCKS_DIR, Backend, DirectorySyncs, is_temp, open_backend
from ost.errors import (
    BadInput,
    InvalidCandle,
    Locked,
    PartitionCorrupt,
    StoreCorrupt,
    StoreError,
    StreamLocked,
)
from ost.intervals import Interval, Stream, Symbol
from ost.settings import load_settings
from ost.timefmt import parse_quarantine_stamp, quarantine_stamp

__all__ = [
    "CandleStore",
    "Extent",
    "Location",
    "Quarantined",
    "TimeBound",
    "load_klines",
    "locate",
    "partition_path",
    "quarantine_path",
    "read_extent",
    "read_footer",
    "read_frame",
    "stream_path",
    "write_columns",
    "write_frame",
]

log = logging.getLogger(__name__)
Result = TypeVar("Result")
Parsed = TypeVar("Parsed")

#: A time bound of :meth:`CandleStore.load_klines`: epoch ms, a datetime or an ISO-8601 string
#: (naive means UTC).
TimeBound = int | str | dt.datetime | None

KLINES_DIR: Final = "klines"
PARTITION_FILE: Final = "part.parquet"
#: Each stream's record of exchange-side gaps (:class:`ost.gaps.ExchangeGapLog`).
GAPS_DIR: Final = "gaps"
GAPS_FILE: Final = "exchange_gaps.json"
QUARANTINE_DIR: Final = "quarantine"
#: Quarantine records kept for :meth:`CandleStore.take_quarantined` (the oldest are dropped).
QUARANTINE_LOG: Final = 10_000
#: How much of a problem a quarantine line quotes.
PROBLEM_CHARS: Final = 240
COMPRESSION: Final = "ZSTD"
#: Columns whose min/max go in the footer: the times that readers filter on (and that
#: ``last_open_time`` reads). Statistics of every column cost a third of each write.
STATISTICS_COLUMNS: Final = ("open_time", "close_time")
#: How long a writer waits for a partition's lock before its stream fails (that stream only).
#: A holder keeps it for one partition's read-modify-write, well under a second even for a year
#: of hourly candles; a lock held for a minute is a stuck process, not a busy one.
DEFAULT_LOCK_TIMEOUT_S: Final = 60.0
#: After this long a writer still waiting for a lock says so, naming the PID that holds it.
LOCK_ANNOUNCE_AFTER_S: Final = 5.0
#: Lock files per stream; a partition takes the one its date falls on.
LOCK_STRIPES: Final = 16


# ---- layout: the only place that knows how paths are built ------------------------------------


def klines_dir(root: str) -> str:
    """The hive dataset's directory under ``root`` (a filesystem path, not a URL)."""
    return posixpath.join(root, KLINES_DIR)


#: What a stream keeps under the root: its candle partitions, its record of exchange-side gaps.
Kind = Literal["klines", "gaps"]


def stream_path(
    kind: Kind,
    symbol: Symbol,
    interval: Interval,
    period: dt.date | None = None,
    *,
    lock: bool = False,
) -> str:
    """Where a stream's file of ``kind`` is, relative to the root: the one rule of the layout.

    ``klines`` with a ``period``: that partition's ``part.parquet``; without: the directory of
    the stream's partitions. ``gaps``: the stream's gap record. ``lock=True``: the file's lock,
    ``locks/<SYMBOL>-<INTERVAL>.<stripe>.lock`` for a partition (``LOCK_STRIPES`` per stream, by
    date, so neighbouring partitions can be written at once with a bounded number of lock files),
    ``locks/<SYMBOL>-<INTERVAL>.gaps.lock`` for the gap record. The symbol and interval are
    parsed (:func:`~ost.intervals.parse_stream`), so neither can leave the root.
    """
    stream = posixpath.join(f"symbol={symbol}", f"interval={interval}")
    if kind == GAPS_DIR:
        if lock:
            return posixpath.join(LOCKS_DIR, f"{symbol}-{interval}.gaps.lock")
        return posixpath.join(GAPS_DIR, stream, GAPS_FILE)
    if period is None:
        if lock:
            raise ValueError("a stream's partitions are locked one partition at a time")
        return posixpath.join(KLINES_DIR, stream)
    if lock:
        return posixpath.join(
            LOCKS_DIR, f"{symbol}-{interval}.{period.toordinal() % LOCK_STRIPES}.lock"
        )
    return posixpath.join(KLINES_DIR, stream, f"period={period.isoformat()}", PARTITION_FILE)


def partition_path(root: str, symbol: Symbol, interval: Interval, period: dt.date) -> str:
    """The file of the partition of ``symbol``/``interval`` that starts on ``period``."""
    return posixpath.join(root, stream_path(KLINES_DIR, symbol, interval, period))


def relative_path(root: str, path: str) -> str:
    """``path``, a file of the store at ``root``, relative to ``root`` (``/``-separated)."""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise StoreError(f"{path} is not under the data dir {root}")
    return path[len(prefix) :]


def quarantine_path(root: str, path: str, at: dt.datetime, attempt: int = 0) -> str:
    """Where the file ``path`` of the store at ``root`` goes when it is quarantined at ``at``.

    ``<root>/quarantine/<UTC stamp>[-<attempt>]/<its path relative to root>``: outside
    ``klines/``, so no reader of the dataset sees it, and putting it back is one move.
    """
    stamp = quarantine_stamp(at) + (f"-{attempt}" if attempt else "")
    return posixpath.join(root, QUARANTINE_DIR, stamp, relative_path(root, path))


def parse_quarantined(relative: str) -> tuple[dt.datetime, str] | None:
    """(when, original path relative to the root) of a quarantined file, or None.

    ``relative`` is the file's path relative to the root, as :func:`quarantine_path` builds it.
    """
    parts = relative.split("/", 2)
    if len(parts) < 3 or parts[0] != QUARANTINE_DIR:
        return None
    try:
        at = parse_quarantine_stamp(parts[1].split("-")[0])
    except ValueError:
        return None
    return at, parts[2]


@dataclass(frozen=True)
class Location:
    """What a path relative to the root is in the layout: the valid hive keys above it."""

    symbol: Symbol | None = None
    interval: Interval | None = None
    #: The partition directory's date, if it starts a partition of ``interval``.
    period: dt.date | None = None
    #: Whether it is the ``part.parquet`` of a valid partition directory.
    is_partition_file: bool = False


def locate(relative: str) -> Location:
    """Where ``relative`` (a file's path relative to the root) sits in the layout of ``klines/``."""
    parts = relative.split("/")
    keys = parts[1:-1]  # the directories between klines/ and the file's name
    if parts[0] != KLINES_DIR or not keys:
        return Location()
    symbol = _valid(intervals.parse_symbol, _key_value(keys[0], "symbol"))
    if symbol is None:
        return Location()
    interval = (
        _valid(intervals.parse_interval, _key_value(keys[1], "interval")) if keys[1:] else None
    )
    if interval is None:
        return Location(symbol)
    period = _period_of(keys[2]) if keys[2:] else None
    if period is None or intervals.partition_start(interval, intervals.date_ms(period)) != period:
        return Location(symbol, interval)
    is_file = len(keys) == 3 and parts[-1] == PARTITION_FILE
    return Location(symbol, interval, period, is_partition_file=is_file)


def read_by_consumers(relative: str) -> bool:
    """Whether pyarrow's dataset or DuckDB's ``**/*.parquet`` glob reads the file at ``relative``.

    pyarrow reads every file below the dataset's directory whose path has no component starting
    with ``.`` or ``_``; DuckDB's glob every ``*.parquet``, hidden or not (checked by a test).
    """
    parts = relative.split("/")
    return parts[-1].endswith(".parquet") or not any(part.startswith((".", "_")) for part in parts)


def _key_value(name: str, key: str) -> str | None:
    """The value of a hive directory name ``key=value``, or None for any other name."""
    prefix = f"{key}="
    return name[len(prefix) :] if name.startswith(prefix) else None


def _period_of(name: str) -> dt.date | None:
    """The date of a ``period=YYYY-MM-DD`` directory name, or None for any other name."""
    value = _key_value(name, "period")
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _valid(parse: Callable[[str], Parsed], value: str | None) -> Parsed | None:
    """``value`` (a name found on disk) as ``parse`` makes it (a symbol, an interval), else None."""
    if value is None:
        return None
    try:
        return parse(value)
    except BadInput:
        return None


# ---- the Parquet codec: a frame to a partition file and back, through the backend -------------


def read_frame(backend: Backend, path: str) -> pd.DataFrame | None:
    """The whole Parquet file ``path`` as pyarrow reads it to pandas, or None: no such file."""
    frame: pd.DataFrame | None = _parse(backend, path, lambda parquet: parquet.read().to_pandas())
    return frame


def read_footer(backend: Backend, path: str) -> Footer | None:
    """The file's columns, dtypes, minima and maxima from its footer alone (None: no file)."""
    footer: Footer | None = _parse(backend, path, _footer_of)
    return footer


@dataclass(frozen=True)
class Extent:
    """What a partition file's footer states of its rows: how many, the first and last open time."""

    rows: int
    first_open_ms: int
    last_open_ms: int


def read_extent(backend: Backend, path: str) -> Extent | None:
    """The rows and open-time bounds that the footer of ``path`` states, or None if it cannot say.

    Only the footer is read (pyarrow's ``ParquetFile`` parses nothing else). None: no such file,
    an unreadable one, another schema than the store's (:func:`_schema_problem`), or no
    open_time statistics. Nothing is checked beyond the footer: :meth:`CandleStore.read_partition`
    reads the rows.
    """
    try:
        extent: Extent | None = _parse(backend, path, _extent_of)
    except StoreError:  # a damaged file, or no access: the full read names it
        return None
    return extent


def _extent_of(parquet: Any) -> Extent | None:
    """The :class:`Extent` of an open ``pyarrow.parquet.ParquetFile`` of the store's schema."""
    metadata = parquet.metadata
    if not metadata.schema.equals(_store_parquet_schema()) and _schema_problem(
        parquet.schema_arrow
    ):  # the Parquet schema compares in a tenth of the time of building pyarrow's
        return None
    lows, highs = [], []
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if not group.num_rows:
            continue
        stats = group.column(_OPEN_TIME).statistics
        if stats is None or not stats.has_min_max:
            return None
        lows.append(int(stats.min_raw))  # INT64, epoch ms (the schema says so)
        highs.append(int(stats.max_raw))
    if not lows:
        return None
    return Extent(int(metadata.num_rows), min(lows), max(highs))


_OPEN_TIME: Final = klines.COLUMNS.index("open_time")


def write_frame(backend: Backend, path: str, frame: pd.DataFrame) -> None:
    """Replace ``path`` with ``frame`` as Parquet, atomically (the caller holds its lock)."""
    write_columns(backend, path, klines.columns_of(frame))


def write_columns(
    backend: Backend, path: str, columns: klines.Columns, syncs: DirectorySyncs | None = None
) -> bool:
    """Replace ``path`` with ``columns`` (times as epoch ms) as Parquet, atomically (locked).

    Whether the partition's directory was made by this write (:meth:`Backend.write_bytes`,
    which takes ``syncs``).
    """
    return backend.write_bytes(path, _parquet_bytes(columns), syncs)


def _parse(backend: Backend, path: str, use: Callable[[Any], Result]) -> Result | None:
    """``use(pyarrow.parquet.ParquetFile)`` on one open handle of ``path``; None: no such file.

    Footer and rows come through the same handle, so a concurrent ``os.replace`` of the file
    cannot pair the old footer with the new rows. pyarrow, the reference implementation and
    fuzzed upstream, raises on a damaged file (fastparquet's thrift decoder could crash the
    process: ``tests/test_store_damage.py``), and checks the pages' CRCs where a file has them.
    """
    parquet = _arrow()[1]
    try:
        with backend.open_input(path) as handle:
            return use(parquet.ParquetFile(handle, page_checksum_verification=True))
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:  # a damaged file fails in many ways: ArrowInvalid, OSError, ...
        raise StoreCorrupt(f"{path} is not a readable Parquet file: {exc!r}") from exc


@dataclass(frozen=True)
class Footer:
    """What a Parquet file's footer says: its columns with pandas dtypes, column minima, maxima."""

    dtypes: dict[str, str]
    minima: dict[str, list[Any]]
    maxima: dict[str, list[Any]]

    def min(self, column: str) -> Any:
        """The smallest value of ``column`` over the row groups, or None without statistics."""
        values = self.minima.get(column)
        if not values or any(value is None for value in values):
            return None
        return min(values)

    def max(self, column: str) -> Any:
        """The largest value of ``column`` over the row groups, or None without statistics."""
        values = self.maxima.get(column)
        if not values or any(value is None for value in values):
            return None
        return max(values)


def _footer_of(parquet: Any) -> Footer:
    """The :class:`Footer` of an open ``pyarrow.parquet.ParquetFile``.

    Timestamps come as ``numpy.datetime64`` of the column's unit, other values as pyarrow
    gives them; a row group without a column's min/max gives None.
    """
    schema, metadata = parquet.schema_arrow, parquet.metadata
    minima: dict[str, list[Any]] = {name: [] for name in schema.names}
    maxima: dict[str, list[Any]] = {name: [] for name in schema.names}
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        for position, name in enumerate(schema.names):
            stats = group.column(position).statistics
            kind = schema.field(position).type
            has = stats is not None and stats.has_min_max
            minima[name].append(_statistic(stats.min_raw, stats.min, kind) if has else None)
            maxima[name].append(_statistic(stats.max_raw, stats.max, kind) if has else None)
    return Footer(
        {name: _pandas_dtype(kind) for name, kind in zip(schema.names, schema.types, strict=True)},
        minima,
        maxima,
    )


def _statistic(raw: Any, value: Any, kind: Any) -> Any:
    """A footer statistic: a timestamp's raw integer as ``datetime64`` of its unit, or ``value``."""
    if _arrow()[0].types.is_timestamp(kind):
        return np.datetime64(int(raw), kind.unit)
    return value


def _schema_problem(schema: Any) -> str | None:
    """What is wrong with a file's pyarrow schema (names, order, types), or None: the store's."""
    if schema.names == list(klines.COLUMNS) and schema.types == _store_types():
        return None
    dtypes = [_pandas_dtype(kind) for kind in schema.types]
    return _dtypes_problem(schema.names, dtypes) or f"its types are not the store's: {schema}"


@functools.cache
def _store_types() -> list[Any]:
    """The pyarrow types of the stored columns, in order (times: ``timestamp[ms, tz=UTC]``)."""
    return list(_arrow()[2].types)


@functools.cache
def _store_parquet_schema() -> Any:
    """The Parquet schema (``pyarrow.parquet.ParquetSchema``) of the store's columns."""
    pa, parquet, schema = _arrow()
    sink = pa.BufferOutputStream()
    parquet.write_table(schema.empty_table(), sink)
    return parquet.ParquetFile(pa.BufferReader(sink.getvalue())).metadata.schema


def _pandas_dtype(kind: Any) -> str:
    """The pandas dtype that pyarrow reads a column of type ``kind`` to (for the messages)."""
    try:
        return str(pd.api.types.pandas_dtype(kind.to_pandas_dtype()))
    except (NotImplementedError, TypeError):  # nested and other types pandas has no dtype for
        return str(kind)


def _parquet_bytes(columns: klines.Columns) -> bytes:
    """``columns`` (the stored ones, times as epoch ms) as the bytes of one Parquet file.

    pyarrow encodes it (the reference implementation, and 5 times less CPU than fastparquet's
    ``write_simple`` for a day of 1m: ``benchmarks/cpu_per_page.py``) from the numpy columns,
    in memory; the backend's one atomic write puts the bytes in place. The file is what the
    interface promises (docs/CONTRACT.md): the time columns ``timestamp[ms, UTC]`` with min/max
    statistics, the others float64 or int64, ZSTD, page checksums (CRC32, checked by every read
    of the store: a flipped byte in a data page is a damaged file, not a wrong price), and pandas
    metadata, by which fastparquet (one of ``ost verify``'s readers) reads the same dtypes as
    pyarrow and DuckDB.
    """
    pa, parquet, schema = _arrow()
    table = pa.Table.from_arrays(
        [pa.array(columns[name], type=schema.field(name).type) for name in klines.COLUMNS],
        schema=schema,
    )
    sink = pa.BufferOutputStream()
    parquet.write_table(
        table,
        sink,
        compression=COMPRESSION,
        use_dictionary=False,  # prices rarely repeat: a dictionary costs half the write
        write_statistics=list(STATISTICS_COLUMNS),
        write_page_checksum=True,
    )
    return bytes(sink.getvalue().to_pybytes())


@functools.cache
def _arrow() -> tuple[Any, Any, Any]:
    """pyarrow, pyarrow.parquet and the partition files' schema, imported at the first use.

    pandas has imported pyarrow already; ``pyarrow.parquet`` adds about 10 ms, paid by
    processes that touch a file only.
    """
    import pyarrow as pa  # noqa: PLC0415  # only processes that touch a file need it
    from pyarrow import parquet  # noqa: PLC0415  # as above

    return pa, parquet, pa.Schema.from_pandas(klines.empty_frame(), preserve_index=False)


# ---- the store: merge logic on top of the backend ----------------------------------------------


@dataclass(frozen=True)
class Quarantined:
    """A file moved out of ``klines/`` into the quarantine, and why (paths relative to the root)."""

    path: str
    moved_to: str
    problem: str
    at: dt.datetime
    symbol: Symbol | None = None
    interval: Interval | None = None
    period: dt.date | None = None
    #: Whether it was a partition's own ``part.parquet``, whose range must be fetched again
    #: (otherwise a foreign file, whose rows the store never held).
    partition: bool = False

    @property
    def range_ms(self) -> tuple[int, int] | None:
        """The open times ``[start, end)`` of the partition it was, or None for a foreign file."""
        if not self.partition or self.interval is None or self.period is None:
            return None
        start = intervals.date_ms(self.period)
        return start, intervals.partition_end_ms(self.interval, self.period)

    def line(self) -> str:
        """What happened, in one line for the operator."""
        stream = f"{self.symbol} {self.interval}: " if self.symbol and self.interval else ""
        then = "its range is fetched again" if self.partition else "readers no longer see it"
        return f"{stream}{self.path} {self.problem}; moved to {self.moved_to}, {then}"


class CandleStore:
    """The candles of every stream under one root (``OST_DATA_DIR``: a path or an fsspec URL)."""

    def __init__(
        self,
        root: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        lock_announce_after: float = LOCK_ANNOUNCE_AFTER_S,
    ) -> None:
        self.backend = open_backend(root)
        self.lock_timeout = lock_timeout
        self.lock_announce_after = lock_announce_after
        self._quarantined: deque[Quarantined] = deque(maxlen=QUARANTINE_LOG)
        self._quarantined_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CandleStore({self.backend.url!r})"

    # -- writing

    def merge(self, symbol: Symbol, interval: Interval, frame: pd.DataFrame) -> int:
        """Store ``frame``'s candles, replacing stored ones of the same open_time.

        The frame is checked whole before anything is written: a frame with other columns or
        dtypes raises :class:`StoreError`, an impossible candle :class:`InvalidCandle`. Returns
        how many of its open times were not stored before.
        """
        return self._merge(symbol, interval, _checked_incoming(frame, interval))

    def merge_columns(
        self,
        symbol: Symbol,
        interval: Interval,
        columns: klines.Columns,
        *,
        syncs: DirectorySyncs | None = None,
    ) -> int:
        """:meth:`merge` of numpy columns (:data:`ost.klines.Columns`, times as epoch ms).

        What a backfill holds of its pages: no frame is built on the way to the file. The
        columns are checked as a frame is (names, dtypes, missing values, candles). With
        ``syncs``, the partition directories it makes are durable once ``syncs.sync()`` ran
        (:class:`~ost.backend.DirectorySyncs`: a batch's one fsync of their parent).
        """
        checked = _checked_columns(columns, interval, "these columns")
        return self._merge(symbol, interval, checked, syncs)

    def _merge(
        self,
        symbol: Symbol,
        interval: Interval,
        incoming: klines.Columns,
        syncs: DirectorySyncs | None = None,
    ) -> int:
        """Merge checked, sorted columns partition by partition, each under its lock."""
        added = 0
        for period, rows in _split_columns(interval, incoming):
            with self.lock(KLINES_DIR, symbol, interval, period):
                added += self._merge_partition(symbol, interval, period, rows, syncs)
        return added

    def _merge_partition(
        self,
        symbol: Symbol,
        interval: Interval,
        period: dt.date,
        rows: klines.Columns,
        syncs: DirectorySyncs | None,
    ) -> int:
        """Read-modify-write one partition (its lock is held); the new open times."""
        path = self._path(symbol, interval, period)
        stored = self._read_partition(symbol, interval, period)
        if stored is None:
            if not write_columns(self.backend, path, rows, syncs):  # a directory just made holds
                self._quarantine_foreign(symbol, interval, period)  # no foreign file
            return len(rows["open_time"])
        held = klines.columns_of(stored)
        replaced = np.isin(held["open_time"], rows["open_time"])
        merged = klines.concat([klines.take(held, ~replaced), rows])
        merged = klines.take(merged, np.argsort(merged["open_time"], kind="stable"))
        try:
            klines.validate_columns(merged, interval)
        except InvalidCandle as exc:
            problem = f"holds candles that do not validate: {exc.args[0]}"
            raise self._corrupt(symbol, interval, period, problem) from exc
        if not _same_candles(merged, held):
            write_columns(self.backend, path, merged)
            self._quarantine_foreign(symbol, interval, period)
        return len(rows["open_time"]) - int(replaced.sum())

    def lock(
        self, kind: Kind, symbol: Symbol, interval: Interval, period: dt.date | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The lock of a stream's file of ``kind`` (:func:`stream_path`), for its read-modify-write.

        The holder writes its PID into the lock file. A writer that waits for it says so after
        ``lock_announce_after`` seconds, naming that PID, and gives up after ``lock_timeout``:
        :class:`~ost.errors.StreamLocked`, which fails only this stream.
        """
        return self.backend.lock(
            stream_path(kind, symbol, interval, period, lock=True),
            f"{symbol} {interval}",
            timeout=self.lock_timeout,
            announce_after=self.lock_announce_after,
            error=StreamLocked,
        )

    # -- reading

    def load_klines(
        self, symbol: Symbol, interval: Interval, start: TimeBound = None, end: TimeBound = None
    ) -> pd.DataFrame:
        """The stored candles with ``start <= open_time < end`` (None: unbounded), sorted.

        Only the partitions that overlap the range are opened, chosen by their names; each is
        checked as :meth:`read_partition` checks it, and their tables become one frame at once.
        """
        start_ms, end_ms = _bound_ms(start, default=-(2**63)), _bound_ms(end, default=2**63 - 1)
        tables = []
        for period in self.periods_between(symbol, interval, start_ms, end_ms):
            checked = self._read_table(symbol, interval, period)
            if checked is not None:
                table, open_ms = checked
                first, stop = np.searchsorted(open_ms, [start_ms, end_ms])
                if stop > first:
                    tables.append(table.slice(first, stop - first))
        if not tables:
            return klines.empty_frame()
        candles: pd.DataFrame = _arrow()[0].concat_tables(tables).to_pandas()
        return candles

    def last_open_time(self, symbol: Symbol, interval: Interval) -> int | None:
        """The newest stored open time (epoch ms), from the newest file's footer statistics.

        The footer's columns, dtypes and open-time bounds are checked too (at no cost: it is
        read anyway), so a newest file of another schema, or holding another partition's rows,
        raises :class:`PartitionCorrupt` here rather than misleading the resume point.
        """
        for period in reversed(self._periods(symbol, interval)):
            path = self._path(symbol, interval, period)
            try:
                footer = read_footer(self.backend, path)
            except StoreCorrupt as exc:
                raise self._corrupt(symbol, interval, period, _unreadable(exc)) from exc
            if footer is None:
                continue
            problem = _dtypes_problem(list(footer.dtypes), list(footer.dtypes.values()))
            if problem:
                raise self._corrupt(symbol, interval, period, problem)
            newest, oldest = footer.max("open_time"), footer.min("open_time")
            if newest is not None and oldest is not None:
                newest_ms, oldest_ms = _datetime64_ms(newest), _datetime64_ms(oldest)
                if oldest_ms < intervals.date_ms(period) or newest_ms >= intervals.partition_end_ms(
                    interval, period
                ):
                    problem = f"open_time outside the {interval} partition starting {period}"
                    raise self._corrupt(symbol, interval, period, problem)
                return newest_ms
            stored = self._read_partition(symbol, interval, period)  # a file without statistics
            if stored is not None and not stored.empty:
                return int(klines.open_time_ms(stored)[-1])
        return None

    def periods_between(
        self, symbol: Symbol, interval: Interval, start_ms: int, end_ms: int
    ) -> list[dt.date]:
        """The stream's ``period=`` dates whose partition overlaps ``[start_ms, end_ms)``.

        From one listing of the stream's directory, whatever the number of partitions; no file
        is opened, so a directory may lack its ``part.parquet`` (its read returns None).
        """
        return [
            period
            for period in self._periods(symbol, interval)
            if intervals.date_ms(period) < end_ms
            and intervals.partition_end_ms(interval, period) > start_ms
        ]

    def read_partition(
        self, symbol: Symbol, interval: Interval, period: dt.date
    ) -> pd.DataFrame | None:
        """The stored partition that starts on ``period`` (None: no file), as readers get it.

        Checked to hold only its own, sorted, well-typed candles (:class:`PartitionCorrupt`).
        """
        return self._read_partition(symbol, interval, period)

    def partition_extent(
        self, symbol: Symbol, interval: Interval, period: dt.date
    ) -> Extent | None:
        """How many rows the partition's footer states, and its first and last open time.

        None when the footer cannot say (no file, a damaged file, no statistics): read the
        partition then. The store's writes keep a partition's open times sorted, unique and
        aligned (:meth:`merge` validates every partition it writes), so ``rows`` and the bounds
        say which candles a file of the store holds.
        """
        return read_extent(self.backend, self._path(symbol, interval, period))

    def partitions(self, symbol: Symbol, interval: Interval) -> list[dt.date]:
        """The start dates of the stream's stored partitions, oldest first."""
        return [
            period
            for period in self._periods(symbol, interval)
            if self.backend.exists(self._path(symbol, interval, period))
        ]

    def streams(self) -> list[Stream]:
        """The streams that have a directory in the store, sorted."""
        root = klines_dir(self.backend.root)
        return [
            Stream(symbol, interval)
            for symbol_name in self.backend.list_names(root)
            if (symbol := _valid(intervals.parse_symbol, _key_value(symbol_name, "symbol")))
            for interval_name in self.backend.list_names(posixpath.join(root, symbol_name))
            if (interval := _valid(intervals.parse_interval, _key_value(interval_name, "interval")))
        ]

    def _periods(self, symbol: Symbol, interval: Interval) -> list[dt.date]:
        """The dates of the stream's ``period=`` directories (names only, no file is opened)."""
        names = self.backend.list_names(
            self.backend.path(stream_path(KLINES_DIR, symbol, interval))
        )
        return sorted(
            period
            for period in map(_period_of, names)
            if period is not None  # and the start of a partition: another date is a foreign name
            and intervals.partition_start(interval, intervals.date_ms(period)) == period
        )

    def _path(self, symbol: Symbol, interval: Interval, period: dt.date) -> str:
        return partition_path(self.backend.root, symbol, interval, period)

    def _read_partition(
        self, symbol: Symbol, interval: Interval, period: dt.date
    ) -> pd.DataFrame | None:
        """The stored partition, checked to hold only its own, sorted, well-typed candles."""
        checked = self._read_table(symbol, interval, period)
        if checked is None:
            return None
        stored: pd.DataFrame = checked[0].to_pandas()
        return stored

    def _read_table(
        self, symbol: Symbol, interval: Interval, period: dt.date
    ) -> tuple[Any, np.ndarray] | None:
        """The stored partition as a pyarrow table, and its open times (epoch ms); None: no file.

        Checked before any frame is built: the store's columns and types, no missing value
        where pandas would change the dtype, open times unique, sorted and inside the
        partition (:class:`PartitionCorrupt`). The table has no schema metadata left, so its
        ``to_pandas`` is the store's dtypes (:data:`ost.klines.DTYPES`) whoever wrote the file.
        """
        try:
            table = _parse(self.backend, self._path(symbol, interval, period), _rows)
        except StoreCorrupt as exc:
            raise self._corrupt(symbol, interval, period, _unreadable(exc)) from exc
        if table is None:
            return None
        problem = _schema_problem(table.schema) or next(
            (
                f"column {name} has missing values"
                for name in _INT_COLUMNS
                if table[name].null_count
            ),
            None,
        )
        open_ms = np.empty(0, np.int64)
        if problem is None:
            open_ms = table["open_time"].to_numpy().view(np.int64)
            problem = _range_problem(open_ms, interval, period)
        if problem:
            raise self._corrupt(symbol, interval, period, problem)
        return table.replace_schema_metadata(), open_ms

    def _corrupt(
        self, symbol: Symbol, interval: Interval, period: dt.date, problem: str
    ) -> PartitionCorrupt:
        path = self._path(symbol, interval, period)
        return PartitionCorrupt(problem, symbol=symbol, interval=interval, period=period, path=path)

    # -- healing

    def partition_problem(self, symbol: Symbol, interval: Interval, period: dt.date) -> str | None:
        """What is wrong with a partition's file as the store reads it (None: nothing, or no file).

        Unreadable, another schema, rows out of order or outside the partition, or candles that
        do not validate (which a merge into it would refuse).
        """
        try:
            stored = self._read_partition(symbol, interval, period)
            if stored is not None:
                klines.validate(stored, interval)
        except PartitionCorrupt as exc:
            return exc.problem
        except InvalidCandle as exc:
            return f"holds candles that do not validate: {exc.args[0]}"
        return None

    def quarantine(
        self,
        symbol: Symbol,
        interval: Interval,
        period: dt.date,
        *,
        check: Callable[[], str | None] | None = None,
    ) -> Quarantined | None:
        """Move the partition's file to the quarantine if it is still damaged; what was moved.

        Under the partition's lock the file is checked again (``check``, by default
        :meth:`partition_problem`): a file that another process replaced meanwhile with a good
        one stays, and None is returned. The move is announced in one warning line.
        """
        with self.lock(KLINES_DIR, symbol, interval, period):
            problem = (check or (lambda: self.partition_problem(symbol, interval, period)))()
            if problem is None:
                return None
            path = self._path(symbol, interval, period)
            return self._move_to_quarantine(path, f"is damaged ({problem})", partition=True)

    def quarantine_file(self, path: str, problem: str) -> Quarantined | None:
        """Move ``path``, a file that is not a partition's own, to the quarantine (None if gone).

        Inside a partition directory the move is made under the partition's lock.
        """
        where = locate(relative_path(self.backend.root, path))
        guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if where.symbol and where.interval and where.period:
            guard = self.lock(KLINES_DIR, where.symbol, where.interval, where.period)
        with guard:
            if not self.backend.exists(path):
                return None
            return self._move_to_quarantine(path, problem, partition=False)

    def remove_temp(self, path: str) -> bool:
        """Remove a writer's temp file left in a partition directory, unless a writer runs there.

        The partition's lock is taken without waiting: a temp file is a leftover only while no
        writer of that partition holds it. Returns whether it was removed.
        """
        with self._lock_if_free(path) as free:
            if free:
                self.backend.remove(path)
            return free

    def is_writing(self, path: str) -> bool:
        """Whether a writer holds the lock of the partition directory that holds ``path``."""
        with self._lock_if_free(path) as free:
            return not free

    @contextlib.contextmanager
    def _lock_if_free(self, path: str) -> Iterator[bool]:
        """The lock of the partition that holds the file ``path``, if free now: whether it was."""
        where = locate(relative_path(self.backend.root, path))
        if not (where.symbol and where.interval and where.period):
            raise StoreError(f"{path} is not in a partition directory")
        lock = stream_path(KLINES_DIR, where.symbol, where.interval, where.period, lock=True)
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(
                    self.backend.lock(lock, f"{where.symbol} {where.interval}", timeout=0)
                )
            except Locked:
                free = False
            else:
                free = True
            yield free

    def healing(
        self,
        symbol: Symbol,
        interval: Interval,
        attempt: Callable[[], Result],
        refetch: Callable[[Quarantined], object],
    ) -> Result:
        """``attempt()``, healing on the way the stream's damaged partitions it meets.

        A partition of this stream that ``attempt`` finds damaged (:class:`PartitionCorrupt`)
        is quarantined (:meth:`quarantine`), ``refetch`` fetches its range again, and ``attempt``
        runs again. Each partition is healed at most once per call: met damaged again, its
        error is raised, as is any other error.
        """
        healed: set[dt.date] = set()
        while True:
            try:
                return attempt()
            except PartitionCorrupt as exc:
                if (exc.symbol, exc.interval) != (symbol, interval) or exc.period in healed:
                    raise
                healed.add(exc.period)
                record = self.quarantine(symbol, interval, exc.period)
                if record is not None:  # None: another process replaced it meanwhile
                    refetch(record)

    def take_quarantined(self) -> list[Quarantined]:
        """The quarantine moves made since the last call (for the ledger), oldest first."""
        with self._quarantined_lock:
            taken = list(self._quarantined)
            self._quarantined.clear()
        return taken

    def _quarantine_foreign(self, symbol: Symbol, interval: Interval, period: dt.date) -> None:
        """Quarantine the files beside ``part.parquet`` that a reader would read too.

        Called after a write of the partition, under its lock: its directory is listed (one
        directory, whatever the history).
        """
        directory = posixpath.dirname(self._path(symbol, interval, period))
        for name in self.backend.list_files(directory):
            if name != PARTITION_FILE and not is_temp(name) and read_by_consumers(name):
                self._move_to_quarantine(
                    posixpath.join(directory, name),
                    "is a foreign file that readers would read beside part.parquet",
                    partition=False,
                )

    def _move_to_quarantine(self, path: str, problem: str, *, partition: bool) -> Quarantined:
        """Move ``path`` to a new name under ``quarantine/`` (the caller holds any lock needed)."""
        root = self.backend.root
        at = dt.datetime.now(dt.UTC)
        attempt = 0
        while self.backend.exists(destination := quarantine_path(root, path, at, attempt)):
            attempt += 1
        self.backend.move(path, destination)
        relative = relative_path(root, path)
        where = locate(relative)
        record = Quarantined(
            path=relative,
            moved_to=relative_path(root, destination),
            problem=_one_line(problem),
            at=at,
            symbol=where.symbol,
            interval=where.interval,
            period=where.period,
            partition=partition,
        )
        with self._quarantined_lock:
            self._quarantined.append(record)
        log.warning("%s", record.line())
        return record


def load_klines(
    symbol: str,
    interval: str,
    start: TimeBound = None,
    end: TimeBound = None,
    *,
    data_dir: str | None = None,
) -> pd.DataFrame:
    """The stored candles of one stream in ``[start, end)``; see :meth:`CandleStore.load_klines`.

    A reader's entry point: ``symbol`` and ``interval`` are parsed here (:class:`BadInput` if
    either is not Binance's). ``data_dir`` defaults to the ``OST_DATA_DIR`` setting.
    """
    stream = intervals.parse_stream(symbol, interval)
    root = data_dir if data_dir is not None else load_settings().data_dir
    return CandleStore(root).load_klines(stream.symbol, stream.interval, start, end)


# ---- helpers -----------------------------------------------------------------------------------


def _checked_incoming(frame: pd.DataFrame, interval: str) -> klines.Columns:
    """``frame``'s columns, in order, sorted and validated, or raise."""
    problem = schema_problem(frame)
    if problem:
        raise StoreError(f"cannot store this frame: {problem}")
    incoming = frame if tuple(frame.columns) == klines.COLUMNS else frame[list(klines.COLUMNS)]
    return _checked_columns(klines.columns_of(incoming), interval, "this frame")


def _checked_columns(columns: klines.Columns, interval: str, what: str) -> klines.Columns:
    """``columns`` sorted and validated, or raise (``what`` they are, for the message)."""
    names = list(columns)
    dtypes = [str(columns[name].dtype) for name in names]
    if names != list(klines.COLUMNS) or tuple(dtypes) != _COLUMN_DTYPES:
        problem = _dtypes_problem(names, dtypes, klines.COLUMN_DTYPES)
        if problem:
            raise StoreError(f"cannot store {what}: {problem}")
    if any((columns[name] == _NAT).any() for name in klines.TIME_COLUMNS) or any(
        np.isnan(columns[name]).any() for name in klines.FLOAT_COLUMNS
    ):
        raise StoreError(f"cannot store {what}: it has missing values")
    open_ms = columns["open_time"]
    if len(open_ms) > 1 and not bool((open_ms[1:] > open_ms[:-1]).all()):
        columns = klines.take(columns, np.argsort(open_ms, kind="stable"))
    klines.validate_columns(columns, interval)
    return {name: columns[name] for name in klines.COLUMNS}


def _same_candles(left: klines.Columns, right: klines.Columns) -> bool:
    """Whether two validated column sets hold the same candles (no NaN in either)."""
    return all(np.array_equal(left[name], right[name]) for name in klines.COLUMNS)


_DTYPES: Final = tuple(klines.DTYPES[column] for column in klines.COLUMNS)
#: The columns whose dtype a missing value would change in pandas (to float64).
_INT_COLUMNS: Final = tuple(
    column
    for column in klines.COLUMNS
    if column not in klines.FLOAT_COLUMNS and column not in klines.TIME_COLUMNS
)
_COLUMN_DTYPES: Final = tuple(klines.COLUMN_DTYPES[column] for column in klines.COLUMNS)
#: A missing timestamp (NaT) as epoch integers.
_NAT: Final = np.iinfo(np.int64).min


def schema_problem(frame: pd.DataFrame) -> str | None:
    """What is wrong with ``frame``'s columns or dtypes, or None."""
    if tuple(frame.columns) == klines.COLUMNS and tuple(map(str, frame.dtypes)) == _DTYPES:
        return None
    return _dtypes_problem(list(map(str, frame.columns)), list(map(str, frame.dtypes)))


def _dtypes_problem(
    names: list[str], dtypes: list[str], expected: dict[str, str] = klines.DTYPES
) -> str | None:
    """What is wrong with columns ``names`` of dtypes ``dtypes`` (``expected`` by name), or None."""
    columns = set(names)
    if columns != set(klines.COLUMNS) or len(names) != len(klines.COLUMNS):
        missing = sorted(set(klines.COLUMNS) - columns)
        extra = sorted(columns - set(klines.COLUMNS))
        return f"columns differ from the stored ones (missing {missing}, unexpected {extra})"
    for column, dtype in zip(names, dtypes, strict=True):
        if dtype != expected[column]:
            return f"column {column} is {dtype}, not {expected[column]}"
    return None


def _unreadable(exc: StoreCorrupt) -> str:
    """The problem of a file the backend could not parse, without its path."""
    return f"not a readable Parquet file: {exc.__cause__!r}"


def _one_line(text: str) -> str:
    """``text`` on one line, at most ``PROBLEM_CHARS`` long."""
    flat = " ".join(text.split())
    return flat if len(flat) <= PROBLEM_CHARS else flat[: PROBLEM_CHARS - 1] + "…"


def _range_problem(open_ms: np.ndarray, interval: str, period: dt.date) -> str | None:
    """What is wrong with a stored partition's open times (unique, sorted, inside it), or None."""
    if len(open_ms) == 0:
        return None
    if len(open_ms) > 1 and not bool((open_ms[1:] > open_ms[:-1]).all()):
        return "open_time does not strictly increase"
    if open_ms[0] < intervals.date_ms(period) or open_ms[-1] >= intervals.partition_end_ms(
        interval, period
    ):
        return f"open_time outside the {interval} partition starting {period.isoformat()}"
    return None


def _rows(parquet: Any) -> Any:
    """The whole table of an open ``pyarrow.parquet.ParquetFile``."""
    return parquet.read()


def split_by_partition(
    interval: str, frame: pd.DataFrame
) -> Iterator[tuple[dt.date, pd.DataFrame]]:
    """The sorted ``frame`` cut into (partition start, rows of that partition)."""
    for period, rows in _partition_slices(interval, klines.open_time_ms(frame)):
        yield period, frame.iloc[rows]


def _split_columns(
    interval: str, columns: klines.Columns
) -> Iterator[tuple[dt.date, klines.Columns]]:
    """Sorted ``columns`` cut into (partition start, the candles of that partition)."""
    for period, rows in _partition_slices(interval, columns["open_time"]):
        yield period, klines.take(columns, rows)


def _partition_slices(interval: str, open_ms: np.ndarray) -> Iterator[tuple[dt.date, slice]]:
    """The sorted open times ``open_ms`` cut into (partition start, its slice of them)."""
    begin = 0
    while begin < len(open_ms):
        period = intervals.partition_start(interval, int(open_ms[begin]))
        end_ms = intervals.partition_end_ms(interval, period)
        end = int(np.searchsorted(open_ms, end_ms, side="left"))
        yield period, slice(begin, end)
        begin = end


def _bound_ms(bound: TimeBound, *, default: int) -> int:
    """A time bound as epoch ms: an int as is, a datetime or ISO string (naive: UTC) floored."""
    if bound is None:
        return default
    if isinstance(bound, bool):
        raise TypeError("a time bound is epoch ms or a datetime, not a bool")
    if isinstance(bound, int | np.integer):
        return int(bound)
    stamp = pd.Timestamp(bound)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.as_unit("ns").value // 1_000_000)


def _datetime64_ms(value: Any) -> int:
    """A footer statistic of a timestamp column as epoch ms."""
    return int(np.datetime64(value, "ms").astype(np.int64))

"""The candle store: one Parquet file per stream and time partition, rewritten atomically.

Layout (``root`` is ``OST_DATA_DIR``, a local path or an fsspec URL)::

    <root>/klines/symbol=<SYMBOL>/interval=<INTERVAL>/period=<YYYY-MM-DD>/part.parquet
    <root>/locks/<SYMBOL>-<INTERVAL>.<0-15>.lock   (striped by partition date; local roots only,
                                                  remote roots lock in the temp dir)

``period`` is the first day of the candle's time partition (:func:`ost.intervals.partition_start`:
a day, a month or a year, see ``PARTITION_SPAN``). A file holds only the stored ``COLUMNS`` of
:mod:`ost.klines`, sorted by a unique ``open_time``; ``symbol``, ``interval`` and ``period`` come
from the hive path, so ``pyarrow.dataset.dataset(<root>/klines, partitioning="hive")`` and DuckDB's
``read_parquet('<root>/klines/**/*.parquet', hive_partitioning=true)`` read the whole store.

Write protocol (:meth:`CandleStore.merge`): the incoming frame is checked (columns, dtypes, and
:func:`ost.klines.validate`) before anything is touched. Then for each partition it touches, under
the stream's lock: read the stored file, drop the stored rows whose ``open_time`` comes again (the
newest fetch wins), concatenate, sort, validate, and write the whole partition:

1. write ``.part-<random>.tmp`` in the partition's directory (a leading dot and no ``.parquet``
   suffix: neither DuckDB's glob nor pyarrow ever reads it), flush and ``fsync`` it;
2. ``os.replace`` it onto ``part.parquet`` and ``fsync`` the directory.

A process killed at any instant leaves either the old or the new ``part.parquet``, plus at worst a
stale temp file, which the next write into that directory removes. On a remote filesystem the
file is written locally and uploaded with one ``put``, which object stores apply atomically.

The lock is taken per partition, so a long backfill and a 15-minute update of the same stream
interleave. Readers take no lock: each file is parsed through one open handle, footer and rows
alike, so a concurrent replace cannot mix two versions. An update of a few candles lists nothing
and reads and writes only the newest partition, so its cost does not grow with the history.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import hashlib
import os
import posixpath
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final

import fastparquet
import filelock
import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from ost import intervals, klines
from ost.errors import BadInput, InvalidCandle, StoreCorrupt, StoreError
from ost.settings import load_settings

__all__ = [
    "CandleStore",
    "ParquetBackend",
    "TimeBound",
    "load_klines",
    "partition_path",
]

#: A time bound of :meth:`CandleStore.load_klines`: epoch ms, a datetime or an ISO-8601 string
#: (naive means UTC).
TimeBound = int | str | dt.datetime | None

PARTITION_FILE: Final = "part.parquet"
TEMP_PREFIX: Final = ".part-"
TEMP_SUFFIX: Final = ".tmp"
COMPRESSION: Final = "ZSTD"
#: Columns whose min/max go in the footer: the times that readers filter on (and that
#: ``last_open_time`` reads). Statistics of every column cost a third of each write.
STATISTICS_COLUMNS: Final = ("open_time", "close_time")
DEFAULT_LOCK_TIMEOUT_S: Final = 600.0
#: Lock files per stream; a partition takes the one its date falls on.
LOCK_STRIPES: Final = 16


# ---- layout: the only place that knows how paths are built ------------------------------------


def klines_dir(root: str) -> str:
    """The hive dataset's directory under ``root`` (a filesystem path, not a URL)."""
    return posixpath.join(root, "klines")


def stream_dir(root: str, symbol: str, interval: str) -> str:
    """The directory of one stream; the symbol and interval are validated first."""
    intervals.check_symbol(symbol)
    intervals.check_interval(interval)
    return posixpath.join(klines_dir(root), f"symbol={symbol}", f"interval={interval}")


def partition_path(root: str, symbol: str, interval: str, period: dt.date) -> str:
    """The file of the partition of ``symbol``/``interval`` that starts on ``period``."""
    return posixpath.join(
        stream_dir(root, symbol, interval), f"period={period.isoformat()}", PARTITION_FILE
    )


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


def _valid(check: Callable[[str], str], value: str | None) -> str | None:
    """``value`` if it passes ``check`` (``check_symbol`` or ``check_interval``), else None."""
    if value is None:
        return None
    try:
        return check(value)
    except BadInput:
        return None


# ---- the raw backend: bytes in and out, nothing about candles ----------------------------------


class ParquetBackend:
    """Raw access to partition files: read or atomically write one, list names, read a statistic.

    It neither sorts, deduplicates nor validates. :meth:`write` assumes the caller holds the lock
    of the stream the file belongs to (it removes the stale temp files of its directory).
    """

    def __init__(self, root: str) -> None:
        self.url = root
        try:
            self.fs, self.root = fsspec.core.url_to_fs(root)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its package missing
            raise BadInput(f"OST_DATA_DIR {root!r} cannot be opened: {exc}") from None
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def read(self, path: str) -> pd.DataFrame | None:
        """The whole file as a frame, or None if there is no such file."""
        frame: pd.DataFrame | None = self._parse(path, lambda parquet: parquet.to_pandas())
        return frame

    def column_max(self, path: str, column: str) -> Any:
        """The largest value of ``column`` from the file's footer statistics (None if absent)."""
        maxima = self._parse(path, lambda parquet: parquet.statistics["max"].get(column))
        if not maxima or any(value is None for value in maxima):
            return None
        return max(maxima)

    def _parse(self, path: str, use: Callable[[Any], Any]) -> Any:
        """``use(ParquetFile)`` on one open handle of ``path``; None if there is no such file.

        Footer and rows come through the same handle, so a concurrent ``os.replace`` of the file
        cannot pair the old footer with the new rows.
        """
        try:
            with self.fs.open(path, "rb") as handle:
                return use(fastparquet.ParquetFile(handle))
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        except Exception as exc:  # a damaged file fails in many ways: OSError, TypeError, ...
            raise StoreCorrupt(f"{path} is not a readable Parquet file: {exc!r}") from exc

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return bool(self.fs.exists(path))

    def list_names(self, directory: str) -> list[str]:
        """The names of the entries of ``directory``, sorted; none if it does not exist."""
        try:
            entries = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(str(entry).rstrip("/")) for entry in entries)

    def write(self, path: str, frame: pd.DataFrame) -> None:
        """Replace ``path`` with ``frame`` atomically: readers see the old file or the new one."""
        try:
            if self.is_local:
                self._write_local(path, frame)
            else:
                self._write_remote(path, frame)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def _write_local(self, path: str, frame: pd.DataFrame) -> None:
        replace_atomically(path, lambda temp: _write_parquet(temp, frame))

    def _write_remote(self, path: str, frame: pd.DataFrame) -> None:
        with tempfile.TemporaryDirectory(prefix="ost-store-") as scratch:
            temp = os.path.join(scratch, PARTITION_FILE)
            _write_parquet(temp, frame)
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.put_file(temp, path)


# fastparquet reads tz-aware columns with Series.values, which pandas 3.1 deprecates; the values
# it gets are right (checked by the round-trip tests), so the warning is noise. The filter is set
# once for the process: ``warnings.catch_warnings`` around each write is not thread-safe, and
# writes run in task threads.
warnings.filterwarnings("ignore", "Series.values returning an ndarray", DeprecationWarning)


def _write_parquet(path: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` (the stored columns, in order) as one Parquet file, fsynced.

    The bytes are those of ``fastparquet.write(path, frame, write_index=False, ...)``, checked
    by a test; the file metadata comes from a template built once, since the schema never
    changes, which saves a quarter of each write.
    """
    fastparquet.writer.write_simple(
        path,
        _object_labelled(frame),
        copy.deepcopy(_file_metadata()),
        compression=COMPRESSION,
        open_with=_open_synced,
        has_nulls=None,
        append=False,
        stats=list(STATISTICS_COLUMNS),
    )


@functools.cache
def _file_metadata() -> Any:
    """The Parquet file metadata of a partition, without row groups (fastparquet's thrift)."""
    empty = klines.empty_frame()
    return fastparquet.writer.make_metadata(
        empty,
        has_nulls=True,
        ignore_columns=[],
        fixed_text=None,
        object_encoding="infer",
        times="int64",
        index_cols=[],
        partition_cols=[],
        cols_dtype=empty.columns.dtype,
    )


def _object_labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with plain-object column labels, which fastparquet looks up faster (no copy)."""
    labelled = frame.copy(deep=False)
    labelled.columns = pd.Index(klines.COLUMNS, dtype=object)
    return labelled


def replace_atomically(path: str, write_temp: Callable[[str], None]) -> None:
    """Replace the local file ``path`` with what ``write_temp(temp)`` writes and fsyncs.

    The temp file sits in the same directory, named with a leading dot and no ``.parquet``
    suffix (no reader ever opens it); then ``os.replace`` and an fsync of the directory. A crash
    at any instant leaves the old file or the new one, never a half-written one.
    """
    directory = os.path.dirname(path)
    _make_dirs_durably(directory)
    _remove_stale_temps(directory)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
    os.close(fd)
    try:
        write_temp(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    _fsync_dir(directory)


def write_bytes_synced(path: str, data: bytes) -> None:
    """Write ``data`` to ``path``, flushed and fsynced."""
    with _open_synced(path, "wb") as file:
        file.write(data)


@contextlib.contextmanager
def _open_synced(path: str, mode: str) -> Iterator[IO[bytes]]:
    """Open ``path`` for fastparquet; on success, flush and fsync it before closing."""
    with open(path, mode) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs_durably(directory: str) -> None:
    """Create ``directory`` and its missing parents, fsyncing each parent that gains an entry."""
    if os.path.isdir(directory):
        return
    parent = os.path.dirname(directory)
    _make_dirs_durably(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory)
    _fsync_dir(parent)


def _remove_stale_temps(directory: str) -> None:
    """Remove the temp files that a killed writer left (the stream's lock is held)."""
    for name in os.listdir(directory):
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))


# ---- the store: merge logic on top of the backend ----------------------------------------------


class CandleStore:
    """The candles of every stream under one root (``OST_DATA_DIR``: a path or an fsspec URL)."""

    def __init__(self, root: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.backend = ParquetBackend(root)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"CandleStore({self.backend.url!r})"

    # -- writing

    def merge(self, symbol: str, interval: str, frame: pd.DataFrame) -> int:
        """Store ``frame``'s candles, replacing stored ones of the same open_time.

        The frame is checked whole before anything is written: a frame with other columns or
        dtypes raises :class:`StoreError`, an impossible candle :class:`InvalidCandle`. Returns
        how many of its open times were not stored before.
        """
        intervals.check_symbol(symbol)
        intervals.check_interval(interval)
        incoming = _checked_incoming(frame, interval)
        added = 0
        for period, rows in split_by_partition(interval, incoming):
            with self._lock(symbol, interval, period):
                added += self._merge_partition(symbol, interval, period, rows)
        return added

    def _merge_partition(
        self, symbol: str, interval: str, period: dt.date, rows: pd.DataFrame
    ) -> int:
        """Read-modify-write one partition (the stream's lock is held); the new open times."""
        path = self._path(symbol, interval, period)
        stored = self._read_partition(path, interval, period)
        if stored is None:
            self.backend.write(path, rows.reset_index(drop=True))
            return len(rows)
        replaced = np.isin(klines.open_time_ms(stored), klines.open_time_ms(rows))
        merged = pd.concat([stored[~replaced], rows], ignore_index=True)
        merged = merged.sort_values("open_time", kind="stable", ignore_index=True)
        try:
            klines.validate(merged, interval)
        except InvalidCandle as exc:
            raise StoreCorrupt(f"{path} holds candles that do not validate: {exc}") from exc
        if not klines.rows_equal(merged, stored):
            self.backend.write(path, merged)
        return len(rows) - int(replaced.sum())

    def _lock(
        self, symbol: str, interval: str, period: dt.date
    ) -> contextlib.AbstractContextManager[Any]:
        """The lock of one partition's read-modify-write.

        Partitions are spread over ``LOCK_STRIPES`` lock files per stream by their date, so
        neighbouring partitions (a backfill's) can be written at once, with a bounded number of
        lock files.
        """
        directory = self._lock_dir()
        directory.mkdir(parents=True, exist_ok=True)
        stripe = period.toordinal() % LOCK_STRIPES
        lock = filelock.FileLock(
            directory / f"{symbol}-{interval}.{stripe}.lock", timeout=self.lock_timeout
        )
        return _store_error_on_timeout(lock, f"{symbol} {interval}")

    def _lock_dir(self) -> Path:
        if self.backend.is_local:
            return Path(self.backend.root) / "locks"
        key = hashlib.sha256(self.backend.url.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "ost-locks" / key

    # -- reading

    def load_klines(
        self, symbol: str, interval: str, start: TimeBound = None, end: TimeBound = None
    ) -> pd.DataFrame:
        """The stored candles with ``start <= open_time < end`` (None: unbounded), sorted.

        Only the partitions that overlap the range are opened, chosen by their names.
        """
        start_ms, end_ms = _bound_ms(start, default=-(2**63)), _bound_ms(end, default=2**63 - 1)
        frames = []
        for period in self._periods(symbol, interval):
            period_start = intervals.date_ms(period)
            period_end = intervals.partition_end_ms(interval, period)
            if period_start >= end_ms or period_end <= start_ms:
                continue
            stored = self._read_partition(self._path(symbol, interval, period), interval, period)
            if stored is not None:
                frames.append(stored)
        if not frames:
            return klines.empty_frame()
        candles = pd.concat(frames, ignore_index=True)
        open_ms = klines.open_time_ms(candles)
        return candles[(open_ms >= start_ms) & (open_ms < end_ms)].reset_index(drop=True)

    def last_open_time(self, symbol: str, interval: str) -> int | None:
        """The newest stored open time (epoch ms), from the newest file's footer statistics."""
        for period in reversed(self._periods(symbol, interval)):
            path = self._path(symbol, interval, period)
            newest = self.backend.column_max(path, "open_time")
            if newest is not None:
                return _datetime64_ms(newest)
            stored = self._read_partition(path, interval, period)  # a file without statistics
            if stored is not None and not stored.empty:
                return int(klines.open_time_ms(stored)[-1])
        return None

    def partitions(self, symbol: str, interval: str) -> list[dt.date]:
        """The start dates of the stream's stored partitions, oldest first."""
        return [
            period
            for period in self._periods(symbol, interval)
            if self.backend.exists(self._path(symbol, interval, period))
        ]

    def streams(self) -> list[tuple[str, str]]:
        """The (symbol, interval) pairs that have a directory in the store, sorted."""
        root = klines_dir(self.backend.root)
        return [
            (symbol, interval)
            for symbol_name in self.backend.list_names(root)
            if (symbol := _valid(intervals.check_symbol, _key_value(symbol_name, "symbol")))
            for interval_name in self.backend.list_names(posixpath.join(root, symbol_name))
            if (interval := _valid(intervals.check_interval, _key_value(interval_name, "interval")))
        ]

    def _periods(self, symbol: str, interval: str) -> list[dt.date]:
        """The dates of the stream's ``period=`` directories (names only, no file is opened)."""
        names = self.backend.list_names(stream_dir(self.backend.root, symbol, interval))
        return sorted(period for period in map(_period_of, names) if period is not None)

    def _path(self, symbol: str, interval: str, period: dt.date) -> str:
        return partition_path(self.backend.root, symbol, interval, period)

    def _read_partition(self, path: str, interval: str, period: dt.date) -> pd.DataFrame | None:
        """The stored partition, checked to hold only its own, sorted, well-typed candles."""
        stored = self.backend.read(path)
        if stored is None:
            return None
        problem = _schema_problem(stored) or _range_problem(stored, interval, period)
        if problem:
            raise StoreCorrupt(f"{path}: {problem}")
        return stored[list(klines.COLUMNS)].reset_index(drop=True)


def load_klines(
    symbol: str,
    interval: str,
    start: TimeBound = None,
    end: TimeBound = None,
    *,
    data_dir: str | None = None,
) -> pd.DataFrame:
    """The stored candles of one stream in ``[start, end)``; see :meth:`CandleStore.load_klines`.

    ``data_dir`` defaults to the ``OST_DATA_DIR`` setting.
    """
    root = data_dir if data_dir is not None else load_settings().data_dir
    return CandleStore(root).load_klines(symbol, interval, start, end)


# ---- helpers -----------------------------------------------------------------------------------


def _checked_incoming(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """``frame`` with the stored columns in order, sorted and validated, or raise."""
    problem = _schema_problem(frame)
    if problem:
        raise StoreError(f"cannot store this frame: {problem}")
    incoming = frame if tuple(frame.columns) == klines.COLUMNS else frame[list(klines.COLUMNS)]
    columns = klines.columns_of(incoming)
    if any((columns[name] == _NAT).any() for name in klines.TIME_COLUMNS) or any(
        np.isnan(columns[name]).any() for name in klines.FLOAT_COLUMNS
    ):
        raise StoreError("cannot store this frame: it has missing values")
    open_ms = columns["open_time"]
    if len(open_ms) > 1 and not bool((open_ms[1:] > open_ms[:-1]).all()):
        incoming = incoming.sort_values("open_time", kind="stable", ignore_index=True)
        columns = klines.columns_of(incoming)
    klines.validate_columns(columns, interval)
    return incoming


_DTYPES: Final = tuple(klines.DTYPES[column] for column in klines.COLUMNS)
#: A missing timestamp (NaT) as epoch integers.
_NAT: Final = np.iinfo(np.int64).min


def _schema_problem(frame: pd.DataFrame) -> str | None:
    """What is wrong with ``frame``'s columns or dtypes, or None."""
    if tuple(frame.columns) == klines.COLUMNS and tuple(map(str, frame.dtypes)) == _DTYPES:
        return None
    columns = set(map(str, frame.columns))
    if columns != set(klines.COLUMNS) or len(frame.columns) != len(klines.COLUMNS):
        missing = sorted(set(klines.COLUMNS) - columns)
        extra = sorted(columns - set(klines.COLUMNS))
        return f"columns differ from the stored ones (missing {missing}, unexpected {extra})"
    for column in klines.COLUMNS:
        if str(frame[column].dtype) != klines.DTYPES[column]:
            return f"column {column} is {frame[column].dtype}, not {klines.DTYPES[column]}"
    return None


def _range_problem(stored: pd.DataFrame, interval: str, period: dt.date) -> str | None:
    """What is wrong with a stored partition's open times (unique, sorted, inside it), or None."""
    open_ms = klines.open_time_ms(stored)
    if len(open_ms) == 0:
        return None
    if len(open_ms) > 1 and not bool((np.diff(open_ms) > 0).all()):
        return "open_time does not strictly increase"
    if open_ms[0] < intervals.date_ms(period) or open_ms[-1] >= intervals.partition_end_ms(
        interval, period
    ):
        return f"open_time outside the {interval} partition starting {period.isoformat()}"
    return None


def split_by_partition(
    interval: str, frame: pd.DataFrame
) -> Iterator[tuple[dt.date, pd.DataFrame]]:
    """The sorted ``frame`` cut into (partition start, rows of that partition)."""
    open_ms = klines.open_time_ms(frame)
    begin = 0
    while begin < len(open_ms):
        period = intervals.partition_start(interval, int(open_ms[begin]))
        end_ms = intervals.partition_end_ms(interval, period)
        end = int(np.searchsorted(open_ms, end_ms, side="left"))
        yield period, frame.iloc[begin:end]
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


@contextlib.contextmanager
def _store_error_on_timeout(lock: filelock.FileLock, stream: str) -> Iterator[None]:
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise StoreError(
            f"{stream}: another writer held {lock.lock_file} for over {lock.timeout} s"
        ) from exc
    try:
        yield
    finally:
        lock.release()

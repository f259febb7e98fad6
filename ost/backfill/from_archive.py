"""The archive path: download the planned files, verify and parse them, store what they hold.

Files are downloaded ``workers`` at once, in order, and parsed in the consuming thread; their
partitions are written by :class:`~ost.backfill.writing.PartitionWriter`. A file the archive
does not hold (404) or refuses (a bad checksum, a bad CSV, a server that stays down) is noted in
the result, and its candles are left to the API path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import numpy as np
import pandas as pd

from ost import klines
from ost.archive import Archive, ArchiveFile, parse_zip
from ost.backfill.plan import fallback_days, wanted_in
from ost.backfill.tally import StreamTally
from ost.backfill.writing import PartitionWriter
from ost.concurrency import in_order_concurrently
from ost.errors import ArchiveError
from ost.gaps import Range, runs_of, subtract
from ost.store import CandleStore, split_by_partition

#: What downloading a file gave: its verified zip, None (not in the archive), or why it was
#: refused.
Fetched = tuple[ArchiveFile, bytes | ArchiveError | None]


def fill_from_archive(
    archive: Archive,
    store: CandleStore,
    files: list[ArchiveFile],
    tally: StreamTally,
    *,
    workers: int,
    now_ms: int,
) -> list[Range]:
    """Store what ``files`` hold of the stream's ``todo``; the ranges still missing afterwards.

    Files are downloaded ``workers`` at once and their partitions written by ``WRITERS``
    threads (:mod:`ost.backfill.writing`), so downloads, parsing and fsyncs overlap.
    ``now_ms`` decides whether a monthly zip not found may be replaced by its daily zips
    (:func:`~ost.backfill.plan.fallback_days`).
    """
    todo = tally.todo
    filled: list[Range] = []
    fetched = contextlib.closing(
        _fetch_all(archive, files, todo, workers=workers, now_ms=now_ms, source=tally.result.source)
    )
    with PartitionWriter(store, tally.symbol, tally.interval) as writer, fetched as outcomes:
        for file, outcome in outcomes:
            filled += _take(file, outcome, todo, tally, writer)
        tally.count_archive_writes(writer.drain())
    tally.settle(filled)
    return subtract(todo, filled)


def _fetch_all(
    archive: Archive,
    files: list[ArchiveFile],
    todo: list[Range],
    *,
    workers: int,
    now_ms: int,
    source: str,
) -> Generator[Fetched, None, None]:
    """Each file's outcome in order, downloading up to ``workers`` files ahead."""

    def fetch(file: ArchiveFile) -> list[Fetched]:
        """One file's outcome; a monthly zip not published yet falls back to its daily zips."""
        outcome = _fetch_or_error(archive, file)
        if outcome is not None:
            return [(file, outcome)]
        days = fallback_days(todo, file, now_ms=now_ms, source=source)
        return [(file, None), *((day, _fetch_or_error(archive, day)) for day in days)]

    with contextlib.closing(in_order_concurrently(fetch, files, workers)) as outcomes:
        for outcome in outcomes:
            yield from outcome


def _take(
    file: ArchiveFile,
    outcome: bytes | ArchiveError | None,
    todo: list[Range],
    tally: StreamTally,
    writer: PartitionWriter,
) -> list[Range]:
    """Store what one file gave of ``todo`` and note its fate; the ranges it filled.

    Zips are parsed here, in the consuming thread, not in the download threads: a monthly
    file takes about 30 MB while parsed, and each thread that parses keeps its own malloc
    arena at that peak (8 downloaders parsing cost 280 MB of RSS).
    """
    result = tally.result
    if outcome is None:
        result.archive_missing.append(file.name)
        return []
    candles = outcome if isinstance(outcome, ArchiveError) else _parsed_or_error(outcome, file)
    if isinstance(candles, ArchiveError):
        result.archive_refused.append(f"{file.name}: {candles}")
        return []
    result.archive_files.append(file.name)
    return _store_rows(candles, wanted_in(todo, file), tally, writer)


def _store_rows(
    frame: pd.DataFrame, wanted: list[Range], tally: StreamTally, writer: PartitionWriter
) -> list[Range]:
    """Hand the rows of ``frame`` inside ``wanted`` to the writer; the ranges they fill."""
    open_ms = klines.open_time_ms(frame)
    keep = np.zeros(len(open_ms), dtype=bool)
    for start, end in wanted:
        keep |= (open_ms >= start) & (open_ms < end)
    rows = frame if keep.all() else frame[keep].reset_index(drop=True)
    if rows.empty:
        return []
    for _, partition in split_by_partition(tally.interval, rows):
        tally.count_archive_writes(writer.submit(partition))
    tally.report(len(rows))
    return runs_of(tally.interval, klines.open_time_ms(rows))


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

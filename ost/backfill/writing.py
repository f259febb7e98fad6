"""Writing one stream's candles: whole partitions, a few merges at once.

:class:`PartitionBuffer` holds API pages until a partition is complete, so that each partition
is written once; :class:`PartitionWriter` runs the store's merges on ``WRITERS`` threads, so that
downloads, parsing and fsyncs overlap.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from ost import intervals, klines
from ost.backend import DirectorySyncs
from ost.concurrency import BoundedPool
from ost.intervals import Interval, Symbol
from ost.store import CandleStore

#: Partition writers per stream. Writing is mostly Python under the GIL, so more threads
#: only add contention; two let one fsync while the other encodes.
WRITERS: Final = 2


class PartitionWriter:
    """Partition merges of one stream, ``workers`` at a time (their fsyncs overlap).

    Each merge takes its partition's lock, so neighbouring partitions are written at once. At
    most ``workers`` merges wait, which bounds the rows held in memory; leaving the block waits
    for every merge, and an error of one is raised by the next call.
    """

    def __init__(
        self, store: CandleStore, symbol: Symbol, interval: Interval, workers: int = WRITERS
    ) -> None:
        self.store, self.symbol, self.interval = store, symbol, interval
        self.merges: BoundedPool[int] = BoundedPool(workers)
        #: The partition directories the merges of columns made: fsynced once, by :meth:`drain`.
        self.syncs = DirectorySyncs()

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.merges.close()
        self.syncs.sync()

    def submit(self, rows: pd.DataFrame) -> int:
        """Start merging ``rows``; the new candles of the merges that finished meanwhile."""
        return sum(self.merges.submit(self.store.merge, self.symbol, self.interval, rows))

    def submit_columns(self, rows: klines.Columns) -> int:
        """:meth:`submit` of numpy columns (:meth:`CandleStore.merge_columns`: no frame)."""
        merge = self.store.merge_columns
        return sum(self.merges.submit(merge, self.symbol, self.interval, rows, syncs=self.syncs))

    def drain(self) -> int:
        """Wait for every merge, then make what they stored durable; the new candles stored.

        The new partition directories of :meth:`submit_columns` are fsynced here, once for
        the batch (:class:`~ost.backend.DirectorySyncs`); a backfill reports its result after.
        """
        added = sum(self.merges.drain())
        self.syncs.sync()
        return added


class PartitionBuffer:
    """Pages in time order, handed back a whole partition at a time (one write each).

    Pages are held, and partitions handed back, as numpy columns: no frame is built on the
    way to the file (:meth:`CandleStore.merge_columns`).
    """

    def __init__(self, interval: str) -> None:
        self.interval = interval
        self.pages: list[klines.Columns] = []

    def add(self, page: klines.Columns) -> list[klines.Columns]:
        """Keep ``page``; return the rows of the partitions it shows to be complete."""
        opens = page["open_time"]
        if not len(opens):
            return []
        newest = intervals.partition_start(self.interval, int(opens[-1]))
        boundary = intervals.date_ms(newest)
        if opens[0] >= boundary:  # the page opens the newest partition, or stays inside it
            done = self.pages if self.pages and self._held_before(boundary) else []
            self.pages = [*([] if done else self.pages), page]
            return [klines.concat(done)] if done else []
        cut = int(np.searchsorted(opens, boundary))
        done = [*self.pages, klines.take(page, slice(None, cut))]
        self.pages = [klines.take(page, slice(cut, None))]
        return [klines.concat(done)]

    def _held_before(self, boundary: int) -> bool:
        """Whether the rows held all open before ``boundary`` (they are in time order)."""
        return int(self.pages[-1]["open_time"][-1]) < boundary

    def flush(self) -> list[klines.Columns]:
        """Everything still held."""
        held = [page for page in self.pages if len(page["open_time"])]
        self.pages = []
        return [klines.concat(held)] if held else []

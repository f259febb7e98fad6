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

The pieces, each one job:

- :mod:`ost.backfill.plan`: which months and days come from the archive (the rest from the API);
- :mod:`ost.backfill.from_archive`: the archive path (download, verify, parse, store);
- :mod:`ost.backfill.from_api`: the API path (page, store, record proven gaps);
- :mod:`ost.backfill.writing`: whole partitions, a few merges at once;
- :mod:`ost.backfill.tally`: what a stream has settled, its progress, its verdict;
- :mod:`ost.backfill.stream`: one stream (:func:`backfill_stream`), the paths in order;
- :mod:`ost.backfill.streams`: many streams at once (:func:`backfill_streams`,
  ``STREAMS_AT_ONCE``, which the ``backfill`` flow uses too);
- :mod:`ost.backfill.repair`: ``ost gaps --repair`` (:func:`repair_gaps`);
- :mod:`ost.backfill.result`: :class:`BackfillResult`, and the progress callbacks' types.

The threads come from :mod:`ost.concurrency`. Nothing here imports prefect: the flows wrap
these functions.
"""

from ost.backfill.plan import check_source, plan_archive
from ost.backfill.repair import RepairOutcome, repair_gaps
from ost.backfill.result import BackfillResult, Progress, StreamProgress
from ost.backfill.stream import backfill_stream, refetch_quarantined
from ost.backfill.streams import STREAMS_AT_ONCE, backfill_streams

__all__ = [
    "STREAMS_AT_ONCE",
    "BackfillResult",
    "Progress",
    "RepairOutcome",
    "StreamProgress",
    "backfill_stream",
    "backfill_streams",
    "check_source",
    "plan_archive",
    "refetch_quarantined",
    "repair_gaps",
]

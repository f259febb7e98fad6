"""The ingestion task: one task run per chunk of streams, a thin wrapper of the core.

A task run per stream costs the flow about 50 ms and the server several writes, which for the
whole market (1,500 streams) is minutes and a SQLite server that locks up; a task run per chunk
costs that once per chunk. The UI still shows which stream failed: the task run's name says
which streams it holds, and a chunk with a failed stream ends Failed, its message naming each
failed stream with its one line (:class:`StreamsFailed`).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ost.intervals import parse_stream
from ost.runtime import current_runtime

Row = dict[str, Any]
#: Failed streams named, each with its error, in a message; the rest are counted.
NAMED_FAILURES = 20


class StreamsFailed(Exception):
    """Streams of a task run failed: its message names them; ``rows`` has every stream's outcome.

    Raised after every stream of the chunk ran, so one failure stops no other stream.
    """

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        super().__init__(failure_line(rows, with_errors=True))

    def __reduce__(self) -> tuple[type[StreamsFailed], tuple[list[Row]]]:
        return StreamsFailed, (self.rows,)  # pickled by a process pool: rebuilt from the rows


def failed_rows(rows: list[Row]) -> list[Row]:
    """The rows of the streams that are not ``ok`` (failed or incomplete)."""
    return [row for row in rows if row["result"] != "ok"]


def failure_line(rows: list[Row], *, with_errors: bool) -> str:
    """``K of N streams failed: S I (RESULT), ...``, naming at most ``NAMED_FAILURES``.

    ``with_errors`` gives each named stream its error line instead of its result.
    """
    failed = failed_rows(rows)
    named = [problem(row) if with_errors else stream_result(row) for row in failed[:NAMED_FAILURES]]
    more = len(failed) - len(named)
    tail = f"; and {more} more" if more > 0 else ""
    return f"{len(failed)} of {len(rows)} streams failed: {'; '.join(named)}{tail}"


def stream_result(row: Row) -> str:
    """``SYMBOL INTERVAL (RESULT)``."""
    return f"{row['symbol']} {row['interval']} ({row['result']})"


def problem(row: Row) -> str:
    """``SYMBOL INTERVAL: ERROR`` (the error of an incomplete stream names it already)."""
    prefix = f"{row['symbol']} {row['interval']}: "
    text: str = row["error"] or row["result"]
    return prefix + text.removeprefix(prefix)


def chunk_name(streams: list[tuple[str, str]]) -> str:
    """A chunk's task run name: ``BTCUSDT 15m`` for one stream, else first … last (N streams)."""
    first, last = (f"{symbol} {interval}" for symbol, interval in (streams[0], streams[-1]))
    return first if len(streams) == 1 else f"{first} … {last} ({len(streams)} streams)"


def _task_run_name() -> str:
    from prefect.runtime import task_run  # noqa: PLC0415  # read when a run is named

    return chunk_name(task_run.parameters["streams"])


@task(name="ingest-streams", task_run_name=_task_run_name, retries=0, cache_policy=NO_CACHE)
def ingest_streams_task(streams: list[tuple[str, str]], workers: int = 1) -> list[Row]:
    """Ingest a chunk of streams, ``workers`` at once; each stream's outcome, as a row.

    Every stream runs and is recorded in the ledger, whatever the others do; then the task
    fails (:class:`StreamsFailed`) if any of them failed or is incomplete. No Prefect retries:
    the client's stamina layer already retried every request.
    """
    # Task parameters may have come through Prefect's API as plain pairs: input, parsed here.
    chosen = [parse_stream(symbol, interval) for symbol, interval in streams]
    outcomes = current_runtime().ingest_many(chosen, workers=workers)
    rows = [outcome.as_row() for outcome in outcomes]
    if failed_rows(rows):
        raise StreamsFailed(rows)
    return rows

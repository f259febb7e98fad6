"""The ``ingest-all`` flow: every configured stream, in chunks of task runs, every 15 minutes."""

from __future__ import annotations

import itertools
import math
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import FlowRun, State
from prefect.flows import Flow
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from ost.args import parse_intervals, parse_symbols
from ost.flows.clock import log_clock_skew
from ost.intervals import Stream
from ost.runtime import current_runtime
from ost.tasks.ingest import (
    Row,
    StreamsFailed,
    failed_rows,
    failure_line,
    ingest_streams_task,
    problem,
)

#: Streams one ingest-all run ingests at once (one weight budget); not backfill's STREAMS_AT_ONCE.
MAX_PARALLEL_STREAMS = 4
#: Task runs (chunks) at once; each ingests MAX_PARALLEL_STREAMS // CHUNKS_AT_ONCE streams at once.
CHUNKS_AT_ONCE = 2
#: Streams per task run, at most: 1,500 streams make 15 task runs, not 1,500.
STREAMS_PER_TASK = 100
#: The markdown artifact of each run: the streams that failed, and why.
FAILURES_ARTIFACT = "ingest-failures"

#: Prefect types the runner's futures more narrowly than ``flow`` accepts; the pairing is its own.
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=CHUNKS_AT_ONCE)


def record_run_failure(
    flow: Flow[Any, Any],  # noqa: ARG001  # Prefect's hook signature
    flow_run: FlowRun,
    state: State[Any],
) -> None:
    """A run that failed or crashed: every stream it did not get to report counts as failed.

    Streams that reported their own outcome (success or failure) are left as they reported, so a
    run that is Failed because one stream failed counts that stream once.
    """
    runtime = current_runtime()
    runtime.ledger.record_run_failure(
        _streams(
            flow_run.parameters.get("symbols"), flow_run.parameters.get("intervals"), known=True
        ),
        reason="crashed" if state.is_crashed() else "run_failed",
        error=state.message,
        started_at=flow_run.start_time,
    )


def _streams(
    symbols: list[str] | None, intervals: list[str] | None, *, known: bool = False
) -> list[Stream]:
    """The streams a run covers: its parameters, or the configured symbols and intervals.

    ``all`` and patterns are resolved once per run from exchangeInfo's spot symbols
    (:mod:`ost.universe`); ``known``: only from what the run already knows, asking nothing.
    """
    runtime = current_runtime()
    selection = parse_symbols(",".join(symbols) if symbols else None, runtime.settings)
    chosen_intervals = parse_intervals(",".join(intervals) if intervals else None, runtime.settings)
    chosen_symbols = runtime.universe.known(selection) if known else runtime.resolve(selection)
    return runtime.streams(chosen_symbols, chosen_intervals)


def chunks(streams: list[Stream], size: int) -> list[list[Stream]]:
    """``streams`` in consecutive chunks of at most ``size``, as even as can be."""
    count = max(1, math.ceil(len(streams) / size))
    bounds = [len(streams) * number // count for number in range(count + 1)]
    return [streams[start:stop] for start, stop in itertools.pairwise(bounds) if start < stop]


@flow(
    name="ingest-all",
    task_runner=TASK_RUNNER,
    on_failure=[record_run_failure],
    on_crashed=[record_run_failure],
)
def ingest_all(symbols: list[str] | None = None, intervals: list[str] | None = None) -> State[Any]:
    """Ingest every symbol x interval; the run is Failed if any stream failed, after all ran.

    The streams go in chunks of up to 100, a task run each, named after its first and last
    stream. The run's message names the streams that failed, and its markdown artifact
    ``ingest-failures`` lists each one with its error (or says that none failed).
    """
    streams = _streams(symbols, intervals)
    parts = chunks(streams, STREAMS_PER_TASK)
    futures = ingest_streams_task.map(
        streams=parts, workers=unmapped(max(1, MAX_PARALLEL_STREAMS // CHUNKS_AT_ONCE))
    )
    rows = [
        row for part, future in zip(parts, futures, strict=True) for row in rows_of(part, future)
    ]
    log_clock_skew()
    failed = failed_rows(rows)
    create_markdown_artifact(
        failures_markdown(rows), key=FAILURES_ARTIFACT, description="ingest-all: failed streams"
    )
    if failed:
        return Failed(message=failure_line(rows, with_errors=False))
    return Completed(message=f"{len(streams)} streams ingested")


def rows_of(part: list[Stream], future: PrefectFuture[list[Row]]) -> list[Row]:
    """Each stream's outcome row from a chunk's task run, once it ended.

    A task run that failed other than by :class:`StreamsFailed` (it never got to report) counts
    each of its streams as failed with the task run's message.
    """
    future.wait()
    state = future.state
    if state.is_completed():
        return future.result()
    error = future.result(raise_on_failure=False)
    if isinstance(error, StreamsFailed):
        return error.rows
    return [
        {
            "symbol": symbol,
            "interval": interval,
            "result": "failed: task",
            "written": 0,
            "last_open_ms": None,
            "error": state.message,
        }
        for symbol, interval in part
    ]


def failures_markdown(rows: list[Row]) -> str:
    """The run's artifact: how many streams failed, and a table of them with their errors."""
    failed = failed_rows(rows)
    if not failed:
        return f"# ingest-all: all {len(rows)} streams ok\n"
    lines = [
        f"# ingest-all: {len(failed)} of {len(rows)} streams failed",
        "",
        "| stream | result | error |",
        "|---|---|---|",
    ]
    lines += [
        f"| {row['symbol']} {row['interval']} | {row['result']} | {_cell(problem(row))} |"
        for row in failed
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str | None) -> str:
    """Text in one markdown table cell: one line, pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")

"""The ``ingest-all`` flow: one task per configured stream, every 15 minutes."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from ost.args import parse_intervals, parse_symbols
from ost.runtime import current_runtime
from tasks.ingest import ingest_stream_task

#: How many streams run at once within one flow run (they share one weight budget).
MAX_PARALLEL_STREAMS = 4


#: Prefect types the runner's futures more narrowly than ``flow`` accepts; the pairing is its own.
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_STREAMS)


@flow(name="ingest-all", task_runner=TASK_RUNNER)
def ingest_all(symbols: list[str] | None = None, intervals: list[str] | None = None) -> State[Any]:
    """Ingest every symbol x interval; the run is Failed if any stream failed, after all ran."""
    runtime = current_runtime()
    settings = runtime.settings
    chosen_symbols = parse_symbols(",".join(symbols) if symbols else None, settings)
    chosen_intervals = parse_intervals(",".join(intervals) if intervals else None, settings)
    streams = runtime.streams(chosen_symbols, chosen_intervals)
    futures = ingest_stream_task.map(
        symbol=[symbol for symbol, _ in streams], interval=[interval for _, interval in streams]
    )
    states = [future.wait() or future.state for future in futures]
    failed = [
        f"{symbol} {interval}"
        for (symbol, interval), state in zip(streams, states, strict=True)
        if not state.is_completed()
    ]
    if failed:
        failures = ", ".join(failed)
        return Failed(message=f"{len(failed)} of {len(streams)} streams failed: {failures}")
    return Completed(message=f"{len(streams)} streams ingested")

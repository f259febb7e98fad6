"""The ``ingest-all`` flow: one task per configured stream, every 15 minutes."""

from __future__ import annotations

from typing import Any

from ost.flows.clock import log_clock_skew
from ost.tasks.ingest import ingest_stream_task
from prefect import flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.flows import Flow
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from ost.args import parse_intervals, parse_symbols
from ost.runtime import current_runtime

#: How many streams run at once within one flow run (they share one weight budget).
MAX_PARALLEL_STREAMS = 4

#: Prefect types the runner's futures more narrowly than ``flow`` accepts; the pairing is its own.
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_STREAMS)


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
) -> list[tuple[str, str]]:
    """The streams a run covers: its parameters, or the configured symbols and intervals.

    ``all`` and patterns are resolved once per run from exchangeInfo's spot symbols
    (:mod:`ost.universe`); ``known``: only from what the run already knows, asking nothing.
    """
    runtime = current_runtime()
    selection = parse_symbols(",".join(symbols) if symbols else None, runtime.settings)
    chosen_intervals = parse_intervals(",".join(intervals) if intervals else None, runtime.settings)
    chosen_symbols = runtime.universe.known(selection) if known else runtime.resolve(selection)
    return runtime.streams(chosen_symbols, chosen_intervals)


@flow(
    name="ingest-all",
    task_runner=TASK_RUNNER,
    on_failure=[record_run_failure],
    on_crashed=[record_run_failure],
)
def ingest_all(symbols: list[str] | None = None, intervals: list[str] | None = None) -> State[Any]:
    """Ingest every symbol x interval; the run is Failed if any stream failed, after all ran."""
    streams = _streams(symbols, intervals)
    futures = ingest_stream_task.map(
        symbol=[symbol for symbol, _ in streams], interval=[interval for _, interval in streams]
    )
    failed = []
    for (symbol, interval), future in zip(streams, futures, strict=True):
        future.wait()
        if not future.state.is_completed():
            failed.append(f"{symbol} {interval}")
    log_clock_skew()
    if failed:
        failures = ", ".join(failed)
        return Failed(message=f"{len(failed)} of {len(streams)} streams failed: {failures}")
    return Completed(message=f"{len(streams)} streams ingested")

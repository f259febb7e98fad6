"""The ``backfill`` flow: fill a range of candles per stream, skipping what is stored."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from prefect import flow, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from ost.args import FlowTime, flow_time_text, streams_and_range
from ost.backfill import STREAMS_AT_ONCE
from ost.clock import system_ms
from ost.flows.clock import log_clock_skew
from ost.intervals import ALL, IntervalChoice, Stream
from ost.runtime import current_runtime
from ost.tasks.backfill import backfill_stream_task

#: Streams backfilled at once within one run, as ``ost backfill`` runs them (they share one
#: weight budget and ``OST_MAX_CONCURRENCY`` requests in flight). Prefect types the runner's
#: futures more narrowly than ``flow`` accepts; the pairing is its own.
TASK_RUNNER: Any = ThreadPoolTaskRunner(max_workers=STREAMS_AT_ONCE)


@flow(name="backfill", task_runner=TASK_RUNNER)
def backfill(
    interval: IntervalChoice = ALL,
    days: float | None = 1,
    start: FlowTime | None = None,
    end: FlowTime | None = None,
    symbols: list[str] | None = None,
    source: Literal["api", "archive", "auto"] = "auto",
) -> State[Any]:
    """Backfill ``interval`` (one, or "all") over ``days`` back, or ``start``to``end``.

    With ``start`` given, ``days`` is ignored. Both ends are inclusive (every candle opening at
    or after ``start`` and at or before ``end``), and a date alone means the whole day, as on
    the command line. Already stored candles are skipped, so a run that was killed resumes
    where it stopped when started again. A stream left incomplete fails its task and the run.
    """
    streams, start_ms, end_ms = streams_and_range_of(interval, days, start, end, symbols)
    artifact = create_progress_artifact(
        0.0, key="backfill-progress", description="candles backfilled"
    )
    futures = backfill_stream_task.map(
        symbol=[symbol for symbol, _ in streams],
        interval=[each for _, each in streams],
        start_ms=unmapped(start_ms),
        end_ms=unmapped(end_ms),
        source=unmapped(source),
        progress_artifact=unmapped(artifact),
        streams_at_once=unmapped(min(len(streams), STREAMS_AT_ONCE)),
    )
    rows, failed = [], []
    for (symbol, each), future in zip(streams, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            rows.append(future.result())
        else:
            failed.append(f"{symbol} {each} ({future.state.message})")
    log_clock_skew()
    if rows:
        create_table_artifact(rows, key="backfill-result", description="backfill per stream")
    if failed:
        failures = ", ".join(failed)
        return Failed(message=f"{len(failed)} of {len(streams)} streams failed: {failures}")
    return Completed(message=f"{sum(r['written'] for r in rows)} candles written")


def streams_and_range_of(
    interval: str,
    days: float | None,
    start: dt.datetime | dt.date | None,
    end: dt.datetime | dt.date | None,
    symbols: list[str] | None,
) -> tuple[list[Stream], int, int]:
    """Streams and range from the flow's parameters, as the CLI resolves them."""
    runtime = current_runtime()
    return streams_and_range(
        runtime.settings,
        interval=interval,
        symbols=",".join(symbols) if symbols else None,
        days=None if start is not None else days,
        start=flow_time_text(start),
        end=flow_time_text(end),
        now_ms=system_ms(),
        resolve=runtime.resolve,
    )

"""The per-stream ingestion task: a thin wrapper of :func:`ost.ingest.ingest_or_report`."""

from __future__ import annotations

from typing import Any

from prefect import task

from ost.intervals import Interval, Symbol
from ost.runtime import current_runtime


@task(name="ingest-stream", task_run_name="{symbol} {interval}", retries=0)
def ingest_stream_task(symbol: Symbol, interval: Interval) -> dict[str, Any]:
    """Ingest one stream; the task fails (and the UI shows which) when the stream fails.

    No Prefect retries: the client's stamina layer already retried every request.
    """
    outcome = current_runtime().ingest(symbol, interval)
    if outcome.exception is not None:
        raise outcome.exception
    return {
        "symbol": outcome.symbol,
        "interval": outcome.interval,
        "written": outcome.written,
        "last_open_ms": outcome.last_open_ms,
    }

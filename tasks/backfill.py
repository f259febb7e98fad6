"""The per-stream backfill task: a thin wrapper of :func:`ost.backfill.backfill_stream`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ost.tasks.progress import SharedProgress
from prefect import task

from ost.errors import Incomplete
from ost.runtime import current_runtime


@task(name="backfill-stream", task_run_name="{symbol} {interval}", retries=0)
def backfill_stream_task(
    symbol: str,
    interval: str,
    *,
    start_ms: int,
    end_ms: int,
    source: str,
    progress_artifact: UUID | None = None,
    streams_at_once: int = 1,
) -> dict[str, Any]:
    """Backfill one stream; the task fails when the stream fails (no Prefect retries).

    A stream left incomplete fails too, with the line that says what is still missing and why
    (the candles it stored are counted in the ledger first). ``streams_at_once`` tasks of the
    run share ``OST_MAX_CONCURRENCY`` requests in flight.
    """
    progress = SharedProgress.get(progress_artifact)
    result = current_runtime().backfill(
        symbol,
        interval,
        start_ms,
        end_ms,
        source=source,
        progress=progress.reporter(symbol, interval) if progress else None,
        streams_at_once=streams_at_once,
    )
    if result.incomplete is not None:
        raise Incomplete.of_stream(symbol, interval, result.incomplete)
    return {
        "symbol": result.symbol,
        "interval": result.interval,
        "missing": result.missing,
        "written": result.written,
        "from_archive": result.from_archive,
        "from_api": result.from_api,
        "exchange_gaps": result.exchange_gaps,
        "seconds": round(result.seconds, 2),
    }

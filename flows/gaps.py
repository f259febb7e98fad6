"""The ``check-gaps`` flow: missing candles per stream, exchange-side gaps apart, repair."""

from __future__ import annotations

from typing import Any

from ost.flows.backfill import streams_and_range_of
from ost.flows.clock import log_clock_skew
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from ost.args import FlowTime
from ost.intervals import IntervalChoice
from ost.runtime import current_runtime

EXIT_OK, EXIT_ERROR, EXIT_GAPS = 0, 1, 3


@flow(name="check-gaps")
def check_gaps(
    interval: IntervalChoice = "1d",
    days: float | None = 7,
    start: FlowTime | None = None,
    end: FlowTime | None = None,
    symbols: list[str] | None = None,
    repair: bool = False,
    recheck: bool = False,
) -> State[Any]:
    """Report missing candles as open-time ranges; ``repair`` backfills them and checks again.

    ``start`` and ``end`` are inclusive, and a date alone is the whole day, as on the command
    line. ``recheck`` forgets the exchange-side gaps recorded in the range and repairs, so that
    Binance is asked about them again (a wrong record is undone). The report is a markdown
    artifact (key ``gap-report``). The run fails when a stream cannot be checked, or when
    ``repair`` (or ``recheck``) left gaps other than exchange-side ones.
    """
    streams, start_ms, end_ms = streams_and_range_of(interval, days, start, end, symbols)
    report, status = current_runtime().check_gaps(
        streams, start_ms, end_ms, repair_gaps=repair or recheck, recheck=recheck
    )
    log_clock_skew()
    create_markdown_artifact(report.to_markdown(), key="gap-report", description="ost gaps")
    summary = f"{report.as_dict()['missing_candles']} candles missing in {len(streams)} streams"
    if status == EXIT_ERROR or ((repair or recheck) and status == EXIT_GAPS):
        return Failed(message=summary)
    return Completed(message=summary)

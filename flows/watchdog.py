"""The ``watchdog`` flow: one evaluation of the escalation ladder, every 5 minutes."""

from __future__ import annotations

from prefect import flow

from alerts.watchdog import run_watchdog
from ost.settings import load_settings


@flow(name="watchdog")
def watchdog() -> str:
    """Evaluate the ladder from the ingestion ledger and send what is due (apprise)."""
    report = run_watchdog(load_settings())
    return f"level {report.level.name.lower()}, {len(report.sent)} sent"

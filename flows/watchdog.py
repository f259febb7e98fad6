"""The ``watchdog`` flow: one evaluation of the escalation ladder, every 5 minutes."""

from __future__ import annotations

from ost.alerts.watchdog import run_watchdog
from prefect import flow

from ost.settings import check_apprise_urls, load_settings


@flow(name="watchdog")
def watchdog() -> str:
    """Evaluate the ladder from the ingestion ledger and send what is due (apprise)."""
    settings = load_settings()
    check_apprise_urls(settings)  # a target apprise cannot use fails the run, before any send
    report = run_watchdog(settings)
    return f"level {report.level.name.lower()}, {len(report.sent)} sent"

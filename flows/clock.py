"""The flows' clock-skew warning: one line in the run's log when its work saw a skew."""

from __future__ import annotations

from prefect import get_run_logger

from ost.runtime import current_runtime


def log_clock_skew() -> None:
    """Log the skew past ``OST_MAX_CLOCK_SKEW`` that this run's client saw, if any (one line)."""
    line = current_runtime().clock_warning()
    if line:
        get_run_logger().warning(line)

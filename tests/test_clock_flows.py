"""A flow under a /api/v3/time 2 h ahead: one clock-skew warning in its log, no open candle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from commands import in_process_runtime

from ost import klines
from ost.sim import SimHandle
from ost.store import CandleStore

pytestmark = pytest.mark.slow


@pytest.fixture
def settings_env(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """OST_* settings for the simulator at the real time (the local clock's), a fresh runtime."""
    settings = {
        "OST_BINANCE_BASE_URLS": sim.url,
        "OST_ARCHIVE_BASE_URL": sim.url,
        "OST_DATA_DIR": str(tmp_path),
        "OST_SYMBOLS": "BTCUSDT",
        "OST_INTERVALS": "1m,1h",
        "OST_INITIAL_LOOKBACK_DAYS": "0.1",
    }
    with in_process_runtime(monkeypatch, settings):
        yield tmp_path


def run_log(flow_run_id: UUID) -> list[tuple[int, str]]:
    """(level, message) of every log line the flow run sent to the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler sends logs in batches: send what is queued
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [(log.level, log.message) for log in logs]


def test_ingest_flow_logs_the_skew_once_and_stores_no_open_candle(
    prefect_server: None, settings_env: Path, sim: SimHandle
) -> None:
    """ingest-all with Binance's clock 2 h ahead: Completed, one WARNING, only closed candles."""
    from ost.flows.ingest import ingest_all

    sim.set_faults("clock:offset=7200")
    state = ingest_all(return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    warnings = [
        message
        for level, message in run_log(run_id)
        if level >= 30 and message.startswith("clock skew: ")
    ]
    assert len(warnings) == 1, warnings
    assert "ahead of the local clock" in warnings[0]
    truly_now = sim.now_ms()
    store = CandleStore(str(settings_env))
    for interval in ("1m", "1h"):
        closes = klines.close_time_ms(store.load_klines("BTCUSDT", interval))
        assert len(closes) > 0
        assert (closes < truly_now).all(), interval

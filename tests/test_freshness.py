"""Freshness from the store: `ost status`'s lag and state, the lag metric, and a silent stall.

Real Parquet files written with the store's own API stand for a backfill (which records no
ingestion outcome); the expected lags are computed here from the candles written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

import pytest
from apprise_receiver import Receiver
from candles import FASTPARQUET_VALUES, make_candles
from ost.alerts.policy import Kind, LadderConfig
from ost.alerts.watchdog import run_watchdog
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from ost.cli import app
from ost.errors import BadInput
from ost.ingest import StreamOutcome
from ost.ledger import Ledger
from ost.metrics import LedgerCollector
from ost.settings import load_settings
from ost.store import CandleStore

pytestmark = [
    pytest.mark.filterwarnings(FASTPARQUET_VALUES),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

MIN = dt.timedelta(minutes=1)
QUARTER_MS = 15 * 60_000
TEN = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
TEN_MS = int(TEN.timestamp() * 1000)
BTC_15M = {"symbol": "BTCUSDT", "interval": "15m"}


def store_with_candles(data_dir: Path, count: int) -> CandleStore:
    """A store holding ``count`` 15m candles of BTCUSDT from 10:00 (the newest opens last)."""
    store = CandleStore(str(data_dir))
    store.merge("BTCUSDT", "15m", make_candles("15m", TEN_MS, count))
    return store


def test_status_reads_the_last_candle_and_the_lag_from_the_store(tmp_path: Path) -> None:
    """After a backfill (no ingestion recorded), `ost status` shows its newest candle and lag."""
    now_ms = int(time.time() * 1000)
    first = now_ms - 2 * 86_400_000
    store = CandleStore(str(tmp_path))
    candles = make_candles("1h", first, 24)
    store.merge("BTCUSDT", "1h", candles)
    newest_ms = int(candles["open_time"].iloc[-1].timestamp() * 1000)
    env = {"OST_DATA_DIR": str(tmp_path), "OST_SYMBOLS": "BTCUSDT", "OST_INTERVALS": "1h"}
    before = time.time()
    result = CliRunner().invoke(app, ["status", "--json"], env=env)
    after = time.time()
    assert result.exit_code == 0, result.output
    (stream,) = json.loads(result.output)["streams"]
    newest = dt.datetime.fromtimestamp(newest_ms / 1000, dt.UTC)
    assert stream["last_candle_open_time"] == newest.isoformat()
    assert stream["last_candle_close_time"] == (newest + 60 * MIN).isoformat()
    close_s = newest_ms / 1000 + 3600
    assert before - close_s <= stream["lag_seconds"] <= after - close_s
    assert (stream["state"], stream["stale"]) == ("stale", True)
    table = CliRunner().invoke(app, ["status"], env={**env, "COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "lag" in table.output
    assert "stale" in table.output
    assert newest.isoformat() in table.output


def scrape(ledger: Ledger, store: CandleStore, now: dt.datetime) -> CollectorRegistry:
    """A registry whose collector reads ``ledger`` and ``store`` and believes it is ``now``."""
    registry = CollectorRegistry()
    config = LadderConfig(streams=(("BTCUSDT", "15m"),))
    registry.register(LedgerCollector(ledger, config, clock=lambda: now, store=store))
    return registry


def test_lag_metric_grows_while_nothing_runs_and_feeds_the_ladder(tmp_path: Path) -> None:
    """Candles to 11:45 (closed 12:00): lag 10 min at 12:10, 40 min at 12:40; stale from 12:35."""
    store = store_with_candles(tmp_path, 8)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    value = scrape(ledger, store, TEN + 130 * MIN).get_sample_value
    assert value("ost_stream_lag_seconds", BTC_15M) == 10 * 60
    assert value("ost_stream_stale_after_seconds", BTC_15M) == (15 + 20) * 60
    assert value("ost_failing_since_seconds", BTC_15M) == 0
    assert value("ost_last_candle_open_time_seconds", BTC_15M) == (TEN + 105 * MIN).timestamp()
    later = scrape(ledger, store, TEN + 160 * MIN).get_sample_value
    assert later("ost_stream_lag_seconds", BTC_15M) == 40 * 60
    assert later("ost_failing_since_seconds", BTC_15M) == (TEN + 155 * MIN).timestamp()
    assert later("ost_escalation_level") == 0  # stale for 5 minutes: below monitor
    assert scrape(ledger, store, TEN + 190 * MIN).get_sample_value("ost_escalation_level") == 2


def test_an_unreadable_store_falls_back_to_the_ledgers_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt newest file: the lag comes from the ledger's last ingestion, with a warning."""
    store = store_with_candles(tmp_path, 8)
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    outcome = StreamOutcome("BTCUSDT", "15m", True, 8, TEN_MS + 7 * QUARTER_MS, 0.1)
    ledger.record_outcome(outcome, TEN + 120 * MIN)
    (part,) = (tmp_path / "klines").rglob("part.parquet")
    part.write_bytes(b"not parquet at all")
    with caplog.at_level(logging.WARNING, logger="ost.alerts.watchdog"):
        value = scrape(ledger, store, TEN + 130 * MIN).get_sample_value
    assert value("ost_stream_lag_seconds", BTC_15M) == 10 * 60
    assert "Cannot read the newest stored candle of BTCUSDT 15m" in caplog.text


def test_runs_that_store_nothing_new_alert_from_when_the_stream_went_stale(
    tmp_path: Path,
) -> None:
    """Runs succeed with nothing new after 11:45: alert 30 min after 12:35, escalate at 60."""
    store_with_candles(tmp_path, 8)
    with Receiver() as receiver:
        settings = load_settings(
            data_dir=str(tmp_path),
            symbols="BTCUSDT",
            intervals="15m",
            apprise_urls=receiver.url(),
        )
        ledger = Ledger.for_settings(settings)
        stale_since = TEN + 155 * MIN  # the 12:00 candle closed 12:15, plus the 20-minute grace
        sent: list[tuple[dt.timedelta, Kind]] = []
        for minute in range(120, 230, 5):
            now = TEN + minute * MIN
            nothing_new = StreamOutcome("BTCUSDT", "15m", True, 0, TEN_MS + 7 * QUARTER_MS, 0.1)
            ledger.record_outcome(nothing_new, now - MIN)
            report = run_watchdog(settings, now)
            sent += [(now - stale_since, message.kind) for message in report.sent]
    assert sent == [(30 * MIN, Kind.ALERT), (60 * MIN, Kind.ESCALATE)]
    alert, _escalate = receiver.posts
    assert "BTCUSDT 15m: stale since 2026-11-03 12:35:00 UTC" in alert.body["message"]
    assert "newest candle closed 2026-11-03 12:00:00 UTC" in alert.body["message"]


def test_stale_grace_setting_reads_durations_and_refuses_garbage() -> None:
    """OST_STALE_GRACE takes a duration (default 20 min); a bad one names the variable."""
    assert load_settings().stale_grace == 20 * MIN
    assert load_settings(stale_grace="90s").stale_grace == dt.timedelta(seconds=90)
    with pytest.raises(BadInput, match="OST_STALE_GRACE: invalid duration 'soon'"):
        load_settings(stale_grace="soon")

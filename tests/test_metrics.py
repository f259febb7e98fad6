"""Prometheus metrics read from the ledger: values, levels, endpoints, and across processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from ports import free_port
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from ost.alerts.policy import LadderConfig, Thresholds
from ost.binance import RequestLog
from ost.ingest import StreamOutcome
from ost.ledger import Ledger, ledger_path
from ost.metrics import LedgerCollector, build_app, build_registry

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
BTC = ("BTCUSDT", "15m")
ETH = ("ETHUSDT", "1h")
CONFIG = LadderConfig(streams=(BTC, ETH))


def failure(symbol: str, interval: str) -> StreamOutcome:
    """A failed ingestion of one stream: Binance unavailable."""
    return StreamOutcome(symbol, interval, False, 0, None, 1.0, "unavailable", "all URLs failed")


INTERVAL_S = {"15m": 15 * 60, "1h": 60 * 60}


def newest_closed_ms(interval: str, at: dt.datetime) -> int:
    """Open time (ms) of the newest candle of ``interval`` closed at ``at``."""
    step = INTERVAL_S[interval]
    return (int(at.timestamp()) // step * step - step) * 1000


def success(
    symbol: str, interval: str, written: int = 4, at: dt.datetime | None = None
) -> StreamOutcome:
    """A successful ingestion of one stream at ``at`` (default now): every closed candle stored."""
    newest = newest_closed_ms(interval, at or dt.datetime.now(dt.UTC))
    return StreamOutcome(symbol, interval, True, written, newest, 1.0)


def registry_at(ledger: Ledger, now: dt.datetime) -> CollectorRegistry:
    """A fresh registry whose collector believes it is ``now``."""
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger, CONFIG, clock=lambda: now))
    return registry


def get(app: Starlette, path: str) -> httpx.Response:
    """GET ``path`` from the ASGI ``app`` in-process."""

    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(request())


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A ledger in a fresh temporary directory."""
    return Ledger(tmp_path / "ledger.sqlite3")


def test_counters_come_from_the_ledger(ledger: Ledger) -> None:
    """Failures, candles, requests and notifications show with their labels and values."""
    ledger.record_outcomes([failure(*BTC), failure(*BTC), success(*ETH, written=7)], T0)
    log = RequestLog()
    log.count("https://api.binance.com", "503")
    log.used_weight = 42
    ledger.record_requests(log)
    ledger.record_notification("alert", "sent")
    registry = registry_at(ledger, T0)
    stream = {"symbol": "BTCUSDT", "interval": "15m"}
    value = registry.get_sample_value
    assert value("ost_ingestion_failures_total", {**stream, "reason": "unavailable"}) == 2
    assert value("ost_ingestions_total", {**stream, "result": "failed"}) == 2
    assert value("ost_candles_written_total", {"symbol": "ETHUSDT", "interval": "1h"}) == 7
    assert value("ost_candles_written_total", stream) is None
    requests = {"base_url": "https://api.binance.com", "status": "503"}
    assert value("ost_binance_requests_total", requests) == 1
    assert value("ost_binance_used_weight") == 42
    assert value("ost_notifications_total", {"level": "alert", "result": "sent"}) == 1


def test_timestamps_are_set_by_success_only(ledger: Ledger) -> None:
    """The last-ingestion time is the last success; a failure only moves the last attempt."""
    ledger.record_outcome(success(*BTC, at=T0), T0)
    ledger.record_outcome(failure(*BTC), T0 + MIN)
    ledger.record_outcome(failure(*ETH), T0 + MIN)
    value = registry_at(ledger, T0 + 2 * MIN).get_sample_value
    btc = {"symbol": "BTCUSDT", "interval": "15m"}
    assert value("ost_last_ingestion_timestamp_seconds", btc) == T0.timestamp()
    assert value("ost_last_attempt_timestamp_seconds", btc) == (T0 + MIN).timestamp()
    assert value("ost_last_candle_open_time_seconds", btc) == (T0 - 15 * MIN).timestamp()
    eth = {"symbol": "ETHUSDT", "interval": "1h"}
    assert value("ost_last_ingestion_timestamp_seconds", eth) is None
    assert value("ost_failing_since_seconds", eth) == (T0 + MIN).timestamp()


def test_escalation_level_follows_the_outage(ledger: Ledger) -> None:
    """The level gauge reads 0, 1, 2, 3 as the failure ages past 15, 30 and 60 minutes."""
    ledger.record_outcome(success(*ETH, at=T0), T0)
    ledger.record_outcome(failure(*BTC), T0)
    for minutes, level in ((5, 0), (16, 1), (31, 2), (61, 3)):
        now = T0 + minutes * MIN
        ledger.record_outcome(success(*ETH, at=now), now)
        value = registry_at(ledger, now).get_sample_value
        assert value("ost_escalation_level") == level
        assert (
            value("ost_stream_escalation_level", {"symbol": "BTCUSDT", "interval": "15m"}) == level
        )
        assert value("ost_stream_escalation_level", {"symbol": "ETHUSDT", "interval": "1h"}) == 0
        assert value("ost_failing_since_seconds", {"symbol": "ETHUSDT", "interval": "1h"}) == 0


def test_thresholds_come_from_the_config(ledger: Ledger) -> None:
    """Compressed thresholds (seconds) apply to the gauge as well."""
    config = LadderConfig(
        streams=(BTC,), thresholds=Thresholds(*(dt.timedelta(seconds=s) for s in (2, 4, 8)))
    )
    ledger.record_outcome(failure(*BTC), T0)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger, config, clock=lambda: T0 + dt.timedelta(seconds=5)))
    assert registry.get_sample_value("ost_escalation_level") == 2


def test_healthz_and_metrics_endpoints(ledger: Ledger, tmp_path: Path) -> None:
    """/healthz says ok, /metrics serves the text format; a corrupt ledger gives 503 on both."""
    ledger.record_outcome(failure(*BTC), T0)
    app = build_app(ledger, CONFIG)
    health = get(app, "/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    metrics = get(app, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=")
    assert (
        'ost_ingestion_failures_total{interval="15m",reason="unavailable",symbol="BTCUSDT"} 1.0'
        in (metrics.text)
    )

    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"not a database" * 200)
    broken = build_app(Ledger(corrupt), CONFIG)
    assert get(broken, "/healthz").status_code == 503
    assert get(broken, "/metrics").status_code == 503


def test_registry_holds_only_the_ledger_collector(ledger: Ledger) -> None:
    """build_registry gives a fresh registry: no process or platform metrics of the global one."""
    names = {metric.name for metric in build_registry(ledger, CONFIG).collect()}
    assert names
    assert all(name.startswith("ost_") for name in names)


# ---- across processes -------------------------------------------------------------------------

RECORD_FAILURE = """
import sys
from ost.ingest import StreamOutcome
from ost.ledger import Ledger
outcome = StreamOutcome("BTCUSDT", "15m", False, 0, None, 1.0, "unavailable", "down")
Ledger(sys.argv[1]).record_outcome(outcome)
"""

SERVE = "from ost.metrics import serve_metrics; from ost.settings import load_settings;"
SERVE += "serve_metrics(load_settings(), log_level='warning')"


@contextmanager
def metrics_server(data_dir: Path, port: int) -> Iterator[str]:
    """``ost metrics``'s function in a child process; yields its base URL once it answers."""
    env = os.environ | {
        "OST_DATA_DIR": str(data_dir),
        "OST_METRICS_PORT": str(port),
        "OST_SYMBOLS": "BTCUSDT",
        "OST_INTERVALS": "15m",
    }
    server = subprocess.Popen([sys.executable, "-c", SERVE], env=env, cwd=data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "the metrics server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the metrics server did not start"
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``base``/metrics, by name and sorted labels."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_failures_from_separate_processes_survive_a_server_restart(tmp_path: Path) -> None:
    """Two failures recorded by two processes scrape as 2, and still 2 after a restart."""
    path = ledger_path(str(tmp_path))
    for _ in range(2):
        subprocess.run([sys.executable, "-c", RECORD_FAILURE, str(path)], check=True)
    failures = (
        "ost_ingestion_failures_total",
        (("interval", "15m"), ("reason", "unavailable"), ("symbol", "BTCUSDT")),
    )
    last_success = (
        "ost_last_ingestion_timestamp_seconds",
        (("interval", "15m"), ("symbol", "BTCUSDT")),
    )
    port = free_port()
    with metrics_server(tmp_path, port) as base:
        first = scrape(base)
        assert first[failures] == 2
        assert last_success not in first
        before = time.time()
        Ledger(path).record_outcome(success(*BTC))
        assert scrape(base)[last_success] >= before - 1
    with metrics_server(tmp_path, port) as base:
        after_restart = scrape(base)
    assert after_restart[failures] == 2
    assert after_restart[last_success] >= before - 1
    assert after_restart[("ost_escalation_level", ())] == 0

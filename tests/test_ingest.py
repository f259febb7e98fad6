"""Ingestion against the simulator over real HTTP: exact candles, faults, budget, failover."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from moments import EARLY_CLOSE_MS, NOW, utc_ms
from oracle import assert_candles, closed_candles, lookback_start
from ports import free_port

from ost import intervals, klines
from ost.binance import BinanceClient
from ost.ingest import ingest_all, ingest_or_report
from ost.sim import SimHandle
from ost.sim.realdata import realdata_dir
from ost.store import CandleStore

HALT_NEXT_DAY = utc_ms("2023-03-25T00:05")


pytestmark = pytest.mark.usefixtures("fast_retries")


def client_for(*urls: str, timeout_s: float = 5.0) -> BinanceClient:
    """A client over real HTTP with the given base URLs."""
    return BinanceClient(list(urls), timeout_s=timeout_s, max_attempts=3)


def closed_port() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens (a host that is down)."""
    return f"http://127.0.0.1:{free_port()}"


def test_stored_candles_equal_the_simulators_closed_candles(sim: SimHandle, tmp_path: Path) -> None:
    """2 symbols x 1m, 15m, 1h, 1d: the store holds exactly Binance's closed candles."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(tmp_path))
    streams = [(s, i) for s in ("BTCUSDT", "ETHUSDT") for i in ("1m", "15m", "1h", "1d")]
    with client_for(sim.url) as client:
        outcomes = ingest_all(client, store, streams, lookback_days=3)
    assert all(outcome.ok for outcome in outcomes), outcomes
    for symbol, interval in streams:
        want = closed_candles(symbol, interval, lookback_start(interval, NOW, 3), NOW)
        got = store.load_klines(symbol, interval)
        assert len(got) == len(want) > 0
        assert_candles(got, want, symbol, interval)


def test_real_halt_day_is_stored_as_binance_sent_it(sim: SimHandle, tmp_path: Path) -> None:
    """2023-03-24: 1360 one-minute candles, the 12:39 candle keeps its early close_time."""
    sim.configure(now_ms=HALT_NEXT_DAY)
    store = CandleStore(str(tmp_path))
    with client_for(sim.url) as client:
        outcome = ingest_or_report(client, store, "BTCUSDT", "1m", lookback_days=1.01)
    assert outcome.ok, outcome.error
    day = store.load_klines("BTCUSDT", "1m", dt.datetime(2023, 3, 24), dt.datetime(2023, 3, 25))
    assert len(day) == 1360
    real = pd.read_csv(realdata_dir() / "BTCUSDT-1m-2023-03-24.csv", header=None)
    assert day["open_time"].astype("int64").tolist() == real[0].tolist()
    assert day["close_time"].astype("int64").tolist() == real[6].tolist()
    assert EARLY_CLOSE_MS in set(day["close_time"].astype("int64"))


FAULTS = [
    "5xx:rate=0.5",
    "slow:rate=0.5,delay=1.5",
    "reset:rate=0.5",
    "truncated:rate=0.5",
    "html:rate=0.5",
    "impossible:rate=0.5",
    "impossible:rate=0.5,mode=misaligned",
    "down",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_store_nothing_wrong_and_leave_no_gap(
    sim: SimHandle, tmp_path: Path, fault: str
) -> None:
    """Under each fault the store holds only true candles; the next clean run fills the rest."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(tmp_path))
    streams = [("BTCUSDT", "1m"), ("ETHUSDT", "15m")]
    sim.set_faults(fault)
    with client_for(sim.url, timeout_s=0.5) as client:
        ingest_all(client, store, streams, lookback_days=2)
    for symbol, interval in streams:
        stored = store.load_klines(symbol, interval)
        truth = closed_candles(symbol, interval, lookback_start(interval, NOW, 2), NOW)
        truth = truth[truth["open_time"].isin(stored["open_time"])]
        assert len(truth) == len(stored)
        assert_candles(stored, truth, fault, symbol, interval)
    sim.clear_faults()
    with client_for(sim.url) as client:
        assert all(o.ok for o in ingest_all(client, store, streams, lookback_days=2))
    for symbol, interval in streams:
        truth = closed_candles(symbol, interval, lookback_start(interval, NOW, 2), NOW)
        assert_candles(store.load_klines(symbol, interval), truth, symbol, interval)


def test_weight_budget_of_40_completes_without_418(sim: SimHandle, tmp_path: Path) -> None:
    """With 40 weight per window the pacer spreads requests: done, with no 418 and no 429."""
    # A window longer than the run takes, even on a busy machine: more than one window's weight
    # can then only fit if the pacer waits for the window to turn.
    sim.configure(now_ms=NOW, weight_limit=40, weight_window_s=5)
    store = CandleStore(str(tmp_path))
    streams = [(s, i) for s in ("BTCUSDT", "ETHUSDT") for i in ("1m", "15m", "1h", "1d")]
    with client_for(sim.url) as client:
        outcomes = ingest_all(client, store, streams, lookback_days=5)
        waited = client.pacer.waited_s
    stats = sim.stats()
    assert all(o.ok for o in outcomes)
    assert stats["status_418"] == 0
    assert stats["status_429"] == 0
    assert 2 * stats["requests"]["/api/v3/klines"]["200"] > 40  # more than one window's worth
    assert waited > 0  # the pacer, not luck, kept it under the budget


def test_first_two_base_urls_down_candles_come_through_the_third(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Two dead hosts first in OST_BINANCE_BASE_URLS: the third serves, and is remembered."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(tmp_path))
    with client_for(closed_port(), closed_port(), sim.url) as client:
        outcome = ingest_or_report(client, store, "BTCUSDT", "1h", lookback_days=2)
        assert client.base_url == sim.url
        dead_answers = sum(n for (url, _), n in client.log.answers.items() if url != sim.url)
    assert outcome.ok, outcome.error
    assert dead_answers == 2  # each dead host was tried once, then skipped
    want = closed_candles("BTCUSDT", "1h", lookback_start("1h", NOW, 2), NOW)
    assert_candles(store.load_klines("BTCUSDT", "1h"), want)


def test_closed_is_judged_by_binance_clock(sim: SimHandle, tmp_path: Path) -> None:
    """With Binance's clock an hour behind ours, no candle that is open there is stored."""
    behind = NOW - 3_600_000
    sim.configure(now_ms=behind)
    store = CandleStore(str(tmp_path))
    with client_for(sim.url) as client:
        assert ingest_or_report(client, store, "BTCUSDT", "15m", lookback_days=1).ok
    stored = store.load_klines("BTCUSDT", "15m")
    last_open = int(klines.open_time_ms(stored)[-1])
    assert intervals.next_open("15m", last_open) <= behind
    first_open = int(klines.open_time_ms(stored)[0])
    assert_candles(stored, closed_candles("BTCUSDT", "15m", first_open, behind))


def test_second_pass_resumes_after_the_last_stored_candle(sim: SimHandle, tmp_path: Path) -> None:
    """A pass 30 minutes later asks only for the new candles and stores them."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(tmp_path))
    with client_for(sim.url) as client:
        ingest_or_report(client, store, "BTCUSDT", "1m", lookback_days=1)
    sim.configure(now_ms=NOW + 30 * 60_000)
    sim.reset()
    with client_for(sim.url) as client:
        outcome = ingest_or_report(client, store, "BTCUSDT", "1m", lookback_days=1)
    assert outcome.written == 30
    assert sim.stats()["requests"]["/api/v3/klines"]["200"] == 1
    want = closed_candles("BTCUSDT", "1m", lookback_start("1m", NOW, 1), NOW + 30 * 60_000)
    assert_candles(store.load_klines("BTCUSDT", "1m"), want)


def test_ping_reports_every_base_url(sim: SimHandle) -> None:
    """`ost ping`'s data: the dead host unreachable, the live one with latency, skew, weight."""
    sim.configure(clock_offset_ms=-5_000)
    dead = closed_port()
    with client_for(dead, sim.url) as client:
        down, up = client.ping_all()
    assert (down.base_url, down.ok, down.error is not None) == (dead, False, True)
    assert up.ok
    assert up.latency_ms is not None
    assert up.latency_ms >= 0
    assert up.skew_ms is not None
    assert -5_500 < up.skew_ms < -4_500
    assert up.used_weight is not None
    assert up.used_weight >= 1

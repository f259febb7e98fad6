"""The simulator's whole market: about 1,500 spot symbols, some that stopped trading."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from ost import intervals
from ost.sim import SimHandle
from ost.sim.symbols import utc_ms

NOW = utc_ms("2026-11-20T10:07:30")


@pytest.fixture
def client(sim: SimHandle) -> httpx.Client:
    """A plain HTTP client of the simulator, its clock at NOW."""
    sim.configure(now_ms=NOW)
    return sim.client()


def entries(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """The symbols of the full exchangeInfo, by name."""
    return {
        entry["symbol"]: entry for entry in client.get("/api/v3/exchangeInfo").json()["symbols"]
    }


def test_exchange_info_lists_a_market_of_binances_size(client: httpx.Client) -> None:
    """1,500 spot symbols trade, over many quote assets; some are BREAK, a few margin only."""
    listed = entries(client)
    statuses = Counter(entry["status"] for entry in listed.values())
    spot_trading = [
        name
        for name, entry in listed.items()
        if entry["isSpotTradingAllowed"] and entry["status"] == "TRADING"
    ]
    assert len(spot_trading) == 1500
    assert 20 <= statuses["BREAK"] <= 100
    assert any(not entry["isSpotTradingAllowed"] for entry in listed.values())
    quotes = Counter(entry["quoteAsset"] for entry in listed.values())
    assert {"USDT", "BTC", "ETH", "BNB", "FDUSD", "TRY", "EUR"} <= set(quotes)
    for name, entry in listed.items():
        assert name == entry["baseAsset"] + entry["quoteAsset"]
        assert 2 <= len(name) <= 20
        assert name.isalnum()
        assert name.isupper()
    assert listed["BTCUSDT"]["status"] == "TRADING"


def test_a_break_symbol_has_no_candle_after_it_stopped(client: httpx.Client) -> None:
    """A BREAK symbol's klines stop: its newest 1h candle is years old, and none is open."""
    listed = entries(client)
    stopped = next(name for name, entry in listed.items() if entry["status"] == "BREAK")
    rows = client.get(
        "/api/v3/klines", params={"symbol": stopped, "interval": "1h", "limit": 1000}
    ).json()
    assert rows
    assert rows[-1][0] < NOW - 30 * intervals.DAY_MS
    after = client.get(
        "/api/v3/klines",
        params={"symbol": stopped, "interval": "1h", "startTime": rows[-1][0] + 1},
    ).json()
    assert after == []


def test_any_trading_symbol_serves_synthetic_candles(client: httpx.Client) -> None:
    """Every 50th trading spot symbol answers klines up to the last closed hour."""
    listed = entries(client)
    trading = sorted(n for n, e in listed.items() if e["status"] == "TRADING")
    last_hour = intervals.align("1h", NOW) - intervals.HOUR_MS
    for name in trading[::50]:
        rows = client.get(
            "/api/v3/klines",
            params={"symbol": name, "interval": "1h", "endTime": last_hour, "limit": 2},
        ).json()
        assert [row[0] for row in rows] == [last_hour - intervals.HOUR_MS, last_hour], name
        assert all(float(row[3]) <= float(row[2]) for row in rows), name


def test_stopped_makes_a_symbol_stop_while_the_simulator_runs(
    sim: SimHandle, client: httpx.Client
) -> None:
    """stopped: X=BREAK turns BREAK, its candles end; Y=DELISTED is gone (-1121); restore undoes."""
    sim.configure(stopped="SOLUSDC=BREAK,SOLTRY=DELISTED")
    sim.configure(now_ms=NOW + 3 * intervals.HOUR_MS)
    listed = entries(client)
    assert listed["SOLUSDC"]["status"] == "BREAK"
    assert "SOLTRY" not in listed
    rows = client.get("/api/v3/klines", params={"symbol": "SOLUSDC", "interval": "1h"}).json()
    assert rows[-1][0] == intervals.align("1h", NOW)  # the hour it stopped in, then nothing
    delisted = client.get("/api/v3/klines", params={"symbol": "SOLTRY", "interval": "1h"})
    assert (delisted.status_code, delisted.json()["code"]) == (400, -1121)
    single = client.get("/api/v3/exchangeInfo", params={"symbol": "SOLTRY"})
    assert single.json()["code"] == -1121
    assert sim.klines_of("SOLTRY") == 1
    sim.restore()
    assert entries(client)["SOLTRY"]["status"] == "TRADING"


def test_a_bad_stopped_setting_is_refused(sim: SimHandle) -> None:
    """An unknown symbol or status in stopped is a 400 naming it."""
    for spec in ("NOPEUSDT=BREAK", "SOLUSDC=MAYBE"):
        with pytest.raises(httpx.HTTPStatusError):
            sim.configure(stopped=spec)

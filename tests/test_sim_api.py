"""The simulator's Binance REST API over real HTTP: klines semantics, errors, request weight."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ost import intervals
from ost.sim import SimConfig, SimHandle, market, running_sim
from ost.sim.symbols import LISTINGS, utc_ms

pytestmark = pytest.mark.slow

HALT_DAY = utc_ms("2023-03-24")


@pytest.fixture
def client(sim: SimHandle) -> Iterator[httpx.Client]:
    """An httpx client of the simulator."""
    with sim.client(timeout=5.0) as http:
        yield http


def get_klines(client: httpx.Client, **params: Any) -> list[list[Any]]:
    """Rows of ``/api/v3/klines`` (asserting a 200)."""
    response = client.get("/api/v3/klines", params=params)
    assert response.status_code == 200, response.text
    rows: list[list[Any]] = response.json()
    return rows


def error_of(response: httpx.Response) -> tuple[int, int]:
    """The HTTP status and Binance error code of an error answer."""
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()["code"]


def at_window_start(sim: SimHandle, window_s: int) -> None:
    """Set the server clock just after a window boundary, so a test has a whole window."""
    window_ms = window_s * 1000
    sim.configure(now_ms=(sim.now_ms() // window_ms + 1) * window_ms + 50)


def test_ping_time_and_exchange_info(sim: SimHandle, client: httpx.Client):
    """Ping answers {}, time is the server clock, exchangeInfo lists the symbols."""
    assert client.get("/api/v3/ping").json() == {}
    sim.configure(clock_offset_ms=-3_600_000)
    server_time = client.get("/api/v3/time").json()["serverTime"]
    assert abs(server_time - (time.time() * 1000 - 3_600_000)) < 2_000
    info = client.get("/api/v3/exchangeInfo").json()
    assert info["timezone"] == "UTC"
    symbols = {entry["symbol"]: entry for entry in info["symbols"]}
    assert len(symbols) >= 25
    assert symbols["BTCUSDT"]["baseAsset"] == "BTC"
    assert symbols["BTCUSDT"]["quoteAsset"] == "USDT"
    assert symbols["BTCUSDT"]["status"] == "TRADING"
    single = client.get("/api/v3/exchangeInfo", params={"symbol": "ETHUSDT"}).json()
    assert [entry["symbol"] for entry in single["symbols"]] == ["ETHUSDT"]


def test_exchange_info_reports_the_configured_weight_limit(sim: SimHandle, client: httpx.Client):
    """REQUEST_WEIGHT in exchangeInfo follows the configured limit and window."""

    def weight_limit() -> dict[str, Any]:
        info = client.get("/api/v3/exchangeInfo").json()
        return next(r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT")

    assert weight_limit() == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    sim.configure(weight_limit=300, weight_window_s=2)
    assert weight_limit() == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "SECOND",
        "intervalNum": 2,
        "limit": 300,
    }


def test_limit_defaults_to_500_and_caps_at_1000(client: httpx.Client):
    """No limit gives 500 rows; 1000 gives 1000; above 1000 is served as 1000; 0 is refused."""
    assert len(get_klines(client, symbol="BTCUSDT", interval="1m")) == 500
    assert len(get_klines(client, symbol="BTCUSDT", interval="1m", limit=1000)) == 1000
    assert len(get_klines(client, symbol="BTCUSDT", interval="1m", limit=5000)) == 1000
    response = client.get(
        "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m", "limit": 0}
    )
    assert error_of(response) == (400, -1130)


def test_without_times_the_most_recent_candles_come(sim: SimHandle, client: httpx.Client):
    """No startTime or endTime: the latest candles, ending with the open current one."""
    sim.configure(now_ms=utc_ms("2026-02-02T15:30"))
    rows = get_klines(client, symbol="ETHUSDT", interval="1h", limit=24)
    now = sim.now_ms()
    assert len(rows) == 24
    assert rows[-1][0] == intervals.align("1h", now)
    assert rows[-1][6] == rows[-1][0] + intervals.HOUR_MS - 1
    closed = market.klines("ETHUSDT", "1h", rows[0][0], rows[-1][0], now)
    assert rows[:-1] == closed


def test_start_time_alone_gives_the_oldest_from_it(client: httpx.Client):
    """With startTime alone: the first `limit` candles opening at or after it."""
    start = utc_ms("2021-03-01T10:00:30")
    rows = get_klines(client, symbol="BTCUSDT", interval="1m", startTime=start, limit=100)
    assert rows[0][0] == utc_ms("2021-03-01T10:01")
    assert [r[0] for r in rows] == [rows[0][0] + i * 60_000 for i in range(100)]
    assert rows == market.klines("BTCUSDT", "1m", start, rows[-1][0] + 1, rows[-1][6])


def test_end_time_alone_gives_the_latest_up_to_it(client: httpx.Client):
    """With endTime alone: the last `limit` candles opening at or before it."""
    end = utc_ms("2021-03-01T10:00:30")
    rows = get_klines(client, symbol="BTCUSDT", interval="5m", endTime=end, limit=12)
    assert rows[-1][0] == utc_ms("2021-03-01T10:00")
    assert rows[0][0] == utc_ms("2021-03-01T09:05")


def test_both_times_give_the_range_from_the_start(client: httpx.Client):
    """With startTime and endTime: from the start, up to the limit, not past the end."""
    start, end = utc_ms("2022-01-01"), utc_ms("2022-01-02")
    day = get_klines(client, symbol="BTCUSDT", interval="1h", startTime=start, endTime=end)
    assert [r[0] for r in day][:: len(day) - 1] == [start, end]
    assert len(day) == 25
    first = get_klines(
        client, symbol="BTCUSDT", interval="1h", startTime=start, endTime=end, limit=5
    )
    assert first == day[:5]


def test_weeks_open_on_monday_and_months_on_the_first(client: httpx.Client):
    """1w candles open Monday 00:00 UTC, 1M candles on the 1st at 00:00 UTC."""
    start = utc_ms("2023-01-01")
    for interval, check in (
        ("1w", lambda d: d.weekday() == 0),
        ("1M", lambda d: d.day == 1),
    ):
        rows = get_klines(client, symbol="ETHUSDT", interval=interval, startTime=start, limit=30)
        opens = [dt.datetime.fromtimestamp(r[0] / 1000, tz=dt.UTC) for r in rows]
        assert len(opens) == 30
        assert all(check(d) and d.time() == dt.time(0) for d in opens)
        assert all(r[6] == intervals.close_time(interval, r[0]) for r in rows[:-1])


def test_the_open_candle_changes_with_the_clock(sim: SimHandle, client: httpx.Client):
    """The current candle's volume grows as server time moves through it."""
    open_ms = utc_ms("2026-05-05T10:00")
    snapshots = []
    for minutes in (5, 40):
        sim.configure(now_ms=open_ms + minutes * 60_000)
        snapshots.append(get_klines(client, symbol="BTCUSDT", interval="1h", limit=2)[-1])
    early, late = snapshots
    assert early[0] == late[0] == open_ms
    assert early[6] == late[6] == open_ms + intervals.HOUR_MS - 1
    assert float(late[5]) > float(early[5])
    assert late[8] > early[8]


def test_no_candles_before_the_listing(sim: SimHandle, client: httpx.Client):
    """SOLUSDT starts on its listing day; before it, nothing; with the clock before it, -1121."""
    listed = LISTINGS["SOLUSDT"].listed_ms
    rows = get_klines(
        client, symbol="SOLUSDT", interval="1d", startTime=utc_ms("2020-01-01"), limit=3
    )
    assert rows[0][0] == intervals.align("1d", listed)
    early = get_klines(
        client,
        symbol="SOLUSDT",
        interval="1d",
        startTime=utc_ms("2019-01-01"),
        endTime=listed - 10**8,
    )
    assert early == []
    sim.configure(now_ms=utc_ms("2019-06-01"))
    response = client.get("/api/v3/klines", params={"symbol": "SOLUSDT", "interval": "1d"})
    assert error_of(response) == (400, -1121)
    info = client.get("/api/v3/exchangeInfo").json()
    assert "SOLUSDT" not in {entry["symbol"] for entry in info["symbols"]}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
        ({"symbol": "BTC USDT", "interval": "1m"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "2m"}, -1120),
        ({"interval": "1m"}, -1102),
        ({"symbol": "BTCUSDT"}, -1102),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": "yesterday"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "limit": "-5"}, -1100),
        ({"symbol": "BTCUSDT", "interval": "1m", "startTime": 2, "endTime": 1}, -1023),
    ],
)
def test_bad_parameters_get_binance_errors(client: httpx.Client, params: dict[str, Any], code: int):
    """Bad parameters answer HTTP 400 with Binance's JSON error code."""
    response = client.get("/api/v3/klines", params=params)
    assert error_of(response) == (400, code)
    assert response.json()["msg"]


def test_unknown_symbol_in_exchange_info(client: httpx.Client):
    """An unknown symbol in exchangeInfo is -1121 "Invalid symbol."."""
    response = client.get("/api/v3/exchangeInfo", params={"symbol": "NOPEUSDT"})
    assert error_of(response) == (400, -1121)
    assert response.json()["msg"] == "Invalid symbol."


def test_generated_symbols_for_load_tests(client: httpx.Client):
    """SIM0001USDT and SIM1500USDT: markets of their own from 2020-01-01, by name only."""
    first = {}
    for symbol in ("SIM0001USDT", "SIM1500USDT"):
        rows = get_klines(client, symbol=symbol, interval="1d", startTime=0, limit=2)
        assert [row[0] for row in rows] == [utc_ms("2020-01-01"), utc_ms("2020-01-02")]
        assert float(rows[0][1]) > 0
        assert rows[0][4] == rows[1][1]  # a close is the next open
        first[symbol] = rows[0][1]
        answer = client.get("/api/v3/exchangeInfo", params={"symbol": symbol}).json()
        assert [entry["symbol"] for entry in answer["symbols"]] == [symbol]
    assert first["SIM0001USDT"] != first["SIM1500USDT"]
    listed = client.get("/api/v3/exchangeInfo").json()["symbols"]
    assert not [entry for entry in listed if entry["symbol"].startswith("SIM")]
    for name in ("SIMUSDT", "SIM1234567USDT", "SIM0001BTC"):
        response = client.get("/api/v3/klines", params={"symbol": name, "interval": "1d"})
        assert error_of(response) == (400, -1121), name


def test_used_weight_headers_count_per_endpoint(client: httpx.Client):
    """Every answer carries the used weight: klines 2, exchangeInfo 20, ping 1."""
    used = []
    for path, params in (
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}),
        ("/api/v3/exchangeInfo", {}),
        ("/api/v3/ping", {}),
        ("/api/v3/klines", {"symbol": "NOPEUSDT", "interval": "1m"}),
    ):
        response = client.get(path, params=params)
        assert response.headers["x-mbx-used-weight"] == response.headers["x-mbx-used-weight-1m"]
        used.append(int(response.headers["x-mbx-used-weight-1m"]))
    assert used == [2, 4, 24, 25, 27]


def test_past_the_budget_429_then_418(sim: SimHandle, client: httpx.Client):
    """Over the budget: 429 with Retry-After; ignoring it past two more requests: 418, banned."""
    sim.configure(weight_limit=10)
    at_window_start(sim, 60)
    params = {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}
    statuses = [client.get("/api/v3/klines", params=params).status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = [client.get("/api/v3/klines", params=params) for _ in range(3)]
    assert [r.status_code for r in refused] == [429] * 3
    for response in refused:
        assert error_of(response) == (429, -1003)
        assert 50 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-mbx-used-weight-1m"] == "10"
    banned = client.get("/api/v3/klines", params=params)
    assert error_of(banned) == (418, -1003)
    assert int(banned.headers["retry-after"]) > 60
    assert client.get("/api/v3/ping").status_code == 418
    stats = sim.stats()
    assert (stats["status_429"], stats["status_418"]) == (3, 2)
    assert stats["requests"]["/api/v3/klines"] == {"200": 5, "429": 3, "418": 1}
    assert stats["weight_used"]["127.0.0.1"] == 10


def test_the_budget_comes_back_with_the_next_window(sim: SimHandle, client: httpx.Client):
    """After Retry-After seconds (the window's end), requests are served again."""
    sim.configure(weight_limit=4, weight_window_s=1)
    at_window_start(sim, 1)
    params = {"symbol": "BTCUSDT", "interval": "1m", "limit": 1}
    assert [client.get("/api/v3/klines", params=params).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/api/v3/klines", params=params)
    assert refused.status_code == 429
    assert refused.headers["x-mbx-used-weight-1s"] == "4"
    time.sleep(int(refused.headers["retry-after"]))
    assert client.get("/api/v3/klines", params=params).status_code == 200


def test_added_latency(sim: SimHandle, client: httpx.Client):
    """A configured latency delays every answer."""
    sim.configure(latency_ms=150)
    started = time.perf_counter()
    client.get("/api/v3/ping")
    assert time.perf_counter() - started >= 0.15


def test_halt_day_over_http(client: httpx.Client):
    """2023-03-24 1m over HTTP: 1360 candles in two pages, 12:39 closes early, none 12:40-13:59."""
    end = HALT_DAY + intervals.DAY_MS - 1
    first = get_klines(
        client, symbol="BTCUSDT", interval="1m", startTime=HALT_DAY, endTime=end, limit=1000
    )
    rest = get_klines(
        client, symbol="BTCUSDT", interval="1m", startTime=first[-1][0] + 1, endTime=end, limit=1000
    )
    rows = first + rest
    assert len(rows) == 1360
    by_open = {row[0]: row for row in rows}
    assert by_open[utc_ms("2023-03-24T12:39")][6] == 1679661581646
    assert not [t for t in by_open if utc_ms("2023-03-24T12:40") <= t < utc_ms("2023-03-24T14:00")]


def test_2025_real_day_is_served_in_milliseconds(client: httpx.Client):
    """2025-01-01 comes in µs in the archive, in ms over the API."""
    start = utc_ms("2025-01-01")
    rows = get_klines(client, symbol="BTCUSDT", interval="1m", startTime=start, limit=3)
    assert [r[0] for r in rows] == [1735689600000, 1735689660000, 1735689720000]
    assert rows[0][6] == 1735689659999
    assert rows[0][1:6] == [
        "93576.00000000",
        "93610.93000000",
        "93537.50000000",
        "93610.93000000",
        "8.21827000",
    ]


def test_running_sim_stops_cleanly():
    """A second simulator starts on its own free port and is gone after the block."""
    with running_sim(SimConfig(latency_ms=1)) as other:
        assert httpx.get(f"{other.url}/api/v3/ping").json() == {}
        url = other.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v3/ping", timeout=1)

"""Fault injection: the SPEC syntax, and every fault kind as an httpx client sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from ost import klines
from ost.errors import BadInput, InvalidCandle
from ost.sim import SimConfig, SimHandle, running_sim
from ost.sim.faults import FaultBook, faults_from_json, parse_faults
from ost.sim.symbols import utc_ms

pytestmark = pytest.mark.slow

KLINES = {
    "symbol": "BTCUSDT",
    "interval": "1h",
    "startTime": utc_ms("2024-01-01"),
    "endTime": utc_ms("2024-01-02"),
}


@pytest.fixture
def client(sim: SimHandle) -> Iterator[httpx.Client]:
    """An httpx client of the simulator."""
    with sim.client(timeout=5.0) as http:
        yield http


def test_spec_syntax_and_defaults():
    """A SPEC string arms faults with their options; unset options take their defaults."""
    faults = parse_faults(" 5xx:rate=0.5,count=3 ; slow:rate=1,delay=2;down;corrupt_zip ")
    assert [(f.kind, f.rate, f.count, f.scope) for f in faults] == [
        ("5xx", 0.5, 3, "api"),
        ("slow", 1.0, None, "api"),
        ("down", 1.0, None, "api"),
        ("corrupt_zip", 1.0, None, "data"),
    ]
    assert faults[1].delay == 2.0
    assert parse_faults("") == []
    as_json = faults_from_json([{"kind": "html", "status": 502}, "reset:count=1"])
    assert [(f.kind, f.status, f.count) for f in as_json] == [
        ("html", 502, None),
        ("reset", None, 1),
    ]


@pytest.mark.parametrize(
    "spec",
    [
        "melt",
        "5xx:rate=2",
        "5xx:rate=lots",
        "slow:delay",
        "5xx:status=404",
        "reset:scope=moon",
        "5xx:colour=red",
    ],
)
def test_bad_specs_are_refused(spec: str):
    """A bad SPEC raises BadInput naming the problem, and the CLI's config refuses it too."""
    with pytest.raises(BadInput):
        parse_faults(spec)
    with pytest.raises(BadInput):
        SimConfig(faults=spec)


def test_count_and_rate_bound_how_often_a_fault_fires():
    """A count caps the firings; the rate is the probability per request."""
    book = FaultBook(parse_faults("5xx:count=3"))
    fired = [book.pick("/api/v3/ping", aborting=False) is not None for _ in range(10)]
    assert fired == [True] * 3 + [False] * 7
    never = FaultBook(parse_faults("5xx:rate=0"))
    assert all(never.pick("/api/v3/ping", aborting=False) is None for _ in range(50))
    half = FaultBook(parse_faults("5xx:rate=0.5"), seed=7)
    hits = sum(half.pick("/api/v3/ping", aborting=False) is not None for _ in range(2000))
    assert 850 < hits < 1150


def test_5xx_answers_a_server_error(sim: SimHandle, client: httpx.Client):
    """5xx: 503 with Binance's JSON, or 500/502 with an HTML page; then normal answers."""
    sim.set_faults("5xx:status=503,count=1;5xx:status=502,count=1")
    first = client.get("/api/v3/klines", params=KLINES)
    assert first.status_code == 503
    assert first.json()["code"] == -1001
    second = client.get("/api/v3/klines", params=KLINES)
    assert second.status_code == 502
    assert second.headers["content-type"].startswith("text/html")
    assert client.get("/api/v3/klines", params=KLINES).status_code == 200
    assert sim.stats()["requests"]["/api/v3/klines"] == {"200": 1, "502": 1, "503": 1}


def test_slow_answers_after_the_client_timeout(sim: SimHandle, client: httpx.Client):
    """slow: a client with a shorter timeout times out; a patient one gets the answer late."""
    sim.set_faults("slow:delay=0.6,count=2")
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/v3/ping", timeout=0.2)
    started = time.perf_counter()
    assert client.get("/api/v3/ping", timeout=5).json() == {}
    assert time.perf_counter() - started >= 0.6


@pytest.mark.parametrize("kind", ["reset", "down"])
def test_reset_and_down_drop_the_connection(sim: SimHandle, client: httpx.Client, kind: str):
    """With reset or down the connection closes with no response: an httpx transport error."""
    sim.set_faults(kind)
    for path in ("/api/v3/ping", "/api/v3/time", "/api/v3/klines"):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(path, params=KLINES)
    stats = sim.stats()  # the admin API is never faulted
    assert stats["faults_fired"] == {kind: 3}
    assert stats["requests"]["/api/v3/ping"] == {"dropped": 1}
    assert stats["weight_used"] == {}
    sim.clear_faults()
    assert client.get("/api/v3/ping").json() == {}


def test_truncated_cuts_the_body_in_half(sim: SimHandle, client: httpx.Client):
    """truncated: a 200 whose body is the first half of the real one, so not JSON."""
    whole = client.get("/api/v3/klines", params=KLINES).content
    sim.set_faults("truncated:count=1")
    cut = client.get("/api/v3/klines", params=KLINES)
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


@pytest.mark.parametrize("status", [200, 503])
def test_html_serves_an_error_page(sim: SimHandle, client: httpx.Client, status: int):
    """html: an HTML page with content-type text/html, status 200 unless set."""
    sim.set_faults(f"html:status={status}")
    response = client.get("/api/v3/klines", params=KLINES)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<html>")


@pytest.mark.parametrize("mode", ["high_low", "misaligned"])
def test_impossible_rows_fail_validation(sim: SimHandle, client: httpx.Client, mode: str):
    """impossible: well-formed rows that the project's kline validation rejects."""
    good = client.get("/api/v3/klines", params=KLINES).json()
    klines.parse_columns(good, "1h")
    sim.set_faults(f"impossible:mode={mode}")
    bad = client.get("/api/v3/klines", params=KLINES)
    rows: list[list[Any]] = bad.json()
    assert bad.status_code == 200
    assert len(rows) == len(good)
    assert sum(row != original for row, original in zip(rows, good, strict=True)) == 1
    with pytest.raises(InvalidCandle):
        klines.parse_columns(rows, "1h")
    assert client.get("/api/v3/ping").json() == {}  # other endpoints are not affected


def test_faults_armed_at_start_and_with_json(sim: SimHandle):
    """Faults set by config at start-up fire; the admin API accepts JSON lists too."""
    with running_sim(SimConfig(faults="5xx:status=500,count=1")) as other:
        assert httpx.get(f"{other.url}/api/v3/ping").status_code == 500
        assert httpx.get(f"{other.url}/api/v3/ping").status_code == 200
    armed = sim.set_faults([{"kind": "html", "rate": 0.0}])
    assert armed[0]["kind"] == "html"
    assert armed[0]["rate"] == 0.0
    assert [f.kind for f in sim.faults()] == ["html"]
    with sim.client() as http:
        assert http.post("/_sim/faults", content="5xx:rate=9").status_code == 400

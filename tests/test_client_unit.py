"""Edge cases of the Binance client, over httpx.MockTransport (the simulator covers the rest)."""

from __future__ import annotations

import json

import httpx
import pytest
from fake_binance import MINUTE, T0, Handler, kline_row, routed

from ost import intervals, klines
from ost.binance import BinanceClient
from ost.clock import LocalClock, system_ms
from ost.errors import (
    BinanceRejected,
    BinanceUnavailable,
    InvalidCandle,
    RateLimited,
)
from ost.pacing import WeightPacer
from ost.retry import retry_hook


def make_client(
    handler: Handler, hosts: int = 1, attempts: int = 3, clock: LocalClock = system_ms
) -> BinanceClient:
    """A client over a mock transport with ``hosts`` base URLs (and a local clock, if given)."""
    urls = [f"http://host{n}.test" for n in range(hosts)]
    return BinanceClient(
        urls, max_attempts=attempts, transport=httpx.MockTransport(handler), clock=clock
    )


def serving(rows: list[list[object]], *, honours_end: bool = True) -> Handler:
    """A klines endpoint over ``rows``: those from ``startTime`` (to ``endTime``), up to limit.

    With ``honours_end`` False it ignores ``endTime``, as a misbehaving proxy may, so the page
    holds whatever the host has, open candles included.
    """

    def handle(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        start = int(params["startTime"])
        end = int(params["endTime"]) if honours_end and "endTime" in params else None
        chosen = [
            row for row in rows if field(row, 0) >= start and (end is None or field(row, 0) <= end)
        ]
        return httpx.Response(200, json=chosen[: int(params.get("limit", "500"))])

    return handle


def field(row: list[object], position: int) -> int:
    """An integer field of a raw kline row (0 open time, 6 close time)."""
    value = row[position]
    assert isinstance(value, int)
    return value


def closed_opens(client: BinanceClient, interval: str, start_ms: int) -> list[int]:
    """The open times of every candle ``closed_klines`` returns from ``start_ms``."""
    frames = client.closed_klines("BTCUSDT", interval, start_ms)
    return [int(ms) for frame in frames for ms in klines.open_time_ms(frame)]


pytestmark = pytest.mark.usefixtures("fast_retries")


def test_4xx_is_never_retried() -> None:
    """A -1121 invalid symbol is raised after exactly one request."""
    calls = []

    def bad_symbol(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"code": -1121, "msg": "Invalid symbol."})

    with make_client(routed(bad_symbol)) as client, pytest.raises(BinanceRejected) as info:
        client.klines("NOPEUSDT", "1m", T0, T0 + MINUTE)
    assert len(calls) == 1
    assert info.value.code == -1121


def test_5xx_is_retried_until_success() -> None:
    """Two 503s then a good page: the page arrives on the third attempt."""
    answers = iter([503, 503, 200])

    def flaky(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json=[kline_row(T0)] if status == 200 else {})

    with make_client(routed(flaky)) as client:
        page = client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
    assert len(page) == 1


def test_attempts_are_bounded() -> None:
    """A host that always fails is asked OST_MAX_ATTEMPTS times, then BinanceUnavailable."""
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    with make_client(routed(down)) as client, pytest.raises(BinanceUnavailable):
        client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
    assert len(calls) == 3


def test_failover_remembers_the_host_that_works() -> None:
    """With host0 refusing, requests go to host1, and later requests start there."""
    hosts = []

    def first_down(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "host0.test":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[kline_row(T0)])

    with make_client(routed(first_down), hosts=2) as client:
        client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
        client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
        assert client.base_url == "http://host1.test"
    assert hosts == ["host0.test", "host1.test", "host1.test"]


def test_truncated_json_is_retried_and_never_parsed() -> None:
    """A body cut in half is a BadPayload, retried; the good answer after it is used."""
    body = json.dumps([kline_row(T0), kline_row(T0 + MINUTE)])
    answers = iter([body[: len(body) // 2], body])

    def truncating(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=next(answers))

    with make_client(routed(truncating)) as client:
        assert len(client.klines("BTCUSDT", "1m", T0, T0 + 2 * MINUTE)) == 2


def test_impossible_candle_is_not_retried() -> None:
    """A page with high below low raises InvalidCandle after one request."""
    calls = []

    def impossible(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        row = kline_row(T0)
        row[2], row[3] = "1.0", "200.0"
        return httpx.Response(200, json=[row])

    with make_client(routed(impossible)) as client, pytest.raises(InvalidCandle):
        client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
    assert len(calls) == 1


def test_rate_limit_waits_retry_after() -> None:
    """A 429 carries its Retry-After into the error that stamina waits on."""

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"}, json={"code": -1003, "msg": "x"})

    with make_client(routed(limited), attempts=1) as client, pytest.raises(RateLimited) as info:
        client.klines("BTCUSDT", "1m", T0, T0 + MINUTE)
    assert info.value.retry_after == 3
    assert retry_hook(info.value) == 3


def test_closed_klines_drop_the_open_candle_by_server_time() -> None:
    """The candle still open by Binance's clock is never returned, whatever the local clock."""
    now = T0 + 3 * MINUTE + 30_000

    def pages(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["startTime"])
        end = int(request.url.params["endTime"])
        rows = [kline_row(t) for t in range(start, min(end + 1, now), MINUTE)]
        return httpx.Response(200, json=rows)

    with make_client(routed(pages, now_ms=now)) as client:
        frames = list(client.closed_klines("BTCUSDT", "1m", T0))
    opens = [int(t.timestamp() * 1000) for f in frames for t in f["open_time"]]
    assert opens == [T0, T0 + MINUTE, T0 + 2 * MINUTE]


def test_pacer_sleeps_until_the_window_turns() -> None:
    """With 40 weight a window, the 21st klines call waits for the next window."""
    clock = [0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += int(seconds * 1000)

    pacer = WeightPacer(limit=40, window_ms=60_000, server_now_ms=lambda: clock[0], sleep=sleep)
    for _ in range(20):
        pacer.acquire(2)
    assert sleeps == []
    pacer.acquire(2)
    assert sleeps == [pytest.approx(60.05)]
    assert pacer.used == 2


def test_pacer_trusts_binance_count() -> None:
    """A header count above ours (another process spends too) is adopted for its window."""
    clock = [1_000]
    pacer = WeightPacer(limit=40, window_ms=60_000, server_now_ms=lambda: clock[0])
    pacer.acquire(2)
    pacer.observe(38, sent_at_ms=1_000)
    assert pacer.used == 38
    pacer.observe(39, sent_at_ms=-60_000)
    assert pacer.used == 38


def test_every_open_candle_is_dropped_by_its_close_time_not_only_the_last() -> None:
    """A host ignoring endTime sends 8 candles open by the local clock: none of them is kept."""
    binance_now = T0 + 10 * MINUTE + 30_000
    local_now = T0 + 3 * MINUTE + 30_000  # 7 minutes behind Binance: the earlier clock
    rows = [kline_row(T0 + n * MINUTE) for n in range(11)]  # up to Binance's open candle
    handler = routed(serving(rows, honours_end=False), now_ms=binance_now)
    with make_client(handler, clock=lambda: local_now) as client:
        kept = closed_opens(client, "1m", T0)
    assert kept == [field(row, 0) for row in rows if field(row, 6) < local_now]
    assert len(kept) == 3


def test_a_page_whose_last_candle_is_closed_keeps_it() -> None:
    """A host whose candles end well before now: every one is kept, the page's last one too."""
    now = T0 + 10 * MINUTE
    rows = [kline_row(T0 + n * MINUTE) for n in range(3)]
    with make_client(routed(serving(rows), now_ms=now), clock=lambda: now) as client:
        kept = closed_opens(client, "1m", T0)
    assert kept == [field(row, 0) for row in rows]


@pytest.mark.parametrize(("past_close_ms", "kept"), [(0, 1), (1, 2)])
def test_a_candle_is_closed_once_now_is_past_its_close_time(past_close_ms: int, kept: int) -> None:
    """At its close_time a candle is still open; one millisecond later it is closed."""
    rows = [kline_row(T0), kline_row(T0 + MINUTE)]
    now = field(rows[1], 6) + past_close_ms
    handler = routed(serving(rows, honours_end=False), now_ms=now)
    with make_client(handler, clock=lambda: now) as client:
        assert closed_opens(client, "1m", T0) == [field(row, 0) for row in rows[:kept]]


def test_a_local_clock_two_hours_ahead_runs_on_binances() -> None:
    """The local clock 2 h ahead: Binance's open candle is not kept; a skew of -2 h is measured."""
    binance_now = T0 + 3 * MINUTE + 30_000
    rows = [kline_row(T0 + n * MINUTE) for n in range(4)]  # the last one is open at Binance
    handler = routed(serving(rows, honours_end=False), now_ms=binance_now)
    with make_client(handler, clock=lambda: binance_now + 2 * intervals.HOUR_MS) as client:
        kept = closed_opens(client, "1m", T0)
        reading = client.clock_reading
    assert kept == [field(row, 0) for row in rows if field(row, 6) < binance_now]
    assert reading is not None
    assert (reading.host, reading.offset_ms) == ("host0.test", -2 * intervals.HOUR_MS)

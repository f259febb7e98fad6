"""Binance as it really answers, over real HTTP: refusals, Retry-After and bans, trickling bodies.

Two simulators on two ports stand for two base URLs, so failover is real: the counts of each
simulator show which host was asked what.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ost.alerts.policy import LadderConfig
from processes import Processes
from prometheus_client import generate_latest
from test_cli_ingest import ost_env

from ost.binance import BinanceClient
from ost.errors import BinanceUnavailable, HostsBanned
from ost.ledger import Ledger, ledger_path
from ost.metrics import build_registry
from ost.pacing import DEFAULT_BAN_S, MAX_BAN_S, HostBans, WeightPacer, retry_after_s
from ost.sim import SimHandle, running_sim
from ost.urls import host_of

pytestmark = pytest.mark.slow

START = int(dt.datetime(2024, 6, 3, tzinfo=dt.UTC).timestamp() * 1000)
#: How long an `ost` run may take before the test calls it hung: a liveness bound, no speed target.
RUN_TIMEOUT_S = 60
#: A Retry-After far past what a run waits: 27.8 hours.
LONG_RETRY_AFTER = "100000"
WAF = "refused by Binance's WAF"


@pytest.fixture(scope="module")
def other_server() -> Iterator[SimHandle]:
    """A second simulator, on a port of its own: the second base URL."""
    with running_sim() as handle:
        yield handle


@pytest.fixture
def hosts(sim: SimHandle, other_server: SimHandle) -> tuple[SimHandle, SimHandle]:
    """Two simulators, each with default settings, no faults and fresh counters."""
    other_server.restore()
    return sim, other_server


def ost_run(
    processes: Processes, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`ost ARGS` to completion; a run that does not end within a minute fails the test."""
    return processes.run([sys.executable, "-m", "ost.cli", *args], env=env, timeout=RUN_TIMEOUT_S)


def two_hosts_env(first: SimHandle, second: SimHandle, data_dir: Path) -> dict[str, str]:
    """An `ost` environment whose base URLs are ``first`` then ``second``."""
    return ost_env(
        first,
        data_dir,
        OST_BINANCE_BASE_URLS=f"{first.url},{second.url}",
        OST_INITIAL_LOOKBACK_DAYS="1",
    )


def stream_lines(output: str) -> list[str]:
    """The lines of `ost ingest`'s output that report a stream's problem."""
    return [line for line in output.splitlines() if line.startswith(("BTCUSDT ", "ETHUSDT "))]


# ---- refusals: 451 (restricted location) and 403 (WAF) -----------------------------------------


@pytest.mark.parametrize("status", [451, 403])
def test_a_refusing_host_is_failed_over_and_the_working_one_remembered(
    hosts: tuple[SimHandle, SimHandle], status: int
) -> None:
    """A first base URL answering 451 or 403 is asked once; the second serves, and is kept."""
    refusing, working = hosts
    refusing.set_faults(f"refuse:status={status}")
    with BinanceClient([refusing.url, working.url], timeout_s=10) as client:
        first = client.kline_page("BTCUSDT", "1h", START, None)
        second = client.kline_page("BTCUSDT", "1h", START, None)
    assert first.base_url == second.base_url == working.url
    assert refusing.stats()["total"] == 1
    assert refusing.answers("/api/") == {str(status): 1}
    assert working.answers("/api/v3/klines") == {"200": 2}


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (451, ["restricted location", "https://data-api.binance.vision", "market-data-only"]),
        (403, [WAF, "wait a few minutes"]),
    ],
)
def test_every_host_refusing_is_one_line_and_no_retry(
    hosts: tuple[SimHandle, SimHandle],
    tmp_path: Path,
    processes: Processes,
    status: int,
    says: list[str],
) -> None:
    """Every base URL refusing: one line saying so (451 names data-api.binance.vision), exit 1."""
    for host in hosts:
        host.set_faults(f"refuse:status={status}")
    env = two_hosts_env(*hosts, tmp_path)
    result = ost_run(processes, env, "ingest", "--symbols", "BTCUSDT", "--intervals", "1h")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = stream_lines(result.stdout)
    assert line.startswith("BTCUSDT 1h: every base URL refused")
    assert f"HTTP {status}" in line
    for words in says:
        assert words in line
    assert "Check the symbol and interval" not in result.stdout
    assert [host.stats()["total"] for host in hosts] == [1, 1]  # a refusal is not retried


# ---- Retry-After: its forms, and the bound past which a wait is a ban --------------------------

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Fri, 01 May 2026 12:02:00 GMT", 120.0),
        ("Fri, 01 May 2026 12:02:00 -0000", 120.0),
        ("Fri, 01 May 2026 14:02:00 +0200", 120.0),
        ("Thu, 30 Apr 2026 12:00:00 GMT", 0.0),
        (None, 42.0),
        ("", 42.0),
        ("-5", 42.0),
        ("soon", 42.0),
        ("nan", 42.0),
        ("inf", 42.0),
        ("1e3", 42.0),
        ("Fri, 41 May 2026 12:02:00 GMT", 42.0),
        ("9" * 400, MAX_BAN_S),
        (str(10 * 86_400), MAX_BAN_S),
    ],
)
def test_retry_after_reads_seconds_and_dates_and_falls_back(
    value: str | None, seconds: float
) -> None:
    """Seconds or an HTTP date; missing, negative or garbage: the default; a huge one: capped."""
    assert retry_after_s(value, now=NOW, default=42.0) == seconds


def test_a_ban_only_ever_moves_later_in_memory_and_in_the_ledger(tmp_path: Path) -> None:
    """A shorter ban neither shortens a longer one in the client nor in the ledger."""
    now = [1_000_000]
    bans = HostBans(clock_ms=lambda: now[0])
    assert bans.ban("api.binance.com", 2_000_000) is True
    assert bans.ban("api.binance.com", 1_500_000) is False
    assert bans.until("api.binance.com") == 2_000_000
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.record_host_bans(bans.take_unrecorded())
    ledger.record_host_bans({"api.binance.com": 1_200_000})
    assert ledger.host_bans() == {"api.binance.com": 2_000_000}
    assert bans.take_unrecorded() == {}
    later = HostBans(clock_ms=lambda: now[0])
    later.load(ledger.host_bans())
    assert later.until("api.binance.com") == 2_000_000
    now[0] = 2_000_000
    assert later.until("api.binance.com") is None  # over: the host is called again


def http_date(at: dt.datetime) -> str:
    """``at`` as an HTTP date, ``Fri, 01 May 2026 12:00:00 GMT``."""
    return email.utils.format_datetime(at.astimezone(dt.UTC), usegmt=True)


def arm_rate_limit(sim: SimHandle, retry_after: str, count: int | None = 1) -> None:
    """A 429 with ``retry_after`` as its Retry-After (JSON: a date's commas would split SPEC)."""
    sim.set_faults([{"kind": "ratelimit", "retry_after": retry_after, "count": count}])


@pytest.mark.parametrize(
    ("shown", "offset_s", "longest_wait_s"),
    [
        ("negative", None, 1.1),  # the default: the rest of the 1 s weight window
        ("garbage", None, 1.1),
        ("an HTTP date 1 s ahead", 1.0, 1.1),
        ("an HTTP date past", -3600.0, 0.0),
    ],
)
def test_a_short_or_nonsensical_retry_after_is_waited_out_without_raising(
    sim: SimHandle,
    caplog: pytest.LogCaptureFixture,
    shown: str,
    offset_s: float | None,
    longest_wait_s: float,
) -> None:
    """Negative, garbage and HTTP-date Retry-Afters raise nothing: a short wait, then it answers."""
    text = {"negative": "-5", "garbage": "soon"}.get(shown)
    if text is None:
        assert offset_s is not None
        text = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s))
    arm_rate_limit(sim, text)
    pacer = WeightPacer(window_ms=1000)  # Binance's window is a minute; a second here
    caplog.set_level(logging.WARNING, logger="ost.retry")
    with BinanceClient([sim.url], timeout_s=10, pacer=pacer) as client:
        client.sync_time()
    assert sim.answers("/api/v3/time") == {"429": 1, "200": 1}
    [retry] = [record.getMessage() for record in caplog.records if "retry 1" in record.getMessage()]
    waited = float(retry.split(" in ")[1].split(" s ")[0])
    assert 0.0 <= waited <= longest_wait_s


def test_a_retry_after_date_past_the_bound_bans_the_host_without_sleeping(sim: SimHandle) -> None:
    """An HTTP date a day ahead is a ban until then: HostsBanned at once, and no second knock."""
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    arm_rate_limit(sim, http_date(until), count=None)
    with BinanceClient([sim.url], timeout_s=10, max_attempts=3) as client:
        with pytest.raises(HostsBanned, match="banned until"):
            client.sync_time()
        with pytest.raises(HostsBanned, match="not called"):
            client.sync_time()
        banned_until = client.bans.until(host_of(sim.url))
    assert banned_until is not None
    assert abs(banned_until - until.timestamp() * 1000) < 5_000
    assert sim.stats()["total"] == 1


def test_a_418_without_retry_after_is_binances_shortest_ban(sim: SimHandle) -> None:
    """A 418 with no usable Retry-After bans the host for Binance's shortest ban, 2 minutes."""
    sim.set_faults([{"kind": "ratelimit", "status": 418, "retry_after": "never"}])
    with BinanceClient([sim.url], timeout_s=10) as client:
        with pytest.raises(HostsBanned, match="HTTP 418"):
            client.sync_time()
        banned_until = client.bans.until(host_of(sim.url))
        assert banned_until is not None
        assert banned_until - client.local_ms() == pytest.approx(DEFAULT_BAN_S * 1000, abs=5_000)


def test_a_long_retry_after_fails_over_and_the_next_run_leaves_the_host_alone(
    hosts: tuple[SimHandle, SimHandle], tmp_path: Path, processes: Processes
) -> None:
    """429, Retry-After 100000: the run goes on at the next host; no later run asks the first."""
    banning, working = hosts
    banning.set_faults(f"ratelimit:retry_after={LONG_RETRY_AFTER}")
    env = two_hosts_env(banning, working, tmp_path)
    first = ost_run(processes, env, "ingest")
    assert first.returncode == 0, first.stdout + first.stderr
    assert banning.stats()["total"] == 1
    assert f"Retry-After '{LONG_RETRY_AFTER}': no request goes to it before" in first.stderr

    banning.reset()
    working.reset()
    second = ost_run(processes, env, "ingest", "--intervals", "1h")  # a stream not stored yet
    assert second.returncode == 0, second.stdout + second.stderr
    assert banning.stats()["total"] == 0
    assert "/api/v3/klines" not in banning.stats()["requests"]
    assert working.answers("/api/v3/klines").get("200", 0) >= 1

    status = json.loads(ost_run(processes, env, "status", "--json").stdout)
    [ban] = status["host_bans"]
    assert ban["host"] == host_of(banning.url)
    ledger = Ledger(ledger_path(str(tmp_path)))
    scraped = generate_latest(build_registry(ledger, LadderConfig(streams=()))).decode()
    assert f'ost_host_banned_until_seconds{{host="{host_of(banning.url)}"}}' in scraped


def test_a_ban_on_the_only_host_ends_the_run_at_once_in_one_line_each(
    sim: SimHandle, tmp_path: Path, processes: Processes
) -> None:
    """The only host bans for 27.8 h: every stream fails at once, one knock, none the next run."""
    sim.set_faults(f"ratelimit:retry_after={LONG_RETRY_AFTER}")
    env = ost_env(sim, tmp_path, OST_INITIAL_LOOKBACK_DAYS="1")
    for run in range(2):
        result = ost_run(processes, env, "ingest")
        assert result.returncode == 1
        lines = stream_lines(result.stdout)
        assert len(lines) == 4  # BTCUSDT and ETHUSDT, 1m and 15m
        assert all("every base URL is banned" in line for line in lines)
        assert all("banned until" in line for line in lines)
        assert sim.stats()["total"] == 1 - run  # the first run knocked once, the next not at all
        sim.reset()
    status = ost_run(processes, env, "status")
    assert f"host bans: {host_of(sim.url)} until" in status.stdout


# ---- a body that trickles in ------------------------------------------------------------------


def test_the_trickle_fault_sends_the_headers_then_a_few_bytes_at_a_time(sim: SimHandle) -> None:
    """`trickle:bps=4`: the status at once, then the body in pieces of two bytes."""
    sim.set_faults("trickle:bps=4")
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{sim.url}/api/v3/time") as response,
    ):
        assert response.status_code == 200
        first = next(response.iter_raw())
    assert 1 <= len(first) <= 2


def test_a_trickling_body_is_cut_at_the_timeout(sim: SimHandle) -> None:
    """A klines body at 2 bytes/s (some 20 hours) fails at OST_HTTP_TIMEOUT_S, as a timeout."""
    with BinanceClient([sim.url], timeout_s=1, max_attempts=1) as client:
        client.kline_page("BTCUSDT", "1h", START, None)  # the clock and the limits, learnt
        sim.set_faults("trickle:bps=2")
        with pytest.raises(BinanceUnavailable, match="OST_HTTP_TIMEOUT_S=1 s") as info:
            client.kline_page("BTCUSDT", "1h", START, None)
    assert "timed out" in str(info.value)
    assert sim.answers("/api/v3/klines") == {"200": 2}  # it did answer: headers, then a trickle


def test_ost_ingest_against_a_trickling_host_ends_with_one_line_per_stream(
    sim: SimHandle, tmp_path: Path, processes: Processes
) -> None:
    """`ost ingest` from a host whose bodies trickle ends (exit 1), each stream timed out."""
    sim.set_faults("trickle:bps=2")
    env = ost_env(sim, tmp_path, OST_HTTP_TIMEOUT_S="1", OST_MAX_ATTEMPTS="1")
    result = ost_run(processes, env, "ingest", "--symbols", "BTCUSDT", "--intervals", "1h")
    assert result.returncode == 1
    [line] = stream_lines(result.stdout)
    assert "timed out: no whole answer within OST_HTTP_TIMEOUT_S=1 s" in line

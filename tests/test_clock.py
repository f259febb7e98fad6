"""Closed by two clocks, over real HTTP: a /api/v3/time that lies by ±2 h, a local clock ahead."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from commands import ost
from ost.alerts.policy import LadderConfig
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_ingest import EARLY_CLOSE_MS, NOW, expected, lookback_start

from ost import clock, intervals, klines
from ost.backfill import repair
from ost.binance import BinanceClient
from ost.clock import ClockReading, LocalClock, system_ms
from ost.ingest import ingest_all
from ost.ledger import Ledger, ledger_path
from ost.metrics import build_registry
from ost.settings import DEFAULT_MAX_CLOCK_SKEW
from ost.sim import SimHandle
from ost.sim import klines as sim_klines
from ost.sim.faults import parse_faults
from ost.store import CandleStore

pytestmark = pytest.mark.usefixtures("fast_retries")

#: How far the lying ``/api/v3/time`` is off, in seconds (the issue's 2 hours, both ways).
LIES_S = [7200, -7200]
STREAMS = [("BTCUSDT", interval) for interval in ("1m", "15m", "1h")]
#: The measure of a skew errs by up to half a round trip; on 127.0.0.1 that is far below this.
MEASURE_SLACK_MS = 1_000
WARNING = "ost: warning: clock skew: "


def clock_like_the_sim(offset_ms: int) -> LocalClock:
    """A local clock that reads the simulator's time plus ``offset_ms`` (its clock offset)."""
    return lambda: system_ms() + offset_ms


def client_for(sim: SimHandle, local_offset_ms: int) -> BinanceClient:
    """A client of the simulator whose local clock is ``local_offset_ms`` off the real time."""
    return BinanceClient([sim.url], timeout_s=5.0, clock=clock_like_the_sim(local_offset_ms))


def final_candles(symbol: str, interval: str, stored: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    """The simulator's candles at ``now_ms`` from the first stored open time to the last."""
    opens = klines.open_time_ms(stored)
    rows = sim_klines(symbol, interval, int(opens[0]), int(opens[-1]) + 1, now_ms)
    return klines.parse_rows(rows, interval)


# ---- the rule itself --------------------------------------------------------------------------


def test_a_candle_halted_early_is_open_until_its_interval_ends() -> None:
    """A 1h candle whose close_time came early (a halt) is closed only once its hour is over."""
    hour = intervals.align("1h", EARLY_CLOSE_MS)  # 2023-03-24 12:00 UTC: the halt's hour
    opens = np.array([hour], dtype=np.int64)
    closes = np.array([EARLY_CLOSE_MS], dtype=np.int64)  # the real 12:39 candle's close_time
    assert not clock.closed_mask("1h", opens, closes, hour + 50 * intervals.MINUTE_MS).any()
    assert clock.closed_mask("1h", opens, closes, hour + intervals.HOUR_MS).all()


def test_the_earlier_clock_is_now_whichever_it_is() -> None:
    """Binance ahead: the local clock; Binance behind: Binance's; never measured: the local."""
    assert clock.earlier_now(1_000_000, 7_200_000) == 1_000_000
    assert clock.earlier_now(8_200_000, -7_200_000) == 1_000_000
    assert clock.earlier_now(1_000_000, None) == 1_000_000


def test_a_skew_label_is_the_host_without_credentials() -> None:
    """User, password, path and query never reach a label; a default port is left out."""
    assert clock.host_of("https://user:s3cret@proxy.example:8443/api?key=x") == "proxy.example:8443"
    assert clock.host_of("https://api.binance.com") == "api.binance.com"


# ---- the simulator's knob ---------------------------------------------------------------------


def test_the_clock_fault_moves_server_time_only(sim: SimHandle) -> None:
    """`clock:offset=-7200`: /api/v3/time is 2 h behind the simulator; candles keep its time."""
    assert parse_faults("clock:offset=-7200")[0].offset == -7200.0
    sim.set_faults("clock:offset=-7200")
    with httpx.Client(base_url=sim.url) as http:
        before = sim.now_ms()
        lied = http.get("/api/v3/time").json()["serverTime"]
        after = sim.now_ms()
        page = http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"}).json()
    assert before - 2 * intervals.HOUR_MS <= lied <= after - 2 * intervals.HOUR_MS
    assert intervals.align("1m", before) <= page[-1][0] <= after  # the open candle: true time


# ---- ingestion under a lying /api/v3/time, and a local clock ahead ------------------------------


@pytest.mark.parametrize("lie_s", LIES_S)
def test_a_lying_server_time_stores_no_open_candle(
    sim: SimHandle, tmp_path: Path, lie_s: int
) -> None:
    """1m, 15m, 1h hold exactly the final candles by the earlier clock; a repair then completes."""
    offset = sim.configure(now_ms=NOW)["clock_offset_ms"]
    sim.set_faults(f"clock:offset={lie_s}")
    store = CandleStore(str(tmp_path))
    ran_at = NOW + min(0, lie_s * 1000)  # the earlier of the two clocks
    with client_for(sim, offset) as client:
        outcomes = ingest_all(client, store, STREAMS, lookback_days=1)
        reading = client.clock_reading
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert reading is not None
    assert abs(reading.offset_ms - lie_s * 1000) < MEASURE_SLACK_MS
    assert reading.warning(DEFAULT_MAX_CLOCK_SKEW) is not None
    truly_now = sim.now_ms()
    for symbol, interval in STREAMS:
        stored = store.load_klines(symbol, interval)
        want = expected(symbol, interval, lookback_start(interval, ran_at, 1), ran_at)
        assert klines.rows_equal(stored, want), (lie_s, interval)
        assert (klines.close_time_ms(stored) < truly_now).all()
    sim.clear_faults()
    with client_for(sim, offset) as client:
        outcome = repair(client, store, STREAMS, ran_at - intervals.DAY_MS, NOW)
    assert outcome.exit_status() == 0, outcome.report.to_markdown()
    for symbol, interval in STREAMS:
        want = expected(symbol, interval, lookback_start(interval, ran_at, 1), NOW)
        assert klines.rows_equal(store.load_klines(symbol, interval), want), (lie_s, interval)


def test_a_local_clock_two_hours_ahead_stores_no_open_candle(
    sim: SimHandle, tmp_path: Path
) -> None:
    """The local clock 2 h ahead of an honest Binance: ingestion runs on Binance's, exactly."""
    offset = sim.configure(now_ms=NOW)["clock_offset_ms"]
    store = CandleStore(str(tmp_path))
    with client_for(sim, offset + 2 * intervals.HOUR_MS) as client:
        outcomes = ingest_all(client, store, STREAMS, lookback_days=1)
        reading = client.clock_reading
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert reading is not None
    assert abs(reading.offset_ms + 2 * intervals.HOUR_MS) < MEASURE_SLACK_MS
    for symbol, interval in STREAMS:
        want = expected(symbol, interval, lookback_start(interval, NOW, 1), NOW)
        assert klines.rows_equal(store.load_klines(symbol, interval), want), interval


# ---- what an operator sees --------------------------------------------------------------------


def ost_env(sim: SimHandle, data_dir: Path, **extra: str) -> dict[str, str]:
    """An `ost` subprocess against the simulator: BTCUSDT 1m, 15m, 1h, 0.1 day of lookback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "PREFECT_API"))}
    env.update(
        OST_BINANCE_BASE_URLS=sim.url,
        OST_ARCHIVE_BASE_URL=sim.url,
        OST_DATA_DIR=str(data_dir),
        OST_SYMBOLS="BTCUSDT",
        OST_INTERVALS="1m,15m,1h",
        OST_INITIAL_LOOKBACK_DAYS="0.1",
        OST_HTTP_TIMEOUT_S="5",
        **extra,
    )
    return env


def warnings_in(stderr: str) -> list[str]:
    """The clock-skew warning lines of a run."""
    return [line for line in stderr.splitlines() if line.startswith(WARNING)]


def skew_metric(data_dir: Path) -> dict[str, float]:
    """``ost_clock_skew_seconds`` by host, as Prometheus would scrape it."""
    registry = build_registry(Ledger(ledger_path(str(data_dir))), LadderConfig(streams=()))
    text = generate_latest(registry).decode()
    return {
        sample.labels["host"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "ost_clock_skew_seconds"
        for sample in family.samples
    }


def assert_store_is_the_sims_closed_candles(data_dir: Path, before_ms: int, after_ms: int) -> None:
    """Each stream: the simulator's final candles, without a hole, up to the last closed one.

    The run judged "closed" at some instant between ``before_ms`` and ``after_ms``.
    """
    store = CandleStore(str(data_dir))
    for symbol, interval in STREAMS:
        stored = store.load_klines(symbol, interval)
        assert klines.rows_equal(stored, final_candles(symbol, interval, stored, after_ms))
        next_open = intervals.next_open(interval, int(klines.open_time_ms(stored)[-1]))
        stop_before, stop_after = (clock.closed_stop(interval, t) for t in (before_ms, after_ms))
        assert stop_before <= next_open <= stop_after, interval


@pytest.mark.slow
@pytest.mark.parametrize("lie_s", LIES_S)
def test_the_commands_warn_of_a_lying_server_time(
    sim: SimHandle, tmp_path: Path, lie_s: int
) -> None:
    """ping, ingest, backfill warn, status shows the skew; no open candle; a repair completes."""
    env = ost_env(sim, tmp_path)
    sim.set_faults(f"clock:offset={lie_s}")
    side = "ahead of" if lie_s > 0 else "behind"

    ping = ost("ping", env=env)
    assert ping.returncode == 0, ping.stderr
    assert len(warnings_in(ping.stderr)) == 1, ping.stderr
    said = re.search(rf"is (\d+\.\d) s {side} the local clock", ping.stderr)
    assert said is not None, ping.stderr
    assert abs(float(said[1]) - abs(lie_s)) < MEASURE_SLACK_MS / 1000
    row = next(line for line in ping.stdout.splitlines() if sim.url in line)
    numbers = [int(token) for token in re.findall(r"-?\d+", row.replace(sim.url, ""))]
    assert any(abs(number - lie_s * 1000) < MEASURE_SLACK_MS for number in numbers), row
    assert "skewed" in row

    ingest = ost("ingest", env=env)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert len(warnings_in(ingest.stderr)) == 1, ingest.stderr
    backfill = ost("backfill", "--interval", "all", "--days", "0.1", "--source", "api", env=env)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert len(warnings_in(backfill.stderr)) == 1, backfill.stderr
    truly_now = sim.now_ms()
    store = CandleStore(str(tmp_path))
    for symbol, interval in STREAMS:
        stored = store.load_klines(symbol, interval)
        assert (klines.close_time_ms(stored) < truly_now).all(), interval
        assert klines.rows_equal(stored, final_candles(symbol, interval, stored, truly_now))

    status = ost("status", env=env)
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("clock skew:"))
    shown = re.match(r"clock skew: ([+-]\d+\.\d) s \(Binance's clock at (\S+) minus", line)
    assert shown is not None, line
    assert abs(float(shown[1]) - lie_s) < MEASURE_SLACK_MS / 1000
    assert shown[2] == clock.host_of(sim.url)
    assert line.endswith("over OST_MAX_CLOCK_SKEW=5s: check this host's NTP and `ost ping`")
    [(host, seconds)] = skew_metric(tmp_path).items()
    assert host == clock.host_of(sim.url)
    assert abs(seconds - lie_s) < MEASURE_SLACK_MS / 1000

    sim.clear_faults()
    before = sim.now_ms()
    # Twice the lookback: the range holds all that the ingestion stored, or lagged behind on.
    repaired = ost("gaps", "--interval", "all", "--days", "0.2", "--repair", env=env)
    after = sim.now_ms()
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert warnings_in(repaired.stderr) == []
    assert_store_is_the_sims_closed_candles(tmp_path, before, after)


@pytest.mark.slow
def test_the_gap_check_uses_the_recorded_skew_without_asking_binance(
    sim: SimHandle, tmp_path: Path
) -> None:
    """`ost gaps` alone asks nothing, yet warns of the skew last recorded, on the earlier clock."""
    env = ost_env(sim, tmp_path)
    sim.set_faults("clock:offset=-7200")
    assert ost("ingest", env=env).returncode == 0
    sim.reset()
    checked = ost("gaps", "--interval", "1h", "--days", "0.1", "--json", env=env)
    assert sim.stats()["total"] == 0  # no request: it works while Binance is down
    assert len(warnings_in(checked.stderr)) == 1, checked.stderr
    assert "as last measured" in checked.stderr
    assert checked.returncode == 0, checked.stdout  # by Binance's clock, 2 h behind: complete


@pytest.mark.slow
@pytest.mark.parametrize("value", ["soon", "-5s", "0"])
def test_a_bad_max_clock_skew_is_one_line_and_exit_2(
    sim: SimHandle, tmp_path: Path, value: str
) -> None:
    """OST_MAX_CLOCK_SKEW that is not a positive duration: named on one line, exit 2, no request."""
    result = ost("ingest", env=ost_env(sim, tmp_path, OST_MAX_CLOCK_SKEW=value))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("ost: error: OST_MAX_CLOCK_SKEW: ")
    assert sim.stats()["total"] == 0


def test_a_skew_within_the_limit_warns_nothing() -> None:
    """3 s of skew is within the default 5 s; 6 s is not."""
    assert ClockReading("api.binance.com", 3_000).warning(DEFAULT_MAX_CLOCK_SKEW) is None
    assert ClockReading("api.binance.com", -6_000).warning(DEFAULT_MAX_CLOCK_SKEW) is not None

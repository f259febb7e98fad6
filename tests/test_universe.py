"""The whole market: `all` and patterns in OST_SYMBOLS, the listing kept, symbols that stop."""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from pathlib import Path

import pytest
from commands import in_process_runtime, ost
from test_cli_ingest import ost_env

from ost import intervals
from ost.binance import BinanceClient
from ost.errors import BadInput
from ost.sim import SimHandle
from ost.sim.symbols import utc_ms
from ost.store import CandleStore
from ost.universe import Selection, Universe

pytestmark = pytest.mark.slow

NOW = utc_ms("2026-11-20T10:07:30")
HOUR = intervals.HOUR_MS


def spot_symbols(sim: SimHandle) -> dict[str, str]:
    """Binance's raw exchangeInfo, as the simulator answers it: spot symbol -> status."""
    with sim.client() as http:
        listed = http.get("/api/v3/exchangeInfo").json()["symbols"]
    return {
        entry["symbol"]: entry["status"]
        for entry in listed
        if entry["isSpotTradingAllowed"] or any("SPOT" in s for s in entry["permissionSets"])
    }


def trading_matches(sim: SimHandle, pattern: str) -> list[str]:
    """The spot symbols trading that the shell glob ``pattern`` matches, sorted (fnmatch)."""
    return sorted(
        symbol
        for symbol, status in spot_symbols(sim).items()
        if status == "TRADING" and fnmatch.fnmatchcase(symbol, pattern)
    )


def exchange_info_calls(sim: SimHandle) -> int:
    """How many exchangeInfo requests the simulator answered since its last reset."""
    return sum(sim.stats()["requests"].get("/api/v3/exchangeInfo", {}).values())


def env_for(sim: SimHandle, data_dir: Path, **extra: str) -> dict[str, str]:
    """An `ost` environment: the simulator, 1h candles, a day of lookback."""
    settings = {"OST_INTERVALS": "1h", "OST_INITIAL_LOOKBACK_DAYS": "1"}
    # The simulator's clock is set in the past (NOW): no clock-skew warning for that.
    return ost_env(sim, data_dir, **settings, OST_MAX_CLOCK_SKEW="1000d", **extra)


def stored_symbols(data_dir: Path) -> list[str]:
    """The symbols of the streams in the store, sorted."""
    return sorted({symbol for symbol, _ in CandleStore(str(data_dir)).streams()})


def test_all_is_every_spot_symbol_trading(sim: SimHandle, tmp_path: Path) -> None:
    """`all` resolves to exactly exchangeInfo's spot symbols whose status is TRADING."""
    sim.configure(now_ms=NOW)
    expected = sorted(s for s, status in spot_symbols(sim).items() if status == "TRADING")
    with BinanceClient([sim.url]) as client:
        universe = Universe(tmp_path / "spot-symbols.json", client, ttl=dt.timedelta(hours=1))
        resolved = universe.resolve(Selection.of(["all"]))
    assert resolved == expected
    assert len(resolved) == 1500


def test_all_through_ost_gaps(sim: SimHandle, tmp_path: Path) -> None:
    """`ost gaps --symbols all`: one exchangeInfo request, then 1,500 streams checked."""
    sim.configure(now_ms=NOW)
    sim.reset()
    env = env_for(sim, tmp_path)
    result = ost("gaps", "--interval", "1d", "--days", "1", "--symbols", "all", "--json", env=env)
    assert result.returncode in {0, 3}, result.stderr
    report = json.loads(result.stdout)
    symbols = sorted({stream["symbol"] for stream in report["streams"]})
    assert sim.stats()["requests"] == {"/api/v3/exchangeInfo": {"200": 1}}
    assert symbols == sorted(s for s, status in spot_symbols(sim).items() if status == "TRADING")


def test_patterns_and_plain_symbols_mix_in_order(sim: SimHandle, tmp_path: Path) -> None:
    """`ETHUSDT,SOL*,BTC*`: ETHUSDT, then each pattern's trading matches, each symbol once."""
    sim.configure(now_ms=NOW)
    result = ost("ingest", "--symbols", "ETHUSDT,SOL*,BTC*,SOLUSDT", env=env_for(sim, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    expected = list(
        dict.fromkeys(
            ["ETHUSDT", *trading_matches(sim, "SOL*"), *trading_matches(sim, "BTC*"), "SOLUSDT"]
        )
    )
    assert len(expected) > 4
    rows = [line.split("│")[1].strip() for line in result.stdout.splitlines() if "│ 1h" in line]
    assert rows == expected
    assert stored_symbols(tmp_path) == sorted(expected)


def test_question_mark_matches_one_character(sim: SimHandle, tmp_path: Path) -> None:
    """`???BTC` is every trading spot symbol of three letters quoted in BTC."""
    sim.configure(now_ms=NOW)
    expected = trading_matches(sim, "???BTC")
    with BinanceClient([sim.url]) as client:
        universe = Universe(tmp_path / "spot-symbols.json", client, ttl=dt.timedelta(hours=1))
        assert universe.resolve(Selection.of(["???BTC"])) == expected
    assert expected
    assert all(len(symbol) == 6 for symbol in expected)


def test_the_second_run_within_the_ttl_asks_no_exchange_info(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Two runs with a pattern: one exchangeInfo in all (symbols and rate limits); TTL 0: two."""
    sim.configure(now_ms=NOW)
    sim.reset()
    env = env_for(sim, tmp_path, OST_SYMBOLS="SOL*")
    for _ in range(2):
        result = ost("ingest", env=env)
        assert result.returncode == 0, result.stderr
    assert exchange_info_calls(sim) == 1
    result = ost("ingest", env={**env, "OST_EXCHANGE_INFO_TTL": "0s"})
    assert result.returncode == 0, result.stderr
    assert exchange_info_calls(sim) == 2
    listing = json.loads((tmp_path / "state" / "spot-symbols.json").read_text())
    assert listing["symbols"] == spot_symbols(sim)


def test_symbols_that_stop_end_their_streams_and_the_others_go_on(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Delisted and BREAK within the TTL: one line per stream, exit 0; then no longer selected."""
    sim.configure(now_ms=NOW)
    env = env_for(sim, tmp_path, OST_SYMBOLS="SOL*")
    assert trading_matches(sim, "SOL*") == ["SOLTRY", "SOLUSDC", "SOLUSDT"]
    assert ost("ingest", env=env).returncode == 0
    sim.configure(stopped="SOLTRY=DELISTED,SOLUSDC=BREAK")
    sim.configure(now_ms=NOW + 2 * HOUR)

    result = ost("ingest", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(result.stderr.splitlines()) == [
        "SOLTRY 1h: no longer trading (delisted); stream ended",
        "SOLUSDC 1h: no longer trading (BREAK); stream ended",
    ]
    store = CandleStore(str(tmp_path))
    newest = {s: store.last_open_time(s, "1h") for s in ("SOLTRY", "SOLUSDC", "SOLUSDT")}
    assert newest["SOLUSDT"] == intervals.align("1h", NOW + 2 * HOUR) - HOUR
    assert newest["SOLUSDC"] == intervals.align("1h", NOW), result.stdout  # the hour it stopped in
    assert newest["SOLTRY"] == intervals.align("1h", NOW) - HOUR

    asked = {symbol: sim.klines_of(symbol) for symbol in ("SOLTRY", "SOLUSDC", "SOLUSDT")}
    sim.configure(now_ms=NOW + 3 * HOUR)
    again = ost("ingest", env=env)
    assert again.returncode == 0
    assert again.stderr == ""  # the listing kept says they stopped: SOL* selects SOLUSDT alone
    assert sim.klines_of("SOLTRY") == asked["SOLTRY"]
    assert sim.klines_of("SOLUSDC") == asked["SOLUSDC"]
    assert sim.klines_of("SOLUSDT") > asked["SOLUSDT"]

    status = json.loads(ost("status", "--json", env=env).stdout)
    assert [s["symbol"] for s in status["streams"]] == ["SOLUSDT"]  # the ladder's: no alert
    assert status["ended_streams"] == [
        {"symbol": "SOLTRY", "interval": "1h", "why": "delisted"},
        {"symbol": "SOLUSDC", "interval": "1h", "why": "BREAK"},
    ]
    shown = ost("status", env=env).stdout
    assert "ended: SOLUSDC 1h: no longer trading (BREAK)" in shown


def test_an_explicit_symbol_that_stopped_is_one_line_and_exit_0(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A plain symbol that is BREAK: one line, exit 0, BTCUSDT ingested; again, no exchangeInfo."""
    sim.configure(now_ms=NOW)
    stopped = next(s for s, status in spot_symbols(sim).items() if status == "BREAK")
    line = f"{stopped} 1h: no longer trading (BREAK); stream ended"
    env = env_for(sim, tmp_path, OST_SYMBOLS=f"BTCUSDT,{stopped}")
    result = ost("ingest", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines() == [line]
    assert stored_symbols(tmp_path) == ["BTCUSDT"]
    asked = exchange_info_calls(sim)
    again = ost("ingest", env=env)
    assert (again.returncode, again.stderr.splitlines()) == (0, [line])
    assert exchange_info_calls(sim) == asked  # the listing kept says BREAK: enough
    status = json.loads(ost("status", "--json", env=env).stdout)
    assert [s["symbol"] for s in status["streams"]] == ["BTCUSDT"]
    assert status["ended_streams"] == [{"symbol": stopped, "interval": "1h", "why": "BREAK"}]


@pytest.mark.parametrize("pattern", ["[", "../x", "*usdt", "BTC?[", "*" + "A" * 21, "?"])
def test_bad_patterns_exit_2_before_any_request_or_write(
    sim: SimHandle, tmp_path: Path, pattern: str
) -> None:
    """A pattern Binance symbols can never match: one line, exit 2, nothing asked or written."""
    data_dir = tmp_path / "data"
    sim.reset()
    for args, extra in (
        (["ingest", "--symbols", pattern], {}),
        (["ingest"], {"OST_SYMBOLS": f"BTCUSDT,{pattern}"}),
        (["backfill", "--interval", "1h", "--days", "1", "--symbols", pattern], {}),
    ):
        result = ost(*args, env=env_for(sim, data_dir, **extra))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("ost: error: ")
    assert sim.stats()["total"] == 0
    assert not data_dir.exists()


def test_a_pattern_that_matches_nothing_exits_2_after_one_request(
    sim: SimHandle, tmp_path: Path
) -> None:
    """`*QQQQ` matches no spot symbol: one line naming it, exit 2, only exchangeInfo asked."""
    data_dir = tmp_path / "data"
    sim.reset()
    result = ost("ingest", "--symbols", "BTCUSDT,*QQQQ", env=env_for(sim, data_dir))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "'*QQQQ' matches no spot symbol" in result.stderr
    assert sim.stats()["requests"] == {"/api/v3/exchangeInfo": {"200": 1}}
    assert not data_dir.exists()


def test_backfill_resolves_a_pattern(sim: SimHandle, tmp_path: Path) -> None:
    """`ost backfill --symbols BTC*` fills the day for each trading match."""
    sim.configure(now_ms=NOW)
    env = env_for(sim, tmp_path)
    args = ("backfill", "--interval", "1h", "--start", "2026-11-01", "--end", "2026-11-01")
    result = ost(*args, "--symbols", "BTC*", "--source", "api", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    store = CandleStore(str(tmp_path))
    for symbol in trading_matches(sim, "BTC*"):
        assert len(store.load_klines(symbol, "1h")) == 24, symbol


def test_a_bad_ttl_exits_2(sim: SimHandle, tmp_path: Path) -> None:
    """OST_EXCHANGE_INFO_TTL beyond a day, or not a duration: named on one line, exit 2."""
    for value in ("2d", "soon"):
        result = ost("ingest", env=env_for(sim, tmp_path, OST_EXCHANGE_INFO_TTL=value))
        assert result.returncode == 2
        assert result.stderr.startswith("ost: error: OST_EXCHANGE_INFO_TTL: ")


def test_a_selection_reads_items_as_written() -> None:
    """`all`, patterns and symbols are told apart; a lower-case pattern is refused."""
    selection = Selection.of(["BTCUSDT", "*FDUSD", "all", "BTCUSDT"])
    assert selection.items == ("BTCUSDT", "*FDUSD", "all")
    assert selection.plain == ("BTCUSDT",)
    assert selection.patterns == ("*FDUSD", "all")
    assert selection.selects("ETHFDUSD")
    with pytest.raises(BadInput, match="upper case"):
        Selection.of(["*fdusd"])


def test_the_ingest_flow_resolves_a_pattern_once_and_ends_a_stopped_stream(
    prefect_server: None, sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ingest-all with `SOL*` and a BREAK symbol: Completed, SOL* stored, one exchangeInfo."""
    from ost.flows.ingest import ingest_all

    stopped = next(s for s, status in spot_symbols(sim).items() if status == "BREAK")
    sim.reset()
    env = env_for(sim, tmp_path, OST_SYMBOLS=f"SOL*,{stopped}")
    settings = {name: value for name, value in env.items() if name.startswith("OST_")}
    with in_process_runtime(monkeypatch, settings):
        state = ingest_all(return_state=True)
    assert state.is_completed(), state.message
    assert sim.stats()["requests"]["/api/v3/exchangeInfo"] == {"200": 1}
    assert sim.klines_of(stopped) >= 1
    assert stored_symbols(tmp_path) == trading_matches(sim, "SOL*")

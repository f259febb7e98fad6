"""The flows against a real (temporary) Prefect server and the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
from test_ingest import NOW

from ost import intervals, klines
from ost.args import parse_time
from ost.ledger import FAILURES
from ost.runtime import current_runtime
from ost.sim import SimHandle
from ost.sim import klines as sim_klines
from ost.store import CandleStore

pytestmark = pytest.mark.slow


@pytest.fixture
def settings_env(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """OST_* settings pointing at the simulator and a fresh data dir; a fresh runtime."""
    sim.configure(now_ms=NOW)
    for name, value in {
        "OST_BINANCE_BASE_URLS": sim.url,
        "OST_ARCHIVE_BASE_URL": sim.url,
        "OST_DATA_DIR": str(tmp_path),
        "OST_SYMBOLS": "BTCUSDT,ETHUSDT",
        "OST_INTERVALS": "1h,1d",
        "OST_INITIAL_LOOKBACK_DAYS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    current_runtime.cache_clear()
    with stamina.set_testing(True, attempts=2, cap=True):
        yield tmp_path
    current_runtime().close()
    current_runtime.cache_clear()


def expected(symbol: str, interval: str, stored_first_ms: int, now_ms: int = NOW) -> Any:
    """The simulator's closed candles from ``stored_first_ms`` to ``now_ms``."""
    end = intervals.align(interval, now_ms)
    return klines.parse_rows(sim_klines(symbol, interval, stored_first_ms, end, now_ms), interval)


def test_ingest_all_flow_stores_every_stream(prefect_server: None, settings_env: Path) -> None:
    """ingest-all: one task per stream, Completed, every stream equal to Binance's candles."""
    from ost.flows.ingest import ingest_all

    state = ingest_all(return_state=True)
    assert state.is_completed(), state.message
    store = CandleStore(str(settings_env))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for interval in ("1h", "1d"):
            stored = store.load_klines(symbol, interval)
            first = int(klines.open_time_ms(stored)[0])
            assert klines.rows_equal(stored, expected(symbol, interval, first))
    ledger = current_runtime().ledger
    assert all(state.last_success_at for state in ledger.stream_states().values())


def test_ingest_all_fails_after_all_streams_ran(prefect_server: None, settings_env: Path) -> None:
    """A failing stream fails the run, the others are stored, and the failure counts once."""
    from ost.flows.ingest import ingest_all

    state = ingest_all(symbols=["NOSUCHUSDT", "BTCUSDT"], intervals=["1h"], return_state=True)
    assert state.is_failed()
    assert "NOSUCHUSDT 1h" in (state.message or "")
    assert len(CandleStore(str(settings_env)).load_klines("BTCUSDT", "1h")) == 48
    ledger = current_runtime().ledger
    failures = ledger.counters(FAILURES)
    assert sum(failures.values()) == 1
    assert ledger.stream_states()[("BTCUSDT", "1h")].last_success_at is not None


def test_backfill_flow_fills_and_skips_what_is_stored(
    prefect_server: None, settings_env: Path, sim: SimHandle
) -> None:
    """backfill: 2 days of 1h stored; a second run asks Binance for no candle."""
    from ost.flows.backfill import backfill

    sim.restore()  # backfill --days counts back from the real clock

    assert backfill(
        interval="1h", days=2, symbols=["BTCUSDT"], source="api", return_state=True
    ).is_completed()
    stored = CandleStore(str(settings_env)).load_klines("BTCUSDT", "1h")
    first = int(klines.open_time_ms(stored)[0])
    assert klines.rows_equal(stored, expected("BTCUSDT", "1h", first, sim.now_ms()))
    sim.reset()
    assert backfill(
        interval="1h", days=2, symbols=["BTCUSDT"], source="api", return_state=True
    ).is_completed()
    assert "/api/v3/klines" not in sim.stats()["requests"]


def test_check_gaps_flow_reports_and_repairs(prefect_server: None, settings_env: Path) -> None:
    """check-gaps: an empty store has gaps; repair=True fills them and the run completes."""
    from ost.flows.gaps import check_gaps

    report_only = check_gaps(interval="1d", days=5, symbols=["BTCUSDT"], return_state=True)
    assert report_only.is_completed()
    assert "missing" in (report_only.message or "")
    repaired = check_gaps(
        interval="1d", days=5, symbols=["BTCUSDT"], repair=True, return_state=True
    )
    assert repaired.is_completed(), repaired.message
    assert repaired.message.startswith("0 candles missing")


def test_tasks_run_without_a_server(settings_env: Path) -> None:
    """The task's .fn() is the plain core: it stores a stream with no Prefect server."""
    from ost.tasks.ingest import ingest_stream_task

    result = ingest_stream_task.fn("ETHUSDT", "1d")
    assert result["written"] == 2
    assert result["symbol"] == "ETHUSDT"


# ---- ranges read as people mean them, and "ok" only when complete (issue 9) --------------------

HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))


def served_day(interval: str) -> Any:
    """The simulator's own BTCUSDT candles of 2023-03-24."""
    return klines.parse_rows(sim_klines("BTCUSDT", interval, *HALT_DAY, NOW), interval)


def test_backfill_flow_end_is_inclusive_and_a_date_is_the_whole_day(
    prefect_server: None, settings_env: Path
) -> None:
    """backfill: end 23:59:00Z holds the 23:59 candle; end "2023-03-24" holds the day's 24 hours."""
    from ost.flows.backfill import backfill

    minute = backfill(
        interval="1m",
        start="2023-03-24T00:00:00Z",
        end="2023-03-24T23:59:00Z",
        symbols=["BTCUSDT"],
        source="api",
        return_state=True,
    )
    hour = backfill(
        interval="1h",
        start="2023-03-24",
        end="2023-03-24",
        symbols=["BTCUSDT"],
        source="api",
        return_state=True,
    )
    assert minute.is_completed(), minute.message
    assert hour.is_completed(), hour.message
    store = CandleStore(str(settings_env))
    for interval in ("1m", "1h"):
        stored = store.load_klines("BTCUSDT", interval)
        assert int(klines.open_time_ms(stored)[-1]) == intervals.align(interval, HALT_DAY[1] - 1)
        assert klines.rows_equal(stored, served_day(interval))


def test_check_gaps_flow_repairs_a_whole_day_and_records_the_halt_with_evidence(
    prefect_server: None, settings_env: Path, sim: SimHandle
) -> None:
    """check-gaps with a date as start and end: 1440 minutes checked, the halt proven."""
    from ost.flows.gaps import check_gaps

    from ost.gaps import ExchangeGapLog

    state = check_gaps(
        interval="1m",
        start="2023-03-24",
        end="2023-03-24",
        symbols=["BTCUSDT"],
        repair=True,
        return_state=True,
    )
    assert state.is_completed(), state.message
    store = CandleStore(str(settings_env))
    assert klines.rows_equal(store.load_klines("BTCUSDT", "1m"), served_day("1m"))
    recorded, _ = ExchangeGapLog.of(store).entries("BTCUSDT", "1m")
    assert [(gap.candles[1] - gap.candles[0]) // intervals.MINUTE_MS for gap in recorded] == [80]
    assert recorded[0].evidence.host == sim.url


def test_check_gaps_flow_recheck_undoes_a_wrong_record(
    prefect_server: None, settings_env: Path
) -> None:
    """recheck=True forgets a recorded gap that Binance has candles for, and stores them.

    The halt's hour 13:00, which Binance has no candle for, is recorded again, with evidence.
    """
    from ost.flows.gaps import check_gaps

    from ost.gaps import Evidence, ExchangeGapLog, ProvenGap

    store = CandleStore(str(settings_env))
    wrong = (HALT_DAY[0], HALT_DAY[0] + 3 * intervals.HOUR_MS)
    fake = Evidence("http://wrong.test", "/api/v3/klines?startTime=0", wrong[1], wrong[1])
    ExchangeGapLog.of(store).record("BTCUSDT", "1h", [ProvenGap(wrong, fake)])
    state = check_gaps(
        interval="1h",
        start="2023-03-24",
        end="2023-03-24",
        symbols=["BTCUSDT"],
        recheck=True,
        return_state=True,
    )
    assert state.is_completed(), state.message
    served = served_day("1h")
    hours = range(HALT_DAY[0], HALT_DAY[1], intervals.HOUR_MS)
    absent = [hour for hour in hours if hour not in set(klines.open_time_ms(served).tolist())]
    assert absent == [parse_time("2023-03-24T13:00")]  # the halt's one whole hour: really absent
    assert ExchangeGapLog.of(store).load("BTCUSDT", "1h") == [(absent[0], absent[0] + 3600_000)]
    assert klines.rows_equal(store.load_klines("BTCUSDT", "1h"), served)


def test_backfill_flow_fails_on_an_incomplete_stream(
    prefect_server: None, settings_env: Path, sim: SimHandle
) -> None:
    """Under `200 []` the backfill run fails, saying why; nothing is recorded exchange-side."""
    from ost.flows.backfill import backfill

    from ost.gaps import ExchangeGapLog

    sim.set_faults("empty")
    state = backfill(
        interval="1h",
        start="2023-03-24",
        end="2023-03-24",
        symbols=["BTCUSDT"],
        source="api",
        return_state=True,
    )
    assert state.is_failed()
    assert "24 candles still missing" in (state.message or "")
    assert ExchangeGapLog.of(CandleStore(str(settings_env))).entries("BTCUSDT", "1h") == ([], [])

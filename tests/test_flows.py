"""The flows against a real (temporary) Prefect server and the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import in_process_runtime
from moments import NOW
from oracle import assert_candles, closed_candles, simulator_candles

from ost import intervals, klines
from ost.args import parse_time
from ost.ledger import FAILURES
from ost.runtime import current_runtime
from ost.sim import SimHandle
from ost.store import CandleStore

pytestmark = pytest.mark.slow


@pytest.fixture
def settings_env(sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """OST_* settings pointing at the simulator and a fresh data dir; a fresh runtime."""
    sim.configure(now_ms=NOW)
    settings = {
        "OST_BINANCE_BASE_URLS": sim.url,
        "OST_ARCHIVE_BASE_URL": sim.url,
        "OST_DATA_DIR": str(tmp_path),
        "OST_SYMBOLS": "BTCUSDT,ETHUSDT",
        "OST_INTERVALS": "1h,1d",
        "OST_INITIAL_LOOKBACK_DAYS": "2",
    }
    with in_process_runtime(monkeypatch, settings):
        yield tmp_path


def expected(symbol: str, interval: str, stored_first_ms: int, now_ms: int = NOW) -> Any:
    """The simulator's closed candles from ``stored_first_ms`` to ``now_ms``."""
    return closed_candles(symbol, interval, stored_first_ms, now_ms)


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
            assert_candles(stored, expected(symbol, interval, first))
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


def test_ingest_all_shows_which_stream_failed(
    prefect_server: None, settings_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 2, one unknown symbol: its task run, the run's message and artifact name it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    import flows.ingest

    monkeypatch.setattr(flows.ingest, "STREAMS_PER_TASK", 2)
    symbols = ["BTCUSDT", "ETHUSDT", "NOSUCHUSDT", "BNBUSDT", "XRPUSDT"]
    state = flows.ingest.ingest_all(symbols=symbols, intervals=["1h"], return_state=True)
    assert state.is_failed()
    assert (state.message or "").startswith("1 of 5 streams failed: NOSUCHUSDT 1h (failed: ")
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["ingest-failures"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            )
        )
    states = {run.name: run.state for run in runs}
    assert set(states) == {
        "BTCUSDT 1h",
        "ETHUSDT 1h … NOSUCHUSDT 1h (2 streams)",
        "BNBUSDT 1h … XRPUSDT 1h (2 streams)",
    }
    failed = states.pop("ETHUSDT 1h … NOSUCHUSDT 1h (2 streams)")
    assert failed is not None
    assert failed.is_failed()
    # Binance's own answer to an unknown symbol: {"code": -1121, "msg": "Invalid symbol."}
    assert "1 of 2 streams failed: NOSUCHUSDT 1h: HTTP 400 " in (failed.message or "")
    assert "Invalid symbol. (code -1121)" in (failed.message or "")
    assert all(each is not None and each.is_completed() for each in states.values())
    table = [line for line in str(artifact.data).splitlines() if line.startswith("| ")]
    assert table[0] == "| stream | result | error |"
    (row,) = table[1:]
    assert row.startswith("| NOSUCHUSDT 1h | failed: ")
    assert "Invalid symbol. (code -1121)" in row
    store = CandleStore(str(settings_env))
    for symbol in ("BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT"):
        assert len(store.load_klines(symbol, "1h")) == 48, symbol
    assert sum(current_runtime().ledger.counters(FAILURES).values()) == 1


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
    assert_candles(stored, expected("BTCUSDT", "1h", first, sim.now_ms()))
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
    from ost.tasks.ingest import ingest_streams_task

    (result,) = ingest_streams_task.fn([("ETHUSDT", "1d")])
    assert result["written"] == 2
    assert result["symbol"] == "ETHUSDT"


def test_chunks_are_even_and_keep_the_order() -> None:
    """1,500 streams make 15 task runs of 100; 250 make 3 of 83-84; all in order, none lost."""
    from ost.flows.ingest import chunks

    for count, sizes in ((1500, [100] * 15), (250, [83, 83, 84]), (2, [2]), (0, [])):
        streams = [(f"S{number}USDT", "15m") for number in range(count)]
        parts = chunks(streams, 100)
        assert [len(part) for part in parts] == sizes
        assert [stream for part in parts for stream in part] == streams


def test_failed_streams_are_named_with_their_result_or_error() -> None:
    """A chunk's line names each stream not ok: ok / incomplete / failed: REASON, or its error."""
    from ost.errors import BinanceUnavailable, Incomplete
    from ost.ingest import StreamOutcome
    from ost.tasks.ingest import failure_line

    incomplete = Incomplete.of_stream("ETHUSDT", "1h", "2 candles still missing")
    down = BinanceUnavailable("no base URL answered /api/v3/klines")
    rows = [
        StreamOutcome("BTCUSDT", "1h", ok=True, written=1, last_open_ms=0, seconds=0.1),
        StreamOutcome(
            "ETHUSDT", "1h", False, 0, None, 0.1, incomplete.reason, str(incomplete), incomplete
        ),
        StreamOutcome("BNBUSDT", "1h", False, 0, None, 0.1, down.reason, str(down), down),
    ]
    table = [outcome.as_row() for outcome in rows]
    assert [row["result"] for row in table] == ["ok", "incomplete", "failed: unavailable"]
    assert failure_line(table, with_errors=False) == (
        "2 of 3 streams failed: ETHUSDT 1h (incomplete); BNBUSDT 1h (failed: unavailable)"
    )
    assert failure_line(table, with_errors=True) == (
        f"2 of 3 streams failed: {incomplete}; BNBUSDT 1h: {down}"
    )


# ---- ranges read as people mean them, and "ok" only when complete (issue 9) --------------------

HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))


def served_day(interval: str) -> Any:
    """The simulator's own BTCUSDT candles of 2023-03-24."""
    return simulator_candles("BTCUSDT", interval, *HALT_DAY, NOW)


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
        assert_candles(stored, served_day(interval))


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
    assert_candles(store.load_klines("BTCUSDT", "1m"), served_day("1m"))
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
    assert_candles(store.load_klines("BTCUSDT", "1h"), served)


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

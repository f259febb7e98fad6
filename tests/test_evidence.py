"""Exchange-side gaps only with Binance's evidence, and "ok" only when complete (issue 9).

Against the simulator over real HTTP, with the hosts of the issue: one that answers ``200 []``
(``empty``) and one whose pages stop at 500 rows (``cap500``). Expected candles come from the
simulator's own rows (:func:`ost.sim.market.klines`) or the real CSV it ships, never from the
code under test.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from commands import ost
from fake_binance import T0, kline_row, routed
from hypothesis import given, settings
from hypothesis import strategies as st
from moments import NOW
from oracle import assert_candles, simulator_candles

from ost import intervals, klines
from ost.args import parse_time
from ost.backfill import backfill_stream, repair_gaps
from ost.binance import BinanceClient
from ost.errors import EXIT_GAPS, EXIT_OK, Incomplete
from ost.gaps import ExchangeGapLog, check_gaps
from ost.ingest import ingest_or_report
from ost.paging import read_range
from ost.sim import SimHandle
from ost.sim.faults import parse_faults
from ost.sim.realdata import realdata_dir
from ost.store import CandleStore

MINUTE = intervals.MINUTE_MS
OCTOBER = (parse_time("2026-10-01"), parse_time("2026-11-01"))
HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))
PLAIN_DAYS = (parse_time("2024-06-03"), parse_time("2024-06-06"))
NO_LATER_CANDLE = "not recorded as an exchange gap, because no later candle proves it"

pytestmark = pytest.mark.usefixtures("fast_retries")


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """An empty store under the test's own directory."""
    return CandleStore(str(tmp_path / "data"))


@pytest.fixture
def at_now(sim: SimHandle) -> SimHandle:
    """The simulator with its clock at :data:`NOW` (2026-11-20), so October 2026 is closed."""
    sim.configure(now_ms=NOW)
    return sim


def served(symbol: str, interval: str, start: int, end: int, now: int = NOW) -> pd.DataFrame:
    """The simulator's own candles of ``[start, end)``, read from its rows by the tests' oracle."""
    return simulator_candles(symbol, interval, start, end, now)


def env_for(sim: SimHandle, data_dir: Path, **extra: str) -> dict[str, str]:
    """An `ost` subprocess's environment: the simulator, a data dir, nothing else of OST_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OST_")}
    env.update(
        OST_BINANCE_BASE_URLS=sim.url,
        OST_ARCHIVE_BASE_URL=sim.url,
        OST_DATA_DIR=str(data_dir),
        OST_HTTP_TIMEOUT_S="5",
        **extra,
    )
    return env


def klines_answers(sim: SimHandle) -> int:
    """How many /api/v3/klines requests the simulator answered since its counters were reset."""
    return sum(sim.stats()["requests"].get("/api/v3/klines", {}).values())


def halt_from_csv() -> tuple[int, int]:
    """The 2023-03-24 halt as the real CSV shows it: the minutes with no row, as one range."""
    with (realdata_dir() / "BTCUSDT-1m-2023-03-24.csv").open() as handle:
        opens = {int(row[0]) for row in csv.reader(handle)}
    absent = [t for t in range(HALT_DAY[0], HALT_DAY[1], MINUTE) if t not in opens]
    assert absent == list(range(absent[0], absent[-1] + MINUTE, MINUTE))  # one run
    return absent[0], absent[-1] + MINUTE


# ---- the simulator's new knobs -----------------------------------------------------------------


def test_empty_and_cap500_are_fault_kinds_of_the_spec() -> None:
    """`empty` and `cap500` parse like every kind, and touch only klines answers."""
    empty, capped = parse_faults("empty:count=2;cap500:rate=0.5")
    assert (empty.kind, empty.count, capped.kind, capped.rate) == ("empty", 2, "cap500", 0.5)
    assert empty.applies_to("/api/v3/klines")
    assert not empty.applies_to("/api/v3/time")
    assert not capped.applies_to("/api/v3/exchangeInfo")


def test_the_simulator_answers_empty_and_capped_pages(sim: SimHandle) -> None:
    """`empty` answers 200 []; `cap500` serves the first 500 rows of a 1000-row request."""
    params = {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "startTime": PLAIN_DAYS[0],
        "endTime": PLAIN_DAYS[1] - 1,
        "limit": 1000,
    }
    with sim.client(timeout=5.0) as http:
        whole = http.get("/api/v3/klines", params=params).json()
        sim.set_faults("empty")
        empty = http.get("/api/v3/klines", params=params)
        sim.set_faults("cap500")
        capped = http.get("/api/v3/klines", params=params).json()
    assert len(whole) == 1000
    assert (empty.status_code, empty.json()) == (200, [])
    assert capped == whole[:500]
    assert sim.stats()["faults_fired"] == {"empty": 1, "cap500": 1}


# ---- a host that answers 200 [] ----------------------------------------------------------------


def test_empty_answers_write_nothing_off_and_one_repair_restores_all(
    at_now: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """A month of `200 []` is incomplete, nothing recorded; cleared, one repair stores it all."""
    want = served("BTCUSDT", "15m", *OCTOBER)
    at_now.set_faults("empty")
    result = backfill_stream(client, store, "BTCUSDT", "15m", *OCTOBER)
    assert (result.status, result.ok, result.written) == ("incomplete", False, 0)
    assert result.still_missing == result.missing == len(want) == 31 * 96
    assert result.exchange_gaps == []
    assert ExchangeGapLog.of(store).entries("BTCUSDT", "15m") == ([], [])
    assert result.incomplete is not None
    assert "answered nothing for 2026-10-01T00:00:00Z … 2026-10-31T23:45:00Z" in result.incomplete
    assert result.incomplete.endswith(NO_LATER_CANDLE)
    assert result.incomplete.startswith(f"{len(want)} candles still missing")
    stream = check_gaps(store, "BTCUSDT", "15m", *OCTOBER, NOW)
    assert (stream.missing_candles, stream.exchange_side) == (len(want), ())

    at_now.clear_faults()
    outcome = repair_gaps(client, store, [("BTCUSDT", "15m")], *OCTOBER)
    assert outcome.exit_status() == EXIT_OK
    assert outcome.backfills[0].written == len(want)
    assert_candles(store.load_klines("BTCUSDT", "15m"), want)


def test_an_empty_answer_that_a_later_request_contradicts_is_read_on(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """One `200 []`, then the request without endTime finds the range's own candles: read on."""
    sim.set_faults("empty:count=1")
    result = backfill_stream(client, store, "ETHUSDT", "1h", *PLAIN_DAYS)
    assert (result.status, result.written, result.exchange_gaps) == ("ok", 72, [])
    assert_candles(
        store.load_klines("ETHUSDT", "1h"), served("ETHUSDT", "1h", *PLAIN_DAYS, sim.now_ms())
    )
    assert ExchangeGapLog.of(store).load("ETHUSDT", "1h") == []


def test_ingest_from_an_empty_host_is_incomplete_then_catches_up(
    at_now: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Ingest under `empty`: not ok, 0 stored, nothing recorded; cleared, it stores all."""
    at_now.set_faults("empty")
    outcome = ingest_or_report(client, store, "BTCUSDT", "1h", lookback_days=2)
    assert (outcome.ok, outcome.reason, outcome.written) == (False, "incomplete", 0)
    assert isinstance(outcome.exception, Incomplete)
    assert outcome.error is not None
    assert "48 candles still missing" in outcome.error
    assert NO_LATER_CANDLE in outcome.error
    assert ExchangeGapLog.of(store).entries("BTCUSDT", "1h") == ([], [])

    at_now.clear_faults()
    again = ingest_or_report(client, store, "BTCUSDT", "1h", lookback_days=2)
    assert (again.ok, again.written) == (True, 48)
    start = intervals.align("1h", NOW - 2 * intervals.DAY_MS)
    want = served("BTCUSDT", "1h", start, intervals.align("1h", NOW))
    assert_candles(store.load_klines("BTCUSDT", "1h"), want)


@pytest.mark.slow
def test_the_commands_say_incomplete_and_exit_1_then_repair_completes(
    at_now: SimHandle, tmp_path: Path
) -> None:
    """`ost backfill` and `ost ingest` exit 1 with the why; once cleared one repair completes."""
    env = env_for(at_now, tmp_path, OST_INITIAL_LOOKBACK_DAYS="1")
    october = ("--start", "2026-10-01", "--end", "2026-10-31")
    at_now.set_faults("empty")
    backfill = (
        "backfill",
        "--interval",
        "15m",
        "--symbols",
        "BTCUSDT",
        *october,
        "--source",
        "api",
    )
    run = ost(*backfill, env=env)
    assert run.returncode == 1, run.stderr
    lines = [line for line in run.stdout.splitlines() if NO_LATER_CANDLE in line]
    assert len(lines) == 1, run.stdout
    assert lines[0].startswith("BTCUSDT 15m: incomplete, 2976 candles still missing")
    assert "answered nothing for 2026-10-01T00:00:00Z … 2026-10-31T23:45:00Z" in lines[0]
    ingest = ost("ingest", "--symbols", "BTCUSDT", "--intervals", "1h", env=env)
    assert ingest.returncode == 1
    assert "incomplete" in ingest.stdout
    assert any(NO_LATER_CANDLE in line for line in ingest.stdout.splitlines())
    check = ost("gaps", "--interval", "15m", "--symbols", "BTCUSDT", *october, "--json", env=env)
    assert check.returncode == EXIT_GAPS
    assert json.loads(check.stdout)["streams"][0]["exchange_gaps"] == []

    at_now.clear_faults()
    fixed = ost("gaps", "--interval", "15m", "--symbols", "BTCUSDT", *october, "--repair", env=env)
    assert fixed.returncode == EXIT_OK, fixed.stdout
    stored = CandleStore(str(tmp_path)).load_klines("BTCUSDT", "15m")
    assert_candles(stored, served("BTCUSDT", "15m", *OCTOBER))


# ---- a host that caps its pages at 500 rows ----------------------------------------------------


def test_a_capped_host_still_yields_every_candle(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Pages of 500 rows are not the end: 3 days of 1m are stored whole, nothing written off."""
    client.sync_time()
    sim.set_faults("cap500")
    sim.reset()
    result = backfill_stream(client, store, "BTCUSDT", "1m", *PLAIN_DAYS, source="api")
    assert (result.status, result.written, result.exchange_gaps) == ("ok", 3 * 1440, [])
    assert sim.stats()["faults_fired"]["cap500"] == klines_answers(sim) >= 3 * 1440 / 500
    want = served("BTCUSDT", "1m", *PLAIN_DAYS, sim.now_ms())
    assert_candles(store.load_klines("BTCUSDT", "1m"), want)
    assert ExchangeGapLog.of(store).entries("BTCUSDT", "1m") == ([], [])
    assert check_gaps(store, "BTCUSDT", "1m", *PLAIN_DAYS, sim.now_ms()).exit_status() == EXIT_OK


def test_ingest_from_a_capped_host_is_complete(
    at_now: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Ingest over a 500-row host: 3 days of 1m (9 pages' worth), all stored."""
    at_now.set_faults("cap500")
    outcome = ingest_or_report(client, store, "ETHUSDT", "1m", lookback_days=3)
    assert outcome.ok, outcome.error
    start = intervals.align("1m", NOW - 3 * intervals.DAY_MS)
    want = served("ETHUSDT", "1m", start, intervals.align("1m", NOW))
    assert outcome.written == len(want) > 4000
    assert_candles(store.load_klines("ETHUSDT", "1m"), want)


# ---- the real halt, with its evidence ----------------------------------------------------------


def test_the_real_halt_is_recorded_with_evidence_that_replays(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """The 2023-03-24 halt is exchange-side; its evidence, asked again, shows 12:39 then 14:00."""
    halt = halt_from_csv()
    assert halt == (parse_time("2023-03-24T12:40Z"), parse_time("2023-03-24T14:00Z"))
    result = backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    assert (result.status, result.exchange_gaps) == ("ok", [halt])
    recorded, unverified = ExchangeGapLog.of(store).entries("BTCUSDT", "1m")
    assert unverified == []
    assert [gap.candles for gap in recorded] == [halt]
    evidence = recorded[0].evidence
    assert evidence.host == sim.url
    assert evidence.next_open_ms == halt[1]
    body = json.loads(Path(ExchangeGapLog.of(store).path("BTCUSDT", "1m")).read_text())
    assert body["format"] == 2
    assert body["gaps"][0]["evidence"]["next_open_time"] == "2023-03-24T14:00:00Z"

    answer = httpx.get(evidence.host + evidence.request).json()
    opens = np.array([row[0] for row in answer])
    asked_from = int(httpx.URL(evidence.request).params["startTime"])
    assert asked_from <= halt[0]
    assert not ((opens >= halt[0]) & (opens < halt[1])).any()
    assert int(opens[opens >= halt[0]][0]) == halt[1]


def test_a_range_before_the_next_candle_needs_the_request_without_end(
    sim: SimHandle, client: BinanceClient
) -> None:
    """The halt alone answers nothing; the evidence is the request without endTime."""
    client.sync_time()
    halt = halt_from_csv()
    pages = list(read_range(client, "BTCUSDT", "1m", *halt))
    assert len(pages) == 1
    assert [gap.candles for gap in pages[0].proven] == [halt]
    evidence = pages[0].proven[0].evidence
    assert "endTime" not in httpx.URL(evidence.request).params
    assert evidence.next_open_ms == halt[1]


# ---- old records, wrong records and --recheck --------------------------------------------------


def plant_record(
    store: CandleStore, symbol: str, interval: str, gaps: list[dict[str, object]], fmt: int
) -> Path:
    """Write a gap record by hand, as an older ost (format 1) or a wrong run would have."""
    path = Path(ExchangeGapLog.of(store).path(symbol, interval))
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": fmt, "symbol": symbol, "interval": interval, "gaps": gaps}
    path.write_text(json.dumps(body))
    return path


def entry(first: int, last: int, evidence: dict[str, object] | None = None) -> dict[str, object]:
    """One gap of a record file, candles ``first``..``last`` (open times) of 1m."""
    gap: dict[str, object] = {
        "first_open_ms": first,
        "last_open_ms": last,
        "candles": (last - first) // MINUTE + 1,
    }
    if evidence is not None:
        gap["evidence"] = evidence
    return gap


FAKE_EVIDENCE = {
    "host": "http://wrong.test",
    "request": "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=0",
    "next_open_ms": PLAIN_DAYS[0] + 12 * 60 * MINUTE,
    "answered_at_ms": PLAIN_DAYS[1],
}


@pytest.mark.slow
def test_recheck_undoes_a_wrong_record_and_stores_the_candles(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A wrong record hides 2 hours as exchange-side; `ost gaps --recheck` undoes it, fills them."""
    store = CandleStore(str(tmp_path))
    day = ("--start", "2024-06-03", "--end", "2024-06-03")
    wrong = (PLAIN_DAYS[0] + 10 * 60 * MINUTE, PLAIN_DAYS[0] + 12 * 60 * MINUTE)
    want = served("BTCUSDT", "1m", PLAIN_DAYS[0], PLAIN_DAYS[0] + intervals.DAY_MS, sim.now_ms())
    opens = klines.open_time_ms(want)
    store.merge(
        "BTCUSDT", "1m", want[(opens < wrong[0]) | (opens >= wrong[1])].reset_index(drop=True)
    )
    planted = [entry(wrong[0], wrong[1] - MINUTE, FAKE_EVIDENCE)]
    path = plant_record(store, "BTCUSDT", "1m", planted, fmt=2)
    env = env_for(sim, tmp_path)
    believed = ost("gaps", "--interval", "1m", "--symbols", "BTCUSDT", *day, "--json", env=env)
    assert believed.returncode == EXIT_OK  # the wrong record is believed: it has "evidence"
    assert json.loads(believed.stdout)["streams"][0]["exchange_gaps"][0]["candles"] == 120

    recheck = ("gaps", "--interval", "1m", "--symbols", "BTCUSDT", *day, "--recheck", "--json")
    rechecked = ost(*recheck, env=env)
    assert rechecked.returncode == EXIT_OK, rechecked.stdout
    report = json.loads(rechecked.stdout)["streams"][0]
    assert report["exchange_gaps"] == []
    assert [gap["candles"] for gap in report["rechecked"]] == [120]
    assert json.loads(path.read_text())["gaps"] == []
    assert_candles(store.load_klines("BTCUSDT", "1m"), want)


def test_recheck_keeps_the_real_halt_with_fresh_evidence(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Rechecking the halt day forgets the halt, asks again, and records it again, proven."""
    halt = halt_from_csv()
    backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    outcome = repair_gaps(client, store, [("BTCUSDT", "1m")], *HALT_DAY, recheck=True)
    assert outcome.exit_status() == EXIT_OK
    assert outcome.backfills[0].rechecked == [halt]
    assert outcome.backfills[0].exchange_gaps == [halt]
    recorded, _ = ExchangeGapLog.of(store).entries("BTCUSDT", "1m")
    assert [(gap.candles, gap.evidence.host) for gap in recorded] == [(halt, sim.url)]


def test_an_old_record_without_evidence_counts_for_nothing(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """A format-1 record is read but not believed: its candles are missing until a repair."""
    halt = halt_from_csv()
    store.merge("BTCUSDT", "1m", served("BTCUSDT", "1m", *HALT_DAY, sim.now_ms()))
    plant_record(store, "BTCUSDT", "1m", [entry(halt[0], halt[1] - MINUTE)], fmt=1)
    stream = check_gaps(store, "BTCUSDT", "1m", *HALT_DAY, sim.now_ms())
    assert stream.exit_status() == EXIT_GAPS
    assert stream.missing_candles == 80
    assert [gap.candles for gap in stream.unverified] == [80]
    assert stream.why is not None
    assert "without evidence" in stream.why

    outcome = repair_gaps(client, store, [("BTCUSDT", "1m")], *HALT_DAY)
    assert outcome.exit_status() == EXIT_OK
    assert ExchangeGapLog.of(store).unverified("BTCUSDT", "1m") == []
    assert ExchangeGapLog.of(store).load("BTCUSDT", "1m") == [halt]


# ---- edge cases of the reading itself, over httpx.MockTransport --------------------------------

TEN_MINUTES = (T0, T0 + 10 * MINUTE)


def fake_binance(
    rows_for: Callable[[int, int | None], list[int]],
) -> tuple[BinanceClient, list[dict[str, str]]]:
    """A client of a fake Binance whose klines answer ``rows_for(startTime, endTime)``'s opens."""
    asked: list[dict[str, str]] = []

    def klines_answer(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        end = request.url.params.get("endTime")
        opens = rows_for(int(request.url.params["startTime"]), None if end is None else int(end))
        return httpx.Response(200, json=[kline_row(t) for t in opens])

    transport = httpx.MockTransport(routed(klines_answer, now_ms=T0 + 60 * MINUTE))
    return BinanceClient(["http://host.test"], transport=transport), asked


def test_nothing_before_now_leaves_the_rest_unanswered_never_a_gap() -> None:
    """Empty with endTime, empty without: unanswered, no gap proven, the host named."""
    client, asked = fake_binance(lambda _start, _end: [])
    with client:
        pages = list(read_range(client, "BTCUSDT", "1m", *TEN_MINUTES))
    assert len(pages) == 1
    assert pages[0].proven == ()
    assert pages[0].unanswered is not None
    assert pages[0].unanswered.candles == TEN_MINUTES
    assert pages[0].unanswered.host == "http://host.test"
    assert ["endTime" in params for params in asked] == [True, False]


def test_short_pages_are_read_on_to_the_end() -> None:
    """A host that serves 3 rows a page: 4 requests, all 10 candles, nothing proven."""

    def three_at_a_time(start: int, end: int | None) -> list[int]:
        return list(range(start, min(TEN_MINUTES[1], (end or start) + 1), MINUTE))[:3]

    client, asked = fake_binance(three_at_a_time)
    with client:
        pages = list(read_range(client, "BTCUSDT", "1m", *TEN_MINUTES))
    opens = [int(t) for page in pages for t in page.columns["open_time"]]
    assert opens == list(range(*TEN_MINUTES, MINUTE))
    assert [page.proven for page in pages] == [()] * 4
    assert len(asked) == 4


def test_a_hole_inside_a_page_is_proven_by_that_page() -> None:
    """Candles 0-3 and 6-9: the hole 4-5 is proven, its next candle the one at 6."""
    hole = (T0 + 4 * MINUTE, T0 + 6 * MINUTE)

    def with_hole(start: int, end: int | None) -> list[int]:
        return [t for t in range(start, TEN_MINUTES[1], MINUTE) if not hole[0] <= t < hole[1]]

    client, asked = fake_binance(with_hole)
    with client:
        pages = list(read_range(client, "BTCUSDT", "1m", *TEN_MINUTES))
    assert len(pages) == 1
    assert [gap.candles for gap in pages[0].proven] == [hole]
    evidence = pages[0].proven[0].evidence
    assert evidence.next_open_ms == hole[1]
    assert httpx.URL(evidence.request).params["startTime"] == str(T0) == asked[0]["startTime"]


@settings(max_examples=60, deadline=None)
@given(
    present=st.sets(st.integers(0, 39), max_size=40),
    page_rows=st.integers(1, 7),
)
def test_only_a_later_candle_writes_a_hole_off(present: set[int], page_rows: int) -> None:
    """Any candles, any page size: every candle read, holes proven only before a later candle.

    The range is minutes 0-29; minutes 30-39 exist after it (or not), as later candles do.
    """
    opens = sorted(T0 + minute * MINUTE for minute in present)
    end = T0 + 30 * MINUTE

    def served_rows(start: int, last: int | None) -> list[int]:
        return [t for t in opens if t >= start and (last is None or t <= last)][:page_rows]

    client, _ = fake_binance(served_rows)
    with client:
        pages = list(read_range(client, "BTCUSDT", "1m", T0, end))
    read = [int(t) for page in pages for t in page.columns["open_time"]]
    assert read == [t for t in opens if t < end]
    proven = {t for page in pages for gap in page.proven for t in range(*gap.candles, MINUTE)}
    unanswered = {
        t
        for page in pages
        if page.unanswered is not None
        for t in range(*page.unanswered.candles, MINUTE)
    }
    absent = {t for t in range(T0, end, MINUTE) if t not in opens}
    later_than = {t for t in absent if any(o > t for o in opens)}
    assert proven == later_than
    assert unanswered == absent - later_than

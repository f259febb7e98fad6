"""Gap checking over the simulator: deleted candles, exchange-side gaps, reports and repair."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import assert_candles, simulator_candles

from ost import intervals, klines
from ost.args import parse_time
from ost.backfill import backfill_stream, repair_gaps
from ost.binance import BinanceClient
from ost.errors import EXIT_FAILED, EXIT_GAPS, EXIT_OK
from ost.gaps import (
    CandleRange,
    Evidence,
    ExchangeGapLog,
    GapReport,
    ProvenGap,
    check_gaps,
    gap_report,
    intersect,
    merged,
    runs_of,
    subtract,
)
from ost.sim import SimHandle, exchange_gaps, market
from ost.store import CandleStore, partition_path, read_frame, write_frame

MINUTE = intervals.MINUTE_MS
HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))
PLAIN_DAY = (parse_time("2024-06-03"), parse_time("2024-06-04"))


pytestmark = pytest.mark.usefixtures("fast_retries")


@pytest.fixture
def store(tmp_path: Path) -> CandleStore:
    """An empty store."""
    return CandleStore(str(tmp_path / "data"))


def reference(sim: SimHandle, symbol: str, interval: str, start: int, end: int) -> pd.DataFrame:
    """The simulator's candles of ``[start, end)``, read from its rows by the tests' oracle."""
    return simulator_candles(symbol, interval, start, end, sim.now_ms())


def halt_gaps() -> list[tuple[int, int]]:
    """The simulator's exchange-side gaps of BTCUSDT 1m on the halt day."""
    return intersect(exchange_gaps("BTCUSDT"), [HALT_DAY])


def rewrite_without(store: CandleStore, symbol: str, interval: str, drop: np.ndarray) -> None:
    """Rewrite the partition that holds the open times ``drop`` without those rows."""
    period = intervals.partition_start(interval, int(drop[0]))
    path = partition_path(store.backend.root, symbol, interval, period)
    stored = read_frame(store.backend, path)
    assert stored is not None
    kept = stored[~np.isin(klines.open_time_ms(stored), drop)].reset_index(drop=True)
    write_frame(store.backend, path, kept)


# ---- range arithmetic ---------------------------------------------------------------------------

minute_ranges = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(
        lambda pair: (min(pair) * MINUTE, max(pair) * MINUTE)
    ),
    max_size=6,
)


def minutes_of(ranges: list[tuple[int, int]]) -> set[int]:
    """Every open time inside ``ranges``."""
    return {t for start, end in ranges for t in range(start, end, MINUTE)}


@given(minute_ranges, minute_ranges)
def test_range_arithmetic_agrees_with_sets(
    left: list[tuple[int, int]], right: list[tuple[int, int]]
) -> None:
    """merged, subtract and intersect do what set union, difference and intersection do."""
    assert minutes_of(merged(left)) == minutes_of(left)
    assert minutes_of(subtract(left, right)) == minutes_of(left) - minutes_of(right)
    assert minutes_of(intersect(left, right)) == minutes_of(left) & minutes_of(right)
    joined = merged(left)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(joined))


@given(st.sets(st.integers(0, 100)))
def test_runs_of_open_times_cover_exactly_them(minutes: set[int]) -> None:
    """Open times become maximal runs of consecutive candles."""
    opens = np.array(sorted(m * MINUTE for m in minutes), dtype=np.int64)
    runs = runs_of("1m", opens)
    assert minutes_of(runs) == set(opens.tolist())
    assert merged(runs) == runs


def test_runs_of_calendar_months() -> None:
    """1M candles of different lengths still form one run."""
    opens = np.array(intervals.open_times("1M", parse_time("2024-01-01"), parse_time("2024-06-01")))
    assert runs_of("1M", opens) == [(parse_time("2024-01-01"), parse_time("2024-06-01"))]


# ---- checking the store -------------------------------------------------------------------------


def test_empty_store_misses_the_whole_closed_range(store: CandleStore) -> None:
    """Nothing stored: every closed candle is missing, up to the current candle only."""
    now = parse_time("2024-06-03T10:15:30")
    stream = check_gaps(store, "BTCUSDT", "1m", parse_time("2024-06-03T09:00"), now + 3600_000, now)
    assert stream.end_ms == parse_time("2024-06-03T10:15")
    assert stream.missing == (
        CandleRange(parse_time("2024-06-03T09:00"), parse_time("2024-06-03T10:14"), 75),
    )
    assert stream.expected == 75
    assert stream.exit_status() == EXIT_GAPS


def test_deleted_rows_are_named_exactly_and_repaired(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Rows removed from a partition show as exactly their ranges (exit 3); repair gives exit 0."""
    backfill_stream(client, store, "BTCUSDT", "1m", *PLAIN_DAY)
    original = store.load_klines("BTCUSDT", "1m", *PLAIN_DAY)
    opens = klines.open_time_ms(original)
    rewrite_without(store, "BTCUSDT", "1m", np.concatenate([opens[600:630], opens[700:701]]))

    report = gap_report(store, [("BTCUSDT", "1m")], *PLAIN_DAY, sim.now_ms())
    assert report.streams[0].missing == (
        CandleRange(int(opens[600]), int(opens[629]), 30),
        CandleRange(int(opens[700]), int(opens[700]), 1),
    )
    assert report.exit_status() == EXIT_GAPS

    sim.reset()
    outcome = repair_gaps(client, store, [("BTCUSDT", "1m")], *PLAIN_DAY)
    assert outcome.exit_status() == EXIT_OK
    assert outcome.report.streams[0].missing == ()
    assert sim.stats()["requests"]["/api/v3/klines"] == {"200": 2}  # one page per range
    assert_candles(store.load_klines("BTCUSDT", "1m", *PLAIN_DAY), original)


def test_deleted_partition_file_is_one_missing_day(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """A deleted day partition is reported as that whole day, and repair restores it."""
    start, end = PLAIN_DAY[0], PLAIN_DAY[0] + 3 * intervals.DAY_MS
    backfill_stream(client, store, "BTCUSDT", "15m", start, end)
    backfill_stream(client, store, "BTCUSDT", "1m", start, end)
    middle = intervals.partition_start("1m", start + intervals.DAY_MS)
    os.remove(partition_path(store.backend.root, "BTCUSDT", "1m", middle))

    report = gap_report(store, [("BTCUSDT", "1m"), ("BTCUSDT", "15m")], start, end, sim.now_ms())
    day = start + intervals.DAY_MS
    assert report.streams[0].missing == (CandleRange(day, day + intervals.DAY_MS - MINUTE, 1440),)
    assert report.streams[1].missing == ()
    assert report.exit_status() == EXIT_GAPS

    assert repair_gaps(client, store, [("BTCUSDT", "1m")], start, end).exit_status() == EXIT_OK
    stored = store.load_klines("BTCUSDT", "1m", start, end)
    assert_candles(stored, reference(sim, "BTCUSDT", "1m", start, end))


def test_trading_halt_is_exchange_side_and_status_stays_0(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """The real 2023-03-24 halt is listed apart as exchange-side, and nothing counts as missing."""
    backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    stream = check_gaps(store, "BTCUSDT", "1m", *HALT_DAY, sim.now_ms())
    assert halt_gaps()  # the real data has the halt
    assert stream.missing == ()
    assert stream.exchange_side == tuple(CandleRange.of("1m", gap) for gap in halt_gaps())
    assert stream.exit_status() == EXIT_OK
    stored = len(store.load_klines("BTCUSDT", "1m", *HALT_DAY))
    assert stored + sum(gap.candles for gap in stream.exchange_side) == stream.expected


def test_halt_is_missing_until_binance_was_asked(sim: SimHandle, store: CandleStore) -> None:
    """Without a record, the halt's minutes are just missing: only asking Binance settles them."""
    candles = reference(sim, "BTCUSDT", "1m", *HALT_DAY)
    store.merge("BTCUSDT", "1m", candles)
    stream = check_gaps(store, "BTCUSDT", "1m", *HALT_DAY, sim.now_ms())
    assert stream.missing == tuple(CandleRange.of("1m", gap) for gap in halt_gaps())
    assert stream.exchange_side == ()


def test_time_before_listing_becomes_exchange_side_after_repair(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """Days before a listing are missing at first; repair asks Binance once and records them."""
    start, end = parse_time("2017-08-01"), parse_time("2017-09-01")
    assert check_gaps(store, "BTCUSDT", "1d", start, end, sim.now_ms()).exit_status() == EXIT_GAPS
    outcome = repair_gaps(client, store, [("BTCUSDT", "1d")], start, end)
    assert outcome.exit_status() == EXIT_OK
    first_candle = intervals.align("1d", market.listing_of("BTCUSDT").listed_ms)
    assert outcome.report.streams[0].exchange_side == (CandleRange.of("1d", (start, first_candle)),)


def test_unreadable_stream_makes_status_1(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """A stream whose partition is damaged is reported failed; the others are still checked."""
    backfill_stream(client, store, "BTCUSDT", "1h", *PLAIN_DAY)
    backfill_stream(client, store, "ETHUSDT", "1h", *PLAIN_DAY)
    period = intervals.partition_start("1h", PLAIN_DAY[0])
    Path(partition_path(store.backend.root, "ETHUSDT", "1h", period)).write_bytes(b"garbage")
    report = gap_report(store, [("BTCUSDT", "1h"), ("ETHUSDT", "1h")], *PLAIN_DAY, sim.now_ms())
    assert report.streams[0].exit_status() == EXIT_OK
    assert report.streams[1].error is not None
    assert "ETHUSDT" in report.streams[1].error
    assert report.exit_status() == EXIT_FAILED


def test_json_and_markdown_reports(
    sim: SimHandle, client: BinanceClient, store: CandleStore
) -> None:
    """--json is machine-readable (ISO and ms); markdown names each range and gap."""
    backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    opens = klines.open_time_ms(store.load_klines("BTCUSDT", "1m", *HALT_DAY))
    rewrite_without(store, "BTCUSDT", "1m", opens[10:12])
    report = gap_report(store, [("BTCUSDT", "1m")], *HALT_DAY, sim.now_ms())

    data = json.loads(report.to_json())
    assert data["exit_status"] == EXIT_GAPS
    assert data["missing_candles"] == 2
    stream = data["streams"][0]
    assert (stream["symbol"], stream["interval"]) == ("BTCUSDT", "1m")
    assert stream["missing"] == [
        {
            "first_open_time": "2023-03-24T00:10:00Z",
            "last_open_time": "2023-03-24T00:11:00Z",
            "first_open_ms": int(opens[10]),
            "last_open_ms": int(opens[11]),
            "candles": 2,
        }
    ]
    assert [gap["first_open_ms"] for gap in stream["exchange_gaps"]] == [g[0] for g in halt_gaps()]
    assert stream["error"] is None

    text = report.to_markdown()
    assert "2 missing candles" in text
    assert "2023-03-24T00:10:00Z … 2023-03-24T00:11:00Z (2 candles)" in text
    assert str(CandleRange.of("1m", halt_gaps()[0])) in text
    assert GapReport([]).exit_status() == EXIT_OK


def test_gap_record_lives_outside_the_candle_dataset(
    client: BinanceClient, store: CandleStore, tmp_path: Path
) -> None:
    """The record is gaps/symbol=../interval=../exchange_gaps.json; klines/ holds only Parquet."""
    backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    log = ExchangeGapLog.of(store)
    record = Path(log.path("BTCUSDT", "1m"))
    assert record == tmp_path / "data/gaps/symbol=BTCUSDT/interval=1m/exchange_gaps.json"
    body = json.loads(record.read_text())
    assert body["symbol"] == "BTCUSDT"
    assert [(g["first_open_ms"], g["last_open_ms"] + MINUTE) for g in body["gaps"]] == halt_gaps()
    assert not [p for p in record.parent.iterdir() if p.name.endswith(".tmp")]
    candle_files = [p for p in (tmp_path / "data/klines").rglob("*") if p.is_file()]
    assert candle_files
    assert all(p.name == "part.parquet" for p in candle_files)


def test_damaged_gap_record_is_reported(store: CandleStore) -> None:
    """A record that is not JSON of gaps fails loudly instead of hiding missing candles."""
    path = Path(ExchangeGapLog.of(store).path("BTCUSDT", "1m"))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    report = gap_report(store, [("BTCUSDT", "1m")], *HALT_DAY, parse_time("2024-01-01"))
    assert report.exit_status() == EXIT_FAILED
    assert "exchange_gaps.json" in (report.streams[0].error or "")


def proven(start: int, end: int) -> ProvenGap:
    """A gap ``[start, end)`` with made-up evidence: a candle at ``end`` from host.test."""
    request = f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}"
    return ProvenGap((start, end), Evidence("http://host.test", request, end, end + MINUTE))


def test_recording_merges_and_reports_only_new_ranges(store: CandleStore) -> None:
    """Recording a gap twice adds nothing; touching gaps merge into one."""
    log = ExchangeGapLog.of(store)
    assert log.record("BTCUSDT", "1m", [proven(0, 5 * MINUTE)]) == [(0, 5 * MINUTE)]
    assert log.record("BTCUSDT", "1m", [proven(2 * MINUTE, 8 * MINUTE)]) == [
        (5 * MINUTE, 8 * MINUTE)
    ]
    assert log.record("BTCUSDT", "1m", [proven(0, 8 * MINUTE)]) == []
    assert log.load("BTCUSDT", "1m") == [(0, 8 * MINUTE)]
    assert log.load("BTCUSDT", "1h") == []


def test_every_recorded_gap_keeps_its_evidence(store: CandleStore) -> None:
    """Each piece of a record keeps the evidence it was recorded with, read back as written."""
    log = ExchangeGapLog.of(store)
    first, second = proven(0, 5 * MINUTE), proven(3 * MINUTE, 8 * MINUTE)
    log.record("BTCUSDT", "1m", [first, second])
    recorded, unverified = log.entries("BTCUSDT", "1m")
    assert recorded == [first, ProvenGap((5 * MINUTE, 8 * MINUTE), second.evidence)]
    assert unverified == []


def test_forgetting_cuts_the_record_to_outside_the_range(store: CandleStore) -> None:
    """forget() removes what lies in its range only, and says what it forgot."""
    log = ExchangeGapLog.of(store)
    log.record("BTCUSDT", "1m", [proven(0, 10 * MINUTE)])
    assert log.forget("BTCUSDT", "1m", (4 * MINUTE, 6 * MINUTE)) == [(4 * MINUTE, 6 * MINUTE)]
    assert log.load("BTCUSDT", "1m") == [(0, 4 * MINUTE), (6 * MINUTE, 10 * MINUTE)]
    assert log.forget("BTCUSDT", "1m", (20 * MINUTE, 30 * MINUTE)) == []


def test_remote_fsspec_root_records_gaps() -> None:
    """An fsspec URL root (memory://) reads and writes the record too."""
    log = ExchangeGapLog.of(CandleStore("memory://ost-gaps-test"))
    gap = proven(0, 3 * 3600_000)
    assert log.record("ETHUSDT", "1h", [gap]) == [(0, 3 * 3600_000)]
    assert log.load("ETHUSDT", "1h") == [(0, 3 * 3600_000)]
    assert log.entries("ETHUSDT", "1h") == ([gap], [])


def test_missing_ranges_are_half_open_for_a_backfill(store: CandleStore) -> None:
    """A report's missing candles convert back to the [start, end) ranges a backfill takes."""
    stream = check_gaps(store, "ETHUSDT", "4h", *PLAIN_DAY, PLAIN_DAY[1] + 1)
    assert stream.expected == 6
    assert stream.missing == (CandleRange(PLAIN_DAY[0], PLAIN_DAY[1] - 4 * 3600_000, 6),)
    assert stream.missing_ranges == [PLAIN_DAY]

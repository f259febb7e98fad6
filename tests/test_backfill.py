"""Backfill over the simulator: idempotence, resume after a kill, archive vs API, closed candles."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from oracle import assert_candles, simulator_candles

from ost import intervals, klines
from ost.archive import daily_file, monthly_file
from ost.args import parse_time
from ost.backfill import (
    BackfillResult,
    backfill_stream,
    backfill_streams,
    check_source,
    plan_archive,
)
from ost.binance import BinanceClient
from ost.errors import BadInput
from ost.gaps import ExchangeGapLog, intersect
from ost.sim import SimHandle, exchange_gaps, timegrid
from ost.store import CandleStore

DAY = intervals.DAY_MS
MINUTE = intervals.MINUTE_MS
UNIT_SWITCH = (parse_time("2024-12-30"), parse_time("2025-01-02"))
HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))


pytestmark = pytest.mark.usefixtures("fast_retries")


def new_store(tmp_path: Path, name: str = "data") -> CandleStore:
    """An empty store under ``tmp_path``."""
    return CandleStore(str(tmp_path / name))


def reference(sim: SimHandle, symbol: str, interval: str, start: int, end: int) -> pd.DataFrame:
    """The simulator's closed candles of ``[start, end)``, read by the tests' oracle."""
    now = sim.now_ms()
    return simulator_candles(
        symbol, interval, start, min(end, timegrid.candle_open(interval, now)), now
    )


def klines_requests(sim: SimHandle) -> int:
    """How many /api/v3/klines requests the simulator answered since its counters were reset."""
    return sum(sim.stats()["requests"].get("/api/v3/klines", {}).values())


def archive_requests(sim: SimHandle) -> dict[str, int]:
    """Archive answers per status since the counters were reset."""
    return sim.answers("/data/")


def utc_day(ms: int) -> dt.date:
    """The UTC date of epoch ms."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date()


def today_ms(sim: SimHandle) -> int:
    """Midnight UTC of the simulator's today."""
    return sim.now_ms() // DAY * DAY


# ---- the API --------------------------------------------------------------------------------


def test_api_backfill_stores_the_candles_and_is_idempotent(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """A backfill stores exactly the served candles; a second run makes no klines request."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-06-03"), parse_time("2024-06-06")
    first = backfill_stream(client, store, "ETHUSDT", "1m", start, end)
    assert first.ok
    assert first.missing == first.written == 3 * 1440
    assert klines_requests(sim) == first.api_pages == 5
    stored = store.load_klines("ETHUSDT", "1m", start, end)
    assert_candles(stored, reference(sim, "ETHUSDT", "1m", start, end))

    sim.reset()
    again = backfill_stream(client, store, "ETHUSDT", "1m", start, end)
    assert (again.missing, again.written, again.api_pages) == (0, 0, 0)
    assert klines_requests(sim) == 0


def test_backfill_fetches_only_the_missing_middle(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """With the range's ends stored, only the hole between them is requested."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-06-03"), parse_time("2024-06-03T06:00")
    candles = reference(sim, "BTCUSDT", "1m", start, end)
    store.merge("BTCUSDT", "1m", pd.concat([candles[:100], candles[-100:]], ignore_index=True))
    result = backfill_stream(client, store, "BTCUSDT", "1m", start, end)
    assert (result.missing, result.written, result.api_pages) == (160, 160, 1)
    assert_candles(store.load_klines("BTCUSDT", "1m", start, end), candles)


def test_interrupted_backfill_resumes_where_it_stopped(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """Interrupted after two pages, a rerun fetches only what was not stored."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-06-03"), parse_time("2024-06-06")

    class Interrupted(Exception):
        """Raised from the progress callback, as a Ctrl-C would arrive."""

    def stop_after_two_pages(done: int, total: int) -> None:
        if done >= 2000:
            raise Interrupted

    with pytest.raises(Interrupted):
        backfill_stream(client, store, "BTCUSDT", "1m", start, end, progress=stop_after_two_pages)
    kept = len(store.load_klines("BTCUSDT", "1m", start, end))
    assert 0 < kept < 3 * 1440  # whole partitions are written as pages come in

    sim.reset()
    seen: list[tuple[int, int]] = []
    result = backfill_stream(
        client, store, "BTCUSDT", "1m", start, end, progress=lambda d, t: seen.append((d, t))
    )
    assert result.missing == result.written == 3 * 1440 - kept
    assert klines_requests(sim) <= -(-result.missing // 1000) + 1
    assert seen[0] == (0, result.missing)
    assert seen[-1] == (result.missing, result.missing)
    stored = store.load_klines("BTCUSDT", "1m", start, end)
    assert_candles(stored, reference(sim, "BTCUSDT", "1m", start, end))


CHILD = textwrap.dedent(
    """
    import sys
    from ost.backfill import backfill_stream
    from ost.binance import BinanceClient
    from ost.store import CandleStore

    url, root, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def progress(done, total):
        print(done, total, flush=True)

    with BinanceClient([url]) as client:
        backfill_stream(client, CandleStore(root), "BTCUSDT", "5m", start, end, progress=progress)
    print("finished", flush=True)
    """
)


@pytest.mark.slow
def test_sigkilled_backfill_resumes_without_duplicates(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """A backfill process killed with SIGKILL mid-way leaves a store that a rerun completes."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-01-01"), parse_time("2024-02-01")  # 8928 candles, 9 pages
    sim.configure(latency_ms=150)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, sim.url, store.backend.url, str(start), str(end)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line.split()[0]) >= 3000:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    before = len(store.load_klines("BTCUSDT", "5m", start, end))
    assert 0 < before < 8928  # pages in flight or held for their partition are not stored yet

    time.sleep(0.5)  # the killed child's last request is still in the simulator for 150 ms
    sim.configure(latency_ms=0)
    sim.reset()
    result = backfill_stream(client, store, "BTCUSDT", "5m", start, end)
    assert result.written == 8928 - before
    assert klines_requests(sim) == -(-(8928 - before) // 1000)
    stored = store.load_klines("BTCUSDT", "5m", start, end)
    assert klines.open_time_ms(stored).tolist() == intervals.open_times("5m", start, end)
    assert_candles(stored, reference(sim, "BTCUSDT", "5m", start, end))


def test_only_closed_candles_are_stored(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """By the server's clock, the candle still open is neither stored nor taken for a gap."""
    now = parse_time("2024-06-03T10:15:30")
    sim.configure(now_ms=now)
    store = new_store(tmp_path)
    result = backfill_stream(client, store, "BTCUSDT", "1m", now - 3600_000, now + 3600_000)
    assert result.end_ms == parse_time("2024-06-03T10:15")
    stored = store.load_klines("BTCUSDT", "1m")
    assert klines.open_time_ms(stored)[-1] == parse_time("2024-06-03T10:14")
    assert len(stored) == result.written == 59  # 09:16 (the first open after 09:15:30) to 10:14
    assert result.exchange_gaps == []
    assert ExchangeGapLog.of(store).load("BTCUSDT", "1m") == []


def test_trading_halt_is_recorded_once_and_never_asked_again(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """The 2023-03-24 halt becomes an exchange-side gap; later backfills skip it for free."""
    store = new_store(tmp_path)
    halt = intersect(exchange_gaps("BTCUSDT"), [HALT_DAY])
    assert halt
    result = backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    assert result.exchange_gaps == halt
    assert ExchangeGapLog.of(store).load("BTCUSDT", "1m") == halt
    assert result.written == 1440 - sum((b - a) // MINUTE for a, b in halt)

    sim.reset()
    again = backfill_stream(client, store, "BTCUSDT", "1m", *HALT_DAY)
    assert (again.missing, again.exchange_gaps) == (0, [])
    assert klines_requests(sim) == 0


def test_bad_source_is_refused_before_any_request(sim: SimHandle, client: BinanceClient) -> None:
    """An unknown source is BadInput."""
    with pytest.raises(BadInput, match="unknown source"):
        check_source("torrent")
    with pytest.raises(BadInput):
        backfill_stream(client, CandleStore("/nonexistent"), "BTCUSDT", "1m", 0, 1, source="ftp")
    assert sim.stats()["total"] == 0


def test_multi_stream_backfill_reports_a_failed_stream_and_goes_on(
    client: BinanceClient, tmp_path: Path
) -> None:
    """An unlisted symbol fails its stream only; progress names each stream."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-06-03"), parse_time("2024-06-05")
    calls: list[tuple[str, str, int, int]] = []
    done: list[BackfillResult] = []
    results = backfill_streams(
        client,
        store,
        [("NOTLISTED", "1h"), ("BTCUSDT", "1h")],
        start,
        end,
        progress=lambda *call: calls.append(call),
        on_result=done.append,
    )
    assert [r.ok for r in results] == [False, True]
    assert results[0].reason == "rejected"
    assert results[1].written == 48
    assert done == results
    assert calls[-1] == ("BTCUSDT", "1h", 48, 48)


def test_streams_overlap_within_the_bound_on_requests_in_flight(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """Six short streams run several at once, never more than ``workers`` requests in flight."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-06-01"), parse_time("2024-06-21")
    streams = [(s, i) for s in ("BTCUSDT", "ETHUSDT") for i in ("15m", "1h", "1d")]
    client.sync_time()
    sim.configure(latency_ms=100)  # each stream alone would keep one request in flight
    sim.reset()
    results = backfill_streams(client, store, streams, start, end, source="api", workers=4)
    sim.configure(latency_ms=0)
    assert [(r.symbol, r.interval) for r in results] == streams
    assert all(r.ok for r in results)
    assert 1 < sim.stats()["max_in_flight"] <= 4
    for symbol, interval in streams:
        stored = store.load_klines(symbol, interval, start, end)
        assert_candles(stored, reference(sim, symbol, interval, start, end))


# ---- the archive ----------------------------------------------------------------------------


def test_archive_backfill_equals_api_backfill_across_the_unit_switch(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """Archive (ms, then µs files) and API backfills of 2024-12-30..2025-01-01 agree exactly."""
    by_api, by_archive = new_store(tmp_path, "api"), new_store(tmp_path, "archive")
    backfill_stream(client, by_api, "BTCUSDT", "1m", *UNIT_SWITCH, source="api")
    sim.reset()
    result = backfill_stream(
        client,
        by_archive,
        "BTCUSDT",
        "1m",
        *UNIT_SWITCH,
        source="archive",
        archive_base_url=sim.url,
    )
    assert result.archive_files == [
        daily_file("BTCUSDT", "1m", day).name
        for day in (dt.date(2024, 12, 30), dt.date(2024, 12, 31), dt.date(2025, 1, 1))
    ]
    assert result.from_archive == result.written == 3 * 1440
    assert klines_requests(sim) == 0
    api_frame = by_api.load_klines("BTCUSDT", "1m", *UNIT_SWITCH)
    assert len(api_frame) == 3 * 1440
    assert_candles(by_archive.load_klines("BTCUSDT", "1m", *UNIT_SWITCH), api_frame)


def test_corrupt_zip_day_comes_from_the_api(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """A zip failing its checksum is refused; its day is fetched from the API, same candles."""
    by_api, by_archive = new_store(tmp_path, "api"), new_store(tmp_path, "archive")
    backfill_stream(client, by_api, "BTCUSDT", "1m", *UNIT_SWITCH)
    sim.reset()
    sim.set_faults("corrupt_zip:count=1")
    result = backfill_stream(
        client,
        by_archive,
        "BTCUSDT",
        "1m",
        *UNIT_SWITCH,
        source="archive",
        archive_base_url=sim.url,
    )
    assert len(result.archive_refused) == 1
    assert "fails its checksum" in result.archive_refused[0]
    assert len(result.archive_files) == 2
    assert (result.from_archive, result.from_api) == (2 * 1440, 1440)
    assert klines_requests(sim) == 2
    assert_candles(
        by_archive.load_klines("BTCUSDT", "1m", *UNIT_SWITCH),
        by_api.load_klines("BTCUSDT", "1m", *UNIT_SWITCH),
    )


def test_archive_holes_are_asked_from_the_api_then_recorded(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """The halt is absent from the day's zip; the API proves it in two requests and records it.

    Asked for the halt alone, Binance answers nothing, which proves nothing; asked again without
    an end time, its answer starts at 14:00, which proves the halt.
    """
    store = new_store(tmp_path)
    result = backfill_stream(
        client, store, "BTCUSDT", "1m", *HALT_DAY, source="archive", archive_base_url=sim.url
    )
    halt = intersect(exchange_gaps("BTCUSDT"), [HALT_DAY])
    assert result.archive_files == ["BTCUSDT-1m-2023-03-24.zip"]
    assert result.exchange_gaps == halt
    assert klines_requests(sim) == 2 * len(halt)
    assert_candles(store.load_klines("BTCUSDT", "1m"), reference(sim, "BTCUSDT", "1m", *HALT_DAY))


def test_whole_month_comes_from_the_monthly_zip(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """A whole past month is one monthly zip; the days around it are daily zips."""
    store = new_store(tmp_path)
    start, end = parse_time("2024-10-31"), parse_time("2024-12-02")
    result = backfill_stream(
        client, store, "BTCUSDT", "15m", start, end, source="archive", archive_base_url=sim.url
    )
    assert result.archive_files == [
        "BTCUSDT-15m-2024-10-31.zip",
        "BTCUSDT-15m-2024-11.zip",
        "BTCUSDT-15m-2024-12-01.zip",
    ]
    assert klines_requests(sim) == 0
    stored = store.load_klines("BTCUSDT", "15m", start, end)
    assert_candles(stored, reference(sim, "BTCUSDT", "15m", start, end))


def test_days_the_archive_lacks_come_from_the_api(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """The newest days are not archived yet (404): they and today come from the API."""
    store = new_store(tmp_path)
    today = today_ms(sim)
    start = today - 4 * DAY
    result = backfill_stream(
        client,
        store,
        "ETHUSDT",
        "5m",
        start,
        today + DAY,
        source="archive",
        archive_base_url=sim.url,
    )
    days = [daily_file("ETHUSDT", "5m", utc_day(t)) for t in range(start, today, DAY)]
    assert result.archive_files == [day.name for day in days[:3]]
    assert result.archive_missing == [days[3].name]
    assert result.from_api == result.written - 3 * 288 > 288
    assert archive_requests(sim) == {"200": 6, "404": 1}
    stored = store.load_klines("ETHUSDT", "5m", start, today + DAY)
    assert_candles(stored, reference(sim, "ETHUSDT", "5m", start, today + DAY))


def test_auto_uses_the_archive_only_where_it_pays_off(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """auto: 1m days at least two days old from zips, the last two days and 1h from the API."""
    store = new_store(tmp_path)
    today = today_ms(sim)
    start, end = today - 4 * DAY, sim.now_ms()
    minute = backfill_stream(
        client, store, "BTCUSDT", "1m", start, end, source="auto", archive_base_url=sim.url
    )
    hour = backfill_stream(
        client, store, "BTCUSDT", "1h", start, end, source="auto", archive_base_url=sim.url
    )
    assert len(minute.archive_files) == 3
    assert minute.from_archive == 3 * 1440
    assert minute.from_api > 1440
    assert hour.archive_files == []
    assert archive_requests(sim) == {"200": 6}
    for interval in ("1m", "1h"):
        stored = store.load_klines("BTCUSDT", interval, start, end)
        assert_candles(stored, reference(sim, "BTCUSDT", interval, start, end))


# ---- planning -------------------------------------------------------------------------------

NOW = parse_time("2024-06-20T12:00")


def test_archive_plan_months_days_and_cutoff() -> None:
    """archive: whole past months as monthly zips, other days as daily zips, up to yesterday."""
    todo = [(parse_time("2024-04-30T12:00"), NOW)]
    files = plan_archive("BTCUSDT", "1m", todo, NOW, "archive")
    names = [file.name for file in files]
    assert names[:2] == ["BTCUSDT-1m-2024-04-30.zip", "BTCUSDT-1m-2024-05.zip"]
    assert names[2:] == [f"BTCUSDT-1m-2024-06-{day:02d}.zip" for day in range(1, 20)]


def test_auto_plan_follows_the_pay_off_rule() -> None:
    """auto: a file is read when its missing candles need at least two API pages."""
    month = [(parse_time("2024-05-01"), NOW)]
    assert [f.name for f in plan_archive("BTCUSDT", "1h", month, NOW, "auto")] == []
    fifteen = plan_archive("BTCUSDT", "15m", month, NOW, "auto")
    assert [f.name for f in fifteen] == ["BTCUSDT-15m-2024-05.zip"]
    minutes = plan_archive("BTCUSDT", "1m", [(parse_time("2024-06-15"), NOW)], NOW, "auto")
    assert [f.name for f in minutes] == [f"BTCUSDT-1m-2024-06-{d}.zip" for d in (15, 16, 17, 18)]
    half_day = [(parse_time("2024-06-10T12:00"), parse_time("2024-06-11"))]
    assert plan_archive("BTCUSDT", "1m", half_day, NOW, "auto") == []
    assert plan_archive("BTCUSDT", "1m", half_day, NOW, "archive") == [
        daily_file("BTCUSDT", "1m", dt.date(2024, 6, 10))
    ]


def test_plan_reads_daily_zips_for_1s_and_sparse_months() -> None:
    """1s months are too big for one frame; a month missing few days takes only those days."""
    month_start = parse_time("2024-05-01")
    whole = [(month_start, parse_time("2024-06-01"))]
    seconds = plan_archive("BTCUSDT", "1s", whole, NOW, "auto")
    assert len(seconds) == 31
    assert {file.span for file in seconds} == {"daily"}
    sparse = [(parse_time("2024-05-03"), parse_time("2024-05-05"))]
    assert [f.name for f in plan_archive("BTCUSDT", "1m", sparse, NOW, "archive")] == [
        "BTCUSDT-1m-2024-05-03.zip",
        "BTCUSDT-1m-2024-05-04.zip",
    ]
    assert plan_archive("BTCUSDT", "1w", whole, NOW, "archive") == []
    assert monthly_file("BTCUSDT", "1m", month_start) in plan_archive(
        "BTCUSDT", "1m", whole, NOW, "archive"
    )


def test_stored_frames_have_unique_sorted_open_times(client: BinanceClient, tmp_path: Path) -> None:
    """Overlapping backfills never duplicate a candle."""
    store = new_store(tmp_path)
    backfill_stream(
        client, store, "BTCUSDT", "1h", parse_time("2024-06-01"), parse_time("2024-06-04")
    )
    backfill_stream(
        client, store, "BTCUSDT", "1h", parse_time("2024-06-02"), parse_time("2024-06-06")
    )
    opens = klines.open_time_ms(store.load_klines("BTCUSDT", "1h"))
    assert len(opens) == 5 * 24
    assert bool((np.diff(opens) == 3600_000).all())


def test_timing_is_reported(client: BinanceClient, tmp_path: Path) -> None:
    """The result carries the wall time, for the CLI's table."""
    started = time.perf_counter()
    result = backfill_stream(
        client,
        new_store(tmp_path),
        "BTCUSDT",
        "4h",
        parse_time("2024-06-01"),
        parse_time("2024-06-02"),
    )
    assert 0 < result.seconds <= time.perf_counter() - started

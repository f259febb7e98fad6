"""Run the benchmarks and print a markdown table of ratios against their baselines.

    uv run python -m benchmarks.run            # every case
    uv run python -m benchmarks.run update     # cases whose name contains "update"

Each case runs its baseline and its measurement side by side in this process, against the
simulator over real HTTP (in a thread) and real Parquet files in a temp dir, and reports the
median of several repetitions. Goals are printed, never asserted: tests check behaviour, this
checks speed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from unittest import mock

import stamina

from benchmarks import cpu_per_page
from benchmarks.contenders import ccxt_loop
from ost import intervals, klines
from ost.binance import BinanceClient
from ost.ingest import ingest_stream
from ost.intervals import Interval, Symbol, parse_interval, parse_stream, parse_symbol
from ost.sim import SimHandle
from ost.sim import klines as sim_klines
from ost.stack import free_port, wait_for
from ost.store import CandleStore

NOW = int(dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC).timestamp() * 1000)
MONTH_MS = 30 * intervals.DAY_MS
BTCUSDT: Final = parse_symbol("BTCUSDT")
ONE_MINUTE: Final = parse_interval("1m")


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    case: str
    baseline: str
    baseline_value: float
    measured: str
    measured_value: float
    unit: str
    goal: str
    met: bool
    #: Report baseline over measured ("5.0x faster") instead of measured over baseline.
    speedup: bool = False

    @property
    def ratio(self) -> float:
        """Measured over baseline, or baseline over measured for a speed-up."""
        over, under = self.measured_value, self.baseline_value
        if self.speedup:
            over, under = under, over
        return over / under if under else float("inf")


def median_of(repeats: int, action: Callable[[], object]) -> float:
    """Median wall time of ``action`` in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fill(
    store: CandleStore, symbol: Symbol, interval: Interval, start_ms: int, end_ms: int
) -> None:
    """Store the simulator's candles of ``[start_ms, end_ms)``, a month per merge."""
    for chunk in range(start_ms, end_ms, MONTH_MS):
        rows = sim_klines(symbol, interval, chunk, min(chunk + MONTH_MS, end_ms), NOW)
        store.merge(
            symbol, interval, klines.frame_from_columns(klines.parse_columns(rows, interval))
        )


def bench_update_vs_history(sim: SimHandle, scratch: Path) -> Row:
    """A 15-minute update (15 new 1m candles over HTTP) into 2 years of history vs 1 day."""
    symbol, interval, repeats = BTCUSDT, ONE_MINUTE, 15
    cutoff = intervals.align(interval, NOW) - 15 * repeats * intervals.MINUTE_MS
    stores = {}
    for name, days in (("1 day", 1), ("2 years", 730)):
        store = CandleStore(str(scratch / name.replace(" ", "-")))
        fill(store, symbol, interval, cutoff - days * intervals.DAY_MS, cutoff)
        stores[name] = store

    def updates(store: CandleStore) -> list[float]:
        times = []
        for step in range(1, repeats + 1):
            sim.configure(now_ms=cutoff + step * 15 * intervals.MINUTE_MS + 30_000)
            with BinanceClient([sim.url]) as client:
                client.sync_time()
                started = time.perf_counter()
                ingest_stream(client, store, symbol, interval, lookback_days=1)
                times.append((time.perf_counter() - started) * 1000)
        return times

    day = statistics.median(updates(stores["1 day"]))
    years = statistics.median(updates(stores["2 years"]))
    return Row(
        "15-min update of a 1m stream (HTTP + store)",
        "1 day stored",
        day,
        "2 years stored",
        years,
        "ms",
        "ratio ≤ 1.3",
        years / day <= 1.3,
    )


def bench_read_week(scratch: Path) -> Row:
    """Reading one week of 1m candles out of 5 years vs out of a store holding only that week."""
    symbol, interval = BTCUSDT, ONE_MINUTE
    end = intervals.align("1d", NOW)
    week_start = end - 400 * intervals.DAY_MS
    week_end = week_start + 7 * intervals.DAY_MS
    five_years = CandleStore(str(scratch / "5y"))
    fill(five_years, symbol, interval, end - 5 * 365 * intervals.DAY_MS, end)
    one_week = CandleStore(str(scratch / "1w"))
    fill(one_week, symbol, interval, week_start, week_end)
    baseline = median_of(9, lambda: one_week.load_klines(symbol, interval, week_start, week_end))
    measured = median_of(9, lambda: five_years.load_klines(symbol, interval, week_start, week_end))
    assert len(five_years.load_klines(symbol, interval, week_start, week_end)) == 7 * 1440
    return Row(
        "read one week of 1m",
        "store of 1 week",
        baseline,
        "store of 5 years",
        measured,
        "ms",
        "≤ 100 ms",
        measured <= 100,
    )


BENCH_SYMBOLS = [
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "SOLUSDT",
    "DOGEUSDT",
    "DOTUSDT",
    "LTCUSDT",
    "LINKUSDT",
    "TRXUSDT",
    "AVAXUSDT",
    "ATOMUSDT",
    "XLMUSDT",
    "ETCUSDT",
    "EOSUSDT",
    "UNIUSDT",
    "FILUSDT",
    "NEARUSDT",
    "AAVEUSDT",
]
BENCH_INTERVALS = ("15m", "1h", "4h", "1d")


@mock.patch.dict(os.environ)  # the OST_* and PREFECT_* set below are restored after
def bench_ingest_all_cycle(sim: SimHandle, scratch: Path) -> list[Row]:
    """One ingest-all cycle, 20 symbols x 4 intervals: the Prefect flow vs the core directly.

    Both run 4 streams at once; both stores are first filled by an untimed cycle, then the
    simulator's clock moves 15 minutes before each timed cycle, so both fetch the same candles.
    """
    from concurrent.futures import ThreadPoolExecutor

    from prefect.testing.utilities import prefect_test_harness

    from ost.flows.ingest import MAX_PARALLEL_STREAMS, ingest_all
    from ost.runtime import Runtime, current_runtime
    from ost.settings import load_settings

    streams = len(BENCH_SYMBOLS) * len(BENCH_INTERVALS)
    os.environ.update(
        OST_BINANCE_BASE_URLS=sim.url,
        OST_SYMBOLS=",".join(BENCH_SYMBOLS),
        OST_INTERVALS=",".join(BENCH_INTERVALS),
        OST_INITIAL_LOOKBACK_DAYS="2",
        PREFECT_HOME=str(scratch / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
    )

    def core_cycle() -> None:
        runtime = Runtime.from_settings(load_settings(data_dir=str(scratch / "core")))
        with ThreadPoolExecutor(MAX_PARALLEL_STREAMS) as pool:
            outcomes = list(pool.map(lambda s: runtime.ingest(*s), runtime.streams()))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
        runtime.close()

    def flow_cycle() -> None:
        os.environ["OST_DATA_DIR"] = str(scratch / "flow")
        current_runtime.cache_clear()
        assert ingest_all(return_state=True).is_completed()
        current_runtime().close()

    clock = NOW
    sim.configure(now_ms=clock)
    core_cycle()
    with prefect_test_harness(server_startup_timeout=120):
        flow_cycle()
        core_ms, flow_ms = [], []
        for _ in range(3):
            clock += 15 * intervals.MINUTE_MS
            sim.configure(now_ms=clock)
            core_ms.append(median_of(1, core_cycle))
            flow_ms.append(median_of(1, flow_cycle))
    core, flow = statistics.median(core_ms), statistics.median(flow_ms)
    per_stream = (flow - core) / streams
    return [
        Row(
            f"ingest-all cycle, {streams} streams",
            "core, 4 threads",
            core,
            "Prefect flow, 4 task threads",
            flow,
            "ms",
            "≤ 15 s",
            flow <= 15_000,
        ),
        Row(
            "Prefect overhead per stream",
            "core per stream",
            core / streams,
            "flow per stream",
            flow / streams,
            "ms",
            "overhead ≤ 50 ms",
            per_stream <= 50,
        ),
    ]


def ost_backfill(sim: SimHandle, root: Path, start_ms: int, end_ms: int, source: str) -> None:
    """``ost backfill`` of BTCUSDT 1m over the range, through the core."""
    from ost.backfill import backfill_stream

    with BinanceClient([sim.url]) as client:
        result = backfill_stream(
            client,
            CandleStore(str(root)),
            BTCUSDT,
            ONE_MINUTE,
            start_ms,
            end_ms,
            source=source,
            archive_base_url=sim.url,
        )
    assert result.ok


CCXT_REPEATS = 5


def bench_against_ccxt(sim: SimHandle, scratch: Path) -> list[Row]:
    """90 days of 1m with 20 ms of latency: ost (auto, the default, and API) against ccxt.

    Each contender runs once untimed (imports, and the simulator's archive files: on
    data.binance.vision they are static files that exist before anyone asks), then
    ``CCXT_REPEATS`` times in turn; the median counts. Every run starts from an empty store,
    and its candles must equal ccxt's (checked after the timings).
    """
    import ccxt  # noqa: F401 -- imported before any timing, like ost's modules

    end = intervals.align("1d", NOW) - 3 * intervals.DAY_MS
    start = end - 90 * intervals.DAY_MS
    sim.configure(now_ms=NOW, latency_ms=20)
    theirs = ccxt_loop(sim.url, start, end)
    roots: list[Path] = []

    def run_ost(source: str) -> None:
        roots.append(scratch / f"{source}-{len(roots)}")
        ost_backfill(sim, roots[-1], start, end, source)

    contenders: dict[str, Callable[[], object]] = {
        "ccxt": lambda: ccxt_loop(sim.url, start, end),
        "auto": lambda: run_ost("auto"),
        "api": lambda: run_ost("api"),
    }
    for action in contenders.values():
        action()
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(CCXT_REPEATS):
        for name, action in contenders.items():
            started = time.perf_counter()
            action()
            timings[name].append((time.perf_counter() - started) * 1000)
    for root in roots:
        ours = CandleStore(str(root)).load_klines(BTCUSDT, ONE_MINUTE, start, end)
        ohlcv = ours[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
        opens = klines.open_time_ms(ours).tolist()
        assert [[t, *values] for t, values in zip(opens, ohlcv, strict=True)] == theirs, root
    sim.configure(latency_ms=0)
    print(f"  runs (ms): {timings}", file=sys.stderr)
    ccxt_ms = statistics.median(timings["ccxt"])
    return [
        Row(
            f"backfill 90 days of 1m, 20 ms latency (--source {source})",
            "ccxt fetch_ohlcv loop",
            ccxt_ms,
            f"ost --source {source}",
            statistics.median(timings[source]),
            "ms",
            "≥ 5x faster",
            ccxt_ms / statistics.median(timings[source]) >= 5,
            speedup=True,
        )
        for source in ("auto", "api")
    ]


def bench_budget_bound(sim: SimHandle, scratch: Path) -> Row:
    """The weight limit lowered: how much of the budget a long API backfill uses, with no 418."""
    limit, window_s = 100, 1
    sim.configure(now_ms=NOW, weight_limit=limit, weight_window_s=window_s)
    sim.reset()
    end = intervals.align("1d", NOW) - intervals.DAY_MS
    start = end - 200 * intervals.DAY_MS  # 288 klines pages: about 6 windows' worth
    started = time.perf_counter()
    ost_backfill(sim, scratch, start, end, "api")
    elapsed_s = time.perf_counter() - started
    stats = sim.stats()
    weights = {"/api/v3/klines": 2, "/api/v3/exchangeInfo": 20, "/api/v3/time": 1}
    spent = sum(
        weights.get(path, 1) * count
        for path, outcomes in stats["requests"].items()
        for status, count in outcomes.items()
        if status == "200"
    )
    budget = limit * elapsed_s / window_s
    used = spent / budget
    sim.configure(weight_limit=6000, weight_window_s=60)
    return Row(
        f"budget-bound backfill ({limit} weight / {window_s} s); 418s: {stats['status_418']},"
        f" 429s: {stats['status_429']}",
        "budget over the run",
        budget,
        "weight spent",
        spent,
        "weight",
        "≥ 90% used, 0 x 418",
        used >= 0.9 and stats["status_418"] == 0,
    )


def bench_many_streams(sim: SimHandle, scratch: Path) -> Row:
    """``ost backfill --interval all --days 1`` for the benchmark's 80 streams, 20 ms latency.

    Baseline: the same core taking the streams one at a time (each with its concurrent pages).
    """
    from ost.backfill import backfill_streams

    sim.configure(now_ms=NOW, latency_ms=20)
    end = intervals.align("1d", NOW) - intervals.DAY_MS
    streams = [
        parse_stream(symbol, interval)
        for symbol in BENCH_SYMBOLS
        for interval in ("1m", *BENCH_INTERVALS)
    ]
    runs = itertools.count()

    def one_by_one() -> None:
        root = CandleStore(str(scratch / f"one-{next(runs)}"))
        with BinanceClient([sim.url]) as client:
            for symbol, interval in streams:
                assert backfill_stream_ok(client, root, symbol, interval, end)

    def at_once() -> None:
        root = CandleStore(str(scratch / f"many-{next(runs)}"))
        with BinanceClient([sim.url]) as client:
            results = backfill_streams(
                client, root, streams, end - intervals.DAY_MS, end, source="api"
            )
        assert all(result.ok for result in results)

    baseline = median_of(3, one_by_one)
    measured = median_of(3, at_once)
    sim.configure(latency_ms=0)
    return Row(
        f"backfill --days 1 of {len(streams)} streams (1m/15m/1h/4h/1d), 20 ms latency",
        "one stream at a time",
        baseline,
        "streams at once (STREAMS_AT_ONCE)",
        measured,
        "ms",
        "faster",
        measured < baseline,
        speedup=True,
    )


def backfill_stream_ok(
    client: BinanceClient, store: CandleStore, symbol: Symbol, interval: Interval, end: int
) -> bool:
    """One stream's day before ``end``, through the API; whether it succeeded."""
    from ost.backfill import backfill_stream

    return backfill_stream(
        client, store, symbol, interval, end - intervals.DAY_MS, end, source="api"
    ).ok


MEMORY_CHILD = """
import sys
from ost.backfill import backfill_stream
from ost.binance import BinanceClient
from ost.store import CandleStore
url, root, start, end, source = sys.argv[1:6]
with BinanceClient([url]) as client:
    result = backfill_stream(client, CandleStore(root), "BTCUSDT", "1m", int(start), int(end),
                             source=source, archive_base_url=url)
assert result.ok and result.written > 0, result
# VmHWM is this process's own peak: ru_maxrss would carry the parent's over fork and exec.
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(int(status) / 1024)
"""


def peak_rss_mb(sim: SimHandle, root: Path, start_ms: int, end_ms: int, source: str) -> float:
    """Peak RSS of a process that backfills BTCUSDT 1m over the range."""
    argv = [sys.executable, "-c", MEMORY_CHILD, sim.url, str(root), str(start_ms), str(end_ms)]
    out = subprocess.run([*argv, source], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_memory_5_years(sim: SimHandle, scratch: Path) -> list[Row]:
    """Peak RSS of a 5-year 1m backfill (2.6 million candles) against a 1-day one."""
    sim.configure(now_ms=NOW)
    end = intervals.align("1d", NOW) - 3 * intervals.DAY_MS
    rows = []
    for source in ("auto", "api"):
        day = peak_rss_mb(sim, scratch / f"day-{source}", end - intervals.DAY_MS, end, source)
        years = peak_rss_mb(
            sim, scratch / f"5y-{source}", end - 5 * 365 * intervals.DAY_MS, end, source
        )
        rows.append(
            Row(
                f"peak RSS, 5 years of 1m ({source})",
                "1 day",
                day,
                "5 years",
                years,
                "MB",
                "≤ 400 MB",
                years <= 400,
            )
        )
    return rows


def bench_market_cycle(sim: SimHandle, scratch: Path) -> list[Row]:
    """One ingest-all cycle of 1,500 streams through the flow (benchmarks/cycle.py)."""
    from benchmarks.cycle import bench_market_cycle as market_cycle  # it imports this module

    return market_cycle(sim, scratch)


def bench_vs_ccxt(sim: SimHandle, scratch: Path) -> list[Row]:
    """A year of 1m: ost against both ccxt loops, each in a process (benchmarks/vs_ccxt.py)."""
    from benchmarks.vs_ccxt import bench_vs_ccxt as vs_ccxt  # it imports this module

    return vs_ccxt(sim, scratch)


def bench_reads(_sim: SimHandle, scratch: Path) -> list[Row]:
    """Reads of five years of 1m: load_klines, DuckDB, pyarrow, ost gaps (benchmarks/reads.py)."""
    from benchmarks.reads import bench_reads as reads  # it imports this module

    return reads(scratch)


CASES: dict[str, Callable[[SimHandle, Path], Row | list[Row]]] = {
    "vs-ccxt-365-days": bench_vs_ccxt,
    "vs-ccxt-90-days": bench_against_ccxt,
    "budget-bound": bench_budget_bound,
    "many-streams": bench_many_streams,
    "memory-5-years": bench_memory_5_years,
    "ingest-all-cycle": bench_ingest_all_cycle,
    "market-cycle-1500": bench_market_cycle,
    "update-vs-history": bench_update_vs_history,
    "read-week-of-5-years": lambda _sim, scratch: bench_read_week(scratch),
    "reads-5-years": bench_reads,
    "cpu-per-page": cpu_per_page.bench_cpu_per_page,
}


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| case | baseline | measured | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.case} | {row.baseline}: {row.baseline_value:.1f} {row.unit} "
            f"| {row.measured}: {row.measured_value:.1f} {row.unit} "
            f"| {row.ratio:.2f}x{' faster' if row.speedup else ''} "
            f"| {row.goal} | {'yes' if row.met else 'NO'} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def simulator() -> Iterator[SimHandle]:
    """``ost sim`` in a process of its own, so that it competes with neither side for the GIL."""
    port = free_port()
    argv = [sys.executable, "-m", "ost.cli", "sim", "--port", str(port)]
    child = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/_sim/ping", "the simulator")
        yield SimHandle(f"http://127.0.0.1:{port}")
    finally:
        child.terminate()
        child.wait(timeout=30)


def main(argv: list[str]) -> int:
    """Run the chosen cases and print the table."""
    chosen = [name for name in CASES if not argv or any(arg in name for arg in argv)]
    stamina.set_active(False)
    rows = []
    with simulator() as sim, tempfile.TemporaryDirectory(prefix="ost-bench-") as scratch:
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr)
            sim.restore()
            result = CASES[name](sim, Path(scratch) / name)
            rows.extend(result if isinstance(result, list) else [result])
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

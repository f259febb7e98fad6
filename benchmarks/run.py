"""Run the benchmarks and print a markdown table of ratios against their baselines.

    uv run python -m benchmarks.run            # every case
    uv run python -m benchmarks.run update     # cases whose name contains "update"

Each case runs its baseline and its measurement side by side in this process, against the
simulator over real HTTP (in a thread) and real Parquet files in a temp dir, and reports the
median of several repetitions. Goals are printed, never asserted: tests check behaviour, this
checks speed.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import stamina

from ost import intervals, klines
from ost.binance import BinanceClient
from ost.ingest import ingest_stream
from ost.sim import SimHandle, running_sim
from ost.sim import klines as sim_klines
from ost.store import CandleStore

NOW = int(dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC).timestamp() * 1000)
MONTH_MS = 30 * intervals.DAY_MS


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

    @property
    def ratio(self) -> float:
        """Measured over baseline."""
        return self.measured_value / self.baseline_value if self.baseline_value else float("inf")


def median_of(repeats: int, action: Callable[[], object]) -> float:
    """Median wall time of ``action`` in milliseconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fill(store: CandleStore, symbol: str, interval: str, start_ms: int, end_ms: int) -> None:
    """Store the simulator's candles of ``[start_ms, end_ms)``, a month per merge."""
    for chunk in range(start_ms, end_ms, MONTH_MS):
        rows = sim_klines(symbol, interval, chunk, min(chunk + MONTH_MS, end_ms), NOW)
        store.merge(symbol, interval, klines.parse_rows(rows, interval))


def bench_update_vs_history(sim: SimHandle, scratch: Path) -> Row:
    """A 15-minute update (15 new 1m candles over HTTP) into 2 years of history vs 1 day."""
    symbol, interval, repeats = "BTCUSDT", "1m", 15
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
    symbol, interval = "BTCUSDT", "1m"
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


def bench_ingest_all_cycle(sim: SimHandle, scratch: Path) -> list[Row]:
    """One ingest-all cycle, 20 symbols x 4 intervals: the Prefect flow vs the core directly.

    Both run 4 streams at once; both stores are first filled by an untimed cycle, then the
    simulator's clock moves 15 minutes before each timed cycle, so both fetch the same candles.
    """
    from concurrent.futures import ThreadPoolExecutor

    from prefect.testing.utilities import prefect_test_harness

    from flows.ingest import MAX_PARALLEL_STREAMS, ingest_all
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


CASES: dict[str, Callable[[SimHandle, Path], Row | list[Row]]] = {
    "ingest-all-cycle": bench_ingest_all_cycle,
    "update-vs-history": bench_update_vs_history,
    "read-week-of-5-years": lambda _sim, scratch: bench_read_week(scratch),
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
            f"| {row.measured}: {row.measured_value:.1f} {row.unit} | {row.ratio:.2f}x "
            f"| {row.goal} | {'yes' if row.met else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the chosen cases and print the table."""
    chosen = [name for name in CASES if not argv or any(arg in name for arg in argv)]
    stamina.set_active(False)
    rows = []
    with running_sim() as sim, tempfile.TemporaryDirectory(prefix="ost-bench-") as scratch:
        for name in chosen:
            print(f"running {name} ...", file=sys.stderr)
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

"""Reads at scale: five years of BTCUSDT 1m (1,826 daily partition files), read every way.

    uv run python -m benchmarks.run reads-5-years      # in the table
    uv run python -m benchmarks.reads [--root DIR]     # alone; DIR keeps the store between runs

The store is built once per run by writing the partition files directly through the store's
codec (the simulator's candles, a day per file, as a backfill leaves them), plus the stream's
record of the exchange-side gap that the simulator's real data holds (2023-03-24). Every
measurement runs in a child process of its own, with ``PYTHONDONTWRITEBYTECODE`` unset (a user's
machine caches bytecode; one untimed run writes the cache first), median of ``REPEATS``:

- ``CandleStore.load_klines`` of the last year, and pyarrow.dataset reading the same 365 files;
- counting the 5 years: DuckDB's ``count(*)`` over ``read_parquet(... hive_partitioning=true)``
  and pyarrow's ``dataset(...).count_rows()``, the query alone and the whole process;
- ``ost gaps`` over the 5 years, the whole command (``.venv/bin/ost``, interpreter start
  included), against ``ost --help`` (the interpreter, typer and the CLI module alone).

Wall and CPU (user + system, rusage) are both reported; the machine has 2 shared cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.run import Row, table
from ost import intervals, klines
from ost.gaps import Evidence, ExchangeGapLog, ProvenGap
from ost.intervals import parse_interval, parse_symbol
from ost.sim.market import candles, exchange_gaps
from ost.store import CandleStore, partition_path, split_by_partition, write_frame

SYMBOL, INTERVAL = parse_symbol("BTCUSDT"), parse_interval("1m")
YEARS_DAYS = 1826  # five years of days, leap day included
REPEATS = 3
#: The last stored day (yesterday, in UTC) ends here: today's UTC midnight.
END_MS = intervals.align("1d", int(time.time() * 1000))
START_MS = END_MS - YEARS_DAYS * intervals.DAY_MS
YEAR_START_MS = END_MS - 365 * intervals.DAY_MS
GAPS_GOAL_MS = 1000.0
CHUNK_MS = 30 * intervals.DAY_MS
WRITERS = 8


def build_store(root: Path) -> None:
    """Five years of the simulator's 1m candles, a file per day, and the exchange-gap record."""
    store = CandleStore(str(root))

    def write(part: tuple[dt.date, pd.DataFrame]) -> None:
        path = partition_path(store.backend.root, SYMBOL, INTERVAL, part[0])
        write_frame(store.backend, path, part[1].reset_index(drop=True))

    with ThreadPoolExecutor(WRITERS) as writers:  # the writes wait on fsync, not on the CPU
        for chunk in range(START_MS, END_MS, CHUNK_MS):
            served = candles(SYMBOL, INTERVAL, chunk, min(chunk + CHUNK_MS, END_MS), END_MS)
            columns = {name: getattr(served, name) for name in klines.COLUMNS}
            frame = klines.frame_from_columns(columns)
            list(writers.map(write, split_by_partition(INTERVAL, frame)))
    holes = [
        ProvenGap(hole, Evidence("sim", "/api/v3/klines", hole[1], END_MS))
        for hole in exchange_gaps(SYMBOL)
        if START_MS <= hole[0] < END_MS
    ]
    ExchangeGapLog.of(store).record(SYMBOL, INTERVAL, holes)


# ---- what each child process does; it prints {"wall_ms", "cpu_ms", "rows"} of its work ------

CHILD = """
import json, resource, sys, time
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000
what, root, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if what == "load_klines":
    from ost.store import CandleStore
elif what == "pyarrow_read" or what == "pyarrow_count":
    import pyarrow.dataset as ds
else:
    import duckdb
wall0, cpu0 = time.perf_counter(), cpu()
if what == "load_klines":
    rows = len(CandleStore(root).load_klines("BTCUSDT", "1m", start, end))
elif what == "pyarrow_read":
    rows = ds.dataset(sys.argv[5:], format="parquet").to_table().num_rows
elif what == "pyarrow_count":
    rows = ds.dataset(root + "/klines", format="parquet", partitioning="hive").count_rows()
else:
    glob = root + "/klines/**/*.parquet"
    sql = f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)"
    rows = duckdb.sql(sql).fetchall()[0][0]
wall, spent = (time.perf_counter() - wall0) * 1000, cpu() - cpu0
print(json.dumps({"wall_ms": wall, "cpu_ms": spent, "rows": rows}))
"""


def child_env() -> dict[str, str]:
    """The environment of a user's shell: bytecode is cached."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def children_cpu_ms() -> float:
    """User + system CPU of the waited-for children so far (with their own children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``argv`` to its end: (wall ms, CPU ms of the whole process tree, stdout)."""
    cpu0, wall0 = children_cpu_ms(), time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall, spent = (time.perf_counter() - wall0) * 1000, children_cpu_ms() - cpu0
    if done.returncode not in {0}:
        raise RuntimeError(f"{argv[3:5]} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, spent, done.stdout


def measure(argv: list[str], env: dict[str, str], *, reports: bool = True) -> dict[str, float]:
    """Medians over ``REPEATS`` runs (after one untimed): the process's, and the work's own.

    ``reports``: the child is ``CHILD``, whose last line is the JSON of its work.
    """
    run_child(argv, env)
    runs: list[dict[str, float]] = []
    for _ in range(REPEATS):
        wall, spent, out = run_child(argv, env)
        inner: dict[str, Any] = json.loads(out.splitlines()[-1]) if reports else {}
        runs.append({"process_wall_ms": wall, "process_cpu_ms": spent, **inner})
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def reads_rows(root: Path) -> list[Row]:
    """The table's rows for a built store at ``root``."""
    env = child_env()
    load = uptime()
    python = [sys.executable, "-c", CHILD]
    year = [str(root), str(YEAR_START_MS), str(END_MS)]
    years = [str(root), str(START_MS), str(END_MS)]
    store = CandleStore(str(root))
    year_files = [
        partition_path(str(root), SYMBOL, INTERVAL, period)
        for period in store.partitions(SYMBOL, INTERVAL)
        if intervals.date_ms(period) >= YEAR_START_MS
    ]
    results = {
        "load_klines": measure([*python, "load_klines", *year], env),
        "pyarrow_read": measure([*python, "pyarrow_read", *year, *year_files], env),
        "pyarrow_count": measure([*python, "pyarrow_count", *years], env),
        "duckdb_count": measure([*python, "duckdb_count", *years], env),
    }
    ost = [str(Path(sys.executable).parent / "ost")]
    gaps_env = {**env, "OST_DATA_DIR": str(root), "OST_SYMBOLS": SYMBOL}
    first = dt.datetime.fromtimestamp(START_MS / 1000, dt.UTC).date().isoformat()
    last = dt.datetime.fromtimestamp((END_MS - 1) / 1000, dt.UTC).date().isoformat()
    gaps_argv = [*ost, "gaps", "--interval", INTERVAL, "--start", first, "--end", last, "--json"]
    results["ost_help"] = measure([*ost, "--help"], gaps_env, reports=False)
    results["ost_gaps"] = measure(gaps_argv, gaps_env, reports=False)
    checked = subprocess.run(gaps_argv, env=gaps_env, capture_output=True, check=True)
    report = json.loads(checked.stdout)
    for name, result in results.items():
        print(
            f"  {name}: {json.dumps({k: round(v, 1) for k, v in result.items()})}", file=sys.stderr
        )
    print(f"  load average before: {load}, after: {uptime()}", file=sys.stderr)
    assert results["load_klines"]["rows"] == results["pyarrow_read"]["rows"] == 365 * 1440
    assert results["duckdb_count"]["rows"] == results["pyarrow_count"]["rows"]
    stream = report["streams"][0]
    assert stream["expected_candles"] == YEARS_DAYS * 1440, stream
    assert report["exit_status"] == 0, report
    assert stream["exchange_gaps"], report
    return rows_of(results)


def rows_of(results: dict[str, dict[str, float]]) -> list[Row]:
    """The measurements as table rows (CPU in the case's text)."""

    def cpu(name: str, key: str = "cpu_ms") -> str:
        return f"{results[name][key]:.0f}"

    load, read = results["load_klines"], results["pyarrow_read"]
    duck, arrow = results["duckdb_count"], results["pyarrow_count"]
    gaps, help_ = results["ost_gaps"], results["ost_help"]
    return [
        Row(
            f"load_klines, 1 year of 1m (365 files); CPU {cpu('load_klines')} vs "
            f"{cpu('pyarrow_read')} ms",
            "pyarrow.dataset to_table",
            read["wall_ms"],
            "CandleStore.load_klines",
            load["wall_ms"],
            "ms",
            "≤ 3x pyarrow",
            load["wall_ms"] <= 3 * read["wall_ms"],
        ),
        Row(
            f"count 5 years of 1m ({YEARS_DAYS} files), query alone; CPU {cpu('duckdb_count')} "
            f"vs {cpu('pyarrow_count')} ms",
            "pyarrow count_rows",
            arrow["wall_ms"],
            "DuckDB count(*)",
            duck["wall_ms"],
            "ms",
            "≤ 1 s",
            max(duck["wall_ms"], arrow["wall_ms"]) <= 1000,
        ),
        Row(
            f"count 5 years of 1m, whole process; CPU {cpu('duckdb_count', 'process_cpu_ms')} "
            f"vs {cpu('pyarrow_count', 'process_cpu_ms')} ms",
            "pyarrow count_rows",
            arrow["process_wall_ms"],
            "DuckDB count(*)",
            duck["process_wall_ms"],
            "ms",
            "≤ 1.5 s",
            max(duck["process_wall_ms"], arrow["process_wall_ms"]) <= 1500,
        ),
        Row(
            f"ost gaps, 5 years of 1m, whole command; CPU {cpu('ost_gaps', 'process_cpu_ms')} "
            f"vs {cpu('ost_help', 'process_cpu_ms')} ms",
            "ost --help",
            help_["process_wall_ms"],
            "ost gaps --json",
            gaps["process_wall_ms"],
            "ms",
            "≤ 1 s",
            gaps["process_wall_ms"] <= GAPS_GOAL_MS,
        ),
    ]


def uptime() -> str:
    """The load averages over 1, 5 and 15 minutes."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def bench_reads(scratch: Path) -> list[Row]:
    """The case of benchmarks/run.py: build the store in ``scratch``, then measure."""
    started = time.perf_counter()
    build_store(scratch)
    print(f"  store built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return reads_rows(scratch)


def main(argv: list[str]) -> int:
    """Build (unless ``--root`` already holds it) and measure; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="keep the store here between runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ost-reads-") as scratch:
        root = args.root or Path(scratch)
        if not (root / "klines").exists():
            bench_reads_built = bench_reads(root)
        else:
            bench_reads_built = reads_rows(root)
        print(table(bench_reads_built))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

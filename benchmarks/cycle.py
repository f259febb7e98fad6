"""One ``ingest-all`` cycle over the whole market: 1,500 symbols x 15m, a 15-minute update.

    uv run python -m benchmarks.cycle                  # 1,500 streams, 20 ms latency
    uv run python -m benchmarks.cycle --streams 300    # fewer
    uv run python -m benchmarks.run market-cycle       # the same case, in the table

Each stream's store already holds the current month of 15m candles up to the previous cycle
(written directly as partition files, the simulator's candles), so each stream needs exactly one
klines request. The simulator (its own process) answers with 20 ms of latency. A real Prefect
server (``prefect server start``, SQLite under a temporary ``PREFECT_HOME``, its log to a file)
takes the flow run, which runs in this process. The baseline is the core alone, the same
streams, as many at once, into a copy of the same stores. Reported: wall, CPU (this process, the
server, the simulator), task runs, requests, weight per minute, 429/418s, and the server's
``database is locked`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.run import NOW, Row, simulator, table
from ost import intervals, klines
from ost.intervals import parse_interval, parse_stream, parse_symbol
from ost.sim import SimHandle
from ost.sim.market import candles
from ost.sim.symbols import GENERATED_SYMBOL
from ost.stack import free_port, wait_for
from ost.store import CandleStore

INTERVAL = "15m"
MARKET_STREAMS = 1500
LATENCY_MS = 20
#: The goal: one cycle of the whole market in a minute, a fifteenth of the schedule's period.
GOAL_S = 60.0
#: How often the simulator's weight count is sampled during a run.
WEIGHT_SAMPLE_S = 0.2
LOCKED = "database is locked"


def market_symbols(count: int) -> list[str]:
    """``count`` generated symbols of the simulator (``SIM0001USDT`` ...)."""
    symbols = [f"SIM{number:04d}USDT" for number in range(1, count + 1)]
    assert all(GENERATED_SYMBOL.fullmatch(symbol) for symbol in symbols)
    return symbols


def prefill(root: Path, symbols: list[str], end_ms: int) -> None:
    """Write each symbol's partition of ``end_ms``'s month: its 15m candles before ``end_ms``.

    The rows are the simulator's JSON, parsed as the client parses it, merged as the store
    merges a page: the stores a previous cycle would have left.
    """
    start = intervals.date_ms(intervals.partition_start(INTERVAL, end_ms - 1))
    store = CandleStore(str(root))
    for symbol in symbols:
        served = orjson.loads(candles(symbol, INTERVAL, start, end_ms, NOW).json_bytes())
        frame = klines.frame_from_columns(klines.parse_columns(served, INTERVAL))
        store.merge(parse_symbol(symbol), parse_interval(INTERVAL), frame)


def cpu_s_where(match: Callable[[list[str]], bool]) -> float:
    """User + system CPU seconds of the live processes whose ``/proc/PID/stat`` fields match.

    The fields start after the command's name: state, ppid, pgrp, session, ...
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if match(fields):
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def session_cpu_s(pid: int) -> float:
    """CPU seconds of every process in the session that ``pid`` leads (a server's tree)."""
    return cpu_s_where(lambda fields: int(fields[3]) == pid)


def children_cpu_s(but_session: int) -> float:
    """CPU seconds of this process's live children outside a session (the simulator's)."""
    return cpu_s_where(
        lambda fields: int(fields[1]) == os.getpid() and int(fields[3]) != but_session
    )


def own_cpu_s() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class WeightSampler:
    """The most weight the simulator counted in one window, sampled while a run goes on."""

    sim: SimHandle
    peak: int = 0

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Sample in a thread for the duration of the block."""
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(WEIGHT_SAMPLE_S):
                self.peak = max(self.peak, *self.sim.stats()["weight_used"].values(), 0)

        thread = threading.Thread(target=sample, name="weight-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.peak = max(self.peak, *self.sim.stats()["weight_used"].values(), 0)


@dataclass(frozen=True)
class Cycle:
    """What one cycle cost and did."""

    wall_s: float
    cpu_s: float
    klines_requests: int
    other_requests: int
    weight_spent: int
    peak_weight: int
    status_429: int
    status_418: int


def measured(sim: SimHandle, action: Callable[[], None]) -> Cycle:
    """Run ``action`` against a simulator with fresh counters: its wall, CPU and requests."""
    sim.reset()
    sampler = WeightSampler(sim)
    cpu, started = own_cpu_s(), time.perf_counter()
    with sampler.sampling():
        action()
    wall, cpu = time.perf_counter() - started, own_cpu_s() - cpu
    stats = sim.stats()
    from ost.sim.limits import weight_of  # the simulator's own weights

    answered = {path: outcomes.get("200", 0) for path, outcomes in stats["requests"].items()}
    return Cycle(
        wall,
        cpu,
        answered.get("/api/v3/klines", 0),
        sum(answered.values()) - answered.get("/api/v3/klines", 0),
        sum(weight_of(path) * count for path, count in answered.items()),
        sampler.peak,
        stats["status_429"],
        stats["status_418"],
    )


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``prefect server start`` on SQLite under ``home``: its API URL, process and log file."""
    port = free_port()
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
    }
    argv = [sys.executable, "-m", "prefect", "--no-prompt", "server", "start"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(  # argv built here
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(f"{api}/health", "the Prefect server")
        yield api, server, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 2)  # SIGINT: the server's own shutdown
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()


def task_runs_of(flow_run_id: Any) -> list[Any]:
    """The task runs of one flow run, from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:  # the server answers at most 200 a page
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def bench_market_cycle(sim: SimHandle, scratch: Path, streams: int = MARKET_STREAMS) -> list[Row]:
    """The case: the core alone, then the flow, each one cycle of ``streams`` 15m streams."""
    symbols = market_symbols(streams)
    cycle_at = intervals.align(INTERVAL, NOW)
    stored_until = cycle_at - intervals.FIXED_INTERVAL_MS[INTERVAL]
    started = time.perf_counter()
    prefill(scratch / "flow", symbols, stored_until)
    shutil.copytree(scratch / "flow", scratch / "core")
    print(f"  prefill: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    sim.configure(now_ms=NOW, latency_ms=LATENCY_MS)
    os.environ.update(
        OST_BINANCE_BASE_URLS=sim.url,
        OST_SYMBOLS=",".join(symbols),
        OST_INTERVALS=INTERVAL,
        OST_INITIAL_LOOKBACK_DAYS="1",
    )
    from ost.runtime import Runtime, current_runtime
    from ost.settings import load_settings

    def core_cycle() -> None:
        runtime = Runtime.from_settings(load_settings(data_dir=str(scratch / "core")))
        outcomes = runtime.ingest_many(runtime.streams(), workers=max_parallel_streams())
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
        runtime.close()

    core = measured(sim, core_cycle)
    check_stored(scratch / "core", symbols, cycle_at)

    with prefect_server(scratch / "prefect-home") as (api, server, log):
        from prefect.logging.handlers import APILogWorker
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from ost.flows.ingest import ingest_all

        os.environ["OST_DATA_DIR"] = str(scratch / "flow")
        current_runtime.cache_clear()
        states = []
        with temporary_settings(updates={PREFECT_API_URL: api}):
            server_cpu, sim_cpu = session_cpu_s(server.pid), children_cpu_s(server.pid)
            flow = measured(sim, lambda: states.append(ingest_all(return_state=True)))
            server_cpu = session_cpu_s(server.pid) - server_cpu
            sim_cpu = children_cpu_s(server.pid) - sim_cpu
            (state,) = states
            assert state.is_completed(), state.message
            runs = task_runs_of(state.state_details.flow_run_id)
            APILogWorker.drain_all(timeout=30)  # the run's logs, before the server stops
        current_runtime().close()
        current_runtime.cache_clear()
        locked = log.read_text(errors="replace").count(LOCKED)
    check_stored(scratch / "flow", symbols, cycle_at)
    sim.configure(latency_ms=0)
    print(f"  core: {core}\n  flow: {flow}", file=sys.stderr)
    return [
        Row(
            f"ingest-all cycle, {streams} streams x 15m, 20 ms latency;"
            f" flow: {len(runs)} task runs,"
            f" {flow.klines_requests} klines + {flow.other_requests} other requests,"
            f" peak weight {flow.peak_weight}/min (spent {flow.weight_spent}),"
            f" {flow.status_429} x 429, {flow.status_418} x 418, {locked} x '{LOCKED}';"
            f" CPU: flow process {flow.cpu_s:.1f} s, server {server_cpu:.1f} s,"
            f" simulator {sim_cpu:.1f} s"
            f" (core alone {core.cpu_s:.1f} s)",
            f"core alone, {max_parallel_streams()} at once",
            core.wall_s,
            "Prefect flow (SQLite server)",
            flow.wall_s,
            "s",
            f"≤ {GOAL_S:g} s, 0 x 429, 0 locked",
            flow.wall_s <= GOAL_S and flow.status_429 == 0 and locked == 0,
        )
    ]


def max_parallel_streams() -> int:
    """The streams the flow ingests at once (the baseline runs as many)."""
    from ost.flows.ingest import MAX_PARALLEL_STREAMS

    return MAX_PARALLEL_STREAMS


def check_stored(root: Path, symbols: list[str], cycle_at: int) -> None:
    """Every stream now ends with the candle before ``cycle_at``: the one the cycle fetched."""
    from ost.store import CandleStore

    store = CandleStore(str(root))
    last = cycle_at - intervals.FIXED_INTERVAL_MS[INTERVAL]
    wrong = [s for s in symbols if store.last_open_time(*parse_stream(s, INTERVAL)) != last]
    assert not wrong, wrong[:5]


def main(argv: list[str]) -> int:
    """Run the case alone and print its row."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cycle")
    parser.add_argument("--streams", type=int, default=MARKET_STREAMS)
    args = parser.parse_args(argv)
    with simulator() as sim, tempfile.TemporaryDirectory(prefix="ost-cycle-") as scratch:
        rows = bench_market_cycle(sim, Path(scratch), args.streams)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

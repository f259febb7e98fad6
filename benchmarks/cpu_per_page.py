"""Client CPU per klines page: an ``--source api`` backfill of 365 days of 1m, 20 ms latency.

    uv run python -m benchmarks.run cpu-per-page

The simulator runs in its own process (``benchmarks.run.simulator``), so its CPU is not counted.
Each measurement is a child process (bytecode cached, as on a user's machine) that imports ost,
warms up on a 2-day backfill, then takes its own CPU time (``getrusage(RUSAGE_SELF)``, user +
sys, every thread) around the backfill of about 526 pages of 1000 candles, and divides it by the
pages. The same child then measures where a page's CPU goes, single-threaded: the HTTP request,
the body's decoding (JSON, parse and validation) and the store's share of the partition writes.

The baseline is main's code at ``BASELINE_COMMIT``, exported with ``git archive`` into a temp
dir and imported from there (``PYTHONPATH``), so both run against the same simulator, in turn.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from ost import intervals
from ost.sim import SimHandle

#: main before this work: the code the baseline runs.
BASELINE_COMMIT: Final = "43ff878"
DAYS: Final = 365
LATENCY_MS: Final = 20
REPEATS: Final = 5
GOAL_MS: Final = 4.0
REPO: Final = Path(__file__).resolve().parent.parent

CHILD: Final = """
import json, resource, sys, time
import numpy as np, orjson, stamina
from ost import binance, klines
from ost.backfill import backfill_stream
from ost.binance import KLINES_PATH, BinanceClient
from ost.store import CandleStore

stamina.set_active(False)
url, root, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
MINUTE, DAY = 60_000, 86_400_000

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def backfill(where, begin):
    with BinanceClient([url]) as client:
        return backfill_stream(client, CandleStore(where), "BTCUSDT", "1m", begin, end,
                               source="api")

backfill(root + "-warm", end - 2 * DAY)  # lazy imports, first connections: not measured
before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
result = backfill(root, start)
after, wall_s = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall_before
user_s, sys_s = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
cpu_s = user_s + sys_s
assert result.ok and result.written == (end - start) // MINUTE, result

# Where a page's CPU goes, one thread: the request, the body to checked columns, the writes.
PAGES = 60
with BinanceClient([url]) as client:
    client.sync_time()
    client.exchange_info()
    params = [{"symbol": "BTCUSDT", "interval": "1m", "startTime": start + i * 1000 * MINUTE,
               "endTime": start + (i + 1) * 1000 * MINUTE - 1, "limit": 1000}
              for i in range(PAGES)]
    for p in params[:3]:
        client._send(KLINES_PATH, p)
    began = cpu()
    responses = [client._send(KLINES_PATH, p) for p in params]
    http = (cpu() - began) / PAGES
decode = getattr(binance, "_kline_columns", None)  # this tree's response to columns
began = cpu()
if decode is None:
    pages = [klines.parse_columns(orjson.loads(r.content), "1m") for r in responses]
else:
    pages = [decode(r, "1m") for r in responses]
body = (cpu() - began) / PAGES
began = cpu()
rows = [orjson.loads(r.content) for r in responses]
json_only = (cpu() - began) / PAGES
began = cpu()
for page in rows:
    klines.parse_columns(page, "1m")
strict = (cpu() - began) / PAGES
joined = klines.concat(pages)
whole = len(joined["open_time"]) // 1440 * 1440
days = [klines.take(joined, slice(at, at + 1440)) for at in range(0, whole, 1440)]
store = CandleStore(root + "-writes")
merge = getattr(store, "merge_columns", None)  # this tree's merge of columns, if it has one
began = cpu()
for day in days:
    if merge is None:
        store.merge("BTCUSDT", "1m", klines.frame_from_columns(day))
    else:
        merge("BTCUSDT", "1m", day)
write = (cpu() - began) / len(days) / 1.44  # 1440 candles a day, 1000 a page
print(json.dumps({"cpu_s": cpu_s, "user_s": user_s, "sys_s": sys_s, "wall_s": wall_s,
                  "pages": result.api_pages, "http": http, "body": body, "json": json_only,
                  "strict_parse": strict, "write": write}))
"""


def run_child(code_dir: Path, sim: SimHandle, root: Path, start: int, end: int) -> dict[str, Any]:
    """One measurement, importing ost from ``code_dir`` (bytecode written, as a user's is)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code_dir)
    argv = [sys.executable, "-c", CHILD, sim.url, str(root), str(start), str(end)]
    out = subprocess.run(argv, cwd=code_dir, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"the child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def load_average() -> str:
    """The 1, 5 and 15-minute load averages."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def bench_cpu_per_page(sim: SimHandle, scratch: Path) -> Any:
    """CPU per page of main's code and of this tree's, with their breakdowns and wall times."""
    from benchmarks.run import NOW, Row

    end = intervals.align("1d", NOW) - 3 * intervals.DAY_MS
    start = end - DAYS * intervals.DAY_MS
    sim.configure(now_ms=NOW, latency_ms=LATENCY_MS)
    baseline_dir = Path(tempfile.mkdtemp(prefix="ost-baseline-", dir=scratch.parent))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE_COMMIT],  # noqa: S607 -- git from PATH
        capture_output=True,
        check=True,
    )
    untar = ["tar", "-x", "-C", str(baseline_dir)]
    subprocess.run(untar, input=archive.stdout, check=True)
    versions = {f"main {BASELINE_COMMIT}": baseline_dir, "this tree": REPO}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    for repeat in range(REPEATS):
        for name, code_dir in versions.items():
            root = scratch / f"{name.split()[0]}-{repeat}"
            run = run_child(code_dir, sim, root, start, end)
            run["load"] = load_average()
            runs[name].append(run)
            print(
                f"  {name}: {run['cpu_s'] * 1000 / run['pages']:.2f} ms CPU/page "
                f"(sys {run['sys_s'] * 1000 / run['pages']:.2f}), "
                f"wall {run['wall_s']:.2f} s, load {run['load']}",
                file=sys.stderr,
            )
    sim.configure(latency_ms=0)
    per_page = {
        name: statistics.median(run["cpu_s"] * 1000 / run["pages"] for run in taken)
        for name, taken in runs.items()
    }
    for name, taken in runs.items():
        parts = {
            key: statistics.median(run[key] * 1000 for run in taken)
            for key in ("http", "body", "json", "strict_parse", "write")
        }
        wall = statistics.median(run["wall_s"] for run in taken)
        print(
            f"  {name}: {per_page[name]:.2f} ms/page over {taken[0]['pages']} pages, "
            f"wall {wall:.2f} s (median of {REPEATS}); one thread: HTTP {parts['http']:.2f}, "
            f"body→columns {parts['body']:.2f} (strict orjson {parts['json']:.2f} + "
            f"parse_columns {parts['strict_parse']:.2f}), writes {parts['write']:.2f} ms/page",
            file=sys.stderr,
        )
    before, after = per_page.values()
    return [
        Row(
            f"client CPU per page, {DAYS} days of 1m, --source api, {LATENCY_MS} ms latency "
            f"(load {load_average()})",
            f"main {BASELINE_COMMIT}",
            before,
            "this tree",
            after,
            "ms",
            f"≤ {GOAL_MS:g} ms",
            after <= GOAL_MS,
            speedup=True,
        )
    ]

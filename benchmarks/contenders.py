"""The contenders of ``benchmarks/vs_ccxt.py``, each run alone in a child process.

    python -m benchmarks.contenders NAME URL START_MS END_MS OUT_DIR

NAME is ``ost``, ``ccxt`` or ``ccxt-async``. The child imports what its contender needs, then
times it from there until its candles of ``[START_MS, END_MS)`` (BTCUSDT 1m, from the simulator
at URL) are stored under OUT_DIR, and writes ``OUT_DIR/timing.json``: the wall time and its own
CPU time (rusage, every thread) over that span. This module imports the standard library alone,
so that no contender carries another's modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000
#: Candles per ``fetch_ohlcv`` call: Binance's largest spot page.
PAGE = 1000
#: Windows the async ccxt loop keeps in flight.
WINDOWS_IN_FLIGHT = 8
#: The columns both ccxt loops store, as ``fetch_ohlcv`` returns them.
OHLCV = ("open_time", "open", "high", "low", "close", "volume")
#: The file each ccxt loop writes.
CCXT_FILE = "ohlcv.parquet"


def point_at(exchange: Any, url: str) -> None:
    """Send a ccxt binance's spot API calls (``/api/v3``) to ``url`` instead of Binance."""
    for name, address in list(exchange.urls["api"].items()):
        if isinstance(address, str) and address.startswith("https://api.binance.com/api/v3"):
            exchange.urls["api"][name] = address.replace("https://api.binance.com", url)
    exchange.options["fetchMarkets"] = {"types": ["spot"]}


def ccxt_loop(url: str, start_ms: int, end_ms: int) -> list[list[float]]:
    """What a ccxt user writes: fetch_ohlcv 1000 at a time, enableRateLimit on, in a loop."""
    import ccxt  # a dev-only dependency, imported by the ccxt cases only

    exchange = ccxt.binance({"enableRateLimit": True})
    point_at(exchange, url)
    rows: list[list[float]] = []
    since = start_ms
    while since < end_ms:
        page = exchange.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=PAGE)
        page = [row for row in page if row[0] < end_ms]
        if not page:
            break
        rows += page
        since = int(page[-1][0]) + MINUTE_MS
    return rows


async def ccxt_async_loop(url: str, start_ms: int, end_ms: int) -> list[list[float]]:
    """The few more lines: windows of 1000 candles, 8 in flight, ccxt's limiter off."""
    import ccxt.async_support as ccxt_async

    exchange = ccxt_async.binance({"enableRateLimit": False})
    point_at(exchange, url)
    in_flight = asyncio.Semaphore(WINDOWS_IN_FLIGHT)

    async def window(since: int) -> list[list[float]]:
        async with in_flight:
            page = await exchange.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=PAGE)
        until = min(since + PAGE * MINUTE_MS, end_ms)
        return [row for row in page if row[0] < until]

    try:
        await exchange.load_markets()  # once, before the windows ask for it all at once
        pages = await asyncio.gather(
            *(window(since) for since in range(start_ms, end_ms, PAGE * MINUTE_MS))
        )
    finally:
        await exchange.close()
    return [row for page in pages for row in page]


def write_parquet(rows: list[list[float]], path: Path) -> None:
    """One Parquet file of ccxt's rows, with pyarrow: open time (ms) and OHLCV."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(zip(*rows, strict=True)) if rows else [()] * len(OHLCV)
    types = [pa.int64()] + [pa.float64()] * (len(OHLCV) - 1)
    arrays = [pa.array(column, type=kind) for column, kind in zip(columns, types, strict=True)]
    pq.write_table(pa.table(arrays, names=list(OHLCV)), path)


def run_ost(url: str, start_ms: int, end_ms: int, out: Path) -> Callable[[], object]:
    """``ost backfill --source api`` of BTCUSDT 1m over the range into OST_DATA_DIR=OUT_DIR."""
    import ost.args
    import ost.backfill
    import ost.progress
    import ost.runtime  # noqa: F401 -- with the above, what the command imports when it runs
    from ost.cli import app

    os.environ.update(OST_BINANCE_BASE_URLS=url, OST_DATA_DIR=str(out))
    last_open = dt.datetime.fromtimestamp((end_ms - MINUTE_MS) / 1000, dt.UTC)
    first_open = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
    argv = ["backfill", "--source", "api", "--interval", "1m", "--symbols", "BTCUSDT"]
    argv += ["--start", first_open.isoformat(), "--end", last_open.isoformat()]

    def run() -> None:
        status = app(argv, standalone_mode=False)  # the exit status of a failed backfill
        if status:
            raise SystemExit(f"ost backfill exited {status}")

    return run


def run_ccxt(url: str, start_ms: int, end_ms: int, out: Path) -> Callable[[], object]:
    """The sequential ccxt loop, then one Parquet file of what it fetched."""
    import ccxt as _  # noqa: F401 -- imported before the timing starts
    import pyarrow.parquet as _pq  # noqa: F401 -- likewise

    return lambda: write_parquet(ccxt_loop(url, start_ms, end_ms), out / CCXT_FILE)


def run_ccxt_async(url: str, start_ms: int, end_ms: int, out: Path) -> Callable[[], object]:
    """The async ccxt loop, then one Parquet file of what it fetched."""
    import ccxt.async_support as _  # noqa: F401 -- imported before the timing starts
    import pyarrow.parquet as _pq  # noqa: F401 -- likewise

    def run() -> None:
        write_parquet(asyncio.run(ccxt_async_loop(url, start_ms, end_ms)), out / CCXT_FILE)

    return run


CONTENDERS: dict[str, Callable[[str, int, int, Path], Callable[[], object]]] = {
    "ost": run_ost,
    "ccxt": run_ccxt,
    "ccxt-async": run_ccxt_async,
}


def cpu_s() -> float:
    """This process's user and system CPU so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    """Prepare one contender, run it timed, write ``timing.json``."""
    name, url, start_ms, end_ms, out = argv
    run = CONTENDERS[name](url, int(start_ms), int(end_ms), Path(out))
    cpu, started = cpu_s(), time.perf_counter()
    run()
    timing = {"wall_s": time.perf_counter() - started, "cpu_s": cpu_s() - cpu}
    Path(out, "timing.json").write_text(json.dumps(timing))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A damaged partition heals in the run that meets it: the simulator over HTTP, real files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import fastparquet
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pytest
from commands import ost
from ost.alerts.policy import LadderConfig
from prometheus_client import generate_latest
from test_cli_ingest import ost_env

from ost import intervals
from ost.backfill import backfill_stream
from ost.binance import BinanceClient
from ost.ingest import ingest_all
from ost.ledger import Ledger, ledger_path
from ost.metrics import build_registry
from ost.sim import SimHandle
from ost.sim import klines as sim_klines
from ost.store import CandleStore, partition_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fast_retries")]

#: 10:07:30 UTC: the 15m and 1h candles stay as they are for 7.5 minutes of test time.
NOW = int(dt.datetime(2026, 1, 3, 10, 7, 30, tzinfo=dt.UTC).timestamp() * 1000)
#: A lookback that starts every stream at 2026-01-01 00:00, the start of its newest partition.
LOOKBACK_DAYS = "2.42"
JAN_1 = intervals.date_ms(dt.date(2026, 1, 1))
STREAMS = [(symbol, interval) for symbol in ("BTCUSDT", "ETHUSDT") for interval in ("15m", "1h")]
DAMAGED = ("ETHUSDT", "1h")

FIELDS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
)


def simulator_candles(symbol: str, interval: str, start: int, end: int, now: int) -> pd.DataFrame:
    """The simulator's rows of ``[start, end)`` as plain columns: times in ms, numbers as floats."""
    rows = sim_klines(symbol, interval, start, end, now)
    columns = list(zip(*rows, strict=True))[: len(FIELDS)]
    return pd.DataFrame(
        {
            name: np.array(
                values, dtype=np.int64 if name in ("open_time", "close_time", "trades") else float
            )
            for name, values in zip(FIELDS, columns, strict=True)
        }
    )


def stored_candles(root: Path, symbol: str, interval: str) -> pd.DataFrame:
    """One stream as pyarrow's dataset reads the store (the backend's way), in the same columns."""
    dataset = pds.dataset(str(root / "klines"), partitioning="hive")
    table = dataset.to_table(
        filter=(pds.field("symbol") == symbol) & (pds.field("interval") == interval)
    ).sort_by("open_time")
    return pd.DataFrame(
        {
            name: table.column(name).cast(pa.int64()).to_numpy()
            if name in ("open_time", "close_time")
            else table.column(name).to_numpy()
            for name in FIELDS
        }
    )


def assert_exact(root: Path, sim: SimHandle, symbol: str, interval: str, start: int) -> None:
    """The stream holds exactly the simulator's closed candles from ``start`` up to now."""
    now = sim.now_ms()
    want = simulator_candles(symbol, interval, start, intervals.align(interval, now), now)
    got = stored_candles(root, symbol, interval)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def build_store(sim: SimHandle, root: Path) -> CandleStore:
    """Every stream ingested from 2026-01-01, over real HTTP."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(root))
    with BinanceClient([sim.url], timeout_s=5.0, max_attempts=3) as client:
        outcomes = ingest_all(client, store, STREAMS, lookback_days=float(LOOKBACK_DAYS))
    assert all(outcome.ok for outcome in outcomes), outcomes
    return store


def partition_file(root: Path, symbol: str, interval: str, ms: int) -> Path:
    """The partition file that holds the candle opening at ``ms``."""
    period = intervals.partition_start(interval, ms)
    return Path(partition_path(str(root), symbol, interval, period))


def files_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every partition file with its inode, mtime and bytes."""
    return {
        str(path.relative_to(root)): (
            path.stat().st_ino,
            path.stat().st_mtime_ns,
            path.read_bytes(),
        )
        for path in sorted((root / "klines").rglob("*.parquet"))
    }


def rewrite_with_text_prices(path: Path) -> None:
    """The same candles, with ``open`` stored as text: another schema."""
    frame = fastparquet.ParquetFile(str(path)).to_pandas()
    frame["open"] = frame["open"].astype(str)
    fastparquet.write(str(path), frame, write_index=False)


def rewrite_with_integer_times(path: Path) -> None:
    """The same candles, with ``open_time`` as plain integers: another schema."""
    frame = fastparquet.ParquetFile(str(path)).to_pandas()
    frame["open_time"] = frame["open_time"].astype("int64")
    fastparquet.write(str(path), frame, write_index=False)


DAMAGE = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(os.urandom(4096)),
    "wrong schema: text prices": rewrite_with_text_prices,
    "wrong schema: integer times": rewrite_with_integer_times,
}


def quarantined_files(root: Path) -> list[Path]:
    """Every file in the store's quarantine."""
    return sorted(path for path in (root / "quarantine").rglob("*") if path.is_file())


def quarantined_count(root: Path, symbol: str, interval: str) -> float:
    """``ost_store_quarantined_total`` of one stream, as Prometheus would scrape it."""
    registry = build_registry(Ledger(ledger_path(str(root))), LadderConfig(streams=()))
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("ost_store_quarantined_total{") and (
            f'symbol="{symbol}"' in line and f'interval="{interval}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_partition_heals_in_the_same_run(
    sim: SimHandle, tmp_path: Path, damage: str
) -> None:
    """`ost ingest`: exit 0, one line, the other streams untouched, the damaged one exact again."""
    build_store(sim, tmp_path)
    path = partition_file(tmp_path, *DAMAGED, NOW)
    DAMAGE[damage](path)
    damaged_bytes = path.read_bytes()
    others = {
        k: v for k, v in files_state(tmp_path).items() if "symbol=ETHUSDT/interval=1h" not in k
    }
    env = ost_env(sim, tmp_path, OST_INTERVALS="15m,1h", OST_INITIAL_LOOKBACK_DAYS=LOOKBACK_DAYS)

    result = ost("ingest", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "quarantine/" in line]
    assert line.startswith("ETHUSDT 1h: ")
    assert str(path.relative_to(tmp_path)) in line
    assert "failed" not in result.stdout
    after = files_state(tmp_path)
    assert {k: after[k] for k in others} == others
    [moved] = quarantined_files(tmp_path)
    assert moved.read_bytes() == damaged_bytes
    assert str(moved.relative_to(tmp_path)).endswith(str(path.relative_to(tmp_path)))
    assert_exact(tmp_path, sim, *DAMAGED, JAN_1)
    assert quarantined_count(tmp_path, *DAMAGED) == 1
    assert ost("verify", env=env).returncode == 0


def test_a_foreign_copy_is_quarantined_by_the_next_write_of_its_partition(
    sim: SimHandle, tmp_path: Path
) -> None:
    """`part (copy).parquet` beside the newest part: the next ingestion moves it out."""
    build_store(sim, tmp_path)
    newest = partition_file(tmp_path, "BTCUSDT", "15m", NOW)
    copy = newest.parent / "part (copy).parquet"
    copy.write_bytes(newest.read_bytes())
    sim.configure(now_ms=NOW + intervals.HOUR_MS)  # new candles: the newest part is written
    env = ost_env(sim, tmp_path, OST_INTERVALS="15m,1h", OST_INITIAL_LOOKBACK_DAYS=LOOKBACK_DAYS)

    result = ost("ingest", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if "quarantine/" in line]
    assert "part (copy).parquet" in line
    assert "readers no longer see it" in line
    assert not copy.exists()
    for symbol, interval in STREAMS:
        assert_exact(tmp_path, sim, symbol, interval, JAN_1)


def test_a_failed_refetch_loses_nothing_and_the_next_run_completes(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Klines refused: the stream fails (exit 1), the file waits in quarantine; then exact."""
    build_store(sim, tmp_path)
    path = partition_file(tmp_path, *DAMAGED, NOW)
    path.write_bytes(b"")
    env = ost_env(sim, tmp_path, OST_INTERVALS="15m,1h", OST_INITIAL_LOOKBACK_DAYS=LOOKBACK_DAYS)
    sim.set_faults("impossible:mode=high_low")  # /api/v3/time answers, every klines page is bad

    down = ost("ingest", "--symbols", "ETHUSDT", "--intervals", "1h", env=env)

    assert down.returncode == 1
    assert "Traceback" not in down.stderr
    [moved] = quarantined_files(tmp_path)
    assert moved.read_bytes() == b""
    assert pds.dataset(str(tmp_path / "klines"), partitioning="hive").count_rows() > 0
    sim.clear_faults()

    back = ost("ingest", env=env)

    assert back.returncode == 0, back.stdout + back.stderr
    for symbol, interval in STREAMS:
        assert_exact(tmp_path, sim, symbol, interval, JAN_1)


def test_a_backfill_heals_a_damaged_partition_and_fetches_all_its_range(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """The 2025 file of 1h, truncated, is quarantined and all of 2025 is fetched again."""
    sim.configure(now_ms=NOW)
    store = CandleStore(str(tmp_path))
    march = intervals.date_ms(dt.date(2025, 3, 1))
    backfill_stream(client, store, "BTCUSDT", "1h", march, march + 2 * intervals.DAY_MS)
    path = partition_file(tmp_path, "BTCUSDT", "1h", march)
    path.write_bytes(path.read_bytes()[:-100])
    june = intervals.date_ms(dt.date(2025, 6, 1))

    result = backfill_stream(client, store, "BTCUSDT", "1h", june, june + intervals.DAY_MS)

    assert result.ok
    year = intervals.date_ms(dt.date(2025, 1, 1))
    want = simulator_candles("BTCUSDT", "1h", year, JAN_1, sim.now_ms())
    got = stored_candles(tmp_path, "BTCUSDT", "1h")
    assert len(got) == 365 * 24
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert result.written == 365 * 24
    [moved] = quarantined_files(tmp_path)
    assert moved.stat().st_size > 0

"""The store as its consumers read it: pyarrow's hive dataset and DuckDB, not the store's reader."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
from oracle import DTYPES, frame


def read_everywhere(data_dir: Path) -> None:
    """The store reads with pyarrow and DuckDB, with no duplicate candle in any stream."""
    root = data_dir / "klines"
    if not any(root.rglob("*.parquet")):  # killed before its first write
        return
    table = pds.dataset(str(root), partitioning="hive").to_table()
    candles = table.to_pandas()
    assert not candles.duplicated(["symbol", "interval", "open_time"]).any()
    glob = str(root / "**" / "*.parquet")
    source = f"read_parquet('{glob}', hive_partitioning=true)"
    dupes = duckdb.sql(
        "select count(*) from (select symbol, interval, open_time, count(*) c "  # noqa: S608  # a test's own temp path
        f"from {source} group by all having c > 1)"
    ).fetchall()
    assert dupes == [(0,)]
    assert duckdb.sql(f"select count(*) from {source}").fetchall() == [(len(candles),)]  # noqa: S608  # as above


def stored_candles(root: Path, symbol: str, interval: str) -> pd.DataFrame:
    """One stream as pyarrow's hive dataset reads it, in the contract's columns and types."""
    dataset = pds.dataset(str(root / "klines"), partitioning="hive")
    table = dataset.to_table(
        filter=(pds.field("symbol") == symbol) & (pds.field("interval") == interval)
    ).sort_by("open_time")
    return frame(
        {
            name: table.column(name).cast(pa.int64()).to_numpy()
            if dtype.startswith("datetime64")
            else table.column(name).to_numpy()
            for name, dtype in DTYPES.items()
        }
    )

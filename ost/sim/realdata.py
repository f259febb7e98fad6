"""Real BTCUSDT 1m candles served on their days, and the exchange-side gaps around them.

The CSVs are data.binance.vision daily files, shipped with the simulator in ``ost/sim/data/``
(its ``README.md`` names their sources and SHA-256 sums), read lazily, once. Each *span* is a
stretch of time where the simulator serves real data instead of synthetic: the real 1m candles
inside it and nothing else. Minutes of a span without a real
candle are exchange-side gaps: Binance's 2018-02-08 outage (after 00:28 until 2018-02-09 10:00)
and the 2023-03-24 trading halt (12:40 to 13:59).

The directory is ``ost/sim/data/`` inside the package; ``$OST_SIM_REALDATA_DIR`` overrides it.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from ost.sim.candles import Candles
from ost.sim.symbols import utc_ms

#: The simulator's own copy of the real candles, inside the package.
DEFAULT_DIR: Final = Path(__file__).resolve().parent / "data"
ENV_DIR: Final = "OST_SIM_REALDATA_DIR"
_MICROSECONDS_FROM: Final = 100_000_000_000_000


@dataclass(frozen=True, slots=True)
class Span:
    """A time range served from real data: ``rows`` are all of its 1m candles."""

    start_ms: int
    end_ms: int
    rows: Candles


#: (symbol, first ms, end ms, CSV file name) of each span.
_SPAN_TABLE: Final = (
    ("BTCUSDT", "2018-02-08", "2018-02-09T10:00", "BTCUSDT-1m-2018-02-08.csv"),
    ("BTCUSDT", "2023-03-24", "2023-03-25", "BTCUSDT-1m-2023-03-24.csv"),
    ("BTCUSDT", "2024-12-31", "2025-01-01", "BTCUSDT-1m-2024-12-31.csv"),
    ("BTCUSDT", "2025-01-01", "2025-01-02", "BTCUSDT-1m-2025-01-01.csv"),
)


def realdata_dir() -> Path:
    """Where the real CSVs are read from."""
    return Path(os.environ.get(ENV_DIR, str(DEFAULT_DIR)))


def _as_ms(value: str) -> int:
    number = int(value)
    return number // 1000 if number >= _MICROSECONDS_FROM else number


@functools.cache
def read_csv(name: str) -> Candles:
    """The candles of one real daily CSV, with times in ms."""
    path = realdata_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"the simulator's real data {path} is missing: set {ENV_DIR} to the directory "
            "holding the BTCUSDT-1m-*.csv files"
        )
    with path.open(newline="") as handle:
        table = list(csv.reader(handle))
    columns = list(zip(*table, strict=True))
    return Candles(
        open_time=np.array([_as_ms(v) for v in columns[0]], dtype=np.int64),
        open=np.array(columns[1], dtype=np.float64),
        high=np.array(columns[2], dtype=np.float64),
        low=np.array(columns[3], dtype=np.float64),
        close=np.array(columns[4], dtype=np.float64),
        volume=np.array(columns[5], dtype=np.float64),
        close_time=np.array([_as_ms(v) for v in columns[6]], dtype=np.int64),
        quote_volume=np.array(columns[7], dtype=np.float64),
        trades=np.array(columns[8], dtype=np.int64),
        taker_buy_base_volume=np.array(columns[9], dtype=np.float64),
        taker_buy_quote_volume=np.array(columns[10], dtype=np.float64),
    )


@functools.cache
def spans(symbol: str) -> tuple[Span, ...]:
    """The real-data spans of ``symbol``, in time order (none for most symbols)."""
    return tuple(
        Span(start_ms=utc_ms(start), end_ms=utc_ms(end), rows=read_csv(name))
        for owner, start, end, name in _SPAN_TABLE
        if owner == symbol
    )


@functools.cache
def span_starts_ends(symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end ms of every span of ``symbol`` as two arrays, without reading any CSV."""
    table = [
        (utc_ms(start), utc_ms(end)) for owner, start, end, _ in _SPAN_TABLE if owner == symbol
    ]
    starts = np.array([start for start, _ in table], dtype=np.int64)
    ends = np.array([end for _, end in table], dtype=np.int64)
    return starts, ends

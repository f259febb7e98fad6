"""The tests' own reading of Binance's klines: raw field positions mapped by hand to columns.

Expected candles are built here from what Binance, or the simulator standing in for it, sends,
never by the parser under test (:mod:`ost.klines`, :mod:`ost.archive`). A kline is 12 fields,
the same in ``/api/v3/klines``'s JSON rows and in data.binance.vision's CSV lines (Binance's
"Kline/Candlestick data" documentation): [0] open time, [1] open, [2] high, [3] low, [4] close,
[5] volume, [6] close time, [7] quote asset volume, [8] number of trades, [9] taker buy base
asset volume, [10] taker buy quote asset volume, [11] ignore. Column names and types are those
of docs/CONTRACT.md ("The candle store").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd

from ost.sim import market, timegrid

#: Each stored column, and the position of the raw field it holds.
FIELD_OF: Final = {
    "open_time": 0,
    "open": 1,
    "high": 2,
    "low": 3,
    "close": 4,
    "volume": 5,
    "close_time": 6,
    "quote_volume": 7,
    "trades": 8,
    "taker_buy_base_volume": 9,
    "taker_buy_quote_volume": 10,
}
#: The contract's column types: times are timestamps (ms, UTC), trades int64, the rest float64.
DTYPES: Final = {
    "open_time": "datetime64[ms, UTC]",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
    "close_time": "datetime64[ms, UTC]",
    "quote_volume": "float64",
    "trades": "int64",
    "taker_buy_base_volume": "float64",
    "taker_buy_quote_volume": "float64",
}
#: The archive writes times in microseconds from 2025-01-01 on: 16 digits, where ms have 13.
_MICROSECONDS_FROM: Final = 10**15


def frame(columns: Mapping[str, Sequence[Any] | np.ndarray]) -> pd.DataFrame:
    """Candles in the contract's columns and types, from raw values per column (times ms or µs)."""
    data: dict[str, Any] = {}
    for name, dtype in DTYPES.items():
        if dtype.startswith("datetime64"):
            raw = np.asarray(columns[name], dtype=np.int64)
            ms = np.where(raw >= _MICROSECONDS_FROM, raw // 1000, raw)
            data[name] = pd.Series(ms.astype("datetime64[ms]")).dt.tz_localize("UTC")
        else:
            data[name] = pd.Series(np.asarray(columns[name], dtype=dtype), dtype=dtype)
    return pd.DataFrame(data)


def from_rows(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """The candles of Binance's rows (JSON rows, or CSV lines split at their commas)."""
    return frame({name: [row[position] for row in rows] for name, position in FIELD_OF.items()})


def from_csv(text: bytes) -> pd.DataFrame:
    """The candles of an archive CSV (no header)."""
    lines = text.decode().splitlines()
    return from_rows([line.split(",") for line in lines if line])


def simulator_candles(
    symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int
) -> pd.DataFrame:
    """The simulator's candles opening in ``[start_ms, end_ms)`` as of ``now_ms``, from its rows."""
    return from_rows(market.klines(symbol, interval, start_ms, end_ms, now_ms))


def closed_candles(symbol: str, interval: str, start_ms: int, now_ms: int) -> pd.DataFrame:
    """The simulator's candles from ``start_ms`` that have closed by ``now_ms``."""
    end = timegrid.candle_open(interval, now_ms)  # the candle still open at ``now_ms``
    return simulator_candles(symbol, interval, start_ms, end, now_ms)


def lookback_start(interval: str, now_ms: int, days: float) -> int:
    """Where a new stream's first ingestion starts: the candle ``days`` before ``now_ms``."""
    return timegrid.candle_open(interval, now_ms - int(days * timegrid.DAY_MS))


def assert_candles(got: pd.DataFrame, want: pd.DataFrame, *context: object) -> None:
    """``got`` holds exactly the candles of ``want``: each contract column by name, type, value."""
    missing = [name for name in DTYPES if name not in got.columns]
    assert not missing, (*context, f"columns missing: {missing}")
    for name, dtype in DTYPES.items():
        assert str(got[name].dtype) == dtype, (*context, name, str(got[name].dtype))
    try:
        pd.testing.assert_frame_equal(
            got[list(DTYPES)].reset_index(drop=True),
            want[list(DTYPES)].reset_index(drop=True),
            check_exact=True,
        )
    except AssertionError as exc:
        raise AssertionError((*context, str(exc))) from None

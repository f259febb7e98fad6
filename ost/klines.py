"""Kline rows: the stored schema, strict parsing of Binance's rows, and validation.

A Binance kline row has 12 fields: open time, open, high, low, close, volume, close time, quote
volume, trades, taker buy base volume, taker buy quote volume, and an ignored field. Times are
epoch milliseconds, or microseconds in the archive from 2025-01-01 on: both become milliseconds.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from ost import intervals
from ost.errors import InvalidCandle

PRICE_COLUMNS: Final = ("open", "high", "low", "close")
FLOAT_COLUMNS: Final = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
)
#: The stored columns, in order (``symbol`` and ``interval`` are partition keys, not columns).
COLUMNS: Final = (
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
TIME_DTYPE: Final = "datetime64[ms, UTC]"
DTYPES: Final[dict[str, str]] = {
    **dict.fromkeys(FLOAT_COLUMNS, "float64"),
    "open_time": TIME_DTYPE,
    "close_time": TIME_DTYPE,
    "trades": "int64",
}
_ROW_FIELDS: Final = 12
_INT_FIELDS: Final = (0, 6, 8)
_FLOAT_FIELDS: Final = (1, 2, 3, 4, 5, 7, 9, 10)
#: Epoch values at or above this are microseconds (ms reach it only in the year 5138).
_MICROSECONDS_FROM: Final = 100_000_000_000_000


def empty_frame() -> pd.DataFrame:
    """A frame with the stored columns and dtypes, and no rows."""
    return pd.DataFrame({column: pd.Series(dtype=DTYPES[column]) for column in COLUMNS})


def to_milliseconds(values: np.ndarray) -> np.ndarray:
    """Epoch integers as milliseconds: microsecond values are divided by 1000."""
    values = values.astype(np.int64, copy=False)
    normalized: np.ndarray = np.where(values >= _MICROSECONDS_FROM, values // 1000, values)
    return normalized


def frame_from_columns(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The stored frame from raw columns (times as epoch ms or µs integers)."""
    data: dict[str, Any] = {}
    for column in COLUMNS:
        values = columns[column]
        if column in ("open_time", "close_time"):
            data[column] = pd.to_datetime(to_milliseconds(values), unit="ms", utc=True).astype(
                TIME_DTYPE
            )
        else:
            data[column] = np.asarray(values, dtype=DTYPES[column])
    return pd.DataFrame(data)


def parse_rows(rows: Any, interval: str) -> pd.DataFrame:
    """Parse the JSON rows of ``/api/v3/klines`` strictly, then validate them.

    Raises :class:`InvalidCandle` for any row that does not have 12 fields of Binance's types, or
    that is impossible (see :func:`validate`). Nothing of a batch with a bad row is returned.
    """
    if not isinstance(rows, list):
        raise InvalidCandle(f"klines body is a {type(rows).__name__}, not a list of rows")
    if not rows:
        return empty_frame()
    fields = _fields(rows)
    try:
        raw = {
            column: np.array(fields[position], dtype=np.float64 if dtype == "float64" else object)
            for position, (column, dtype) in enumerate(zip(_RAW_ORDER, _RAW_DTYPES, strict=True))
        }
    except (TypeError, ValueError) as exc:
        raise InvalidCandle(f"a kline field is not a number: {exc}") from None
    frame = frame_from_columns(
        {
            column: (values.astype(np.int64) if values.dtype == object else values)
            for column, values in raw.items()
        }
    )
    return validate(frame, interval)


_RAW_ORDER: Final = (*COLUMNS,)
_RAW_DTYPES: Final = tuple("float64" if c in FLOAT_COLUMNS else "int64" for c in COLUMNS)


def _fields(rows: list[Any]) -> list[tuple[Any, ...]]:
    """The rows' fields column by column, after checking every row's shape and types.

    The checks run per column (``set(map(type, column))``), which is several times faster than
    per row; only a batch that fails is walked row by row, to name the first bad row.
    """
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {_ROW_FIELDS}:
        _raise_first_bad_row(rows)
    fields = list(zip(*rows, strict=True))
    int_ok = all(set(map(type, fields[position])) == {int} for position in _INT_FIELDS)
    numbers = {str, int, float}
    float_ok = all(set(map(type, fields[position])) <= numbers for position in _FLOAT_FIELDS)
    if not (int_ok and float_ok):
        _raise_first_bad_row(rows)
    return fields


def _raise_first_bad_row(rows: list[Any]) -> None:
    for index, row in enumerate(rows):
        _check_row_types(index, row)


def _check_row_types(index: int, row: Any) -> None:
    if not isinstance(row, list) or len(row) != _ROW_FIELDS:
        raise InvalidCandle(f"kline row {index} is not a list of {_ROW_FIELDS} fields: {row!r:.80}")
    for position in _INT_FIELDS:
        if type(row[position]) is not int:
            raise InvalidCandle(f"kline row {index} field {position} is not an integer")
    for position in _FLOAT_FIELDS:
        if type(row[position]) not in (str, int, float):
            raise InvalidCandle(f"kline row {index} field {position} is not a number or string")


def validate(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Return ``frame`` if every candle is possible and open times strictly increase.

    Checks: finite positive prices, high ≥ max(open, close) and ≥ low, low ≤ min(open, close),
    non-negative volumes and trades, open_time aligned to ``interval``, and open_time <
    close_time ≤ the full candle's close (a halted candle may close early).
    """
    if frame.empty:
        return frame
    open_ms = frame["open_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    close_ms = frame["close_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    prices = frame[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    volumes = frame[[c for c in FLOAT_COLUMNS if c not in PRICE_COLUMNS]].to_numpy(np.float64)
    o, h, lo, c = prices.T
    checks: list[tuple[str, np.ndarray]] = [
        (
            "prices are not finite and positive",
            ~(np.isfinite(prices).all(axis=1) & (prices > 0).all(axis=1)),
        ),
        ("high is below open, close or low", (h < np.maximum(o, c)) | (h < lo)),
        ("low is above open or close", lo > np.minimum(o, c)),
        (
            "a volume is negative or not finite",
            ~(np.isfinite(volumes) & (volumes >= 0)).all(axis=1),
        ),
        ("trades is negative", frame["trades"].to_numpy() < 0),
        ("open_time is not aligned to the interval", ~_aligned(interval, open_ms)),
        ("close_time is not after open_time", close_ms <= open_ms),
        ("close_time is after the candle's end", close_ms > _full_close(interval, open_ms)),
    ]
    if len(open_ms) > 1:
        increasing = np.concatenate([[True], np.diff(open_ms) > 0])
        checks.append(("open_time does not strictly increase", ~increasing))
    for problem, bad in checks:
        if bad.any():
            first = int(np.argmax(bad))
            when = pd.Timestamp(int(open_ms[first]), unit="ms", tz="UTC").isoformat()
            raise InvalidCandle(f"{interval} candle at {when}: {problem}")
    return frame


def _aligned(interval: str, open_ms: np.ndarray) -> np.ndarray:
    if interval == "1M":
        return np.array([intervals.is_aligned(interval, int(ms)) for ms in open_ms], dtype=bool)
    first_aligned = intervals.align(interval, int(open_ms[0])) == int(open_ms[0])
    same_phase: np.ndarray = (open_ms - open_ms[0]) % intervals.FIXED_INTERVAL_MS[interval] == 0
    return same_phase & first_aligned


def _full_close(interval: str, open_ms: np.ndarray) -> np.ndarray:
    if interval == "1M":
        return np.array([intervals.close_time(interval, int(ms)) for ms in open_ms], np.int64)
    return open_ms + intervals.FIXED_INTERVAL_MS[interval] - 1


def open_time_ms(frame: pd.DataFrame) -> np.ndarray:
    """The open times of ``frame`` as epoch milliseconds."""
    times: np.ndarray = frame["open_time"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    return times


def rows_equal(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    """Whether two frames hold the same candles, column for column."""
    return left.reset_index(drop=True)[list(COLUMNS)].equals(
        right.reset_index(drop=True)[list(COLUMNS)]
    )

"""Kline rows: the stored schema, strict parsing of Binance's rows, and validation.

A Binance kline row has 12 fields: open time, open, high, low, close, volume, close time, quote
volume, trades, taker buy base volume, taker buy quote volume, and an ignored field. Times are
epoch milliseconds, or microseconds in the archive from 2025-01-01 on: both become milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
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
#: The order is Binance's: column ``i`` is field ``i`` of a kline row (see :data:`FIELDS`).
COLUMNS: Final = (
    "open_time",  # 0: open time
    "open",  # 1: open
    "high",  # 2: high
    "low",  # 3: low
    "close",  # 4: close
    "volume",  # 5: volume (base asset)
    "close_time",  # 6: close time
    "quote_volume",  # 7: quote asset volume
    "trades",  # 8: number of trades
    "taker_buy_base_volume",  # 9: taker buy base asset volume
    "taker_buy_quote_volume",  # 10: taker buy quote asset volume
)
#: Binance's kline row, field by field, the one layout of both ``/api/v3/klines``' JSON arrays and
#: the archive's CSV lines: the stored columns, then field 11, "ignore", which is never stored.
FIELDS: Final = (*COLUMNS, "ignore")
#: Each stored column's dtype as parsed (:data:`Columns`: times as epoch ms, int64).
COLUMN_DTYPES: Final[dict[str, str]] = {
    column: "float64" if column in FLOAT_COLUMNS else "int64" for column in COLUMNS
}
TIME_DTYPE: Final = "datetime64[ms, UTC]"
#: The columns that hold times (epoch ms in :data:`Columns`, ``TIME_DTYPE`` in frames).
TIME_COLUMNS: Final = ("open_time", "close_time")
#: Each stored column's dtype in frames.
DTYPES: Final[dict[str, str]] = {**COLUMN_DTYPES, **dict.fromkeys(TIME_COLUMNS, TIME_DTYPE)}
_ROW_FIELDS: Final = len(FIELDS)
_INT_FIELDS: Final = tuple(i for i, column in enumerate(COLUMNS) if column not in FLOAT_COLUMNS)
_FLOAT_FIELDS: Final = tuple(i for i, column in enumerate(COLUMNS) if column in FLOAT_COLUMNS)
#: Epoch values at or above this are microseconds (ms reach it only in the year 5138).
_MICROSECONDS_FROM: Final = 100_000_000_000_000


#: Candles as numpy columns (the stored ``COLUMNS``; times as epoch ms, int64).
Columns = dict[str, np.ndarray]


def take(columns: Columns, index: np.ndarray | slice) -> Columns:
    """The candles that ``index`` (a mask or a slice) selects."""
    return {name: values[index] for name, values in columns.items()}


def concat(parts: list[Columns]) -> Columns:
    """The candles of ``parts``, one after the other."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in COLUMNS}


def empty_frame() -> pd.DataFrame:
    """A frame with the stored columns and dtypes, and no rows."""
    return pd.DataFrame({column: pd.Series(dtype=DTYPES[column]) for column in COLUMNS})


def to_milliseconds(values: np.ndarray) -> np.ndarray:
    """Epoch integers as milliseconds: microsecond values are divided by 1000."""
    values = values.astype(np.int64, copy=False)
    normalized: np.ndarray = np.where(values >= _MICROSECONDS_FROM, values // 1000, values)
    return normalized


def frame_from_columns(columns: Columns) -> pd.DataFrame:
    """The stored frame from raw columns (times as epoch ms or µs integers)."""
    data: dict[str, Any] = {}
    for column in COLUMNS:
        values = columns[column]
        if column in TIME_COLUMNS:
            as_ms = to_milliseconds(values).view("datetime64[ms]")
            data[column] = pd.DatetimeIndex(as_ms).tz_localize("UTC")
        else:
            data[column] = np.asarray(values, dtype=DTYPES[column])
    return pd.DataFrame(data, copy=False)


def parse_columns(rows: Any, interval: str) -> Columns:
    """Parse the JSON rows of ``/api/v3/klines`` strictly, then validate them.

    Returns numpy columns: times as epoch ms (int64), numbers float64 (:func:`frame_from_columns`
    makes the stored frame of them). Raises :class:`InvalidCandle` for any row that does not have
    12 fields of Binance's types, or that is impossible (see :func:`validate_columns`). Nothing
    of a batch with a bad row is returned.
    """
    if not isinstance(rows, list):
        raise InvalidCandle(f"klines body is a {type(rows).__name__}, not a list of rows")
    if not rows:
        return {column: np.empty(0, _NUMPY_DTYPES[column]) for column in COLUMNS}
    fields = _fields(rows)
    try:
        columns = {
            column: np.array(fields[position], dtype=_NUMPY_DTYPES[column])
            for position, column in enumerate(COLUMNS)
        }
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidCandle(f"a kline field is not a number: {exc}") from None
    for column in TIME_COLUMNS:
        columns[column] = to_milliseconds(columns[column])
    validate_columns(columns, interval)
    return columns


_NUMPY_DTYPES: Final = {column: np.dtype(dtype) for column, dtype in COLUMN_DTYPES.items()}
_NUMBER_TYPES: Final = frozenset({str, int, float})


def _fields(rows: list[Any]) -> list[tuple[Any, ...]]:
    """The rows' fields column by column, after checking every row's shape and types.

    The checks run per column (``set(map(type, column))``), which is several times faster than
    per row; only a batch that fails is walked row by row, to name the first bad row.
    """
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {_ROW_FIELDS}:
        _raise_first_bad_row(rows)
    fields = list(zip(*rows, strict=True))
    int_ok = all(set(map(type, fields[position])) == {int} for position in _INT_FIELDS)
    float_ok = all(set(map(type, fields[position])) <= _NUMBER_TYPES for position in _FLOAT_FIELDS)
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
        if type(row[position]) not in _NUMBER_TYPES:
            raise InvalidCandle(f"kline row {index} field {position} is not a number or string")


def validate(frame: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Return ``frame`` if every candle is possible and open times strictly increase.

    See :func:`validate_columns` for the checks.
    """
    if not frame.empty:
        validate_columns(columns_of(frame), interval)
    return frame


def columns_of(frame: pd.DataFrame) -> Columns:
    """The stored frame's columns as numpy arrays, times as epoch ms (no copies where possible)."""
    return {
        column: (_epoch_ms(frame[column]) if column in TIME_COLUMNS else frame[column].to_numpy())
        for column in COLUMNS
    }


def validate_columns(columns: Columns, interval: str) -> None:
    """Raise :class:`InvalidCandle` unless every candle is possible and open times increase.

    Checks: finite positive prices, high ≥ max(open, close) and ≥ low, low ≤ min(open, close),
    non-negative volumes and trades, open_time aligned to ``interval``, and open_time <
    close_time ≤ the full candle's close (a halted candle may close early).
    """
    open_ms, close_ms = columns["open_time"], columns["close_time"]
    if len(open_ms) == 0:
        return
    o, h, lo, c = (columns[name] for name in PRICE_COLUMNS)
    volumes = [columns[name] for name in FLOAT_COLUMNS if name not in PRICE_COLUMNS]
    with np.errstate(invalid="ignore"):
        checks = [
            ("prices are not finite and positive", ~_all_of(o, h, lo, c, ok=_finite_positive)),
            ("high is below open, close or low", (h < o) | (h < c) | (h < lo)),
            ("low is above open or close", (lo > o) | (lo > c)),
            ("a volume is negative or not finite", ~_all_of(*volumes, ok=_finite_non_negative)),
            ("trades is negative", columns["trades"] < 0),
            ("open_time is not aligned to the interval", ~_aligned(interval, open_ms)),
            ("close_time is not after open_time", close_ms <= open_ms),
            ("close_time is after the candle's end", close_ms > _full_close(interval, open_ms)),
            ("open_time does not strictly increase", _not_increasing(open_ms)),
        ]
    for problem, bad in checks:
        if bad.any():
            first = int(np.argmax(bad))
            when = pd.Timestamp(int(open_ms[first]), unit="ms", tz="UTC").isoformat()
            raise InvalidCandle(f"{interval} candle at {when}: {problem}")


def _all_of(*arrays: np.ndarray, ok: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per candle, whether ``ok`` holds for every one of ``arrays``."""
    every: np.ndarray = np.logical_and.reduce([ok(values) for values in arrays])
    return every


def _finite_positive(values: np.ndarray) -> np.ndarray:
    ok: np.ndarray = np.isfinite(values) & (values > 0)
    return ok


def _finite_non_negative(values: np.ndarray) -> np.ndarray:
    ok: np.ndarray = np.isfinite(values) & (values >= 0)
    return ok


def _not_increasing(open_ms: np.ndarray) -> np.ndarray:
    """True at each open time that is not after the one before it."""
    bad: np.ndarray = np.concatenate([[False], np.diff(open_ms) <= 0])
    return bad


def _epoch_ms(times: pd.Series) -> np.ndarray:
    values: np.ndarray = times.to_numpy(dtype="datetime64[ms]").view(np.int64)
    return values


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
    return _epoch_ms(frame["open_time"])


def close_time_ms(frame: pd.DataFrame) -> np.ndarray:
    """The close times of ``frame`` as epoch milliseconds."""
    return _epoch_ms(frame["close_time"])

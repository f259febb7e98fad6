"""A klines body in Binance's canonical form, converted in one vectorized step.

``/api/v3/klines`` answers ``[[1794813600000,"132412.28000000",...,"0"],...]``: per row, the
open time, five decimal strings, the close time, a decimal string, the trade count, two decimal
strings and the ignored ``"0"``, with no whitespace. Parsing that strictly through JSON and
Python objects (:func:`ost.klines.parse_columns`) costs more than the request itself; here the
bytes are checked to have exactly that form, then every number is converted at once.

:func:`canonical_columns` answers None for any body not in that form (whitespace, escapes, an
11-field row, a float where Binance sends a string, a string where it sends an integer, a
number without a decimal point, an exponent...), and the caller parses it strictly instead, so
what the strict path accepts, refuses, and says stays exactly as it was: this is a shortcut for
the one form Binance sends, never a second parser with its own rules. What it converts equals
what the strict path returns (the tests compare both on every row the simulator renders):

- the skeleton (the body without its digits) must be the canonical row's, repeated: so the
  quotes, commas and brackets are where Binance puts them, integers are unquoted and have no
  decimal point, decimals are quoted and have exactly one, and nothing else is there;
- no integer has a leading zero (JSON has none);
- Arrow's cast of strings to float64 (fast_float, correctly rounded like ``float()``) reads
  every token (an empty one or a lone ``.`` fails it), and integers are below 2**53, so that
  their float64 is exact.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import numpy as np

from ost.klines import COLUMNS, FIELDS, FLOAT_COLUMNS, TIME_COLUMNS, Columns, to_milliseconds

#: One canonical row without its digits: integers (fields 0, 6, 8) bare, decimals quoted with
#: one point, and the ignored field quoted.
_ROW_SKELETON: Final = b'[,".",".",".",".",".",,".",,".",".",""]'
_DIGITS: Final = b"0123456789"
_STRUCTURE: Final = b'[]"'
#: Integers at or above this may not be exact as float64: such a body goes the strict way.
_EXACT_INTEGERS: Final = 2**53
#: The integer fields (open time, close time, trades), and the ASCII codes their checks use.
_INTEGER_FIELDS: Final = tuple(i for i, name in enumerate(COLUMNS) if name not in FLOAT_COLUMNS)
_COMMA: Final = ord(",")
_ZERO: Final = ord("0")


def canonical_columns(body: bytes) -> Columns | None:
    """The raw columns of a canonical klines body (times as sent), or None if it is not one.

    Not validated: the caller normalizes the times and validates, as for the strict path.
    """
    skeleton = body.translate(None, _DIGITS)
    rows = (len(skeleton) - 1) // (len(_ROW_SKELETON) + 1)
    if rows < 1 or skeleton != _skeleton(rows):
        return None
    values = _numbers(body.translate(None, _STRUCTURE), rows)
    if values is None or not bool((values[:, _INTEGER_FIELDS] < _EXACT_INTEGERS).all()):
        return None
    return {
        name: (
            values[:, position].astype(np.int64)
            if position in _INTEGER_FIELDS
            else np.ascontiguousarray(values[:, position])
        )
        for position, name in enumerate(COLUMNS)
    }


def normalized_columns(body: bytes) -> Columns | None:
    """:func:`canonical_columns` with the times as epoch ms (as the strict path returns them)."""
    columns = canonical_columns(body)
    if columns is not None:
        for name in TIME_COLUMNS:
            columns[name] = to_milliseconds(columns[name])
    return columns


def _numbers(flat: bytes, rows: int) -> np.ndarray | None:
    """The numbers of ``flat``, a canonical body without brackets and quotes, row by row.

    None if an integer has a leading zero (JSON allows none), or a token is no number (an
    empty one, a lone point). The tokens are laid out as one Arrow string array over the bytes
    without their commas, and Arrow's cast of strings to float64 reads them (fast_float:
    correctly rounded, as ``float()``).
    """
    count = rows * len(FIELDS)
    commas = np.flatnonzero(np.frombuffer(flat, dtype=np.uint8) == _COMMA)
    if commas.size != count - 1 or len(flat) == commas.size:
        return None
    offsets = np.empty(count + 1, dtype=np.int32)
    offsets[0] = 0
    offsets[1:-1] = commas - np.arange(commas.size)  # each token's start, commas taken out
    offsets[-1] = len(flat) - commas.size
    digits = flat.translate(None, b",")
    starts = offsets[:-1].reshape(rows, len(FIELDS))[:, _INTEGER_FIELDS]
    lengths = np.diff(offsets).reshape(rows, len(FIELDS))[:, _INTEGER_FIELDS]
    first = np.frombuffer(digits, dtype=np.uint8)[np.minimum(starts, len(digits) - 1)]
    if bool(((lengths > 1) & (first == _ZERO)).any()):
        return None
    pa, compute = _arrow()
    tokens = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(digits))
    try:
        values: np.ndarray = compute.cast(tokens, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        return None
    return values.reshape(rows, len(FIELDS))


@functools.cache
def _arrow() -> tuple[Any, Any]:
    """The modules ``pyarrow`` and ``pyarrow.compute``, imported at the first body (60 ms)."""
    import pyarrow as pa  # noqa: PLC0415  # see the docstring
    from pyarrow import compute  # noqa: PLC0415  # as above

    return pa, compute


@functools.lru_cache(maxsize=8)
def _skeleton(rows: int) -> bytes:
    """The skeleton of a canonical body of ``rows`` rows."""
    return b"[" + b",".join([_ROW_SKELETON] * rows) + b"]"

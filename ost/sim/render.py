"""Vectorized rendering of candle columns as text: the bytes an f-string loop would give.

A page of 1000 candles is 11,000 numbers; formatting them one by one with ``f"{x:.8f}"`` costs
the simulator more CPU than anything else it does for a request. Here every number of a column
is turned into ASCII digits at once (numpy ``divmod`` by 10,000 and a table of 4-digit
strings), the row's pieces are laid side by side in a byte matrix, and a mask drops the
leading zeros. The result is byte for byte what the f-strings give: where a value cannot be
proven to format the same way (negative, not finite, or within 1e-7 of a rounding tie at the
8th decimal), :func:`render` returns None and the caller formats that batch one number at a
time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

#: ASCII of 0000..9999, one row of 4 bytes each.
_QUADS: Final = np.array([list(f"{i:04d}".encode()) for i in range(10_000)], dtype=np.uint8)
#: 1, 10, 100, ... 10**18: the number of these at or below a value is its digit count.
_POWERS: Final = 10 ** np.arange(19, dtype=np.int64)
_SCALE: Final = 100_000_000  # 8 decimals
#: Up to this many fractional bits, decimals are computed in int64 without overflow.
_EXACT_SHIFT: Final = 29
#: ``(x - floor(x)) * 10**8`` is one rounded product: off by at most ``10**8 * 2**-53`` (about
#: 1.1e-8) from the exact value. Closer than this to a rounding tie, it is not trusted.
_TIE_MARGIN: Final = 1e-7


@dataclass(frozen=True)
class Int:
    """A non-negative integer column, written without padding."""

    values: np.ndarray


@dataclass(frozen=True)
class Fixed8:
    """A non-negative float column, written as ``f"{x:.8f}"`` would."""

    values: np.ndarray


Piece = bytes | Int | Fixed8


def render(pieces: Sequence[Piece], rows: int) -> bytes | None:
    """Each row's pieces one after the other, rows one after the other; None if unsure.

    ``bytes`` pieces are written as they are in every row.
    """
    spans = _spans(pieces)
    if spans is None:
        return None
    widths = [len(span) if isinstance(span, bytes) else _width(span) for span in spans]
    offsets = np.concatenate([[0], np.cumsum(widths)]).tolist()
    text = np.empty((rows, offsets[-1]), dtype=np.uint8)
    keep = np.ones((rows, offsets[-1]), dtype=bool)
    numbers: dict[int, list[tuple[int, _Digits]]] = {}  # width -> (position, span) that wide
    for position, span in enumerate(spans):
        if isinstance(span, bytes):
            text[:, offsets[position] : offsets[position + 1]] = np.frombuffer(span, np.uint8)
        else:
            numbers.setdefault(widths[position], []).append((position, span))
    for width, group in numbers.items():
        values = np.stack([span.values for _, span in group], axis=1)
        digits = _QUADS[_quads(values, width // 4)].reshape(rows, len(group), width)
        for column, (position, span) in enumerate(group):
            text[:, offsets[position] : offsets[position + 1]] = digits[:, column]
            if not span.zero_padded:
                unwanted = width - _digit_count(span.values)
                keep[:, offsets[position] : offsets[position + 1]] = (
                    _COLUMNS[:width][None, :] >= unwanted[:, None]
                )
    return text[keep].tobytes()


@dataclass(frozen=True)
class _Digits:
    """Non-negative int64 values to write in decimal."""

    values: np.ndarray
    zero_padded: bool = False  # exactly 8 digits, as decimals


_COLUMNS: Final = np.arange(20)


def _spans(pieces: Sequence[Piece]) -> list[bytes | _Digits] | None:
    """The pieces as literal bytes and decimal spans, or None where rendering is not certain."""
    spans: list[bytes | _Digits] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            spans.append(piece)
        elif isinstance(piece, Int):
            values = piece.values
            if values.dtype.kind not in "iu" or (len(values) and int(values.min()) < 0):
                return None
            spans.append(_Digits(values.astype(np.int64, copy=False)))
        else:
            split = _fixed8(piece.values)
            if split is None:
                return None
            integer, decimals = split
            spans += [_Digits(integer), b".", _Digits(decimals, zero_padded=True)]
    return spans


def _fixed8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer part and 8 decimals, as ``format(x, ".8f")`` rounds them; None if unsure.

    A float is ``M * 2**-s`` for an integer ``M``. Where ``s`` is at most 29 (values from
    2**23 up) the decimals come from integers alone, exactly, rounding half to even as Python
    does. Below, ``(x - floor(x)) * 10**8`` in floating point is within ``_TIE_MARGIN`` of the
    exact value, so its rounding is kept unless it sits that close to a tie.
    """
    in_range = np.isfinite(values) & (values >= 0) & (values < 2.0**62) & ~np.signbit(values)
    if not in_range.all():
        return None
    mantissa, exponent = np.frexp(values)
    significand = (mantissa * 2.0**53).astype(np.int64)
    shift = 53 - exponent.astype(np.int64)
    exact = shift <= _EXACT_SHIFT
    whole = np.floor(values)
    scaled = (values - whole) * _SCALE  # values - whole is exact for binary floats
    fraction = np.rint(scaled)
    if (~exact & (np.abs(np.abs(scaled - fraction) - 0.5) < _TIE_MARGIN)).any():
        return None
    decimals = fraction.astype(np.int64)
    if exact.any():
        bits = np.clip(shift, 0, _EXACT_SHIFT)
        numerator = (significand & ((np.int64(1) << bits) - 1)) * _SCALE
        quotient = numerator >> bits
        remainder = numerator - (quotient << bits)
        half = (np.int64(1) << bits) >> 1
        up = (bits > 0) & ((remainder > half) | ((remainder == half) & (quotient % 2 == 1)))
        decimals = np.where(exact, quotient + up, decimals)
    integer = whole.astype(np.int64)
    carry = decimals == _SCALE
    integer += carry
    decimals[carry] = 0
    return integer, decimals


def _digit_count(values: np.ndarray) -> np.ndarray:
    """Decimal digits of each non-negative value (1 for 0)."""
    count: np.ndarray = np.maximum(np.searchsorted(_POWERS, values, side="right"), 1)
    return count


def _width(span: _Digits) -> int:
    """Columns for the span: its most digits, rounded up to a multiple of 4."""
    if span.zero_padded:
        return 8
    most = int(_digit_count(span.values).max(initial=1))
    return -(-most // 4) * 4


def _quads(values: np.ndarray, count: int) -> np.ndarray:
    """``values`` (rows x k) as ``count`` base-10,000 digits each, most significant first."""
    quads = np.empty((*values.shape, count), dtype=np.int64)
    rest = values
    for quad in range(count - 1, -1, -1):
        rest, quads[..., quad] = np.divmod(rest, 10_000)
    return quads

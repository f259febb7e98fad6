"""A batch of candles as numpy columns, and its three renderings: rows, JSON and archive CSV.

Every part of the simulator passes :class:`Candles` around; only the edges turn it into what
Binance sends: the 12-field JSON rows of ``/api/v3/klines`` (numbers as ``"%.8f"`` strings, times
and trade counts as integers) or the headerless CSV lines of data.binance.vision.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import orjson

from ost.sim import render

#: Archive timestamps are microseconds from this day on (as data.binance.vision switched).
MICROSECONDS_FROM_MS: Final = 1_735_689_600_000  # 2025-01-01 00:00 UTC

_INT_COLUMNS: Final = ("open_time", "close_time", "trades")


@dataclass(frozen=True, slots=True)
class Candles:
    """Candles in Binance's field order; times are epoch ms (int64), numbers float64."""

    open_time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    close_time: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    taker_buy_base_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray

    def __len__(self) -> int:
        return len(self.open_time)

    @classmethod
    def empty(cls) -> Candles:
        """No candles."""
        return cls(
            **{
                f.name: np.empty(0, np.int64 if f.name in _INT_COLUMNS else np.float64)
                for f in fields(cls)
            }
        )

    @classmethod
    def concat(cls, parts: list[Candles]) -> Candles:
        """The candles of ``parts`` one after the other, sorted by open time."""
        parts = [part for part in parts if len(part)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        joined = cls(
            **{
                f.name: np.concatenate([getattr(part, f.name) for part in parts])
                for f in fields(cls)
            }
        )
        order = np.argsort(joined.open_time, kind="stable")
        return joined.take(order)

    def take(self, index: Any) -> Candles:
        """The candles selected by a numpy index (mask, slice or positions)."""
        return Candles(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def between(self, start_ms: int, end_ms: int) -> Candles:
        """The candles whose open time is in ``[start_ms, end_ms)``."""
        lo, hi = np.searchsorted(self.open_time, [start_ms, end_ms], side="left")
        return self.take(slice(int(lo), int(hi)))

    def _columns(self) -> tuple[list[Any], ...]:
        return tuple(getattr(self, f.name).tolist() for f in fields(self))

    def rows(self) -> list[list[Any]]:
        """Binance's 12-field rows, exactly as ``/api/v3/klines`` serves them."""
        return [
            [ot, f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{v:.8f}", ct, f"{q:.8f}",
             n, f"{tb:.8f}", f"{tq:.8f}", "0"]
            for ot, o, h, lo, c, v, ct, q, n, tb, tq in zip(*self._columns(), strict=True)
        ]  # fmt: skip

    def json_bytes(self) -> bytes:
        """The ``/api/v3/klines`` body: the JSON array of :meth:`rows`, written directly."""
        if not len(self):
            return b"[]"
        body = render.render(self._json_pieces(), len(self))
        if body is None:
            return self._json_bytes_one_by_one()
        return b"[" + body[:-1] + b"]"

    def _json_pieces(self) -> list[render.Piece]:
        f8, whole = render.Fixed8, render.Int
        return [
            b"[", whole(self.open_time), b',"', f8(self.open), b'","', f8(self.high), b'","',
            f8(self.low), b'","', f8(self.close), b'","', f8(self.volume), b'",',
            whole(self.close_time), b',"', f8(self.quote_volume), b'",', whole(self.trades),
            b',"', f8(self.taker_buy_base_volume), b'","', f8(self.taker_buy_quote_volume),
            b'","0"],',
        ]  # fmt: skip

    def _json_bytes_one_by_one(self) -> bytes:
        return orjson.dumps(self.rows())

    def csv_bytes(self) -> bytes:
        """The archive CSV: no header, LF line ends; µs times for candles from 2025-01-01."""
        micro = self.open_time >= MICROSECONDS_FROM_MS
        open_out = np.where(micro, self.open_time * 1000, self.open_time)
        close_out = np.where(micro, self.close_time * 1000 + 999, self.close_time)
        if not len(self):
            return b""
        body = render.render(self._csv_pieces(open_out, close_out), len(self))
        if body is None:
            return self._csv_bytes_one_by_one(open_out, close_out)
        return body

    def _csv_pieces(self, open_out: np.ndarray, close_out: np.ndarray) -> list[render.Piece]:
        f8, whole = render.Fixed8, render.Int
        return [
            whole(open_out), b",", f8(self.open), b",", f8(self.high), b",", f8(self.low), b",",
            f8(self.close), b",", f8(self.volume), b",", whole(close_out), b",",
            f8(self.quote_volume), b",", whole(self.trades), b",", f8(self.taker_buy_base_volume),
            b",", f8(self.taker_buy_quote_volume), b",0\n",
        ]  # fmt: skip

    def _csv_bytes_one_by_one(self, open_out: np.ndarray, close_out: np.ndarray) -> bytes:
        columns = list(self._columns())
        columns[0] = open_out.tolist()
        columns[6] = close_out.tolist()
        return "".join(
            f"{ot},{o:.8f},{h:.8f},{lo:.8f},{c:.8f},{v:.8f},{ct},{q:.8f},{n},{tb:.8f},{tq:.8f},0\n"
            for ot, o, h, lo, c, v, ct, q, n, tb, tq in zip(*columns, strict=True)
        ).encode()

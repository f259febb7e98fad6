"""The canonical klines body in one step: the same candles, and errors, as the strict path."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_candles, from_rows

from ost import binance, intervals
from ost.errors import BadPayload, InvalidCandle
from ost.kline_body import canonical_columns
from ost.klines import COLUMNS, frame_from_columns, parse_columns
from ost.sim import market

NOW = int(dt.datetime(2026, 11, 20, 10, 0, 30, tzinfo=dt.UTC).timestamp() * 1000)
#: The simulator's oldest and newest candles asked for below.
EARLIEST = intervals.date_ms(dt.date(2018, 1, 1))
LATEST = intervals.date_ms(dt.date(2026, 11, 1))
T0 = 1_700_000_040_000


def answer(body: bytes) -> httpx.Response:
    """A 200 answer to a klines request carrying ``body``."""
    request = httpx.Request("GET", "http://127.0.0.1:1/api/v3/klines")
    return httpx.Response(200, content=body, request=request)


def strict(body: bytes, interval: str) -> Any:
    """What the strict path makes of ``body``: its columns, or the error's type and message."""
    return outcome(
        lambda: parse_columns(binance._json_of(answer(body), "/api/v3/klines"), interval)
    )


def client_side(body: bytes, interval: str) -> Any:
    """What the client makes of ``body`` (the canonical shortcut, else the strict path)."""
    return outcome(lambda: binance._kline_columns(answer(body), interval))


def outcome(parse: Any) -> Any:
    """``parse()``'s columns as lists with dtypes, or its error's type and message."""
    try:
        columns = parse()
    except (InvalidCandle, BadPayload) as exc:
        return type(exc).__name__, str(exc)
    return {name: (str(values.dtype), values.tolist()) for name, values in columns.items()}


def row(open_ms: int = T0) -> list[Any]:
    """A valid 1m row as Binance sends it."""
    return [open_ms, "100.00000000", "101.00000000", "99.00000000", "100.50000000",
            "1.50000000", open_ms + 59_999, "150.00000000", 7, "0.50000000", "50.00000000",
            "0"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    symbol=st.sampled_from(["BTCUSDT", "ETHUSDT", "DOGEUSDT"]),
    interval=st.sampled_from(["1s", "1m", "15m", "1h", "1d"]),
    start=st.integers(EARLIEST, LATEST),
    count=st.integers(1, 1000),
)
def test_simulator_bodies_convert_as_the_strict_path_does(
    symbol: str, interval: str, start: int, count: int
) -> None:
    """Every body the simulator serves takes the shortcut, and gives the strict path's candles."""
    step = intervals.FIXED_INTERVAL_MS[interval]
    begin = intervals.align(interval, start)
    candles = market.candles(symbol, interval, begin, begin + count * step, NOW)
    if not len(candles):
        return
    body = candles.json_bytes()
    assert canonical_columns(body) is not None
    got = client_side(body, interval)
    assert got == strict(body, interval)
    assert_candles(frame_from_columns(binance._kline_columns(answer(body), interval)),
                   from_rows(orjson.loads(body)))  # fmt: skip


DECIMALS = st.one_of(
    st.floats(0.00000001, 1e12, allow_nan=False).map(lambda x: f"{x:.8f}"),
    st.floats(0.00000001, 1e12, allow_nan=False).map(repr),
    st.sampled_from(["5", "5.", ".5", "00.5", "0.0", "1e3", "-1.0", "1" * 30 + ".5", " 1.0"]),
    st.integers(0, 10**6).map(str),
)


@settings(max_examples=300, deadline=None)
@given(decimals=st.lists(DECIMALS, min_size=8, max_size=8), trades=st.integers(0, 2**62))
def test_any_decimal_strings_give_the_strict_outcome(decimals: list[str], trades: int) -> None:
    """Whatever the decimal strings and the trade count, the client answers as the strict path."""
    rows = [row(), row(T0 + 60_000)]
    for position, text in zip((1, 2, 3, 4, 5, 7, 9, 10), decimals, strict=True):
        rows[1][position] = text
    rows[1][8] = trades
    body = orjson.dumps(rows)
    assert client_side(body, "1m") == strict(body, "1m")


CANONICAL = orjson.dumps([row(), row(T0 + 60_000)])


@pytest.mark.parametrize(
    "body",
    [
        CANONICAL.replace(b",", b", "),  # whitespace
        CANONICAL + b"\n",
        CANONICAL.replace(b'"0"]', b"]"),  # 11 fields
        CANONICAL.replace(b'"0"]', b'"0","0"]'),  # 13 fields
        CANONICAL.replace(b'"100.00000000"', b"100.0"),  # a float where Binance sends a string
        CANONICAL.replace(b"1700000040000,", b'"1700000040000",'),  # a string for an integer
        CANONICAL.replace(b",7,", b",7.0,"),  # a float trade count
        CANONICAL.replace(b",7,", b",07,"),  # a leading zero: not JSON
        CANONICAL.replace(b"[1700000040000,", b"[01700000040000,", 1),
        CANONICAL.replace(b",7,", b",,"),  # an empty field
        CANONICAL.replace(b'"1.50000000"', b'"."'),
        CANONICAL.replace(b'"1.50000000"', b'""'),
        CANONICAL.replace(b'"0"]', b'""]'),
        CANONICAL.replace(b'"0"]', b'"x"]'),
        CANONICAL.replace(b'"1.50000000"', b'"1\\u002e5"'),  # an escape
        CANONICAL.replace(b'"101.00000000"', b'"-101.00000000"'),
        CANONICAL.replace(b'"101.00000000"', b'"1.01e2"'),
        CANONICAL.replace(b'"101.00000000"', b'"98.00000000"'),  # high below open: invalid
        CANONICAL.replace(b",7,", b",-7,"),
        CANONICAL.replace(b",7,", b",true,"),
        CANONICAL.replace(b",7,", b",null,"),
        CANONICAL.replace(b",7,", b",[7],"),
        CANONICAL.replace(b",7,", b"," + b"9" * 25 + b","),  # too big for int64
        CANONICAL.replace(b",7,", b"," + str(2**53 + 1).encode() + b","),  # not exact as float
        CANONICAL.replace(b"1700000100000", b"1700000040000"),  # the same open time twice
        CANONICAL.replace(b"1700000100000", b"1700000100001"),  # not aligned
        CANONICAL[:-1],  # cut short
        CANONICAL[1:-1],  # one row and a second, no outer list
        b"[]",
        b"[[]]",
        b"{}",
        b"not json",
        b"",
    ],
)
def test_non_canonical_bodies_give_the_strict_outcome(body: bytes) -> None:
    """A body not in Binance's form goes the strict way: the same candles, or the same error."""
    assert client_side(body, "1m") == strict(body, "1m")


def test_the_canonical_body_gives_every_column_in_its_dtype() -> None:
    """Binance's form converts to the stored columns, times int64 ms, prices float64."""
    columns = binance._kline_columns(answer(CANONICAL), "1m")
    assert list(columns) == list(COLUMNS)
    assert columns["open_time"].tolist() == [T0, T0 + 60_000]
    assert columns["trades"].dtype == np.int64
    assert columns["close"].tolist() == [100.5, 100.5]
    assert_candles(frame_from_columns(columns), from_rows([row(), row(T0 + 60_000)]))

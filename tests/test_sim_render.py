"""The simulator's vectorized text rendering gives the bytes of the f-strings it replaces."""

from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ost import intervals
from ost.sim import market
from ost.sim.candles import MICROSECONDS_FROM_MS
from ost.sim.render import Fixed8, Int, render

NOW = intervals.date_ms(dt.date(2026, 11, 20)) + 10 * intervals.HOUR_MS
#: The 2023-03-24 halt (real candles) and the switch to µs archive times.
REAL_DAY = intervals.date_ms(dt.date(2023, 3, 24))
MICRO_EDGE = MICROSECONDS_FROM_MS - 500 * intervals.MINUTE_MS

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1e12),
    st.integers(0, 10**12).map(lambda n: n / 10**8),  # 8-decimal values, as Binance's
    st.sampled_from([0.0, -0.0, 2.0**-9, 0.999999995, 1e-9, 9.5e-9, 2.0**62, 1e19]),
)
ints = st.integers(-5, 2**62)


@given(st.lists(st.tuples(floats, ints, floats), min_size=1, max_size=40))
def test_render_equals_f_strings_or_declines(rows: list[tuple[float, int, float]]):
    """Every batch renders exactly as the f-strings do, or render() says it is unsure."""
    first, whole, last = (np.array(column) for column in zip(*rows, strict=True))
    pieces = [b"[", Fixed8(first), b",", Int(whole.astype(np.int64)), b',"', Fixed8(last), b'"]']
    rendered = render(pieces, len(rows))
    expected = "".join(f'[{a:.8f},{n},"{b:.8f}"]' for a, n, b in rows).encode()
    assert rendered is None or rendered == expected


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**17).map(lambda n: n / 10**8),
            st.integers(0, 2**62),
            st.floats(0, 1e15),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_binance_like_values_always_render(rows: list[tuple[float, int, float]]):
    """8-decimal values, integers, and floats away from a rounding tie always render, exactly."""
    first, whole, last = (np.array(column) for column in zip(*rows, strict=True))
    last = np.where(np.abs((last * 1e8) % 1 - 0.5) < 1e-3, np.floor(last), last)
    pieces = [Fixed8(first), b",", Int(whole.astype(np.int64)), b",", Fixed8(last), b";"]
    expected = "".join(
        f"{a:.8f},{n},{b:.8f};" for a, n, b in zip(first, whole, last, strict=True)
    ).encode()
    assert render(pieces, len(rows)) == expected


def test_typical_values_take_the_vectorized_path():
    """Prices on a tick grid and 8-decimal volumes never fall back to one-by-one formatting."""
    prices = np.round(np.linspace(0.01, 120_000, 1000), 2)
    volumes = np.round(np.linspace(0, 5e6, 1000), 8)
    assert render([Fixed8(prices), b",", Fixed8(volumes), b"\n"], 1000) is not None


@pytest.mark.parametrize(
    ("symbol", "interval", "start"),
    [
        ("BTCUSDT", "1m", NOW - 2000 * intervals.MINUTE_MS),
        ("BTCUSDT", "1m", REAL_DAY),
        ("BTCUSDT", "1s", REAL_DAY + 3600_000),
        ("ETHUSDT", "1h", NOW - 900 * intervals.HOUR_MS),
        ("BTCUSDT", "1d", 0),
        ("BTCUSDT", "1M", 0),
    ],
)
def test_klines_bodies_are_the_json_of_their_rows(symbol: str, interval: str, start: int):
    """A klines body is byte for byte orjson's rendering of Binance's rows."""
    candles = market.page(symbol, interval, NOW, start_time=start, limit=1000)
    assert len(candles) > 0
    assert render(candles._json_pieces(), len(candles)) is not None  # not the fallback
    assert candles.json_bytes() == orjson.dumps(candles.rows())


@pytest.mark.parametrize("start", [REAL_DAY, MICRO_EDGE])
def test_archive_csv_is_the_line_by_line_csv(start: int):
    """Archive CSV lines (ms before 2025, µs after) match the one-number-at-a-time rendering."""
    candles = market.candles("BTCUSDT", "1m", start, start + 1000 * intervals.MINUTE_MS, NOW)
    micro = candles.open_time >= MICROSECONDS_FROM_MS
    assert micro.any() == (start == MICRO_EDGE)
    assert render(candles._csv_pieces(candles.open_time, candles.close_time), len(candles))
    open_out = np.where(micro, candles.open_time * 1000, candles.open_time)
    close_out = np.where(micro, candles.close_time * 1000 + 999, candles.close_time)
    assert candles.csv_bytes() == candles._csv_bytes_one_by_one(open_out, close_out)

"""Strict parsing of Binance's kline rows."""

from __future__ import annotations

from typing import Any

import pytest
from oracle import assert_candles, from_rows

from ost.errors import InvalidCandle
from ost.klines import frame_from_columns, parse_columns

T0 = 1_700_000_040_000


def row(open_ms: int = T0) -> list[Any]:
    """A valid 1m row as Binance sends it."""
    return [
        open_ms,
        "100.0",
        "101.0",
        "99.0",
        "100.5",
        "1.5",
        open_ms + 59_999,
        "150.0",
        7,
        "0.5",
        "50.0",
        "0",
    ]


def test_valid_rows_parse_with_binance_types() -> None:
    """Strings for prices, integers for times and trades: each field in its column and dtype."""
    rows = [row(), row(T0 + 60_000)]
    frame = frame_from_columns(parse_columns(rows, "1m"))  # as the client builds a page
    assert frame["close"].tolist() == [100.5, 100.5]
    assert_candles(frame, from_rows(rows))


@pytest.mark.parametrize(
    ("position", "value"),
    [(0, "1700000040000"), (0, True), (6, 1.5), (8, None), (1, None), (4, [1]), (9, {"x": 1})],
)
def test_a_field_of_the_wrong_type_names_its_row(position: int, value: Any) -> None:
    """A wrong type anywhere fails the whole batch, naming the first bad row and field."""
    bad = row(T0 + 60_000)
    bad[position] = value
    with pytest.raises(InvalidCandle, match=f"row 1 field {position}"):
        parse_columns([row(), bad], "1m")


@pytest.mark.parametrize("bad", [[1, 2, 3], "row", None, [*row(), "extra"]])
def test_a_row_of_the_wrong_shape_names_its_row(bad: Any) -> None:
    """A row that is not a list of 12 fields fails the batch."""
    with pytest.raises(InvalidCandle, match="row 1 is not a list of 12 fields"):
        parse_columns([row(), bad], "1m")


def test_microsecond_times_become_milliseconds() -> None:
    """Archive rows from 2025 on carry µs; they are stored in ms."""
    micro = row()
    micro[0], micro[6] = T0 * 1000, (T0 + 59_999) * 1000 + 999
    columns = parse_columns([micro], "1m")
    assert int(columns["open_time"][0]) == T0
    assert int(columns["close_time"][0]) == T0 + 59_999


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (2, "99.5", "high is below"),
        (3, "100.7", "low is above"),
        (5, "-1", "volume is negative"),
        (0, T0 + 1, "not aligned"),
        (6, T0 + 120_000, "after the candle's end"),
    ],
)
def test_impossible_candles_are_refused(field: int, value: Any, problem: str) -> None:
    """Well-formed but impossible rows raise InvalidCandle saying why."""
    bad = row()
    bad[field] = value
    with pytest.raises(InvalidCandle, match=problem):
        parse_columns([bad], "1m")


def test_a_halted_candle_that_closed_early_is_valid() -> None:
    """close_time before the full minute (the 2023-03-24 halt) is Binance's truth, kept."""
    early = row()
    early[6] = T0 + 41_646
    assert int(parse_columns([early], "1m")["close_time"][0]) == T0 + 41_646

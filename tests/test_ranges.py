"""Ranges as people mean them: --end is inclusive, and a date alone is the whole day (issue 9).

On the command line (real `ost` processes against the simulator) and in the flows' parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from commands import ost
from hypothesis import given
from hypothesis import strategies as st

from ost import intervals, klines
from ost.args import is_date_alone, parse_end, parse_time, time_range
from ost.errors import BadInput
from ost.sim import SimHandle, market
from ost.store import CandleStore

HALT_DAY = (parse_time("2023-03-24"), parse_time("2023-03-25"))
FAR_FUTURE = parse_time("2100-01-01")

moments = st.datetimes(
    min_value=dt.datetime(2017, 7, 14), max_value=dt.datetime(2099, 1, 1), timezones=st.just(dt.UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


def ms(moment: dt.datetime) -> int:
    """A UTC datetime (whole milliseconds) as epoch ms, computed apart from the code under test."""
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


@given(moments, moments, moments)
def test_a_candle_is_in_the_range_when_it_opens_between_start_and_end_inclusive(
    start: dt.datetime, end: dt.datetime, candle: dt.datetime
) -> None:
    """[start, stop) holds an open time exactly when start <= it <= --end."""
    if start > end:
        start, end = end, start
    first, stop = time_range(None, start.isoformat(), end.isoformat(), FAR_FUTURE)
    assert (first <= ms(candle) < stop) == (start <= candle <= end)


@given(moments, moments)
def test_a_date_alone_as_end_holds_its_whole_day(start: dt.datetime, candle: dt.datetime) -> None:
    """--end DATE holds every open time up to that day's last millisecond."""
    day = start.date() + dt.timedelta(days=3)
    first, stop = time_range(None, start.isoformat(), day.isoformat(), FAR_FUTURE)
    assert (first <= ms(candle) < stop) == (start <= candle and candle.date() <= day)


def test_the_end_reads_as_binance_end_time() -> None:
    """23:59:00 holds the 23:59 candle of 1m; a date holds the day; the same date twice is a day."""
    assert parse_end("2023-03-24T23:59:00Z") == parse_time("2023-03-24T23:59") + 1
    assert parse_end("2023-03-24") == HALT_DAY[1]
    assert time_range(None, "2023-03-24", "2023-03-24", FAR_FUTURE) == HALT_DAY
    assert time_range(None, "2023-03-24T10:00", "2023-03-24T10:00", FAR_FUTURE) == (
        parse_time("2023-03-24T10:00"),
        parse_time("2023-03-24T10:00") + 1,
    )
    assert is_date_alone(" 2023-03-24 ")
    assert not is_date_alone("2023-03-24T00:00")


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("2023-03-25", "2023-03-24", "is after --end 2023-03-24"),
        ("2023-03-24T10:00", "2023-03-24T09:59", "is after --end"),
        ("2023-03-24", "2023-02-30", "invalid time"),
    ],
)
def test_an_end_before_the_start_is_bad_input(start: str, end: str, says: str) -> None:
    """An end before the start, or no date at all, is refused with one line."""
    with pytest.raises(BadInput, match=says):
        time_range(None, start, end, FAR_FUTURE)


# ---- the command line ------------------------------------------------------------------------


def env_for(sim: SimHandle, data_dir: Path) -> dict[str, str]:
    """An `ost` subprocess's environment: the simulator and a data dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OST_")}
    env.update(
        OST_BINANCE_BASE_URLS=sim.url, OST_ARCHIVE_BASE_URL=sim.url, OST_DATA_DIR=str(data_dir)
    )
    return env


def served(interval: str, now_ms: int) -> pd.DataFrame:
    """The simulator's own BTCUSDT candles of 2023-03-24."""
    return klines.parse_rows(market.klines("BTCUSDT", interval, *HALT_DAY, now_ms), interval)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interval", "end"),
    [("1m", "2023-03-24T23:59:00Z"), ("1m", "2023-03-24"), ("1h", "2023-03-24")],
)
def test_backfill_end_includes_the_last_candle(
    sim: SimHandle, tmp_path: Path, interval: str, end: str
) -> None:
    """`ost backfill --end` holds the candle opening at the end, and a date the whole day."""
    run = ost(
        "backfill",
        "--interval",
        interval,
        "--symbols",
        "BTCUSDT",
        "--start",
        "2023-03-24T00:00:00Z",
        "--end",
        end,
        "--source",
        "api",
        env=env_for(sim, tmp_path),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    stored = CandleStore(str(tmp_path)).load_klines("BTCUSDT", interval)
    last_open = intervals.align(interval, HALT_DAY[1] - 1)  # 23:59 for 1m, 23:00 for 1h
    assert int(klines.open_time_ms(stored)[-1]) == last_open
    assert klines.rows_equal(stored, served(interval, sim.now_ms()))


@pytest.mark.slow
def test_gaps_checks_the_whole_day_of_a_date(sim: SimHandle, tmp_path: Path) -> None:
    """`ost gaps --start D --end D` checks 1440 minutes: 23:59 included, the halt exchange-side."""
    env = env_for(sim, tmp_path)
    day = (
        "--interval",
        "1m",
        "--symbols",
        "BTCUSDT",
        "--start",
        "2023-03-24",
        "--end",
        "2023-03-24",
    )
    repaired = ost("gaps", *day, "--repair", "--json", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    stream = json.loads(repaired.stdout)["streams"][0]
    assert stream["expected_candles"] == 1440
    assert stream["end"] == "2023-03-25T00:00:00Z"
    assert [gap["candles"] for gap in stream["exchange_gaps"]] == [80]
    assert klines.rows_equal(
        CandleStore(str(tmp_path)).load_klines("BTCUSDT", "1m"), served("1m", sim.now_ms())
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["backfill", "--interval", "1h", "--start", "2023-03-25", "--end", "2023-03-24"],
        ["gaps", "--interval", "1h", "--start", "2023-03-24", "--end", "2023-03-24T25:00"],
    ],
)
def test_a_bad_end_exits_2_before_any_request(
    sim: SimHandle, tmp_path: Path, args: list[str]
) -> None:
    """One line `ost: error: ...`, exit 2, no request and no file."""
    data_dir = tmp_path / "data"
    run = ost(*args, env=env_for(sim, data_dir))
    assert run.returncode == 2
    assert run.stderr.startswith("ost: error: ")
    assert len(run.stderr.strip().splitlines()) == 1
    assert sim.stats()["total"] == 0
    assert not data_dir.exists()


def test_help_says_the_end_is_inclusive() -> None:
    """--help of backfill and gaps says what --end means, and that a date is the whole day."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"COLUMNS": "200"}
    for command in ("backfill", "gaps"):
        text = " ".join(ost(command, "--help", env=env).stdout.split())
        assert "inclusive: candles opening at or before it" in text
        assert "a date alone is the whole day" in text


# ---- the flows' parameters -------------------------------------------------------------------


@pytest.mark.parametrize("entrypoint", ["backfill", "check_gaps"])
def test_flow_parameters_keep_a_date_alone_a_date(entrypoint: str) -> None:
    """Prefect's validation gives a date for 2023-03-24 and a time for a time, both typed."""
    from ost.flows.backfill import backfill
    from ost.flows.gaps import check_gaps

    flow = {"backfill": backfill, "check_gaps": check_gaps}[entrypoint]
    checked = flow.validate_parameters({"start": "2023-03-24T00:00:00Z", "end": "2023-03-24"})
    assert checked["end"] == dt.date(2023, 3, 24)
    assert checked["start"] == dt.datetime(2023, 3, 24, tzinfo=dt.UTC)
    later = flow.validate_parameters({"end": "2023-03-24T23:59:00Z"})["end"]
    assert later == dt.datetime(2023, 3, 24, 23, 59, tzinfo=dt.UTC)


def test_check_gaps_has_a_typed_recheck_parameter() -> None:
    """The check-gaps form offers recheck as a boolean, off by default."""
    from ost.flows.gaps import check_gaps
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(check_gaps).model_dump()["properties"]
    assert schema["recheck"]["type"] == "boolean"
    assert schema["recheck"]["default"] is False
    assert check_gaps.validate_parameters({"recheck": "true"})["recheck"] is True

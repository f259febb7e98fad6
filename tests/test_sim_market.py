"""The simulator's market as a pure function: consistency, listing dates, real data and gaps."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ost import intervals, klines
from ost.sim import market, realdata
from ost.sim.symbols import LISTINGS, utc_ms

NOW = utc_ms("2026-11-20T12:34:56")
HALT_DAY = utc_ms("2023-03-24")
OUTAGE = (utc_ms("2018-02-08T00:29"), utc_ms("2018-02-09T10:00"))
HALT = (utc_ms("2023-03-24T12:40"), utc_ms("2023-03-24T14:00"))
HALTED_CLOSE = 1679661581646
REAL_DAYS = ("2018-02-08", "2023-03-24", "2024-12-31", "2025-01-01")


def real_rows(day: str) -> list[list[object]]:
    """The rows of a real CSV as the API serves them (times in ms)."""
    path = realdata.realdata_dir() / f"BTCUSDT-1m-{day}.csv"
    with Path(path).open(newline="") as handle:
        rows = list(csv.reader(handle))
    divisor = 1000 if len(rows[0][0]) == 16 else 1
    return [
        [int(r[0]) // divisor, *r[1:6], int(r[6]) // divisor, r[7], int(r[8]), r[9], r[10], r[11]]
        for r in rows
    ]


@settings(max_examples=60, deadline=None)
@given(
    symbol=st.sampled_from(sorted(LISTINGS)),
    interval=st.sampled_from(intervals.INTERVALS),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_every_page_passes_the_project_validation(symbol: str, interval: str, fraction: float):
    """Any page of any symbol and interval holds possible, aligned, increasing candles."""
    listed = LISTINGS[symbol].listed_ms
    start = int(listed + fraction * (NOW - listed))
    rows = market.page(symbol, interval, NOW, start_time=start, limit=40).rows()
    columns = klines.parse_columns(rows, interval)
    assert (columns["open_time"] >= start).all()
    assert (columns["taker_buy_base_volume"] <= columns["volume"]).all()
    assert (columns["low"] > 0).all()
    assert all(row[11] == "0" and len(row) == 12 for row in rows)


def test_same_arguments_give_the_same_candles():
    """The market is a pure function of its arguments, and symbols differ."""
    start, end = utc_ms("2024-06-01"), utc_ms("2024-06-02")
    first = market.klines("ETHUSDT", "5m", start, end, NOW)
    assert first == market.klines("ETHUSDT", "5m", start, end, NOW)
    assert len(first) == 288
    assert first != market.klines("BNBUSDT", "5m", start, end, NOW)


def test_each_close_is_the_next_open_and_intervals_agree():
    """Synthetic closes equal the next opens; a 1h candle opens and closes with its 1m ones."""
    start = utc_ms("2022-05-05T03:00")
    minutes = market.candles("SOLUSDT", "1m", start, start + 3 * intervals.HOUR_MS, NOW)
    hours = market.candles("SOLUSDT", "1h", start, start + 3 * intervals.HOUR_MS, NOW)
    assert np.array_equal(minutes.close[:-1], minutes.open[1:])
    assert np.array_equal(hours.open, minutes.open[::60])
    assert np.array_equal(hours.close, minutes.close[59::60])
    assert np.array_equal(hours.trades, minutes.trades.reshape(3, 60).sum(axis=1))
    np.testing.assert_allclose(hours.volume, minutes.volume.reshape(3, 60).sum(axis=1), rtol=1e-7)


def test_no_candle_opens_before_the_listing():
    """SOLUSDT has candles from its listing on: the first one of each interval holds it."""
    listed = LISTINGS["SOLUSDT"].listed_ms
    for interval in ("1m", "1h", "1d", "1w", "1M"):
        rows = market.klines("SOLUSDT", interval, utc_ms("2019-01-01"), listed + 10**9, NOW)
        assert rows[0][0] == intervals.align(interval, listed)
    assert market.klines("SOLUSDT", "1d", utc_ms("2019-01-01"), utc_ms("2020-08-01"), NOW) == []


def test_the_current_candle_grows_until_it_closes():
    """The candle containing now is open: its volume grows with now, its close_time is full."""
    open_ms = utc_ms("2025-06-03T14:00")
    later = [open_ms + minutes * intervals.MINUTE_MS for minutes in (1, 20, 59)]
    snapshots = [market.candles("BTCUSDT", "1h", open_ms, open_ms + 1, now) for now in later]
    assert {int(s.close_time[0]) for s in snapshots} == {open_ms + intervals.HOUR_MS - 1}
    volumes = [float(s.volume[0]) for s in snapshots]
    assert volumes == sorted(volumes)
    assert volumes[0] < volumes[-1]
    closed = market.klines("BTCUSDT", "1h", open_ms, open_ms + 1, open_ms + 10**8)
    at_close = market.klines("BTCUSDT", "1h", open_ms, open_ms + 1, open_ms + intervals.HOUR_MS - 1)
    assert at_close == closed
    assert market.klines("BTCUSDT", "1h", open_ms, open_ms + 1, open_ms - 1) == []


@pytest.mark.parametrize("day", REAL_DAYS)
def test_real_days_serve_the_csv_rows(day: str):
    """BTCUSDT 1m on a real-data day is exactly the CSV (µs times become ms)."""
    start = utc_ms(day)
    assert market.klines("BTCUSDT", "1m", start, start + intervals.DAY_MS, NOW) == real_rows(day)


def test_the_halt_day_for_1m_and_1h():
    """2023-03-24: 1360 1m candles, 12:39 closes early, no 13:00 hour, the 12:00 hour ends early."""
    end = HALT_DAY + intervals.DAY_MS
    minutes = market.candles("BTCUSDT", "1m", HALT_DAY, end, NOW)
    assert len(minutes) == 1360
    assert not ((minutes.open_time >= HALT[0]) & (minutes.open_time < HALT[1])).any()
    hours = market.candles("BTCUSDT", "1h", HALT_DAY, end, NOW)
    by_open = dict(zip(hours.open_time.tolist(), hours.close_time.tolist(), strict=True))
    assert len(hours) == 23
    assert utc_ms("2023-03-24T13:00") not in by_open
    assert by_open[utc_ms("2023-03-24T12:00")] == HALTED_CLOSE
    assert by_open[utc_ms("2023-03-24T14:00")] == utc_ms("2023-03-24T15:00") - 1


def test_a_real_day_aggregates_its_1m_candles():
    """The 1d candle of a real day is its 1m candles aggregated, with a full close_time."""
    end = HALT_DAY + intervals.DAY_MS
    minutes = market.candles("BTCUSDT", "1m", HALT_DAY, end, NOW)
    day = market.candles("BTCUSDT", "1d", HALT_DAY, end, NOW)
    assert len(day) == 1
    assert (day.open[0], day.close[0]) == (minutes.open[0], minutes.close[-1])
    assert (day.high[0], day.low[0]) == (minutes.high.max(), minutes.low.min())
    assert day.trades[0] == minutes.trades.sum()
    assert day.volume[0] == pytest.approx(minutes.volume.sum(), rel=1e-12)
    assert day.close_time[0] == end - 1


@pytest.mark.parametrize("interval", intervals.INTERVALS)
def test_the_2018_outage_has_no_candle_at_any_interval(interval: str):
    """No candle lies wholly inside Binance's 2018-02-08/09 outage, whatever the interval."""
    lookback = max(2 * intervals.FIXED_INTERVAL_MS.get(interval, 31 * intervals.DAY_MS), 3_600_000)
    rows = market.candles("BTCUSDT", interval, OUTAGE[0] - lookback, OUTAGE[1], NOW)
    nexts = np.array([intervals.next_open(interval, int(t)) for t in rows.open_time])
    assert len(rows) > 0
    assert not ((rows.open_time >= OUTAGE[0]) & (nexts <= OUTAGE[1])).any()
    assert (rows.close_time < nexts).all()


def test_candles_around_the_outage_close_early_or_resume():
    """The 2018-02-08 day and 4h candles close with the last real minute; 02-09 starts at 10:00."""
    day = utc_ms("2018-02-08")
    last_real_close = 1518049694788
    for interval in ("4h", "1d"):
        rows = market.klines("BTCUSDT", interval, day, day + intervals.DAY_MS, NOW)
        assert rows[0][0] == day
        assert rows[0][6] == last_real_close
    after = market.page("BTCUSDT", "1m", NOW, start_time=OUTAGE[0], limit=3)
    assert after.open_time.tolist()[0] == OUTAGE[1]


def test_one_second_candles_on_a_real_day_rebuild_their_minute():
    """1s candles cut from a real 1m candle aggregate back to it; none during the halt."""
    minute = utc_ms("2023-03-24T11:07")
    real = market.klines("BTCUSDT", "1m", minute, minute + 1, NOW)[0]
    seconds = market.candles("BTCUSDT", "1s", minute, minute + intervals.MINUTE_MS, NOW)
    assert len(seconds) == 60
    assert f"{seconds.open[0]:.8f}" == real[1]
    assert f"{seconds.close[-1]:.8f}" == real[4]
    assert f"{seconds.high.max():.8f}" == real[2]
    assert f"{seconds.low.min():.8f}" == real[3]
    assert seconds.trades.sum() == real[8]
    halted = market.candles("BTCUSDT", "1s", HALT[0] - 30_000, HALT[1], NOW)
    assert int(halted.close_time[-1]) == HALTED_CLOSE
    assert len(halted) == 12  # 12:39:30 to 12:39:41, then nothing until 14:00


def test_exchange_gaps_lists_the_outage_and_the_halt():
    """The known exchange-side gaps are exactly the 2018 outage and the 2023 halt."""
    assert market.exchange_gaps("BTCUSDT") == [OUTAGE, HALT]
    assert market.exchange_gaps("ETHUSDT") == []


def test_paging_rules():
    """No times: the latest; startTime: the oldest from it; endTime: the latest up to it."""
    latest = market.page("ETHUSDT", "15m", NOW)
    assert len(latest) == market.DEFAULT_LIMIT
    assert latest.open_time[-1] == intervals.align("15m", NOW)
    start = utc_ms("2021-01-01T00:07")
    oldest = market.page("ETHUSDT", "15m", NOW, start_time=start, limit=10)
    assert oldest.open_time[0] == utc_ms("2021-01-01T00:15")
    assert len(oldest) == 10
    upto = market.page("ETHUSDT", "15m", NOW, end_time=start, limit=10)
    assert upto.open_time[-1] == utc_ms("2021-01-01T00:00")
    both = market.page("ETHUSDT", "15m", NOW, start_time=start, end_time=start + 3_600_000)
    assert len(both) == 4


def test_unknown_symbols_are_refused():
    """A symbol the simulator does not list raises UnknownSymbol."""
    with pytest.raises(market.UnknownSymbol):
        market.klines("NOPEUSDT", "1m", 0, NOW, NOW)

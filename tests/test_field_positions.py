"""Each stored column holds the Binance field of its name: a swap of any two columns fails here.

Expectations are Binance's own bytes (a recorded ``/api/v3/klines`` answer, real archive CSVs)
or the simulator's rows, read by the tests' oracle (:mod:`oracle`), whose field positions are
written by hand from Binance's documentation. Every test first checks that its candles tell
every two fields apart, so that no swap could go unseen.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from moments import NOW
from oracle import DTYPES, assert_candles, closed_candles, from_csv, from_rows, lookback_start

from ost.backfill import backfill_stream
from ost.binance import BinanceClient
from ost.ingest import ingest_or_report
from ost.klines import frame_from_columns, parse_columns
from ost.sim import SimHandle
from ost.sim.realdata import realdata_dir
from ost.sim.timegrid import DAY_MS, day_start_ms
from ost.store import CandleStore

#: The last day of the archive in milliseconds, and the first in microseconds (real files).
REAL_DAYS = (dt.date(2024, 12, 31), dt.date(2025, 1, 1))
RECORDED_ANSWER = "ex_binance_testnet_klines_BTCUSDT_1m_default_limit.json"

pytestmark = pytest.mark.usefixtures("fast_retries")


def assert_fields_differ(candles: pd.DataFrame) -> None:
    """Every two columns differ in some candle (times as epoch ms): a swap would show."""
    values = {
        name: candles[name].astype("int64").to_numpy(dtype=np.float64)
        if dtype.startswith("datetime64")
        else candles[name].to_numpy(dtype=np.float64)
        for name, dtype in DTYPES.items()
    }
    assert len(candles) > 0
    same = [
        (a, b) for a, b in itertools.combinations(values, 2) if np.array_equal(values[a], values[b])
    ]
    assert same == []


def real_days() -> pd.DataFrame:
    """The real BTCUSDT 1m candles of :data:`REAL_DAYS`, from their archive CSVs."""
    texts = [(realdata_dir() / f"BTCUSDT-1m-{day}.csv").read_bytes() for day in REAL_DAYS]
    return pd.concat([from_csv(text) for text in texts], ignore_index=True)


def real_range() -> tuple[int, int]:
    """``[start, end)`` of :data:`REAL_DAYS`."""
    start = day_start_ms(REAL_DAYS[0])
    return start, start + len(REAL_DAYS) * DAY_MS


def test_a_recorded_binance_answer_parses_field_by_field() -> None:
    """Binance's own JSON answer: the client's parser puts every field in its column."""
    (exchange,) = json.loads((realdata_dir() / RECORDED_ANSWER).read_text())
    rows = json.loads(exchange["response"]["body"])
    want = from_rows(rows)
    assert_fields_differ(want)
    assert_candles(frame_from_columns(parse_columns(rows, "1m")), want)


def test_api_backfill_of_real_days_stores_every_field_in_its_column(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """Real candles over the simulator's API: stored exactly as the real CSVs hold them."""
    want = real_days()
    assert_fields_differ(want)
    store = CandleStore(str(tmp_path))
    assert backfill_stream(client, store, "BTCUSDT", "1m", *real_range(), source="api").ok
    assert_candles(store.load_klines("BTCUSDT", "1m"), want)


def test_archive_backfill_of_real_days_stores_every_field_in_its_column(
    sim: SimHandle, client: BinanceClient, tmp_path: Path
) -> None:
    """The same days from the simulator's zips (ms, then µs): stored as the real CSVs hold them."""
    want = real_days()
    store = CandleStore(str(tmp_path))
    result = backfill_stream(
        client, store, "BTCUSDT", "1m", *real_range(), source="archive", archive_base_url=sim.url
    )
    assert result.ok
    assert result.from_archive == len(want)
    assert_candles(store.load_klines("BTCUSDT", "1m"), want)


@pytest.mark.parametrize("interval", ["1m", "1h"])
def test_ingested_synthetic_candles_hold_every_field_in_its_column(
    sim: SimHandle, tmp_path: Path, interval: str
) -> None:
    """The simulator's synthetic candles, ingested over HTTP: each field where its name says."""
    sim.configure(now_ms=NOW)
    want = closed_candles("ETHUSDT", interval, lookback_start(interval, NOW, 2), NOW)
    assert_fields_differ(want)
    store = CandleStore(str(tmp_path))
    with BinanceClient([sim.url], timeout_s=10.0) as client:
        assert ingest_or_report(client, store, "ETHUSDT", interval, lookback_days=2).ok
    assert_candles(store.load_klines("ETHUSDT", interval), want)

"""The silent-stall drill: Binance answers, but sends nothing new for a 1m stream.

Compressed thresholds (grace 3 s; monitor, alert, escalate after 2, 4, 8 s), the session's
simulator over real HTTP with its ``empty`` fault (every klines request answers ``200 []``), the
``ost`` commands as subprocesses, and a real local HTTP receiver as the apprise target. The
schedule is played by ``ost ingest`` between evaluations of ``ost watchdog``: whatever each run
says, the store gets nothing new, and the ladder must alert and escalate once each, and send one
recovery once the exchange sends candles again. The expected times are computed here from the
newest candle in the Parquet files, read with pyarrow.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from apprise_receiver import Receiver
from commands import ost

from ost.sim import SimHandle

pytestmark = pytest.mark.slow

GRACE_S = 3
ALERT_S = 4
#: 1m candles over the last ~29 minutes: more than the gap check looks back (cadence + grace).
LOOKBACK_DAYS = "0.02"
STALL_DEADLINE_S = 240.0


def drill_env(sim: SimHandle, data_dir: Path, receiver: Receiver) -> dict[str, str]:
    """One 1m stream on the simulator, thresholds in seconds, the receiver as the only target."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OST_")}
    env.pop("PREFECT_API_URL", None)
    return env | {
        "OST_DATA_DIR": str(data_dir),
        "OST_BINANCE_BASE_URLS": sim.url,
        "OST_ARCHIVE_BASE_URL": sim.url,
        "OST_SYMBOLS": "BTCUSDT",
        "OST_INTERVALS": "1m",
        "OST_INITIAL_LOOKBACK_DAYS": LOOKBACK_DAYS,
        "OST_HTTP_TIMEOUT_S": "5",
        "OST_STALE_GRACE": f"{GRACE_S}s",
        "OST_ESCALATION_MONITOR_AFTER": "2s",
        "OST_ESCALATION_ALERT_AFTER": f"{ALERT_S}s",
        "OST_ESCALATION_ESCALATE_AFTER": "8s",
        "OST_APPRISE_URLS": receiver.url("/drill"),
        "DO_NOT_TRACK": "1",
    }


def newest_open(data_dir: Path) -> dt.datetime:
    """The newest stored open time, read from the Parquet files with pyarrow."""
    table = ds.dataset(data_dir / "klines", partitioning="hive").to_table(columns=["open_time"])
    newest = pc.max(table["open_time"]).as_py()
    assert isinstance(newest, dt.datetime)
    return newest.replace(tzinfo=dt.UTC) if newest.tzinfo is None else newest


@pytest.mark.timeout(600)  # a 1m candle must close, then the ladder climbs: a minute or two
def test_exchange_sending_nothing_new_alerts_escalates_and_recovers_once(
    sim: SimHandle, tmp_path: Path
) -> None:
    """A 1m stream stalls behind `200 []`: one alert, one escalation, one recovery, in order."""
    data_dir = tmp_path / "data"
    with Receiver() as receiver:
        env = drill_env(sim, data_dir, receiver)
        assert ost("ingest", env=env).returncode == 0
        newest = newest_open(data_dir)
        stale_since = newest + dt.timedelta(minutes=2, seconds=GRACE_S)
        sim.set_faults("empty")
        try:
            assert ost("ping", env=env).returncode == 0  # the exchange answers
            deadline = time.monotonic() + STALL_DEADLINE_S
            while len(receiver.posts) < 2 and time.monotonic() < deadline:
                ost("ingest", env=env)  # the schedule: it stores nothing, whatever it says
                assert ost("watchdog", env=env).returncode == 0
            before = time.time()
            status = json.loads(ost("status", "--json", env=env).stdout)
            after = time.time()
        finally:
            sim.clear_faults()
        assert newest_open(data_dir) == newest, "a candle got through the empty fault"
        assert ost("ingest", env=env).returncode == 0
        assert ost("watchdog", env=env).stdout.startswith("level: normal; sent: 1")
        assert ost("watchdog", env=env).stdout.startswith("level: normal; sent: 0")

    assert receiver.types() == ["warning", "failure", "success"], receiver.titles()
    alert, escalate, recovery = receiver.posts
    (stream,) = status["streams"]
    assert stream["stale"] is True
    assert stream["stale_since"] == stale_since.isoformat()
    close_s = (newest + dt.timedelta(minutes=1)).timestamp()
    assert before - close_s <= stream["lag_seconds"] <= after - close_s
    failing = stream["failing_since"]
    began = min([stale_since, *([dt.datetime.fromisoformat(failing)] if failing else [])])
    assert stream["down_since"] == began.isoformat()
    assert alert.wall >= (began + dt.timedelta(seconds=ALERT_S)).timestamp()
    assert escalate.at >= alert.at
    assert "BTCUSDT 1m:" in alert.body["message"]
    clock = stale_since.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"stale since {clock}" in alert.body["message"]
    assert "Level escalate" in escalate.body["message"]
    assert "RECOVERED" in recovery.body["title"]
    assert "Gaps healed: the store has every candle of the outage" in recovery.body["message"]

"""Apprise delivery to a real local HTTP receiver: tags, retries, secrets, and the watchdog."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import stamina
from apprise_receiver import SECRET_PASSWORD, SECRET_PATH, Receiver
from candles import FASTPARQUET_VALUES, make_candles
from ost.alerts.notify import Delivery, Notifier, send_test
from ost.alerts.policy import Kind, Level, Message, OutageGaps
from ost.alerts.watchdog import ladder_status, run_watchdog
from typer.testing import CliRunner

from ost.cli import app
from ost.errors import NotifyError
from ost.ingest import StreamOutcome
from ost.ledger import NOTIFICATIONS, Ledger
from ost.settings import Settings, load_settings
from ost.store import CandleStore

#: apprise 2.0 imports the stdlib's deprecated imghdr; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver."""
    with Receiver() as running:
        yield running


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Stamina without waits (3 attempts kept), so retried deliveries are fast."""
    with stamina.set_testing(True, attempts=3):
        yield


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with one stream, a store in ``tmp_path``, and ``overrides``."""
    values: dict[str, Any] = {"data_dir": str(tmp_path), "symbols": "BTCUSDT", "intervals": "15m"}
    return load_settings(**(values | overrides))


def message(kind: Kind) -> Message:
    """A ladder message of ``kind`` to its usual tags."""
    tags = ("alert", "escalate") if kind is Kind.RECOVERY else (kind.value,)
    return Message(kind, Level.ALERT, tags, f"{kind.value} title", f"{kind.value} body")


def newest_closed_15m_ms() -> int:
    """Open time (ms) of the newest 15m candle closed by now: the quarter hour before the last."""
    quarter = 15 * 60
    return (int(time.time()) // quarter * quarter - quarter) * 1000


def outcome(ok: bool) -> StreamOutcome:
    """An ingestion outcome of the one stream; a success stored every candle closed by now."""
    if ok:
        return StreamOutcome("BTCUSDT", "15m", True, 1, newest_closed_15m_ms(), 0.1)
    return StreamOutcome("BTCUSDT", "15m", False, 0, None, 0.1, "unavailable", "Binance down")


def healed() -> OutageGaps:
    """A gap check that found nothing missing."""
    return OutageGaps(dt.datetime.now(dt.UTC), checked=1)


# ---- the notifier -----------------------------------------------------------------------------


def test_env_urls_get_alert_escalate_and_recovery(tmp_path: Path, receiver: Receiver) -> None:
    """An untagged OST_APPRISE_URLS target receives every kind of message."""
    notifier = Notifier(make_settings(tmp_path, apprise_urls=receiver.url()))
    for kind in Kind:
        assert notifier.send(message(kind)) is Delivery.SENT
    assert receiver.titles() == ["alert title", "escalate title", "recovery title"]
    assert [post.body["type"] for post in receiver.posts] == ["warning", "failure", "success"]


def test_config_tags_route_each_level(tmp_path: Path, receiver: Receiver) -> None:
    """With an apprise YAML config, alert goes to 'alert' targets, escalate to 'escalate' ones."""
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n"
        f"  - {receiver.url('/chat')}:\n      - tag: alert\n"
        f"  - {receiver.url('/pager')}:\n      - tag: escalate\n"
    )
    notifier = Notifier(make_settings(tmp_path, apprise_config=str(config)))
    for kind in Kind:
        assert notifier.send(message(kind)) is Delivery.SENT
    assert receiver.titles("/chat") == ["alert title", "recovery title"]
    assert receiver.titles("/pager") == ["escalate title", "recovery title"]


def test_without_targets_one_log_line_and_no_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No apprise target: the message is not sent, one warning says so, and it is counted."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    notifier = Notifier(make_settings(tmp_path), ledger)
    with caplog.at_level(logging.WARNING, logger="ost.alerts.notify"):
        assert notifier.send(message(Kind.ALERT)) is Delivery.UNCONFIGURED
    lines = [record for record in caplog.records if record.name == "ost.alerts.notify"]
    assert len(lines) == 1
    assert "No apprise target configured" in lines[0].getMessage()
    assert ledger.counter(NOTIFICATIONS, level="alert", result="unconfigured") == 1


def test_a_failing_target_is_retried_then_counted(tmp_path: Path, receiver: Receiver) -> None:
    """A 500 then a 200: delivered at the second attempt; three 500s: failed, counted once."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    notifier = Notifier(make_settings(tmp_path, apprise_urls=receiver.url()), ledger)
    receiver.failures = [500]
    assert notifier.send(message(Kind.ALERT)) is Delivery.SENT
    assert len(receiver.posts) == 2
    receiver.failures = [500, 500, 500]
    assert notifier.send(message(Kind.ESCALATE)) is Delivery.FAILED
    assert len(receiver.posts) == 5
    assert ledger.counter(NOTIFICATIONS, level="alert", result="sent") == 1
    assert ledger.counter(NOTIFICATIONS, level="escalate", result="failed") == 1


def test_one_failing_target_does_not_resend_to_the_others(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Retries go to the target that failed only; the message counts as delivered."""
    dead = "json://127.0.0.1:9/dead"  # the discard port: connection refused
    urls = f"{receiver.url('/ok')}, {dead}"
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    notifier = Notifier(make_settings(tmp_path, apprise_urls=urls), ledger)
    assert notifier.send(message(Kind.ALERT)) is Delivery.SENT
    assert receiver.titles("/ok") == ["alert title"]
    assert ledger.counter(NOTIFICATIONS, level="alert", result="failed") == 1


def test_send_test_reports_success_and_failure(tmp_path: Path, receiver: Receiver) -> None:
    """notify-test returns the targets that accepted, and raises NotifyError otherwise."""
    settings = make_settings(tmp_path, apprise_urls=receiver.url())
    assert send_test(settings) == 1
    assert send_test(settings, tag="escalate") == 1
    assert receiver.titles() == ["ost-ingest test notification"] * 2
    with pytest.raises(NotifyError, match="no apprise target: set OST_APPRISE_URLS"):
        send_test(make_settings(tmp_path))
    receiver.failures = [503, 503, 503]
    with pytest.raises(NotifyError, match="none of the 1 apprise targets accepted"):
        send_test(settings)


def test_secrets_never_reach_logs_errors_or_ledger(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL's password and path token appear in no log record, error message or ledger file."""
    dead = f"json://ops:{SECRET_PASSWORD}@127.0.0.1:9/hooks/{SECRET_PATH}"
    settings = make_settings(tmp_path, apprise_urls=f"{receiver.secret_url()} {dead}")
    ledger = Ledger.for_settings(settings)
    caplog.set_level(logging.DEBUG)
    Notifier(settings, ledger).send(message(Kind.ALERT))
    with pytest.raises(NotifyError) as failed:
        send_test(make_settings(tmp_path, apprise_urls=dead), ledger=ledger)
    assert receiver.posts[0].path == f"/hooks/{SECRET_PATH}"  # the token was really used
    assert "JSON POST URL" in caplog.text  # apprise's DEBUG lines were captured, redacted
    texts = [caplog.text, str(failed.value), *(record.getMessage() for record in caplog.records)]
    stored = b"".join(path.read_bytes() for path in ledger.path.parent.iterdir())
    for secret in (SECRET_PASSWORD, SECRET_PATH):
        assert not any(secret in text for text in texts)
        assert secret.encode() not in stored


# ---- the watchdog -----------------------------------------------------------------------------

NOW = dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
QUARTER = 15 * 60_000


def test_failed_send_is_retried_next_evaluation_and_never_duplicated(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Receiver down at the alert: retried at the next evaluation, then never again."""
    settings = make_settings(tmp_path, apprise_urls=receiver.url())
    ledger = Ledger.for_settings(settings)
    ledger.record_outcome(outcome(ok=False), NOW)
    receiver.failures = [500] * 3
    first = run_watchdog(settings, NOW + 31 * MIN)
    assert [delivery for _, delivery in first.deliveries] == [Delivery.FAILED]
    assert first.state.notified == frozenset()
    second = run_watchdog(settings, NOW + 33 * MIN)
    assert [m.kind for m in second.sent] == [Kind.ALERT]
    for minute in (35, 40, 50):
        assert run_watchdog(settings, NOW + minute * MIN).deliveries == ()
    assert receiver.titles().count(second.sent[0].title) == 1
    assert len(receiver.posts) == 4  # three refused attempts, one delivery


def test_ladder_status_reads_without_writing(tmp_path: Path) -> None:
    """ladder_status reports levels per stream and leaves the ledger's ladder untouched."""
    settings = make_settings(tmp_path)
    ledger = Ledger.for_settings(settings)
    ledger.record_outcome(outcome(ok=False), NOW)
    status = ladder_status(settings, NOW + 45 * MIN)
    assert status.level is Level.ALERT
    (stream,) = status.evaluation.streams
    assert (stream.symbol, stream.down_since) == ("BTCUSDT", NOW)
    assert ledger.ladder().updated_at is None
    data = json.loads(json.dumps(status.to_dict()))
    assert data["level"] == "alert"
    assert data["streams"][0]["failing_since"] == "2026-11-03T12:00:00+00:00"
    assert data["streams"][0]["last_reason"] == "unavailable"


def test_concurrent_watchdogs_send_once(tmp_path: Path, receiver: Receiver) -> None:
    """Four evaluations at once, at alert level: the lock lets exactly one alert out."""
    settings = make_settings(tmp_path, apprise_urls=receiver.url())
    Ledger.for_settings(settings).record_outcome(outcome(ok=False), NOW)
    threads = [
        threading.Thread(target=run_watchdog, args=(settings, NOW + 31 * MIN)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(receiver.posts) == 1


def test_a_message_with_no_target_stays_due_until_a_target_exists(
    tmp_path: Path, receiver: Receiver
) -> None:
    """No target at the alert: not counted as sent, kept due, and delivered once one exists."""
    settings = make_settings(tmp_path)
    ledger = Ledger.for_settings(settings)
    ledger.record_outcome(outcome(ok=False), NOW)
    for minute in (31, 33):
        report = run_watchdog(settings, NOW + minute * MIN)
        assert [delivery for _, delivery in report.deliveries] == [Delivery.UNCONFIGURED]
        assert report.state.notified == frozenset()
    assert ledger.counter(NOTIFICATIONS, level="alert", result="unconfigured") == 2
    assert ledger.counter(NOTIFICATIONS, level="alert", result="sent") == 0
    with_target = make_settings(tmp_path, apprise_urls=receiver.url())
    assert [m.kind for m in run_watchdog(with_target, NOW + 35 * MIN).sent] == [Kind.ALERT]
    assert run_watchdog(with_target, NOW + 40 * MIN).deliveries == ()
    assert receiver.titles() == ["ost-ingest ALERT: Binance ingestion down for 35 min"]


def test_ost_watchdog_says_what_is_still_due(tmp_path: Path) -> None:
    """`ost watchdog` with no target names the message it could not deliver."""
    env = {
        "OST_DATA_DIR": str(tmp_path),
        "OST_SYMBOLS": "BTCUSDT",
        "OST_INTERVALS": "15m",
        "OST_ESCALATION_MONITOR_AFTER": "0s",
        "OST_ESCALATION_ALERT_AFTER": "1s",
        "OST_ESCALATION_ESCALATE_AFTER": "1h",
    }
    Ledger.for_settings(make_settings(tmp_path)).record_outcome(outcome(ok=False))
    time.sleep(1.1)  # past the alert threshold
    result = CliRunner().invoke(app, ["watchdog"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("level: alert; sent: 0; still due: alert (unconfigured)")


def test_a_level_with_no_tagged_target_goes_out_once_one_is_tagged(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Only an 'alert' target: escalate stays due (no_target), goes out once one is tagged."""
    alert_only = tmp_path / "alert-only.yml"
    alert_only.write_text(f"urls:\n  - {receiver.url('/chat')}:\n      - tag: alert\n")
    both = tmp_path / "both.yml"
    both.write_text(
        f"urls:\n  - {receiver.url('/chat')}:\n      - tag: alert\n"
        f"  - {receiver.url('/pager')}:\n      - tag: escalate\n"
    )
    settings = make_settings(tmp_path, apprise_config=str(alert_only))
    Ledger.for_settings(settings).record_outcome(outcome(ok=False), NOW)
    first = run_watchdog(settings, NOW + 61 * MIN)
    assert [(m.kind, d) for m, d in first.deliveries] == [
        (Kind.ALERT, Delivery.SENT),
        (Kind.ESCALATE, Delivery.NO_TARGET),
    ]
    assert first.state.notified == {Kind.ALERT}
    paged = run_watchdog(make_settings(tmp_path, apprise_config=str(both)), NOW + 63 * MIN)
    assert [m.kind for m in paged.sent] == [Kind.ESCALATE]
    assert receiver.titles("/chat") == ["ost-ingest ALERT: Binance ingestion down for 1 h 1 min"]
    assert receiver.titles("/pager") == [
        "ost-ingest ESCALATE: Binance ingestion down for 1 h 3 min"
    ]


@pytest.mark.filterwarnings(FASTPARQUET_VALUES)
@pytest.mark.parametrize("hole", [False, True], ids=["complete", "one-candle-missing"])
def test_recovery_reports_the_gap_check_of_the_store_over_the_outage(
    tmp_path: Path, receiver: Receiver, hole: bool
) -> None:
    """The recovery says 'Gaps healed', or how many candles of the outage the store lacks."""
    settings = make_settings(tmp_path, apprise_urls=receiver.url())
    ledger = Ledger.for_settings(settings)
    store = CandleStore(settings.data_dir)
    ten = int(dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC).timestamp() * 1000)
    before = make_candles("15m", ten, 8)  # 10:00 ... 11:45, closed by 12:00
    store.merge("BTCUSDT", "15m", before)
    ledger.record_outcome(StreamOutcome("BTCUSDT", "15m", True, 8, ten + 7 * QUARTER, 0.1), NOW)
    ledger.record_outcome(outcome(ok=False), NOW + 15 * MIN)  # the outage starts at 12:15
    assert [m.kind for m in run_watchdog(settings, NOW + 50 * MIN).sent] == [Kind.ALERT]
    after = make_candles("15m", ten + 8 * QUARTER, 8)  # 12:00 ... 13:45, closed by 14:00
    if hole:
        after = after[after["open_time"] != pd.Timestamp("2026-11-03 12:30", tz="UTC")]
    store.merge("BTCUSDT", "15m", after)
    ledger.record_outcome(StreamOutcome("BTCUSDT", "15m", True, 9, None, 0.1), NOW + 2 * 60 * MIN)
    report = run_watchdog(settings, NOW + 2 * 60 * MIN + 5 * MIN)
    assert [m.kind for m in report.sent] == [Kind.RECOVERY]
    body = receiver.posts[-1].body["message"]
    if hole:
        assert "Gaps NOT healed: 1 candles since 2026-11-03 11:40:00 UTC" in body
        assert "(BTCUSDT 15m: 1)" in body
        assert "--start 2026-11-03T11:40:00Z --repair" in body
    else:
        assert "Gaps healed: the store has every candle of the outage" in body
        assert "1 streams from 2026-11-03 11:40:00 UTC" in body


WATCHDOG_IN_A_NEW_PROCESS = """
from ost.alerts.watchdog import run_watchdog
from ost.settings import load_settings
report = run_watchdog(load_settings())
print(",".join(message.kind.value for message, _ in report.deliveries))
"""


@pytest.mark.slow
def test_real_outage_alerts_once_escalates_once_recovers_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A ~16 s outage (thresholds 2/4/8 s): one alert, one escalate, one recovery, restarts too."""
    thresholds = {"monitor": "2s", "alert": "4s", "escalate": "8s"}
    env = {f"OST_ESCALATION_{name.upper()}_AFTER": value for name, value in thresholds.items()}
    env |= {"OST_DATA_DIR": str(tmp_path), "OST_SYMBOLS": "BTCUSDT", "OST_INTERVALS": "15m"}
    env["OST_APPRISE_URLS"] = receiver.url()
    settings = make_settings(
        tmp_path,
        apprise_urls=receiver.url(),
        **{f"escalation_{name}_after": value for name, value in thresholds.items()},
    )
    ledger = Ledger.for_settings(settings)
    ledger.record_outcome(outcome(ok=True))
    started = time.monotonic()
    restarts = [5.0, 10.5]  # seconds into the outage: a watchdog in a new process
    while (elapsed := time.monotonic() - started) < 16:
        ledger.record_outcome(outcome(ok=False))  # the schedule keeps failing
        if restarts and elapsed >= restarts[0]:
            restarts.pop(0)
            child = subprocess.run(
                [sys.executable, "-c", WATCHDOG_IN_A_NEW_PROCESS],
                env=os.environ | env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=True,
            )
            assert "alert" not in child.stdout  # a new process does not send the alert again
        run_watchdog(settings, gaps_check=healed)  # new objects each time: a restart
        time.sleep(0.5)
    healed_after = time.monotonic() - started
    ledger.record_outcome(outcome(ok=True))
    for _ in range(3):
        run_watchdog(settings, gaps_check=healed)

    kinds = [post.body["type"] for post in receiver.posts]
    assert kinds == ["warning", "failure", "success"]  # alert, escalate, recovery
    alert, escalate, recovery = receiver.posts
    assert 4 <= alert.at - started < escalate.at - started  # never before its threshold
    assert escalate.at - started >= 8
    assert "ost schedule pause" in escalate.body["message"]
    assert "ost gaps --interval 1d --days 7" in escalate.body["message"]
    said = re.search(r"down for (?:(\d+) min )?(\d+) s", recovery.body["message"])
    assert said, recovery.body["message"]
    lasted = 60 * int(said[1] or 0) + int(said[2])
    assert 15 <= lasted <= healed_after + 1  # the outage's length, as the ledger saw it
    assert "Gaps healed" in recovery.body["message"]
    for kind, count in (("alert", 1), ("escalate", 1), ("recovery", 1)):
        assert ledger.counter(NOTIFICATIONS, level=kind, result="sent") == count
    assert Ledger.for_settings(settings).ladder().notified == frozenset()

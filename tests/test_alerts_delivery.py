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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stamina

from alerts.notify import Delivery, Notifier, send_test
from alerts.policy import Kind, Level, Message
from alerts.watchdog import ladder_status, run_watchdog
from ost.errors import NotifyError
from ost.ingest import StreamOutcome
from ost.ledger import NOTIFICATIONS, Ledger
from ost.settings import Settings, load_settings

SECRET_PASSWORD = "pAssW0rd-S3cret"  # noqa: S105  # a fake token, to prove it never leaks
SECRET_PATH = "tok3n-in-the-path"  # noqa: S105  # a fake webhook token, likewise

#: apprise 2.0 imports the stdlib's deprecated imghdr; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


@dataclass(frozen=True)
class Post:
    """One notification as the receiver got it."""

    path: str
    body: dict[str, Any]
    at: float


class Receiver:
    """A tiny HTTP server in a thread that records the POSTs apprise's json:// sends it."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        #: Statuses to answer the next POSTs with (then 200).
        self.failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    status = receiver.failures.pop(0) if receiver.failures else 200
                    receiver.posts.append(Post(self.path, json.loads(body), time.monotonic()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Quiet: no access log on stderr."""

        return Handler

    def url(self, path: str = "/hook") -> str:
        """An apprise json:// URL to ``path`` on this receiver."""
        return f"json://127.0.0.1:{self.port}{path}"

    def secret_url(self) -> str:
        """A json:// URL carrying a password and a path token, like a real webhook's."""
        return f"json://ops:{SECRET_PASSWORD}@127.0.0.1:{self.port}/hooks/{SECRET_PATH}"

    def titles(self, path: str | None = None) -> list[str]:
        """The titles received (on ``path`` only, when given), in order."""
        return [post.body["title"] for post in self.posts if path in (None, post.path)]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


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


def outcome(ok: bool) -> StreamOutcome:
    """An ingestion outcome of the one stream."""
    if ok:
        return StreamOutcome("BTCUSDT", "15m", True, 1, 1_700_000_000_000, 0.1)
    return StreamOutcome("BTCUSDT", "15m", False, 0, None, 0.1, "unavailable", "Binance down")


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
    with caplog.at_level(logging.WARNING, logger="alerts.notify"):
        assert notifier.send(message(Kind.ALERT)) is Delivery.UNCONFIGURED
    lines = [record for record in caplog.records if record.name == "alerts.notify"]
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


WATCHDOG_IN_A_NEW_PROCESS = """
from alerts.watchdog import run_watchdog
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
        run_watchdog(settings, gaps_check=lambda: True)  # new objects each time: a restart
        time.sleep(0.5)
    ledger.record_outcome(outcome(ok=True))
    for _ in range(3):
        run_watchdog(settings, gaps_check=lambda: True)

    kinds = [post.body["type"] for post in receiver.posts]
    assert kinds == ["warning", "failure", "success"]  # alert, escalate, recovery
    alert, escalate, recovery = receiver.posts
    assert 4 <= alert.at - started < 6
    assert 8 <= escalate.at - started < 11
    assert "ost schedule pause" in escalate.body["message"]
    assert "ost gaps --interval 1d --days 7" in escalate.body["message"]
    assert re.search(r"down for 1[5-8] s", recovery.body["message"])
    assert "Gaps healed" in recovery.body["message"]
    for kind, count in (("alert", 1), ("escalate", 1), ("recovery", 1)):
        assert ledger.counter(NOTIFICATIONS, level=kind, result="sent") == count
    assert Ledger.for_settings(settings).ladder().notified == frozenset()

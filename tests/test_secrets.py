"""Credentials in a configured URL are sent, and never shown: one label, ``scheme://host[:port]``."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from processes import Processes
from test_cli_ingest import ost_env
from test_metrics import free_port

from ost.binance import BinanceClient
from ost.errors import BinanceUnavailable
from ost.sim import SimHandle
from ost.urls import host_of, split_credentials, url_label

USER = "svc"
PASSWORD = "pr0xy-PASSWORD-7f3a"  # noqa: S105  # the secret that must appear nowhere
#: The credentials as basic auth carries them: no more to be shown than the password itself.
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def with_credentials(url: str) -> str:
    """``url`` (``http://host:port``) with the user and password in it, as a proxy's URL."""
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (f"http://{USER}:{PASSWORD}@proxy:3128", "http://proxy:3128"),
        (f"https://{USER}:{PASSWORD}@api.binance.com:443/base?key=x#f", "https://api.binance.com"),
        ("HTTPS://API.Binance.com", "https://api.binance.com"),
        ("http://[::1]:8900/api", "http://[::1]:8900"),
        (f"http://{USER}:{PASSWORD}@proxy:port", "http://proxy"),
        (PASSWORD, "***"),
    ],
)
def test_a_label_is_scheme_host_and_port_only(url: str, label: str) -> None:
    """The one label of a URL: no user, password, path, query, fragment or default port."""
    assert url_label(url) == label
    assert host_of(url) == (label.partition("://")[2] or "***")


def test_credentials_are_taken_apart_decoded() -> None:
    """The URL without its user info, and the user and password percent-decoded."""
    assert split_credentials("http://svc:p%40ss@proxy:3128/binance") == (
        "http://proxy:3128/binance",
        ("svc", "p@ss"),
    )
    assert split_credentials("https://api.binance.com") == ("https://api.binance.com", None)


def test_the_client_sends_basic_auth_to_a_url_without_credentials() -> None:
    """The bare URL goes to httpx, the credentials as basic auth; errors name the label."""
    seen: list[httpx.Request] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, text="down")

    proxy = with_credentials("http://proxy.test:3128")
    transport = httpx.MockTransport(unavailable)
    with (
        BinanceClient([proxy], max_attempts=1, transport=transport) as client,
        pytest.raises(BinanceUnavailable) as info,
    ):
        client.sync_time()
    [request] = seen
    assert str(request.url) == "http://proxy.test:3128/api/v3/time"
    assert request.headers["authorization"] == f"Basic {BASIC}"
    assert client.base_urls == ["http://proxy.test:3128"]
    assert list(client.log.answers) == [("http://proxy.test:3128", "503")]
    assert "http://proxy.test:3128" in str(info.value)
    assert PASSWORD not in str(info.value)


def metrics_text(processes: Processes, env: dict[str, str], log: Path) -> str:
    """`ost metrics`'s /metrics, from the command itself (its output goes to ``log``)."""
    base = f"http://127.0.0.1:{env['OST_METRICS_PORT']}"
    with log.open("w") as output:
        server = processes.start(
            [sys.executable, "-m", "ost.cli", "metrics"], env=env, stdout=output, stderr=output
        )
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return httpx.get(f"{base}/metrics", timeout=5).text
        except httpx.TransportError:
            assert time.monotonic() < deadline, "ost metrics did not start"
            time.sleep(0.1)


@pytest.mark.slow
def test_a_proxy_password_appears_nowhere(
    sim: SimHandle, tmp_path: Path, processes: Processes
) -> None:
    """Output, `ost status --json`, /metrics, the ledger and gap files: no password, only labels."""
    data_dir = tmp_path / "data"
    dead = with_credentials(f"http://127.0.0.1:{free_port()}")  # nothing listens: failover
    proxy = with_credentials(sim.url)
    env = ost_env(
        sim,
        data_dir,
        OST_BINANCE_BASE_URLS=f"{dead},{proxy}",
        OST_ARCHIVE_BASE_URL=proxy,
        OST_INITIAL_LOOKBACK_DAYS="1",
        OST_MAX_ATTEMPTS="1",
        OST_METRICS_PORT=str(free_port()),
    )
    shown: list[str] = []

    def ost(*args: str) -> subprocess.CompletedProcess[str]:
        result = processes.run([sys.executable, "-m", "ost.cli", *args], env=env, timeout=120)
        shown.extend([result.stdout, result.stderr])
        return result

    assert ost("ingest").returncode == 0  # from the proxy, after the dead host
    halt_day = ("--start", "2023-03-24", "--end", "2023-03-24", "--symbols", "BTCUSDT")
    assert ost("backfill", "--interval", "1m", *halt_day, "--source", "api").returncode == 0
    sim.set_faults("5xx:scope=data")
    june = ("--start", "2024-06-01", "--end", "2024-06-03", "--symbols", "ETHUSDT")
    ost("backfill", "--interval", "1d", *june, "--source", "archive")
    sim.set_faults("refuse:status=451")
    assert ost("ingest").returncode == 1  # errors that name both hosts, in the ledger too
    ost("ping")
    sim.set_faults("ratelimit:retry_after=100000")
    assert ost("ingest").returncode == 1  # a ban, recorded by host
    sim.clear_faults()
    status = ost("status", "--json")
    ost("status")
    scraped = metrics_text(processes, env, tmp_path / "metrics.log")
    processes.close()
    shown += [scraped, (tmp_path / "metrics.log").read_text()]

    everything = "\n".join(shown)
    for secret in (PASSWORD, BASIC):
        assert secret not in everything
    assert f'base_url="{sim.url}"' in scraped  # the label is there: the check is not vacuous
    assert f'ost_host_banned_until_seconds{{host="{host_of(sim.url)}"}}' in scraped
    assert url_label(dead) in status.stdout  # the last error names the dead host, by its label
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert {"ledger.sqlite3", "exchange_gaps.json"} <= names
    for path in files:
        content = path.read_bytes()
        assert PASSWORD.encode() not in content, path
        assert BASIC.encode() not in content, path
    [gaps] = (data_dir / "gaps").rglob("exchange_gaps.json")
    assert f'"host": "{sim.url}"' in gaps.read_text()  # the evidence names the proxy's label


@pytest.mark.slow
def test_prefect_keeps_no_password(
    sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flow runs' parameters, states and logs, in Prefect's own database: no password."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    proxy = with_credentials(sim.url)
    for name, value in {
        "OST_BINANCE_BASE_URLS": f"{with_credentials(f'http://127.0.0.1:{free_port()}')},{proxy}",
        "OST_ARCHIVE_BASE_URL": proxy,
        "OST_DATA_DIR": str(tmp_path / "data"),
        "OST_SYMBOLS": "BTCUSDT",
        "OST_INTERVALS": "1h",
        "OST_INITIAL_LOOKBACK_DAYS": "1",
        "OST_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    from ost.flows.ingest import ingest_all
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
    from prefect.testing.utilities import prefect_test_harness

    from ost.runtime import current_runtime

    current_runtime.cache_clear()
    try:
        with prefect_test_harness(server_startup_timeout=120):
            database = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
            assert ingest_all(return_state=True).is_completed()
            sim.set_faults("refuse:status=451")
            failed = ingest_all(intervals=["4h"], return_state=True)  # new candles to ask for
            assert failed.is_failed()
            APILogWorker.drain_all(timeout=30)  # the runs' logs, into the database
            stored = b"".join(
                path.read_bytes() for path in database.parent.iterdir() if path.is_file()
            )
    finally:
        current_runtime().close()
        current_runtime.cache_clear()
    assert b"ingest-all" in stored  # the runs are there: the check is not vacuous
    assert f"HTTP 451 (restricted location) from {sim.url}".encode() in stored  # a log, a state
    for secret in (PASSWORD, BASIC):
        assert secret.encode() not in stored
    for path in (tmp_path / "prefect-home").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path

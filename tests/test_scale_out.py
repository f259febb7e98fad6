"""Scaling out, and the systemd units that run the stack.

Two process workers on one pool share the runs, each run once, and the store ends up exactly
Binance's. The cluster is started with the commands of the units in deployments/systemd (with
the venv and the ports swapped), so those commands are tested against a real server. The store
also works end to end on an fsspec URL root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from commands import ost, ost_env
from moments import NOW
from oracle import assert_candles, closed_candles, lookback_start, simulator_candles
from processes import Processes
from prometheus_client.parser import text_string_to_metric_families
from readers import read_everywhere

from ost import intervals
from ost.cli import app
from ost.ledger import CANDLES_WRITTEN, Ledger
from ost.settings import Settings
from ost.sim import SimHandle
from ost.stack import PROJECT_DIR, free_port
from ost.store import CandleStore

UNITS_DIR = PROJECT_DIR / "deployments" / "systemd"
UNITS = sorted(path.name for path in UNITS_DIR.glob("*.service"))
INSTALLED_BIN = "/opt/ost-ingest/.venv/bin/"
VENV_BIN = f"{Path(sys.executable).parent}/"
WORKERS = ("w1", "w2")
#: Flow runs one worker runs at once: a worker that is full leaves the next runs to the other.
WORKER_LIMIT = "2"
RUNS_TIMEOUT_S = 150
STOP_TIMEOUT_S = 20
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DAY = intervals.DAY_MS
HOUR = intervals.HOUR_MS


def iso(ms: int) -> str:
    """Epoch ms as an ISO-8601 UTC time, as the flow's `start`/`end` parameters take it."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()


# ---- the units, read as systemd reads them (repeated keys kept) --------------------------------

Unit = dict[str, dict[str, list[str]]]


def read_unit(name: str) -> Unit:
    """A unit file's sections, each key with its values in order (comments dropped)."""
    sections: Unit = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS_DIR / name).read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals, f"{name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def commands(name: str, key: str, **options: str) -> list[list[str]]:
    """The argvs of ``key`` (ExecStart...) of a unit, to run here: this venv, ``options`` set.

    ``options`` maps an option (``--port``) to the value that replaces the unit's; ``%H`` (the
    host name) becomes the value of ``host``.
    """
    argvs = []
    for line in read_unit(name)["Service"].get(key, []):
        argv = [arg.replace(INSTALLED_BIN, VENV_BIN) for arg in shlex.split(line.lstrip("-+!@:"))]
        for option, value in options.items():
            if option == "host":
                argv = [arg.replace("%H", value) for arg in argv]
            else:
                argv[argv.index(option) + 1] = value
        argvs.append(argv)
    return argvs


def env_file(name: str, *, examples: bool = True) -> dict[str, str]:
    """The KEY=value lines of an EnvironmentFile, with its commented-out ones if ``examples``."""
    pattern = r"^#?([A-Z][A-Z0-9_]*)=(.*)$" if examples else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    return dict(re.findall(pattern, (UNITS_DIR / name).read_text(), re.M))


def test_every_unit_is_complete_and_hardened() -> None:
    """[Unit]/[Service]/[Install]; user ost, ost.env, a read-only system but /var/lib/ost."""
    assert set(UNITS) >= {"ost-prefect-server.service", "ost-worker.service", "ost-metrics.service"}
    for name in UNITS:
        unit = read_unit(name)
        assert set(unit) == {"Unit", "Service", "Install"}, name
        service = unit["Service"]
        assert service["User"] == ["ost"], name
        assert "/etc/ost/ost.env" in service["EnvironmentFile"], name
        for key, value in {
            "NoNewPrivileges": "yes",
            "PrivateTmp": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
        }.items():
            assert service[key] == [value], (name, key)
        assert "/var/lib/ost" in service["ReadWritePaths"], name
        assert unit["Install"]["WantedBy"] == ["multi-user.target"], name


def test_every_command_of_the_units_exists() -> None:
    """Each Exec line runs a program of the installed venv that this venv has too."""
    for name in UNITS:
        service = read_unit(name)["Service"]
        lines = [line for key in service if key.startswith("Exec") for line in service[key]]
        assert lines, name
        for line in lines:
            assert "$" not in line, (name, line)  # no variable expansion to get wrong
            program = shlex.split(line)[0]
            assert program.startswith(INSTALLED_BIN), (name, program)
            assert Path(program.replace(INSTALLED_BIN, VENV_BIN)).is_file(), (name, program)
    (metrics,) = commands("ost-metrics.service", "ExecStart")
    assert metrics[1:] == ["metrics"]
    assert "metrics" in typer.main.get_command(app).commands  # type: ignore[attr-defined]
    (worker,) = commands("ost-worker.service", "ExecStart")
    assert worker[1:7] == ["worker", "start", "--pool", "ost-pool", "--type", "process"]


def test_the_worker_stops_on_its_own_signal_and_secrets_stay_out_of_the_units() -> None:
    """The worker gets SIGINT; only secrets.env (optional, root-only) may hold a secret."""
    worker = read_unit("ost-worker.service")["Service"]
    assert worker["KillSignal"] == ["SIGINT"]
    assert worker["KillMode"] == ["control-group"]
    assert "-/etc/ost/secrets.env" in worker["EnvironmentFile"]
    for name in [*UNITS, "ost.env"]:
        text = (UNITS_DIR / name).read_text()
        assert not re.search(r"^\s*[^#\s].*(APPRISE_URLS|CONNECTION_URL)", text, re.M), name
    assert "OST_APPRISE_URLS" in env_file("secrets.env.example")


def test_the_env_file_names_only_real_settings() -> None:
    """Every OST_* name in ost.env (set or commented out) is a setting of the contract."""
    names = [name for name in env_file("ost.env") if name.startswith("OST_")]
    assert len(names) >= 10
    known = {f"OST_{field.upper()}" for field in Settings.model_fields}
    assert set(names) <= known, set(names) - known


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify`: no error, no warning (programs looked up in this venv)."""
    for name in UNITS:
        text = (UNITS_DIR / name).read_text().replace(INSTALLED_BIN, VENV_BIN)
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


# ---- the store on an fsspec URL ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("file://{base}", id="file-url"),
        # A filesystem that is not LocalFileSystem (here over a local directory): the store
        # takes the path of s3:// and the like, writing with one put, locking in TMPDIR.
        pytest.param("dir::file://{base}", id="remote-like"),
    ],
)
@pytest.mark.slow
def test_the_store_works_on_an_fsspec_url(sim: SimHandle, tmp_path: Path, url: str) -> None:
    """OST_DATA_DIR as a URL: ingest, backfill, gaps in subprocesses; Binance's candles exactly."""
    sim.configure(now_ms=NOW)
    root = url.format(base=tmp_path / "bucket")
    state, scratch = tmp_path / "state", tmp_path / "tmp"
    scratch.mkdir()
    env = ost_env(sim, tmp_path, OST_DATA_DIR=root, OST_INITIAL_LOOKBACK_DAYS="2")
    env.update({"XDG_STATE_HOME": str(state), "TMPDIR": str(scratch)})
    since = iso(intervals.align("15m", NOW) - 5 * DAY)
    until = iso(intervals.align("15m", NOW))
    ingest = "ingest --symbols BTCUSDT,ETHUSDT --intervals 15m,1h"
    steps = [  # the second ingestion resumes from what the first and the backfill stored
        ingest,
        f"backfill --interval 15m --start {since} --symbols BTCUSDT --source api",
        ingest,
        f"gaps --interval 15m --start {since} --end {until} --symbols BTCUSDT",
    ]
    for step in steps:
        result = ost(*step.split(), env=env)
        assert result.returncode == 0, (step, result.stdout[-2000:], result.stderr[-2000:])
    store = CandleStore(root)
    for symbol, interval, days in [
        ("BTCUSDT", "15m", 5),
        ("ETHUSDT", "15m", 2),
        ("BTCUSDT", "1h", 2),
        ("ETHUSDT", "1h", 2),
    ]:
        expected = closed_candles(symbol, interval, lookback_start(interval, NOW, days), NOW)
        assert_candles(store.load_klines(symbol, interval), expected, symbol, interval)
    assert sorted(store.streams()) == [
        ("BTCUSDT", "15m"),
        ("BTCUSDT", "1h"),
        ("ETHUSDT", "15m"),
        ("ETHUSDT", "1h"),
    ]
    # Where the ledger and the stream locks went (filelock removes a lock file on release).
    if url.startswith("file://"):  # a local store: both beside the candles
        read_everywhere(tmp_path / "bucket")
        ledger_file = tmp_path / "bucket" / "state" / "ledger.sqlite3"
        assert (tmp_path / "bucket" / "locks").is_dir()
        assert not (scratch / "ost-locks").exists()
    else:  # any other filesystem: the ledger in XDG_STATE_HOME, the locks in this machine's TMPDIR
        ledger_file = state / "ost" / "ledger.sqlite3"
        assert len(list((scratch / "ost-locks").iterdir())) == 1
        assert not (tmp_path / "bucket" / "locks").exists()
    # The backfill counted the 3 days the first ingestion (2 days back) had not stored.
    assert Ledger(ledger_file).counter(CANDLES_WRITTEN, symbol="BTCUSDT", interval="15m") >= 3 * 96


# ---- two workers on one pool, started with the units' commands ---------------------------------


@dataclass
class Cluster:
    """A Prefect server, the deployments of prefect.yaml, two workers on `ost-pool`, metrics."""

    api: str
    env: dict[str, str]
    logs: dict[str, Path]
    metrics_url: str

    @property
    def data_dir(self) -> Path:
        """The candle store (OST_DATA_DIR of ost.env, moved under the test's directory)."""
        return Path(self.env["OST_DATA_DIR"])

    def call(self, method: str, path: str, body: object = None) -> Any:
        """The JSON answer of the Prefect REST API, retrying its 503s as Prefect's client does.

        (The SQLite server answers 503 when its database is busy, see PITFALLS.md.)
        """
        for pause in (0.2, 0.5, 1, 2, 4, 0):
            response = httpx.request(method, f"{self.api}{path}", json=body, timeout=15)
            if response.status_code != 503 or not pause:
                break
            time.sleep(pause)
        response.raise_for_status()
        return response.json()

    def run_backfill(self, parameters: dict[str, object]) -> str:
        """Create a run of `backfill/manual` (no --watch); its id."""
        deployment = self.call("GET", "/deployments/name/backfill/manual")["id"]
        body = {"parameters": parameters}
        return str(self.call("POST", f"/deployments/{deployment}/create_flow_run", body)["id"])

    def flow_runs(self, ids: list[str]) -> list[dict[str, Any]]:
        """The flow runs with these ids, as the API reports them."""
        body = {"flow_runs": {"id": {"any_": ids}}, "limit": len(ids)}
        return list(self.call("POST", "/flow_runs/filter", body))

    def online_workers(self) -> set[str]:
        """The names of the pool's workers that the server sees online."""
        workers = self.call("POST", "/work_pools/ost-pool/workers/filter", {})
        return {worker["name"] for worker in workers if worker["status"] == "ONLINE"}


def start(
    processes: Processes, argv: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, SIGINT at its default (see PITFALLS.md)."""
    with log.open("wb") as out:
        return processes.start(argv, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)


def run(processes: Processes, argv: list[str], env: dict[str, str]) -> None:
    """Run a unit's short command (ExecStartPre, a oneshot's ExecStart) to success."""
    done = processes.run(argv, cwd=PROJECT_DIR, env=env, timeout=180)
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])


def stop(child: subprocess.Popen[bytes]) -> None:
    """Stop a child and its process group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, sim_server: SimHandle) -> Iterator[Cluster]:
    """The units' stack on one machine, plus a second worker; workers poll every second.

    The environment is ost.env's, with /var/lib/ost (the units' StateDirectory) moved here.
    """
    home = tmp_path_factory.mktemp("scale-out")
    for directory in read_unit("ost-worker.service")["Service"]["StateDirectory"][0].split():
        (home / directory.removeprefix("ost").lstrip("/")).mkdir(exist_ok=True)
    port, metrics_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OST_", "PREFECT_"))}
    for key, value in env_file("ost.env", examples=False).items():
        env[key] = value.replace("/var/lib/ost", str(home))
    env.update(
        {
            "PREFECT_API_URL": api,
            # No schedule fires during the test: the only runs are the test's.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "OST_BINANCE_BASE_URLS": sim_server.url,
            "OST_ARCHIVE_BASE_URL": sim_server.url,
            "OST_INTERVALS": "15m,1h",
            "OST_HTTP_TIMEOUT_S": "10",
            "OST_METRICS_PORT": str(metrics_port),
            "COLUMNS": "250",  # the workers' log lines are not wrapped
        }
    )
    children = []
    processes = Processes()
    try:
        server = "ost-prefect-server.service"
        (argv,) = commands(server, "ExecStart", **{"--port": str(port)})
        children.append(start(processes, argv, env, home / "server.log"))
        for argv in commands(server, "ExecStartPost"):  # waits until the API answers
            run(processes, argv, env)
        for argv in commands("ost-deploy.service", "ExecStartPre"):
            run(processes, argv, env)
        for argv in commands("ost-deploy.service", "ExecStart"):
            run(processes, argv, env)
        logs = {name: home / f"{name}.log" for name in WORKERS}
        for name in WORKERS:
            for argv in commands("ost-worker.service", "ExecStartPre"):
                run(processes, argv, env)
            (argv,) = commands(
                "ost-worker.service", "ExecStart", host=name, **{"--limit": WORKER_LIMIT}
            )
            children.append(start(processes, argv, env, logs[name]))
        (argv,) = commands("ost-metrics.service", "ExecStart")
        children.append(start(processes, argv, env, home / "metrics.log"))
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        cluster = Cluster(api, env, logs, metrics_url)
        deadline = time.monotonic() + 60
        while cluster.online_workers() != {f"ost-worker-{name}" for name in WORKERS}:
            assert time.monotonic() < deadline, cluster.online_workers()
            time.sleep(0.5)
        yield cluster
    finally:
        for child in reversed(children):
            stop(child)
        processes.close()


@pytest.mark.slow
def test_two_workers_share_the_runs_and_store_every_candle_once(
    cluster: Cluster, sim: SimHandle
) -> None:
    """6 `backfill/manual` runs: both workers ran some, each run once; the store is Binance's."""
    day = sim.now_ms() // DAY * DAY - DAY  # yesterday 00:00 UTC: every range below is closed
    runs = [  # overlapping ranges of the same streams, so that runs on both workers collide
        ("BTCUSDT", "1h", day - 3 * DAY, day, "api"),
        ("BTCUSDT", "1h", day - 2 * DAY, day + 12 * HOUR, "api"),
        ("ETHUSDT", "1h", day - 3 * DAY, day, "archive"),
        ("BTCUSDT,ETHUSDT", "15m", day - 2 * DAY, day, "api"),
        ("BTCUSDT", "15m", day - DAY, day + 6 * HOUR, "api"),
        ("ETHUSDT", "15m", day - 3 * DAY, day - DAY, "auto"),
    ]
    want = {  # each stream's union of ranges (ends inclusive)
        ("BTCUSDT", "1h"): (day - 3 * DAY, day + 12 * HOUR),
        ("ETHUSDT", "1h"): (day - 3 * DAY, day),
        ("BTCUSDT", "15m"): (day - 2 * DAY, day + 6 * HOUR),
        ("ETHUSDT", "15m"): (day - 3 * DAY, day),
    }
    ids = [
        cluster.run_backfill(
            {
                "interval": interval,
                "start": iso(start),
                "end": iso(end),
                "symbols": symbols.split(","),
                "source": source,
            }
        )
        for symbols, interval, start, end, source in runs
    ]
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    while {run["state_type"] for run in cluster.flow_runs(ids)} - TERMINAL:
        assert time.monotonic() < deadline, [run["state_type"] for run in cluster.flow_runs(ids)]
        time.sleep(1)
    finished = cluster.flow_runs(ids)
    assert [run["state_type"] for run in finished] == ["COMPLETED"] * len(ids), finished
    # Which worker ran which run: the label the worker puts on each run it takes (server side),
    # and the run's own process, which prints into the output of the worker that started it.
    ran_by = {run["id"]: run["labels"].get("prefect.worker.name") for run in finished}
    names = {f"ost-worker-{name}": name for name in WORKERS}
    assert set(ran_by.values()) == set(names), ran_by
    outputs = {name: log.read_text(errors="replace") for name, log in cluster.logs.items()}
    for run_id, worker in ran_by.items():
        mine = outputs[names[worker]]
        assert f"Worker '{worker}' submitting flow run '{run_id}'" in mine
        assert f"/flow-run/{run_id}" in mine  # the run's "View at ..." line
        assert f"Aborted submission of flow run '{run_id}'" not in mine
        for other in (outputs[name] for name in WORKERS if name != names[worker]):
            assert f"/flow-run/{run_id}" not in other
            # Both workers may reach for the same run: the server refuses the second one.
            if f"submitting flow run '{run_id}'" in other:
                assert f"Aborted submission of flow run '{run_id}'" in other
    store = CandleStore(str(cluster.data_dir))
    ledger = Ledger(cluster.data_dir / "state" / "ledger.sqlite3")
    scraped = {
        (sample.labels["symbol"], sample.labels["interval"]): sample.value
        for family in text_string_to_metric_families(httpx.get(cluster.metrics_url).text)
        for sample in family.samples
        if sample.name == "ost_candles_written_total"
    }
    for (symbol, interval), (start, end) in want.items():
        # `end` is inclusive, as the flow reads it: the candle that opens at it is stored too.
        expected = simulator_candles(symbol, interval, start, end + 1, sim.now_ms())
        assert len(expected) == intervals.count_between(interval, start, end + 1)
        assert_candles(store.load_klines(symbol, interval), expected, symbol, interval)
        # Each run counted only the candles it stored first: together, each candle once, and
        # `ost metrics` reports the runs of both workers.
        assert ledger.counter(CANDLES_WRITTEN, symbol=symbol, interval=interval) == len(expected)
        assert scraped[symbol, interval] == len(expected), scraped
    read_everywhere(cluster.data_dir)


@pytest.mark.slow
def test_the_server_serves_its_ui_from_the_state_directory(cluster: Cluster) -> None:
    """With ost.env the server copies its UI under /var/lib/ost, not into the read-only venv."""
    page = httpx.get(cluster.api.removesuffix("/api") + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert (Path(cluster.env["PREFECT_UI_STATIC_DIRECTORY"]) / "v1" / "index.html").is_file()

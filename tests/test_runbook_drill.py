"""The runbook's drill (docs/runbooks/binance-caido.md, "Simulacro"), run as an operator would.

Every line of the section's ```` ```bash simulacro ```` blocks is executed in order, as written
(the same thresholds, the same ``sleep``), against the session's Binance simulator, a real local
HTTP receiver of the apprise notifications, and temporary directories:

* ``export``: applied to the environment of the later commands, with the drill's addresses
  swapped for the test's: the simulator (``http://127.0.0.1:8900``) becomes the test simulator's
  URL, the receiver (``json://127.0.0.1:8999/...``) the test's receiver, ``OST_DATA_DIR`` and
  ``PREFECT_HOME`` temporary dirs. ``PREFECT_API_URL`` is not set: no Prefect server here.
* ``ost ...`` / ``uv run ost ...``: ``python -m ost.cli ...`` as a subprocess; its exit status must
  be the one the runbook promises in a ``# ⇒ exit N`` comment (0 when it promises none), its
  output must start with the text of a ``# ⇒ exit N: "text"`` comment, and the output of
  ``--json`` must be JSON.
* ``python -m alerts.receiver ...`` (the drill's receiver terminal): validated with ``--help``;
  the test's own receiver (:mod:`apprise_receiver`) takes its place and is the evidence: the
  alert, the escalation and the recovery each arrive there exactly once.
* Commands that need the Prefect server (``ost up``, ``ost schedule ...``, ``prefect deployment
  run ...``) are only *validated*: the ``ost`` ones with ``--help`` (click rejects an unknown
  command or option), the ``prefect`` ones against prefect.yaml and the flow's parameters. Running
  them is the job of tests/test_stack_e2e.py.
* ``curl`` to the simulator's admin endpoint: the same request with httpx. ``curl .../metrics |
  grep X``: against ``ost metrics``, started by the test on a free port, and X must match a line.
* ``python -c ...``: run with the test's interpreter.

Anything else fails the test, so a new kind of drill command needs a handler here.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from apprise_receiver import Receiver
from ports import free_port
from processes import Processes
from typer.testing import CliRunner

from ost.cli import app
from ost.settings import parse_duration
from ost.sim import SimHandle

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs" / "runbooks" / "binance-caido.md"
SECTION = "## Simulacro"
FENCE_INFO = "bash simulacro"
DRILL_SIM_URL = "http://127.0.0.1:8900"
#: Where the drill's receiver listens (``python -m alerts.receiver --port 8999``).
DRILL_APPRISE_PREFIX = "json://127.0.0.1:8999/"
#: Where the drill's own dirs live (only compared with the runbook's text, never written to).
DRILL_DIR = "/tmp/ost-simulacro/"  # noqa: S108  # the runbook's path, never opened by the test
#: The dirs of the dev stack, which the drill must not share.
DEV_DIRS = ("./data", "./.prefect", "data", ".prefect")
METRICS_URL_RE = re.compile(r"^http://(?:127\.0\.0\.1|localhost):8000(/.*)$")
EXPECT_RE = re.compile(r"⇒\s*exit\s+(\d+)")
OUTPUT_RE = re.compile(r'⇒\s*exit\s+\d+:\s*"([^"]+)"')
DURATION_RE = re.compile(r"down for (?:(\d+) min )?(\d+) s\b")
#: Thresholds of the tests below that do not follow the runbook: seconds, not its 15/30/60 s.
THRESHOLDS = {
    "OST_ESCALATION_MONITOR_AFTER": "1s",
    "OST_ESCALATION_ALERT_AFTER": "2s",
    "OST_ESCALATION_ESCALATE_AFTER": "3s",
}
#: A wait past the escalate threshold of THRESHOLDS.
ESCALATE_WAIT_S = 3.5
#: `ost` commands that need a Prefect server: validated with --help, not run.
NEEDS_PREFECT = ("up", "schedule")
COMMAND_TIMEOUT_S = 60


@dataclass(frozen=True)
class DrillLine:
    """One command of the drill: where it is, its words, and the exit status it promises."""

    lineno: int
    text: str
    argv: list[str]
    expected_exit: int
    #: The text the output must start with (``# ⇒ exit N: "text"``), if the runbook says one.
    expected_output: str | None = None

    def __str__(self) -> str:
        return f"runbook line {self.lineno}: {self.text}"


def drill_lines(markdown: str) -> list[DrillLine]:
    """The commands of the ```bash simulacro blocks of the Simulacro section, in order."""
    lines = markdown.splitlines()
    start = lines.index(SECTION)
    commands: list[DrillLine] = []
    in_block, pending, pending_no = False, "", 0
    for number, line in enumerate(lines[start + 1 :], start=start + 2):
        if line.startswith("## "):
            break
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = not in_block and stripped[3:].strip() == FENCE_INFO
            continue
        if not in_block or (not pending and (not stripped or stripped.startswith("#"))):
            continue
        if not pending:
            pending_no = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        expected = EXPECT_RE.search(text)
        output = OUTPUT_RE.search(text)
        argv = shlex.split(text, comments=True)
        commands.append(
            DrillLine(
                pending_no,
                text,
                argv,
                int(expected[1]) if expected else 0,
                output[1] if output else None,
            )
        )
    return commands


def runbook_commands(markdown: str) -> list[list[str]]:
    """Every ``ost`` and ``prefect`` command of the runbook: in bash blocks and inline code."""
    texts: list[str] = []
    prose: list[str] = []
    in_block = is_bash = False
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block, is_bash = not in_block, stripped[3:].strip().startswith("bash")
        elif in_block and is_bash:
            texts.append(stripped)
        elif not in_block:
            prose.append(line)
    spans = re.findall(r"`([^`]+)`", "\n".join(prose))
    # Skip synopses such as `ost notify-test [--tag alert\|escalate]` and `ost ...`.
    texts += [span for span in spans if not re.search(r"[\\\[|…]|\.\.\.|^ost$", span)]
    commands = []
    for text in texts:
        words = shlex.split(text.replace("uv run ", ""), comments=True)
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word not in {"&&", "|", ";"}:
                segment.append(word)
                continue
            if segment[:1] == ["ost"] or segment[:3] == ["prefect", "deployment", "run"]:
                commands.append(segment)
            segment = []
    return commands


def flow_deployments() -> dict[str, list[str]]:
    """``flow/deployment`` of every deployment in prefect.yaml -> its flow's parameter names."""
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for deployment in document["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        definition = next(
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name == function
        )
        flow_name = next(
            keyword.value.value
            for decorator in definition.decorator_list
            if isinstance(decorator, ast.Call)
            for keyword in decorator.keywords
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
        )
        found[f"{flow_name}/{deployment['name']}"] = [arg.arg for arg in definition.args.args]
    return found


def operator_env(data_dir: Path) -> dict[str, str]:
    """The operator's configuration before the drill's exports: no OST_*, Prefect or target.

    Only the streams and a short request timeout are the operator's own (a faster outage).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OST_", "PREFECT_API_URL", "PREFECT_HOME"))
    }
    env.update(
        {
            "OST_DATA_DIR": str(data_dir),
            "OST_SYMBOLS": "BTCUSDT",
            "OST_INTERVALS": "15m,1h,1d",
            "OST_HTTP_TIMEOUT_S": "2",
            "OST_MAX_ATTEMPTS": "2",
            "OST_INITIAL_LOOKBACK_DAYS": "7",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def base_env(data_dir: Path) -> dict[str, str]:
    """The operator's configuration, thresholds shortened to seconds (:data:`THRESHOLDS`)."""
    return {**operator_env(data_dir), **THRESHOLDS}


def run_ost(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ost ARGS`` as a subprocess of this interpreter, to completion."""
    return run([sys.executable, "-m", "ost.cli", *args], env)


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A subprocess in the project dir, to completion, its output captured, its group killed."""
    with Processes() as processes:
        return processes.run(argv, env=env, cwd=ROOT, timeout=COMMAND_TIMEOUT_S)


@dataclass
class Drill:
    """Runs drill lines against the test's simulator, receiver, dirs and metrics server."""

    sim: SimHandle
    receiver: Receiver
    processes: Processes
    data_dir: Path
    prefect_home: Path
    env: dict[str, str]
    metrics: subprocess.Popen[bytes] | None = None
    metrics_url: str = ""
    ran: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)
    #: The value the runbook gave each exported variable, as written.
    exported: dict[str, str] = field(default_factory=dict)
    #: What each ``--json`` command printed, parsed, by line number.
    outputs: dict[int, object] = field(default_factory=dict)

    def execute(self, line: DrillLine) -> None:
        """Run (or validate) one drill line and check what the runbook promises of it."""
        argv = line.argv[2:] if line.argv[:2] == ["uv", "run"] else line.argv
        handlers = {
            "export": self.export,
            "ost": self.ost,
            "prefect": self.prefect,
            "curl": self.curl,
            "python": self.python,
            "sleep": self.sleep,
        }
        handler = handlers.get(argv[0])
        if handler is None:
            pytest.fail(f"{line}: no handler for {argv[0]!r} in tests/test_runbook_drill.py")
        handler(argv, line)

    def export(self, argv: list[str], line: DrillLine) -> None:
        """``export NAME=VALUE ...``, with the drill's addresses and dirs swapped for the test's."""
        for assignment in argv[1:]:
            name, equals, value = assignment.partition("=")
            assert equals, f"{line}: {assignment!r} is not NAME=VALUE"
            self.exported[name] = value
            if name == "PREFECT_API_URL":
                self.validated.append("export PREFECT_API_URL")
            elif name in {"OST_DATA_DIR", "PREFECT_HOME"}:
                assert value.startswith(DRILL_DIR), f"{line}: a dir of its own"
                assert value not in DEV_DIRS, f"{line}: the dev stack's {value}"
                self.env[name] = str(self.data_dir if name == "OST_DATA_DIR" else self.prefect_home)
            elif name == "OST_APPRISE_URLS":
                assert value.startswith(DRILL_APPRISE_PREFIX), f"{line}: not the drill's receiver"
                self.env[name] = value.replace(
                    DRILL_APPRISE_PREFIX, f"json://127.0.0.1:{self.receiver.port}/"
                )
            else:
                if name.startswith("OST_ESCALATION_"):
                    assert parse_duration(value).total_seconds() > 0, f"{line}: bad duration"
                self.env[name] = value.replace(DRILL_SIM_URL, self.sim.url)

    def ost(self, argv: list[str], line: DrillLine) -> None:
        """``ost ...``: run it, or validate it with --help when it needs a Prefect server."""
        if argv[1] in NEEDS_PREFECT:
            result = run_ost([*argv[1:], "--help"], self.env)
            assert result.returncode == 0, f"{line}: {result.stderr}"
            self.validated.append(" ".join(argv[:3]))
            return
        assert self.env.get("OST_BINANCE_BASE_URLS") == self.sim.url, (
            f"{line}: the drill's exports must point OST_BINANCE_BASE_URLS at the simulator"
        )
        result = run_ost(argv[1:], self.env)
        assert result.returncode == line.expected_exit, (
            f"{line}: exit {result.returncode}, the runbook says {line.expected_exit}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        if line.expected_output is not None:
            assert result.stdout.startswith(line.expected_output), (
                f"{line}: printed {result.stdout[:300]!r}"
            )
        if "--json" in argv:
            self.outputs[line.lineno] = json.loads(result.stdout)
        self.ran.append(" ".join(argv[:2]))

    def prefect(self, argv: list[str], line: DrillLine) -> None:
        """``prefect deployment run FLOW/DEPLOYMENT --param K=V``, checked against prefect.yaml."""
        assert argv[1:3] == ["deployment", "run"], f"{line}: only `deployment run` is handled"
        deployments = flow_deployments()
        name = argv[3]
        assert name in deployments, f"{line}: no deployment {name!r} in {sorted(deployments)}"
        options = argv[4:]
        assert options[::2] == ["--param"] * len(options[::2]), f"{line}: unexpected options"
        for pair in options[1::2]:
            key, equals, _ = pair.partition("=")
            assert equals, f"{line}: {pair!r} is not KEY=VALUE"
            assert key in deployments[name], f"{line}: {name} has no parameter {key!r}"
        self.validated.append(f"prefect deployment run {name}")

    def curl(self, argv: list[str], line: DrillLine) -> None:
        """``curl`` to the simulator's admin API, or ``curl .../metrics | grep PATTERN``."""
        words, grep = (
            (argv[: argv.index("|")], argv[argv.index("|") + 1 :]) if "|" in argv else (argv, [])
        )
        method, data, url = "GET", None, ""
        index = 1
        while index < len(words):
            word = words[index]
            if word in {"-X", "--request"}:
                method, index = words[index + 1], index + 1
            elif word in {"-d", "--data", "--data-raw"}:
                data, index = words[index + 1], index + 1
                method = "POST" if method == "GET" else method
            elif word.startswith("http"):
                url = word
            else:
                assert word in {"-s", "--silent", "-f", "--fail"}, f"{line}: curl option {word}"
            index += 1
        metrics = METRICS_URL_RE.match(url)
        if url.startswith(f"{DRILL_SIM_URL}/_sim/"):
            target = self.sim.url + url.removeprefix(DRILL_SIM_URL)
        elif metrics:
            target = self.metrics_server() + metrics[1]
        else:
            pytest.fail(f"{line}: curl to an address the drill test does not know: {url}")
        response = httpx.request(
            method,
            target,
            content=data,
            headers={"content-type": "application/x-www-form-urlencoded"} if data else None,
            timeout=10,
        )
        assert response.status_code == 200, f"{line}: {response.status_code} {response.text}"
        if method == "POST" and url.endswith("/_sim/faults"):
            assert response.json(), f"{line}: no fault armed"
        if method == "DELETE" and url.endswith("/_sim/faults"):
            assert response.json() == [], f"{line}: faults still armed"
        if grep:
            assert grep[0] == "grep", f"{line}: only `| grep` is handled"
            pattern = re.compile(grep[-1], re.IGNORECASE if "-i" in grep else 0)
            assert any(pattern.search(text) for text in response.text.splitlines()), (
                f"{line}: no line matches {grep[-1]!r}"
            )
        self.ran.append(f"curl {method} {url}")

    def python(self, argv: list[str], line: DrillLine) -> None:
        """``python ...`` with the test's interpreter; the drill's receiver is only validated."""
        if argv[1:3] == ["-m", "alerts.receiver"]:
            result = run([sys.executable, "-m", "alerts.receiver", "--help"], self.env)
            assert result.returncode == 0, f"{line}: {result.stderr[-3000:]}"
            assert argv[3:] == ["--port", DRILL_APPRISE_PREFIX.split(":")[2].rstrip("/")], (
                f"{line}: the receiver must listen where OST_APPRISE_URLS points"
            )
            self.validated.append("python -m alerts.receiver")
            return
        result = run([sys.executable, *argv[1:]], self.env)
        assert result.returncode == line.expected_exit, f"{line}: {result.stderr[-3000:]}"
        assert result.stdout.strip(), f"{line}: printed nothing"
        self.ran.append("python")

    def sleep(self, argv: list[str], line: DrillLine) -> None:
        """``sleep N``, as written: the runbook's thresholds are seconds."""
        seconds = float(argv[1])
        assert seconds > 0, f"{line}: sleep what?"
        time.sleep(seconds)
        self.ran.append("sleep")

    def metrics_server(self) -> str:
        """``ost metrics`` on a free port with the drill's environment, started on first use."""
        if self.metrics is None:
            port = free_port()
            env = {**self.env, "OST_METRICS_HOST": "127.0.0.1", "OST_METRICS_PORT": str(port)}
            self.metrics = self.processes.start(
                [sys.executable, "-m", "ost.cli", "metrics"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.metrics_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(self.metrics_url, self.metrics)
        return self.metrics_url


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Poll ``url/healthz`` until it answers 200; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ost metrics exited with status {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"ost metrics did not answer at {url}/healthz within {timeout_s}s")


@pytest.fixture
def drill(sim: SimHandle, tmp_path: Path, processes: Processes) -> Iterator[Drill]:
    """A drill runner on the session's simulator and a receiver; lifts faults at the end.

    Its metrics server is one of the test's ``processes``: its group is killed with the test.
    """
    with Receiver() as receiver:
        runner = Drill(
            sim,
            receiver,
            processes,
            tmp_path / "data",
            tmp_path / "prefect",
            operator_env(tmp_path / "data"),
        )
        try:
            yield runner
        finally:
            sim.clear_faults()


def test_drill_section_is_found_and_covers_the_runbook() -> None:
    """The Simulacro section has drill blocks covering every step of the runbook."""
    lines = drill_lines(RUNBOOK.read_text(encoding="utf-8"))
    commands = {
        " ".join(line.argv[2:4] if line.argv[:2] == ["uv", "run"] else line.argv[:2])
        for line in lines
    }
    assert len(lines) >= 25
    assert {
        "ost up",
        "ost ping",
        "ost ingest",
        "ost status",
        "ost watchdog",
        "ost backfill",
        "ost gaps",
        "ost schedule",
        "prefect deployment",
    } <= commands
    assert any(line.expected_exit == 1 for line in lines), "the outage is never seen to fail"
    assert any("/_sim/faults" in line.text and "POST" in line.text for line in lines)
    assert any("/_sim/faults" in line.text and "DELETE" in line.text for line in lines)


def terminal_exports(lines: list[DrillLine]) -> tuple[dict[str, str], dict[str, str]]:
    """The variables exported before ``ost up`` (terminal 1) and right after it (terminal 2)."""
    up = next(i for i, line in enumerate(lines) if line.argv[2:4] == ["ost", "up"])
    after = list(itertools.takewhile(lambda line: line.argv[0] == "export", lines[up + 1 :]))
    return exports(lines[:up]), exports(after)


def exports(lines: list[DrillLine]) -> dict[str, str]:
    """NAME -> VALUE of the ``export`` lines among ``lines``."""
    found: dict[str, str] = {}
    for line in lines:
        if line.argv[0] == "export":
            for word in line.argv[1:]:
                name, _, value = word.partition("=")
                found[name] = value
    return found


def test_both_terminals_carry_the_target_and_dirs_of_their_own() -> None:
    """Terminals 1 and 2 export the same apprise target, PREFECT_HOME, data dir and thresholds."""
    first, second = terminal_exports(drill_lines(RUNBOOK.read_text(encoding="utf-8")))
    shared = (
        "OST_APPRISE_URLS",
        "PREFECT_HOME",
        "OST_DATA_DIR",
        "OST_ESCALATION_MONITOR_AFTER",
        "OST_ESCALATION_ALERT_AFTER",
        "OST_ESCALATION_ESCALATE_AFTER",
    )
    for name in shared:
        assert name in first, f"terminal 1 does not export {name}"
        assert second.get(name) == first[name], f"terminal 2's {name} is not terminal 1's"
    assert first["OST_APPRISE_URLS"].startswith(DRILL_APPRISE_PREFIX)
    for name in ("PREFECT_HOME", "OST_DATA_DIR"):
        assert first[name].startswith(DRILL_DIR), first[name]
    assert first["PREFECT_HOME"] != first["OST_DATA_DIR"]
    assert second["OST_BINANCE_BASE_URLS"] == DRILL_SIM_URL


def test_every_command_of_the_runbook_exists() -> None:
    """Every `ost` command and option, and every `prefect deployment run`, in the runbook exists."""
    commands = runbook_commands(RUNBOOK.read_text(encoding="utf-8"))
    deployments = flow_deployments()
    runner = CliRunner()
    assert len(commands) >= 40
    for argv in commands:
        if argv[0] == "ost":
            result = runner.invoke(app, [*argv[1:], "--help"])
            assert result.exit_code == 0, f"{' '.join(argv)}: {result.output}"
            continue
        name, options = argv[3], argv[4:]
        assert name in deployments, f"{' '.join(argv)}: no deployment {name!r}"
        keys = {pair.partition("=")[0] for pair in options[1::2]}
        assert options[::2] == ["--param"] * len(keys)
        assert keys <= set(deployments[name]), f"{' '.join(argv)}: unknown parameter"


@pytest.mark.timeout(900)  # the whole runbook with its sleeps: minutes on a busy machine
def test_drill_runs_as_the_runbook_says(drill: Drill) -> None:
    """The drill as written: every promise kept; alert, escalation and recovery arrive once each."""
    lines = drill_lines(RUNBOOK.read_text(encoding="utf-8"))
    for line in lines:
        drill.execute(line)
    assert {"ost ping", "ost ingest", "ost backfill", "ost gaps", "ost watchdog"} <= set(drill.ran)
    assert {"ost schedule pause", "python -m alerts.receiver"} <= set(drill.validated)
    assert "prefect deployment run backfill/manual" in drill.validated
    assert drill.sim.stats(), "the simulator saw no request"
    assert any((drill.data_dir / "klines").rglob("*.parquet")), "the drill stored no candle"

    receiver = drill.receiver
    assert receiver.types() == ["info", "warning", "failure", "success"], receiver.titles()
    _test, alert, escalate, recovery = receiver.posts
    assert all(post.path == "/simulacro" for post in receiver.posts)
    # The outage began at the first failure that step 3's `ost status --json` shows: the texts
    # state its real length (measured here by the receiver's clock, sending takes a few seconds).
    status = next(
        drill.outputs[line.lineno]
        for line in lines
        if line.argv[2:5] == ["ost", "status", "--json"]
    )
    assert isinstance(status, dict)
    began = min(dt.datetime.fromisoformat(s["failing_since"]) for s in status["streams"])
    for post, level in ((alert, "alert"), (escalate, "escalate")):
        said = DURATION_RE.search(post.body["title"])
        assert said, post.body["title"]
        stated = dt.timedelta(minutes=int(said[1] or 0), seconds=int(said[2]))
        lasted = dt.datetime.fromtimestamp(post.wall, dt.UTC) - began
        assert dt.timedelta(0) <= lasted - stated <= dt.timedelta(seconds=10), (stated, lasted)
        assert f"Level {level}: down for at least" in post.body["message"]
        assert "30-60 min" not in post.body["message"]
    assert "alert after 10 s, escalate after 40 s" in alert.body["message"]
    assert "Gaps healed: the store has every candle of the outage" in recovery.body["message"]
    assert "RECOVERED" in recovery.body["title"]


def test_manual_ingest_moves_status_and_the_ladder(sim: SimHandle, tmp_path: Path) -> None:
    """A failed `ost ingest` shows in `ost status` and climbs the ladder; a good one heals it."""
    env = {**base_env(tmp_path / "data"), "OST_BINANCE_BASE_URLS": sim.url}
    env["OST_ARCHIVE_BASE_URL"] = sim.url
    try:
        assert run_ost(["ingest"], env).returncode == 0
        sim.set_faults("5xx:rate=1")
        assert run_ost(["ingest"], env).returncode == 1
        report = json.loads(run_ost(["status", "--json"], env).stdout)
        assert all(stream["failing_since"] for stream in report["streams"]), report
        assert {stream["last_reason"] for stream in report["streams"]} == {"unavailable"}
        time.sleep(ESCALATE_WAIT_S)
        assert run_ost(["watchdog"], env).stdout.startswith("level: escalate")
        sim.clear_faults()
        assert run_ost(["ingest"], env).returncode == 0
        report = json.loads(run_ost(["status", "--json"], env).stdout)
        assert report["level"] == "normal", report
        assert not any(stream["failing_since"] for stream in report["streams"])
    finally:
        sim.clear_faults()

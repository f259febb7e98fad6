"""The Prometheus alert rules, example config and Grafana dashboard in deployments/.

``promtool`` (Debian's prometheus package, installed by deployments/prometheus/install-promtool.sh)
checks the rules and runs their unit tests. Without it the promtool tests skip locally and fail
in CI (``CI=true``), where the install script has run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from ost.alerts.policy import LadderConfig
from prometheus_client import generate_latest

from ost.cli import app
from ost.ledger import Ledger
from ost.metrics import build_registry

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deployments" / "prometheus"
RULES = PROMETHEUS_DIR / "ost-rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "ost-rules.test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deployments" / "grafana" / "ost-ingest.json"
RUNBOOK = ROOT / "docs" / "runbooks" / "binance-caido.md"
RUNBOOK_LINK = "docs/runbooks/binance-caido.md"
#: Where install-promtool.sh may put the binary when that directory is not on PATH.
PROMTOOL_FALLBACKS = (Path("/usr/local/bin/promtool"), Path.home() / ".local/bin/promtool")
METRIC_RE = re.compile(r"\bost_[a-z0-9_]+\b")


def find_promtool() -> str | None:
    """The promtool binary: $PROMTOOL, on PATH, or where the install script puts it."""
    candidates = [os.environ.get("PROMTOOL"), shutil.which("promtool")]
    candidates += [str(path) for path in PROMTOOL_FALLBACKS]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool binary; a failure in CI, a skip elsewhere, when it is not installed."""
    found = find_promtool()
    if found is None:
        message = (
            "promtool is not installed: run `bash deployments/prometheus/install-promtool.sh`"
            " (or set PROMTOOL=/path/to/promtool)"
        )
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool in deployments/prometheus (rule files are relative to it)."""
    return subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name that ``ost metrics`` serves (from its registry over an empty ledger)."""
    ledger = Ledger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite3")
    text = generate_latest(build_registry(ledger, LadderConfig(streams=()))).decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def alerting_rules() -> list[dict[str, Any]]:
    """Every alerting rule of ost-rules.yml."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (accents kept, punctuation dropped)."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_promtool_check_rules_succeeds(promtool: str) -> None:
    """`promtool check rules` accepts ost-rules.yml."""
    result = run_promtool(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    """`promtool test rules` passes every scenario of ost-rules.test.yml."""
    result = run_promtool(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_check_config_accepts_the_example(promtool: str) -> None:
    """`promtool check config` accepts the example prometheus.yml and the rules it loads."""
    result = run_promtool(promtool, "check", "config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_example_config_scrapes_the_metrics_server() -> None:
    """prometheus.yml scrapes 127.0.0.1:8000 as job ost-ingest, the job the rules expect."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for c in jobs["ost-ingest"]["static_configs"] for t in c["targets"]]
    assert targets == ["127.0.0.1:8000"]
    assert config["rule_files"] == [RULES.name]
    assert any('job="ost-ingest"' in rule["expr"] for rule in alerting_rules())


def test_rules_use_only_exported_metrics(exported_metrics: set[str]) -> None:
    """Every ost_* name in a rule expression is one that ost/metrics.py exports."""
    used = {name for rule in alerting_rules() for name in METRIC_RE.findall(rule["expr"])}
    assert used, "no ost_* metric in the rules"
    assert used <= exported_metrics, f"not exported: {sorted(used - exported_metrics)}"


def test_rules_cover_failures_and_both_staleness_levels() -> None:
    """The required alerts exist, with their severities and thresholds; staleness is on the lag."""
    rules = {rule["alert"]: rule for rule in alerting_rules()}
    assert "ost_ingestion_failures_total" in rules["OstIngestionFailuresRising"]["expr"]
    assert rules["OstIngestionFailuresRising"]["labels"]["severity"] == "warning"
    stale, critical = rules["OstIngestionStale"], rules["OstIngestionStaleCritical"]
    for rule in (stale, critical):
        assert "ost_stream_lag_seconds - ost_stream_stale_after_seconds" in rule["expr"]
    assert stale["expr"].rstrip().endswith("> 30 * 60")
    assert critical["expr"].rstrip().endswith("> 60 * 60")
    assert (stale["labels"]["severity"], critical["labels"]["severity"]) == ("warning", "critical")
    used = " ".join(rule["expr"] for rule in alerting_rules())
    assert "ost_last_ingestion_timestamp_seconds" not in used, "staleness is never the last run"


def test_every_rule_links_an_existing_runbook_section() -> None:
    """Each alert has a summary, a severity, a first command and a runbook link that resolves."""
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in alerting_rules():
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert annotations["first_command"], rule["alert"]
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == RUNBOOK_LINK, rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in {RUNBOOK_LINK}"


def test_first_commands_name_real_ost_commands() -> None:
    """The `ost ...` commands that annotations tell operators to run first exist."""
    group = typer.main.get_group(app)
    named = [
        match
        for rule in alerting_rules()
        for match in re.findall(r"\bost ([a-z-]+)", rule["annotations"]["first_command"])
    ]
    assert named
    assert set(named) <= set(group.commands), f"unknown: {set(named) - set(group.commands)}"


def test_every_alert_has_a_firing_unit_test() -> None:
    """Each alert of ost-rules.yml fires in at least one scenario of ost-rules.test.yml."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    firing = {
        case["alertname"]
        for scenario in tests["tests"]
        for case in scenario.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerting_rules()} <= firing


def test_dashboard_is_valid_and_uses_only_exported_metrics(exported_metrics: set[str]) -> None:
    """The Grafana dashboard is JSON, and every panel query names exported metrics only."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in METRIC_RE.findall(expr)}
    assert all(panel["targets"] for panel in dashboard["panels"])
    assert len(dashboard["panels"]) >= 6
    assert used <= exported_metrics, f"not exported: {sorted(used - exported_metrics)}"
    assert {
        "ost_escalation_level",
        "ost_last_ingestion_timestamp_seconds",
        "ost_stream_lag_seconds",
        "ost_stream_stale_after_seconds",
    } <= used
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])

"""Configuration fails loudly at start: one line, exit 2, before any request or write.

The values are checked by the one settings object (:mod:`ost.settings`); the data dir where the
store is opened (:func:`ost.runtime.open_store`). The commands run as real subprocesses against
the simulator, whose request counts show that nothing was asked.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from commands import ost_env
from fs_faults import NO_DAC, can
from hypothesis import given
from hypothesis import strategies as st

from ost.errors import BadInput
from ost.settings import check_apprise_urls, load_settings
from ost.sim import SimHandle

SECRET = "s3cretT0ken"  # noqa: S105  # a made-up token, to show that it never shows

#: apprise 2.0 imports the stdlib's deprecated imghdr; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

# ---- the values, in process -------------------------------------------------------------------


@given(st.text(alphabet=", \t", max_size=8))
def test_an_empty_list_of_symbols_or_intervals_is_refused(text: str) -> None:
    """Nothing but commas and blanks in OST_SYMBOLS or OST_INTERVALS names the variable."""
    with pytest.raises(BadInput, match=r"^OST_SYMBOLS: no symbol given"):
        load_settings(symbols=text)
    with pytest.raises(BadInput, match=r"^OST_INTERVALS: no interval given"):
        load_settings(intervals=text)


def test_a_symbol_listed_twice_is_refused() -> None:
    """BTCUSDT twice would ingest one stream twice at once: refused, named."""
    with pytest.raises(BadInput, match=r"^OST_SYMBOLS: BTCUSDT is listed twice"):
        load_settings(symbols="BTCUSDT,ETHUSDT,BTCUSDT")


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_data_dir_is_refused(value: str) -> None:
    """OST_DATA_DIR empty (which wrote into the working directory) is refused."""
    with pytest.raises(BadInput, match=r"^OST_DATA_DIR: empty"):
        load_settings(data_dir=value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "NaN"])
@pytest.mark.parametrize("name", ["http_timeout_s", "initial_lookback_days"])
def test_a_number_that_is_not_finite_is_refused(name: str, value: float | str) -> None:
    """Infinity or NaN is a one-line BadInput naming the variable, never a traceback later."""
    with pytest.raises(BadInput, match=rf"^OST_{name.upper()}: Input should be a finite number"):
        load_settings(**{name: value})


def test_a_duration_too_long_for_a_timedelta_is_refused() -> None:
    """A duration past what a timedelta holds is a BadInput, not an OverflowError."""
    with pytest.raises(BadInput, match=r"^OST_ESCALATION_ESCALATE_AFTER: duration .* too long"):
        load_settings(escalation_escalate_after="99999999999999d")


minutes = st.integers(min_value=0, max_value=600)


@given(monitor=minutes, alert=minutes, escalate=minutes)
def test_the_ladder_is_accepted_only_when_its_thresholds_rise(
    monitor: int, alert: int, escalate: int
) -> None:
    """Rising thresholds (monitor <= alert <= escalate) load; an inverted pair names the later."""
    values = {
        "escalation_monitor_after": f"{monitor}m",
        "escalation_alert_after": f"{alert}m",
        "escalation_escalate_after": f"{escalate}m",
    }
    if monitor <= alert <= escalate:
        settings = load_settings(**values)
        assert settings.escalation_alert_after == dt.timedelta(minutes=alert)
        return
    named = "ALERT" if alert < monitor else "ESCALATE"
    with pytest.raises(BadInput, match=rf"^OST_ESCALATION_{named}_AFTER: .* must rise"):
        load_settings(**values)


def test_an_apprise_url_apprise_cannot_parse_is_named_without_its_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its position and scheme only, and apprise's own log lines (which quote it) are dropped."""
    caplog.set_level(logging.DEBUG)
    urls = f"json://127.0.0.1:9/hook, garbage://{SECRET}@host/{SECRET}"
    settings = load_settings(apprise_urls=urls)
    with pytest.raises(BadInput) as refused:
        check_apprise_urls(settings)
    assert str(refused.value.args[0]).startswith(
        "OST_APPRISE_URLS: entry 2 of 2 (garbage://***) is not a URL apprise can use"
    )
    assert SECRET not in str(refused.value)
    assert SECRET not in caplog.text
    check_apprise_urls(load_settings(apprise_urls="json://127.0.0.1:9/hook"))


# ---- the commands: exit 2, one line, no request, no file -------------------------------------


def run_ost(
    args: list[str], env: dict[str, str], cwd: Path, *prefix: str
) -> subprocess.CompletedProcess[str]:
    """`ost ARGS` in ``cwd`` (``prefix`` before the interpreter, e.g. setpriv), to completion."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "ost.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_refused_at_start(
    result: subprocess.CompletedProcess[str], sim: SimHandle, untouched: Path, named: str
) -> None:
    """Exit 2, one stderr line ``ost: error: <named>...``, no request, nothing in ``untouched``."""
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"ost: error: {named}"), line
    assert sim.stats()["total"] == 0
    assert sorted(untouched.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OST_SYMBOLS", ""),
        ("OST_SYMBOLS", ",,"),
        ("OST_INTERVALS", ""),
        ("OST_INTERVALS", ",,"),
        ("OST_DATA_DIR", ""),
        ("OST_ESCALATION_MONITOR_AFTER", "45m"),
        ("OST_ESCALATION_ESCALATE_AFTER", "20m"),
        ("OST_HTTP_TIMEOUT_S", "inf"),
        ("OST_HTTP_TIMEOUT_S", "nan"),
        ("OST_INITIAL_LOOKBACK_DAYS", "nan"),
        ("OST_INITIAL_LOOKBACK_DAYS", "1e9"),  # a startTime before 1970, refused by Binance
    ],
)
def test_each_bad_setting_exits_2_before_any_request_or_write(
    sim: SimHandle, tmp_path: Path, variable: str, value: str
) -> None:
    """`ost ingest` with the bad value: one line naming it, exit 2, no request, no file."""
    work = tmp_path / "cwd"  # an empty data dir meant "write here"
    work.mkdir()
    env = ost_env(sim, work / "data", **{variable: value})
    result = run_ost(["ingest"], env, work)
    named = "OST_ESCALATION_ALERT_AFTER" if variable.endswith("MONITOR_AFTER") else variable
    assert_refused_at_start(result, sim, work, named)


@pytest.mark.slow
def test_an_unusable_apprise_url_stops_the_watchdog_not_ingestion(
    sim: SimHandle, tmp_path: Path
) -> None:
    """`ost watchdog` refuses it at start (exit 2, nothing written); `ost ingest` still stores."""
    work = tmp_path / "cwd"
    work.mkdir()
    env = ost_env(sim, work / "data", OST_APPRISE_URLS="garbage://x")
    assert_refused_at_start(run_ost(["watchdog"], env, work), sim, work, "OST_APPRISE_URLS")
    ingest = run_ost(["ingest", "--symbols", "BTCUSDT", "--intervals", "1d"], env, work)
    assert ingest.returncode == 0, ingest.stderr
    assert list((work / "data" / "klines").rglob("part.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("command", [["ingest"], ["backfill", "--interval", "1h", "--days", "1"]])
@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_a_data_dir_that_is_a_file_exits_2(
    sim: SimHandle, tmp_path: Path, where: str, command: list[str]
) -> None:
    """OST_DATA_DIR a file, or a path under one: one line naming the file, exit 2, no request."""
    work = tmp_path / "cwd"
    work.mkdir()
    blocker = work / "data"
    blocker.write_text("not a directory")
    data_dir = blocker if where == "a-file" else blocker / "store"
    result = run_ost(command, ost_env(sim, data_dir), work)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ost: error: OST_DATA_DIR"), line
    assert f"{blocker} is a file, not a directory" in line
    assert sim.stats()["total"] == 0
    assert [path.name for path in work.iterdir()] == ["data"]
    assert blocker.read_text() == "not a directory"


@pytest.mark.slow
@pytest.mark.skipif(not can("no_dac"), reason="setpriv cannot take CAP_DAC_OVERRIDE away here")
def test_an_unreadable_data_dir_exits_2(sim: SimHandle, tmp_path: Path) -> None:
    """A data dir that cannot be listed (chmod 000, root without CAP_DAC_*): exit 2, one line."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o000)
    try:
        result = run_ost(["ingest"], ost_env(sim, data_dir), tmp_path, *NO_DAC)
    finally:
        data_dir.chmod(0o755)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ost: error: OST_DATA_DIR")
    assert line.endswith(f"{data_dir} cannot be read (Permission denied)")
    assert sim.stats()["total"] == 0
    assert sorted(data_dir.iterdir()) == []


@pytest.mark.slow
def test_notify_test_names_the_unusable_target_redacted(sim: SimHandle, tmp_path: Path) -> None:
    """A URL apprise cannot parse: exit 2 naming its position and scheme, never its token."""
    env = ost_env(
        sim, tmp_path / "data", OST_APPRISE_URLS=f"json://127.0.0.1:9/hook garbage://{SECRET}@x"
    )
    result = run_ost(["notify-test"], env, tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "entry 2 of 2 (garbage://***)" in line
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.slow
def test_notify_test_names_an_unreadable_apprise_config(sim: SimHandle, tmp_path: Path) -> None:
    """OST_APPRISE_CONFIG that cannot be read: exit 1, the error names the file and why."""
    missing = tmp_path / "apprise.yml"
    env = ost_env(sim, tmp_path / "data", OST_APPRISE_CONFIG=str(missing))
    result = run_ost(["notify-test"], env, tmp_path)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("ost: error: no usable apprise target")
    assert f"OST_APPRISE_CONFIG {missing} (cannot be read: No such file or directory)" in error

"""prefect.yaml: every entrypoint is a Flow, and the deployments match CONTRACT.md."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.flows import Flow

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def deployments() -> list[dict[str, Any]]:
    """The deployments section of prefect.yaml."""
    return list(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])


def load_entrypoint(entrypoint: str) -> Any:
    """Import ``path/to/module.py:name`` the way a worker does."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["entrypoint"])
def test_entrypoint_is_a_flow(deployment: dict[str, Any]) -> None:
    """Each entrypoint imports and is a Prefect Flow."""
    assert isinstance(load_entrypoint(deployment["entrypoint"]), Flow)


def test_deployment_names_match_the_contract() -> None:
    """flow-name/deployment-name pairs are the four that CONTRACT.md names."""
    names = {f"{load_entrypoint(d['entrypoint']).name}/{d['name']}" for d in deployments()}
    assert names == {
        "ingest-all/scheduled",
        "watchdog/scheduled",
        "backfill/manual",
        "check-gaps/manual",
    }


def test_schedules_have_slugs_and_no_active_flag() -> None:
    """Every schedule has a slug and no `active`, so a pause survives a redeploy."""
    schedules = [s for d in deployments() for s in d.get("schedules") or []]
    assert schedules
    assert all(s.get("slug") and "active" not in s for s in schedules)


def test_ingest_runs_every_15_minutes_utc_one_at_a_time() -> None:
    """ingest-all: cron */15 in UTC, concurrency 1, a colliding run is cancelled."""
    ingest = next(d for d in deployments() if d["entrypoint"].endswith(":ingest_all"))
    assert ingest["schedules"] == [
        {"cron": "*/15 * * * *", "timezone": "UTC", "slug": "ingest-every-15-minutes"}
    ]
    assert ingest["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_one_work_pool_for_all() -> None:
    """All deployments use the one process work pool defined in prefect.yaml."""
    pools = {d["work_pool"]["name"] for d in deployments()}
    assert pools == {"ost-pool"}


#: Binance's kline intervals, as its API documentation lists them (the independent source).
BINANCE_INTERVALS = [
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
]


@pytest.mark.parametrize("entrypoint", ["flows/backfill.py:backfill", "flows/gaps.py:check_gaps"])
def test_the_interval_parameter_is_a_choice_of_binance_intervals_or_all(entrypoint: str) -> None:
    """The UI form offers `all` and Binance's intervals, and nothing else."""
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(load_entrypoint(entrypoint)).model_dump()
    assert schema["properties"]["interval"]["enum"] == ["all", *BINANCE_INTERVALS]


@pytest.mark.parametrize("interval", ["7h", "1h,1d", "ALL"])
def test_an_interval_outside_the_choice_is_refused_before_the_flow_runs(interval: str) -> None:
    """Prefect's parameter validation rejects an interval that is not a choice."""
    from prefect.exceptions import ParameterTypeError

    backfill = load_entrypoint("flows/backfill.py:backfill")
    with pytest.raises(ParameterTypeError):
        backfill.validate_parameters({"interval": interval})

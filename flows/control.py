"""Deployment control through the Prefect API: pause and resume the ingest schedule.

``pause`` is the UI's toggle (``pause_deployment``). ``prefect deploy`` resets a deployment's
``paused`` flag, so a pause is also written into the schedules' ``active`` flag, which a redeploy
keeps (the schedules have slugs and prefect.yaml leaves ``active`` out). :func:`reassert_pauses`
puts the deployment-level pause back after a deploy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

INGEST_DEPLOYMENT = "ingest-all/scheduled"
WORK_POOL = "ost-pool"


@dataclass(frozen=True)
class ScheduleState:
    """Whether a deployment runs on its schedule."""

    deployment: str
    exists: bool
    paused: bool


def _client() -> SyncPrefectClient:
    return get_client(sync_client=True)


def ensure_work_pool(name: str = WORK_POOL) -> bool:
    """Create the process work pool if it is missing; True when it was created."""
    with _client() as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True
    return False


def set_paused(paused: bool, deployment: str = INGEST_DEPLOYMENT) -> ScheduleState:
    """Pause or resume a deployment and its schedules, as the UI's toggle does."""
    with _client() as client:
        found = client.read_deployment_by_name(deployment)
        if paused:
            client.pause_deployment(found.id)
        else:
            client.resume_deployment(found.id)
        for schedule in found.schedules:
            client.update_deployment_schedule(found.id, schedule.id, active=not paused)
    return schedule_state(deployment)


def schedule_state(deployment: str = INGEST_DEPLOYMENT) -> ScheduleState:
    """Whether ``deployment`` exists and is paused (either the deployment or all its schedules)."""
    with _client() as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return ScheduleState(deployment, exists=False, paused=False)
    schedules_off = bool(found.schedules) and not any(s.active for s in found.schedules)
    return ScheduleState(deployment, exists=True, paused=bool(found.paused) or schedules_off)


def reassert_pauses(deployment: str = INGEST_DEPLOYMENT, *, force: bool = False) -> ScheduleState:
    """After a deploy: pause again a deployment whose schedules stayed paused (or ``force``)."""
    state = schedule_state(deployment)
    if state.exists and (state.paused or force):
        return set_paused(True, deployment)
    return state


def _main(argv: list[str]) -> int:
    """``python -m flows.control ensure-pool|after-deploy``, the steps ``ost up`` runs."""
    from ost.settings import load_settings  # only the CLI entry needs it

    if argv == ["ensure-pool"]:
        created = ensure_work_pool()
        print(f"work pool {WORK_POOL}: {'created' if created else 'exists'}")  # CLI
        return 0
    if argv == ["after-deploy"]:
        disabled = load_settings().disable_scheduler
        state = reassert_pauses(force=disabled)
        why = " (OST_DISABLE_SCHEDULER=true)" if disabled else ""
        print(f"{state.deployment}: {'paused' if state.paused else 'scheduled'}{why}")
        return 0
    print("usage: python -m flows.control ensure-pool|after-deploy", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

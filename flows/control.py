"""Deployment control through the Prefect API: pause and resume the ingest schedule.

``pause`` is the UI's toggle (``pause_deployment``). ``prefect deploy`` resets a deployment's
``paused`` flag, so a pause is also written into the schedules' ``active`` flag, which a redeploy
keeps (the schedules have slugs and prefect.yaml leaves ``active`` out). :func:`reassert_pauses`
puts the deployment-level pause back after a deploy. :func:`api_problem` is asked first by the
commands a user types (``ost schedule``, ``ost status``), so that none starts a temporary server.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.responses import DeploymentResponse
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings

from ost.errors import EXIT_BAD_INPUT, EXIT_OK

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


def api_problem() -> str | None:
    """Why no Prefect server can be asked (None when one answers); never starts a temporary one.

    Without an API URL (``PREFECT_API_URL``, or the profile's), Prefect's client would start a
    temporary server of its own: a pause there would be lost, and the real one left untouched.
    """
    url = get_current_settings().api.url
    if not url:
        return "PREFECT_API_URL is not set"
    with _client() as client:
        error = client.api_healthcheck()
    if error is not None:
        return f"no Prefect server answers at {url} ({type(error).__name__})"
    return None


def set_paused(paused: bool, deployment: str = INGEST_DEPLOYMENT) -> ScheduleState:
    """Pause or resume a deployment and its schedules, as the UI's toggle does."""
    with _client() as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return ScheduleState(deployment, exists=False, paused=False)
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
    return ScheduleState(deployment, exists=True, paused=_paused(found))


def _paused(found: DeploymentResponse) -> bool:
    schedules_off = bool(found.schedules) and not any(s.active for s in found.schedules)
    return bool(found.paused) or schedules_off


def reassert_pauses(deployment: str = INGEST_DEPLOYMENT, *, force: bool = False) -> ScheduleState:
    """After a deploy: pause again a deployment whose schedules stayed paused (or ``force``)."""
    state = schedule_state(deployment)
    if state.exists and (state.paused or force):
        return set_paused(True, deployment)
    return state


def run_now(deployment: str = INGEST_DEPLOYMENT) -> str | None:
    """Start a run of ``deployment`` now, unless it is missing or paused; the run's name."""
    with _client() as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return None
        if _paused(found):
            return None
        return client.create_flow_run_from_deployment(found.id).name


def _main(argv: list[str]) -> int:
    """``python -m flows.control ensure-pool|after-deploy|run-now``, the steps ``ost up`` runs."""
    from ost.settings import load_settings  # only the CLI entry needs it

    if argv == ["ensure-pool"]:
        created = ensure_work_pool()
        print(f"work pool {WORK_POOL}: {'created' if created else 'exists'}")  # CLI
        return EXIT_OK
    if argv == ["after-deploy"]:
        disabled = load_settings().disable_scheduler
        state = reassert_pauses(force=disabled)
        why = " (OST_DISABLE_SCHEDULER=true)" if disabled else ""
        print(f"{state.deployment}: {'paused' if state.paused else 'scheduled'}{why}")
        return EXIT_OK
    if argv == ["run-now"]:
        name = run_now()
        done = f"flow run {name!r} created" if name else "paused or not deployed, no run started"
        print(f"{INGEST_DEPLOYMENT}: {done}")
        return EXIT_OK
    print("usage: python -m flows.control ensure-pool|after-deploy|run-now", file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

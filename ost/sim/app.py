"""The simulator as one ASGI app: the Starlette routes behind the :class:`~ost.sim.gate.Gate`."""

from __future__ import annotations

from starlette.applications import Starlette

from ost.sim.config import SimConfig
from ost.sim.gate import ASGIApp, Gate
from ost.sim.routes import ROUTES
from ost.sim.state import SimState


def create_app(config: SimConfig | None = None) -> tuple[ASGIApp, SimState]:
    """A fresh simulator app and the state it serves from."""
    state = SimState(config or SimConfig())
    routes = Starlette(routes=ROUTES)
    routes.state.sim = state
    return Gate(routes, state), state

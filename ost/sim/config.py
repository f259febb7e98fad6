"""The simulator's settings: rate limit, latency, clock and faults, with their defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ost.errors import BadInput
from ost.sim.faults import parse_faults


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator behaves; every field can also be changed at run time (``/_sim/config``).

    ``faults`` is a SPEC string (see :mod:`ost.sim.faults`); ``seed`` fixes the fault draws.
    ``clock_offset_ms`` is added to the real time to make the server's clock.
    """

    weight_limit: int = 6000
    weight_window_s: int = 60
    latency_ms: float = 0.0
    clock_offset_ms: int = 0
    faults: str = ""
    seed: int = 0
    ban_after: int = 2
    ban_windows: int = 2

    def __post_init__(self) -> None:
        if self.weight_limit < 1:
            raise BadInput(f"weight limit {self.weight_limit} must be at least 1")
        if self.weight_window_s < 1:
            raise BadInput(f"weight window {self.weight_window_s}s must be at least 1 second")
        if self.latency_ms < 0:
            raise BadInput(f"latency {self.latency_ms} ms must not be negative")
        if self.ban_after < 0 or self.ban_windows < 1:
            raise BadInput("ban_after must be ≥ 0 and ban_windows ≥ 1")
        parse_faults(self.faults)  # a bad SPEC fails here, before the server starts

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return asdict(self)

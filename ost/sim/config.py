"""The simulator's settings: rate limit, latency, clock, faults and stopped symbols."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from ost.errors import BadInput
from ost.sim.faults import parse_faults
from ost.sim.symbols import find_listing

#: What a stopped symbol becomes: Binance's status ``BREAK`` or ``HALT`` (exchangeInfo says so,
#: and its candles stop), or ``DELISTED`` (gone from exchangeInfo; klines answer -1121).
STOPPED_STATUSES: Final = ("BREAK", "HALT", "DELISTED")


def parse_stopped(spec: str) -> dict[str, str]:
    """``ETHBTC=BREAK,XRPUSDT=DELISTED`` (a bare symbol: ``BREAK``) as symbol -> status."""
    stopped: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        symbol, _, status = (piece.strip() for piece in item.partition("="))
        status = status or "BREAK"
        if find_listing(symbol) is None:
            raise BadInput(f"stopped: the simulator does not list {symbol!r}")
        if status not in STOPPED_STATUSES:
            raise BadInput(f"stopped: {item!r}: the status is one of {', '.join(STOPPED_STATUSES)}")
        stopped[symbol] = status
    return stopped


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator behaves; every field can also be changed at run time (``/_sim/config``).

    ``faults`` is a SPEC string (see :mod:`ost.sim.faults`); ``seed`` fixes the fault draws.
    ``clock_offset_ms`` is added to the real time to make the server's clock. ``stopped`` lists
    symbols that stop trading when it is set (:func:`parse_stopped`): from that instant their
    status is the one given and they have no more candles (or, ``DELISTED``, no answer at all).
    ``cpu_per_request_ms`` is server CPU burnt (not slept) on every API and archive request, in
    the event loop: a slower exchange stand-in, whose requests queue for its one core.
    """

    weight_limit: int = 6000
    weight_window_s: int = 60
    latency_ms: float = 0.0
    clock_offset_ms: int = 0
    faults: str = ""
    seed: int = 0
    ban_after: int = 2
    ban_windows: int = 2
    stopped: str = ""
    cpu_per_request_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.weight_limit < 1:
            raise BadInput(f"weight limit {self.weight_limit} must be at least 1")
        if self.weight_window_s < 1:
            raise BadInput(f"weight window {self.weight_window_s}s must be at least 1 second")
        if self.latency_ms < 0:
            raise BadInput(f"latency {self.latency_ms} ms must not be negative")
        if self.cpu_per_request_ms < 0:
            raise BadInput(f"CPU per request {self.cpu_per_request_ms} ms must not be negative")
        if self.ban_after < 0 or self.ban_windows < 1:
            raise BadInput("ban_after must be ≥ 0 and ban_windows ≥ 1")
        parse_faults(self.faults)  # a bad SPEC fails here, before the server starts
        parse_stopped(self.stopped)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return asdict(self)

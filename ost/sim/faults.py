"""Fault injection: which faults are armed, their SPEC syntax, and which one fires on a request.

SPEC syntax (``ost sim --faults SPEC``, ``POST /_sim/faults``)::

    SPEC  := FAULT (";" FAULT)*
    FAULT := KIND [":" KEY "=" VALUE ("," KEY "=" VALUE)*]

for example ``5xx:rate=0.5,count=3;slow:rate=1,delay=2;down``. Keys, all optional:

``rate``   probability (0..1) that the fault fires on a request it applies to; default 1
``count``  how many times at most it fires; default unlimited
``delay``  seconds, for ``slow``: how long before answering; default 2
``status`` HTTP status, for ``5xx`` (500, 502 or 503; default: one of them at random) and
           ``html`` (default 200)
``scope``  ``api`` (``/api/...``), ``data`` (the ``/data/...`` archive) or ``all``; default
           ``data`` for ``corrupt_zip``, ``api`` for the rest
``mode``   for ``impossible``: ``high_low`` (a row's high below its low) or ``misaligned`` (an
           open_time off the interval grid); default: one of them at random
``offset`` seconds, signed, for ``clock``: how far ``/api/v3/time`` lies (``7200``: 2 h ahead,
           ``-7200``: 2 h behind); default 0
``bps``    bytes per second, for ``trickle``: how fast the body comes; default 2
``retry_after`` for ``ratelimit``: the ``Retry-After`` header, sent as written (seconds, an HTTP
           date, ``-5``, ``soon``...); default ``60``. A date holds commas, which SPEC cannot: arm
           it as JSON, ``[{"kind": "ratelimit", "retry_after": "Wed, 21 Oct 2026 07:28:00 GMT"}]``

Kinds:

``5xx``         an error status with Binance's JSON error (503) or a proxy's HTML page (500/502)
``slow``        the normal answer, after ``delay`` seconds (longer than a client's timeout)
``reset``       the connection is dropped without any response (the client sees a transport error)
``truncated``   a 200 whose body is the first half of the normal one (bad JSON, or a bad zip)
``html``        an HTML error page with content-type text/html (status 200 unless ``status``)
``impossible``  a 200 klines body with well-formed rows, one of them impossible (klines only)
``down``        a dead host: every request's connection is dropped before any response
``corrupt_zip`` an archive ``.zip`` whose bytes no longer match its ``.CHECKSUM``
``clock``       ``/api/v3/time`` answers the server's time plus ``offset`` seconds, while the
                candles keep the true time (a host or a proxy whose clock is wrong)
``empty``       a klines answer of ``200 []`` instead of its candles (a host that lost its data)
``cap500``      klines pages of at most 500 rows whatever the ``limit``: each request is served as
                if it had no ``limit``, so Binance's default page
                (:data:`ost.sim.market.DEFAULT_LIMIT`), as through a proxy that drops it
``refuse``      the host refuses this client, as Binance does: ``status=451`` (default; Binance's
                JSON "Service unavailable from a restricted location") or ``status=403`` (its
                WAF's CloudFront page); before rate limiting, so it spends no weight
``ratelimit``   a 429 (or ``status=418``) with Binance's -1003 JSON and ``Retry-After:
                retry_after``, before rate limiting (the limiter's own 429s come without it)
``trickle``     the normal answer, its headers at once and its body ``bps`` bytes a second (until
                the client goes away)

A request fires at most one fault: the first armed one that applies and wins its draw. Faults
never touch the admin endpoints (``/_sim/...``), so a test can always lift them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Final

from ost.errors import BadInput

KINDS: Final = (
    "5xx",
    "slow",
    "reset",
    "truncated",
    "html",
    "impossible",
    "down",
    "corrupt_zip",
    "clock",
    "empty",
    "cap500",
    "refuse",
    "ratelimit",
    "trickle",
)
#: Kinds that only touch ``/api/v3/klines`` answers.
KLINES_ONLY: Final = frozenset({"impossible", "empty", "cap500"})
#: Kinds that drop the connection: they fire before rate limiting (a dead host counts nothing).
ABORTING: Final = frozenset({"reset", "down"})
#: Kinds that answer before rate limiting: a refusal or a rate limit spends no weight.
REFUSING: Final = frozenset({"refuse", "ratelimit"})
#: The statuses each kind may answer with, where it is not any HTTP status, and its default.
_STATUSES: Final = {"refuse": (451, 403), "ratelimit": (429, 418)}
SCOPES: Final = ("api", "data", "all")
MODES: Final = ("high_low", "misaligned")
_SERVER_ERRORS: Final = (500, 502, 503)


@dataclass(slots=True)
class Fault:
    """One armed fault; ``count`` is how many more times it may fire (None: unlimited)."""

    kind: str
    rate: float = 1.0
    count: int | None = None
    delay: float = 2.0
    status: int | None = None
    scope: str = ""
    mode: str | None = None
    offset: float = 0.0
    bps: float = 2.0
    retry_after: str = "60"
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"unknown fault kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise BadInput(f"fault {self.kind}: rate {self.rate} is not between 0 and 1")
        if self.count is not None and self.count < 0:
            raise BadInput(f"fault {self.kind}: count {self.count} is negative")
        if self.delay < 0:
            raise BadInput(f"fault {self.kind}: delay {self.delay} is negative")
        if not self.bps > 0:
            raise BadInput(f"fault {self.kind}: bps {self.bps} is not positive")
        self.scope = self.scope or ("data" if self.kind == "corrupt_zip" else "api")
        if self.scope not in SCOPES:
            raise BadInput(f"fault {self.kind}: scope {self.scope!r} is not one of {SCOPES}")
        if self.mode is not None and self.mode not in MODES:
            raise BadInput(f"fault {self.kind}: mode {self.mode!r} is not one of {MODES}")
        self._check_status()

    def _check_status(self) -> None:
        if self.status is None:
            return
        if self.kind == "5xx" and self.status not in _SERVER_ERRORS:
            raise BadInput(f"fault 5xx: status {self.status} is not one of {_SERVER_ERRORS}")
        allowed = _STATUSES.get(self.kind)
        if allowed is not None and self.status not in allowed:
            raise BadInput(f"fault {self.kind}: status {self.status} is not one of {allowed}")
        if not 200 <= self.status <= 599:
            raise BadInput(f"fault {self.kind}: status {self.status} is not an HTTP status")

    def applies_to(self, path: str) -> bool:
        """Whether this fault can fire on a request for ``path``."""
        in_scope = (self.scope in ("api", "all") and path.startswith("/api/")) or (
            self.scope in ("data", "all") and path.startswith("/data/")
        )
        if not in_scope:
            return False
        if self.kind in KLINES_ONLY:
            return path == "/api/v3/klines"
        if self.kind == "corrupt_zip":
            return path.endswith(".zip")
        if self.kind == "clock":
            return path == "/api/v3/time"
        return True

    def as_dict(self) -> dict[str, Any]:
        """The fault as JSON-ready data."""
        return asdict(self)


_NUMBER_KEYS: Final = {
    "rate": float,
    "delay": float,
    "count": int,
    "status": int,
    "offset": float,
    "bps": float,
}
_TEXT_KEYS: Final = ("scope", "mode", "retry_after")


def parse_faults(spec: str) -> list[Fault]:
    """The faults of a SPEC string (see the module docstring); an empty SPEC means none."""
    return [_parse_one(part.strip()) for part in spec.split(";") if part.strip()]


def _parse_one(text: str) -> Fault:
    kind, _, options = text.partition(":")
    values: dict[str, Any] = {}
    for item in filter(None, (option.strip() for option in options.split(","))):
        key, equals, value = (piece.strip() for piece in item.partition("="))
        if not equals or not value:
            raise BadInput(f"fault {kind!r}: option {item!r} is not KEY=VALUE")
        values[key] = value
    return fault_from_mapping({"kind": kind.strip(), **values})


def fault_from_mapping(data: dict[str, Any]) -> Fault:
    """A fault from a JSON object such as ``{"kind": "5xx", "rate": 0.5, "count": 3}``."""
    unknown = set(data) - {"kind", *_NUMBER_KEYS, *_TEXT_KEYS}
    if unknown:
        raise BadInput(f"fault {data.get('kind')!r}: unknown option(s) {sorted(unknown)}")
    values: dict[str, Any] = {"kind": str(data.get("kind", ""))}
    for key, kind in _NUMBER_KEYS.items():
        if data.get(key) is not None:
            values[key] = _number(values["kind"], key, data[key], kind)
    values.update({key: str(data[key]) for key in _TEXT_KEYS if data.get(key) is not None})
    return Fault(**values)


def _number(kind: str, key: str, value: Any, cast: type[int] | type[float]) -> int | float:
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise BadInput(f"fault {kind!r}: {key}={value!r} is not a number") from None


def faults_from_json(payload: Any) -> list[Fault]:
    """Faults from an admin request body: a SPEC string, a list of objects, or ``{"spec": ..}``."""
    if isinstance(payload, str):
        return parse_faults(payload)
    if isinstance(payload, dict) and "spec" in payload:
        return parse_faults(str(payload["spec"]))
    if isinstance(payload, dict):
        payload = [payload]
    if isinstance(payload, list):
        return [
            fault_from_mapping(item) if isinstance(item, dict) else _parse_one(str(item))
            for item in payload
        ]
    raise BadInput("faults must be a SPEC string, a list of fault objects, or {'spec': SPEC}")


class FaultBook:
    """The armed faults and the random draws that decide when they fire."""

    def __init__(self, faults: Iterable[Fault] = (), seed: int = 0) -> None:
        self.faults = list(faults)
        self.random = random.Random(seed)
        self.fired: dict[str, int] = {}

    def arm(self, faults: Iterable[Fault]) -> None:
        """Replace the armed faults."""
        self.faults = list(faults)

    def pick(self, path: str, *, aborting: bool, refusing: bool = False) -> Fault | None:
        """The fault that fires on this request, among the aborting, refusing or other kinds.

        Refusing kinds (:data:`REFUSING`) answer before rate limiting.
        """
        for fault in self.faults:
            if (fault.kind in ABORTING) != aborting or (fault.kind in REFUSING) != refusing:
                continue
            if not fault.applies_to(path):
                continue
            if fault.count == 0 or self.random.random() >= fault.rate:
                continue
            if fault.count is not None:
                fault.count -= 1
            fault.fired += 1
            self.fired[fault.kind] = self.fired.get(fault.kind, 0) + 1
            return fault
        return None

    @staticmethod
    def status_of(fault: Fault) -> int:
        """The status a ``refuse`` or ``ratelimit`` fault answers with (its kind's default)."""
        return fault.status or _STATUSES[fault.kind][0]

    def server_error_status(self, fault: Fault) -> int:
        """The status a ``5xx`` fault answers with."""
        return fault.status or self.random.choice(_SERVER_ERRORS)

    def impossible_mode(self, fault: Fault) -> str:
        """How an ``impossible`` fault breaks a row."""
        return fault.mode or self.random.choice(MODES)

"""The runbook's escalation ladder as a pure function: (state, observations) -> (state, messages).

Levels (``docs/runbooks/binance-caido.md``), by how long ingestion has been down:

=========  ==============  ==============================================================
level      down for        what happens
=========  ==============  ==============================================================
normal     < monitor       nothing: retries and the next run handle it
monitor    monitor-alert   nothing is sent; visible in ``ost status`` and the metrics
alert      alert-escalate  one message tagged ``alert``
escalate   >= escalate     one message tagged ``escalate``, naming the runbook's next steps
recovery   back to healthy one message (to the tags notified) saying how long it was down
=========  ==============  ==============================================================

**Down since** (per stream): the earliest of

- ``failing_since``: the first failure recorded after the last success;
- when no run happened at all (worker or scheduler down): if the last success (or, for a stream
  that never succeeded, the moment the ledger first knew of it) is older than ``cadence +
  monitor``, the stream counts as down since ``last success + cadence``, when the next run was
  due. So a silent stream reaches *monitor* exactly when it is ``monitor`` overdue.

Overall, ingestion is down since the earliest stream went down, and its level is the highest of
the streams' levels. An **outage** lasts from then until every configured stream is healthy
again; each level is notified at most once per outage, whatever the restarts, because the
ladder's state (levels already notified, outage start) is persisted in the ledger and this
module is a pure function of it.

**Skipped levels.** An outage first seen past the escalate threshold (the watchdog was down too)
sends the ``alert`` message and then the ``escalate`` one: each audience (targets tagged
``alert``, targets tagged ``escalate``) hears of every outage once, and the invariant stays
simple: one message per level per outage.

The recovery message is sent only if an alert or escalation was delivered for the outage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Final

from ost.ledger import LadderRecord, Stream, StreamState

if TYPE_CHECKING:
    from ost.settings import Settings

DEFAULT_CADENCE: Final = dt.timedelta(minutes=15)
MAX_LISTED_STREAMS: Final = 20
RUNBOOK: Final = "docs/runbooks/binance-caido.md"


class Level(IntEnum):
    """The escalation levels; values are those of the ``ost_escalation_level`` gauge."""

    NORMAL = 0
    MONITOR = 1
    ALERT = 2
    ESCALATE = 3


class Kind(StrEnum):
    """What a message is; ``alert`` and ``escalate`` are also the apprise tags they go to."""

    ALERT = "alert"
    ESCALATE = "escalate"
    RECOVERY = "recovery"


NOTIFIED_LEVELS: Final = {Kind.ALERT: Level.ALERT, Kind.ESCALATE: Level.ESCALATE}


@dataclass(frozen=True)
class Thresholds:
    """How long ingestion must be down to reach each level."""

    monitor: dt.timedelta = dt.timedelta(minutes=15)
    alert: dt.timedelta = dt.timedelta(minutes=30)
    escalate: dt.timedelta = dt.timedelta(minutes=60)

    def level_for(self, down_for: dt.timedelta) -> Level:
        """The level of an outage that has lasted ``down_for``."""
        if down_for >= self.escalate:
            return Level.ESCALATE
        if down_for >= self.alert:
            return Level.ALERT
        if down_for >= self.monitor:
            return Level.MONITOR
        return Level.NORMAL


@dataclass(frozen=True)
class LadderConfig:
    """The configured streams, the thresholds, and the schedule's cadence."""

    streams: tuple[Stream, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    cadence: dt.timedelta = DEFAULT_CADENCE

    @classmethod
    def from_settings(
        cls, settings: Settings, cadence: dt.timedelta = DEFAULT_CADENCE
    ) -> LadderConfig:
        """Every ``OST_SYMBOLS`` x ``OST_INTERVALS`` stream, with the ``OST_ESCALATION_*``."""
        return cls(
            streams=tuple((s, i) for s in settings.symbols for i in settings.intervals),
            thresholds=Thresholds(
                monitor=settings.escalation_monitor_after,
                alert=settings.escalation_alert_after,
                escalate=settings.escalation_escalate_after,
            ),
            cadence=cadence,
        )


@dataclass(frozen=True)
class LadderState:
    """What the ladder remembers between evaluations (persisted in the ledger)."""

    level: Level = Level.NORMAL
    outage_since: dt.datetime | None = None
    #: The levels (``alert``, ``escalate``) already delivered during this outage.
    notified: frozenset[Kind] = frozenset()

    @classmethod
    def from_record(cls, record: LadderRecord) -> LadderState:
        """The state as the ledger stored it (unknown names are ignored)."""
        known = {kind.value: kind for kind in NOTIFIED_LEVELS}
        return cls(
            level=Level(max(Level.NORMAL, min(Level.ESCALATE, record.level))),
            outage_since=record.outage_since,
            notified=frozenset(known[name] for name in record.notified if name in known),
        )

    def to_record(self, at: dt.datetime) -> LadderRecord:
        """The state as the ledger stores it."""
        return LadderRecord(
            level=int(self.level),
            outage_since=self.outage_since,
            notified=frozenset(kind.value for kind in self.notified),
            updated_at=at,
        )


@dataclass(frozen=True)
class StreamHealth:
    """One configured stream as the ladder sees it at ``now``."""

    symbol: str
    interval: str
    level: Level
    down_since: dt.datetime | None
    #: True when no run has recorded anything for longer than ``cadence + monitor``.
    overdue: bool
    state: StreamState

    @property
    def down(self) -> bool:
        """Whether the stream is failing or overdue (at any level, even below monitor)."""
        return self.down_since is not None


@dataclass(frozen=True)
class Message:
    """A notification due: its kind and level, the apprise tags it goes to, its text."""

    kind: Kind
    level: Level
    tags: tuple[str, ...]
    title: str
    body: str


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: the health of every stream, the state to keep, the messages due."""

    now: dt.datetime
    level: Level
    down_since: dt.datetime | None
    streams: tuple[StreamHealth, ...]
    #: The state once nothing of ``messages`` is delivered; apply :func:`mark_sent` per delivery.
    state: LadderState
    messages: tuple[Message, ...]


def stream_health(now: dt.datetime, config: LadderConfig, state: StreamState) -> StreamHealth:
    """The level of one stream at ``now`` (see the module docstring for *down since*)."""
    reference = state.last_success_at or state.known_since
    overdue = (
        reference is not None and now - reference >= config.cadence + config.thresholds.monitor
    )
    candidates = [state.failing_since] if state.failing_since is not None else []
    if overdue and reference is not None:
        candidates.append(reference + config.cadence)
    down_since = min(candidates, default=None)
    level = Level.NORMAL if down_since is None else config.thresholds.level_for(now - down_since)
    return StreamHealth(state.symbol, state.interval, level, down_since, overdue, state)


def evaluate(
    now: dt.datetime,
    config: LadderConfig,
    states: Mapping[Stream, StreamState],
    ladder: LadderState,
    *,
    gaps_healed: bool | None = None,
) -> Evaluation:
    """Where the ladder stands at ``now``, and what is due (nothing is marked as sent)."""
    health = tuple(
        stream_health(now, config, states.get(stream) or StreamState(*stream))
        for stream in config.streams
    )
    down = [item for item in health if item.down_since is not None]
    level = max((item.level for item in health), default=Level.NORMAL)
    if down:
        down_since = min(item.down_since for item in down if item.down_since is not None)
        outage_since = min(ladder.outage_since or down_since, down_since)
        state = LadderState(level, outage_since, ladder.notified)
        messages = _escalations(now, level, outage_since, down, ladder.notified)
        return Evaluation(now, level, down_since, health, state, messages)
    if not ladder.notified:
        return Evaluation(now, level, None, health, LadderState(), ())
    state = LadderState(Level.NORMAL, ladder.outage_since, ladder.notified)
    recovery = _recovery(now, health, state, gaps_healed)
    return Evaluation(now, level, None, health, state, (recovery,))


def mark_sent(state: LadderState, message: Message) -> LadderState:
    """The state once ``message`` was delivered (or had nowhere to go)."""
    if message.kind is Kind.RECOVERY:
        return replace(state, outage_since=None, notified=frozenset())
    return replace(state, notified=state.notified | {message.kind})


def step(
    now: dt.datetime,
    config: LadderConfig,
    states: Mapping[Stream, StreamState],
    ladder: LadderState,
    *,
    gaps_healed: bool | None = None,
) -> tuple[LadderState, tuple[Message, ...]]:
    """(state, observations) -> (new state, messages due), assuming every message delivered."""
    evaluation = evaluate(now, config, states, ladder, gaps_healed=gaps_healed)
    state = evaluation.state
    for message in evaluation.messages:
        state = mark_sent(state, message)
    return state, evaluation.messages


# ---- the messages -----------------------------------------------------------------------------


def _escalations(
    now: dt.datetime,
    level: Level,
    outage_since: dt.datetime,
    down: list[StreamHealth],
    notified: frozenset[Kind],
) -> tuple[Message, ...]:
    """The alert and escalate messages due: each level reached and not yet notified."""
    due = [
        kind
        for kind, threshold in NOTIFIED_LEVELS.items()
        if level >= threshold and kind not in notified
    ]
    return tuple(_escalation(kind, now, outage_since, down) for kind in due)


def _escalation(
    kind: Kind, now: dt.datetime, outage_since: dt.datetime, down: list[StreamHealth]
) -> Message:
    lasted = human_duration(now - outage_since)
    title = f"ost-ingest {kind.value.upper()}: Binance ingestion down for {lasted}"
    lines = [
        f"Binance candle ingestion has been down for {lasted}, since {_clock(outage_since)}.",
        "",
        *_stream_lines(now, down),
        "",
        *(_ALERT_STEPS if kind is Kind.ALERT else _ESCALATE_STEPS),
    ]
    return Message(kind, NOTIFIED_LEVELS[kind], (kind.value,), title, "\n".join(lines))


_ALERT_STEPS: Final = (
    f"Runbook {RUNBOOK}, 30-60 min down:",
    "- check Binance and the network: `ost ping`;",
    "- retry by hand: `ost ingest`;",
    "- if errors keep storming, consider pausing the schedule: `ost schedule pause`.",
)
_ESCALATE_STEPS: Final = (
    f"Runbook {RUNBOOK}, over 60 min down: next steps",
    "1. Pause the schedule: `ost schedule pause` (later `ost schedule resume`).",
    "2. Use cached data: the Parquet store keeps serving the last valid candles; see what is"
    " there with `ost gaps --interval 1d --days 7`.",
    "3. Escalate to the team; consider alternative or backup data.",
)


def _stream_lines(now: dt.datetime, down: Iterable[StreamHealth]) -> list[str]:
    items = sorted(down, key=lambda item: (item.down_since or now, item.symbol, item.interval))
    lines = ["Streams down:"]
    for item in items[:MAX_LISTED_STREAMS]:
        lines.append(f"- {item.symbol} {item.interval}: {_why(item)}")
    if len(items) > MAX_LISTED_STREAMS:
        lines.append(f"- ... and {len(items) - MAX_LISTED_STREAMS} more (`ost status`)")
    return lines


def _why(item: StreamHealth) -> str:
    state = item.state
    last = _clock(state.last_success_at) if state.last_success_at else "never"
    if state.failing_since is not None:
        reason = state.last_reason or "error"
        return f"failing ({reason}) since {_clock(state.failing_since)}; last success {last}"
    if state.last_attempt_at is None:
        return f"no run recorded; last success {last}"
    return f"no run since {_clock(state.last_attempt_at)}; last success {last}"


def _recovery(
    now: dt.datetime,
    health: tuple[StreamHealth, ...],
    state: LadderState,
    gaps_healed: bool | None,
) -> Message:
    """The recovery message: how long ingestion was down, and whether the gaps healed."""
    successes = [item.state.last_success_at for item in health if item.state.last_success_at]
    recovered_at = min(max(successes, default=now), now)
    since = state.outage_since or recovered_at
    lasted = human_duration(recovered_at - since)
    tags = tuple(kind.value for kind in (Kind.ALERT, Kind.ESCALATE) if kind in state.notified)
    lines = [
        f"Binance candle ingestion recovered at {_clock(recovered_at)} after being down for"
        f" {lasted} (since {_clock(since)}). Every stream is ingesting again.",
        _GAPS_LINES[gaps_healed],
        "If the schedule was paused, resume it: `ost schedule resume`.",
    ]
    title = f"ost-ingest RECOVERED: Binance ingestion back after {lasted}"
    return Message(Kind.RECOVERY, Level.NORMAL, tags, title, "\n".join(lines))


_GAPS_LINES: Final[dict[bool | None, str]] = {
    True: "Gaps healed: the store has every candle of the outage.",
    False: "Gaps NOT healed: fill them with `ost gaps --interval all --days 1 --repair`.",
    None: "Gaps not checked: check with `ost gaps --interval all --days 1` (add --repair).",
}


def human_duration(span: dt.timedelta) -> str:
    """``45 s``, ``31 min``, ``1 h 5 min``, ``2 d 3 h``: a duration for people."""
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def _clock(at: dt.datetime | None) -> str:
    return "-" if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

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
  due. So a silent stream reaches *monitor* exactly when it is ``monitor`` overdue;
- when the stream is **stale** (see :func:`freshness`): runs may succeed, but the store lacks
  closed candles that Binance should have. Its *lag* is the time from the close of its newest
  stored candle to now; it is stale once its first missing candle closed more than
  ``stale_grace`` ago (``OST_STALE_GRACE``, 20 min: the 15-minute schedule plus 5 minutes for a
  run to be picked up and finish), i.e. once ``lag >= length of that candle + stale_grace``. It
  counts as down since then: the close of the first missing candle plus the grace. A 1d or 1M
  stream is legitimately far behind *now*: it is measured against the newest candle that should
  be closed by now, never against now itself. A stream with no stored candle at all is stale from
  ``known_since + stale_grace``.

Overall, ingestion is down since the earliest stream went down, and its level is the highest of
the streams' levels. An **outage** lasts from then until every configured stream is healthy
again; each level is notified at most once per outage, whatever the restarts, because the
ladder's state (levels already notified, outage start) is persisted in the ledger and this
module is a pure function of it.

**Skipped levels.** An outage first seen past the escalate threshold (the watchdog was down too)
sends the ``alert`` message and then the ``escalate`` one: each audience (targets tagged
``alert``, targets tagged ``escalate``) hears of every outage once, and the invariant stays
simple: one message per level per outage.

The recovery message is sent only if an alert or escalation was delivered for the outage. It
carries the result of a gap check over the outage (:class:`OutageGaps`, made by the watchdog),
and every message states the real duration of the outage and its level with the thresholds in
force (compressed thresholds included).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Final

from ost import intervals
from ost.intervals import Stream
from ost.ledger import StreamState
from ost.settings import DEFAULT_STALE_GRACE
from ost.timefmt import alert_time, human_duration, report_time
from ost.universe import known_symbols

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
    """The configured streams, the thresholds, the schedule's cadence, the staleness grace."""

    streams: tuple[Stream, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    cadence: dt.timedelta = DEFAULT_CADENCE
    stale_grace: dt.timedelta = DEFAULT_STALE_GRACE

    @classmethod
    def from_settings(
        cls, settings: Settings, cadence: dt.timedelta = DEFAULT_CADENCE
    ) -> LadderConfig:
        """Every ``OST_SYMBOLS`` x ``OST_INTERVALS`` stream, ``OST_ESCALATION_*``, the grace.

        ``OST_SYMBOLS`` as far as is known without asking Binance
        (:func:`ost.universe.known_symbols`): patterns from the listing kept, and no symbol that
        stopped trading, so an ended stream is never stale.
        """
        return cls(
            streams=tuple(
                Stream(s, i) for s in known_symbols(settings) for i in settings.intervals
            ),
            thresholds=Thresholds(
                monitor=settings.escalation_monitor_after,
                alert=settings.escalation_alert_after,
                escalate=settings.escalation_escalate_after,
            ),
            cadence=cadence,
            stale_grace=settings.stale_grace,
        )


@dataclass(frozen=True)
class LadderState:
    """What the ladder remembers between evaluations, kept in the ledger as a JSON object.

    The object is ``{"level": 0-3, "outage_since": Unix time or null, "notified": [names]}``
    (:meth:`to_json`); the ledger stores it without reading it (:meth:`ost.ledger.Ledger.ladder`).
    """

    level: Level = Level.NORMAL
    outage_since: dt.datetime | None = None
    #: The levels (``alert``, ``escalate``) already delivered during this outage.
    notified: frozenset[Kind] = frozenset()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LadderState:
        """The state that :meth:`to_json` made; an empty object (none kept) is the initial one.

        A level out of range is clamped, and an unknown name in ``notified`` is ignored.
        """
        known = {kind.value: kind for kind in NOTIFIED_LEVELS}
        since = data.get("outage_since")
        return cls(
            level=Level(max(Level.NORMAL, min(Level.ESCALATE, int(data.get("level", 0))))),
            outage_since=None if since is None else dt.datetime.fromtimestamp(since, tz=dt.UTC),
            notified=frozenset(known[name] for name in data.get("notified", ()) if name in known),
        )

    def to_json(self) -> dict[str, Any]:
        """The state as the ledger keeps it; a naive ``outage_since`` is refused, not guessed."""
        since = self.outage_since
        if since is not None and since.tzinfo is None:
            raise ValueError(f"{since!r} is naive: the ladder keeps aware datetimes")
        return {
            "level": int(self.level),
            "outage_since": None if since is None else since.timestamp(),
            "notified": sorted(kind.value for kind in self.notified),
        }


@dataclass(frozen=True)
class Freshness:
    """How fresh one stream's stored candles are at ``now`` (see the module docstring)."""

    #: Open time of the newest stored candle (None: nothing stored).
    newest_open: dt.datetime | None
    #: Its close: when the candle after it opens (Binance's ``close_time`` is 1 ms before).
    newest_close: dt.datetime | None
    #: Open time of the newest candle that Binance should have closed by ``now``.
    expected_open: dt.datetime
    #: Closed candles after the newest stored one, up to ``expected_open`` (None: nothing stored).
    behind: int | None
    #: ``now`` minus ``newest_close`` (None: nothing stored).
    lag: dt.timedelta | None
    #: The lag from which the stream is stale: its first missing candle's length plus the grace.
    stale_after: dt.timedelta | None
    #: When the stream went (or will go) stale: its first missing candle's close plus the grace.
    stale_since: dt.datetime | None
    stale: bool


class Condition(StrEnum):
    """What ``ost status`` says of a stream: the first that applies, in this order."""

    FAILING = "failing"
    #: No run recorded anything for longer than ``cadence + monitor`` (worker, schedule down).
    OVERDUE = "overdue"
    #: Runs may succeed, but closed candles are missing beyond the grace.
    STALE = "stale"
    OK = "ok"


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
    freshness: Freshness

    @property
    def down(self) -> bool:
        """Whether the stream is failing, overdue or stale (at any level, even below monitor)."""
        return self.down_since is not None

    @property
    def stale(self) -> bool:
        """Whether closed candles that Binance should have are missing beyond the grace."""
        return self.freshness.stale

    @property
    def condition(self) -> Condition:
        """Failing, overdue, stale or ok: the first that applies."""
        if self.state.failing_since is not None:
            return Condition.FAILING
        if self.overdue:
            return Condition.OVERDUE
        return Condition.STALE if self.stale else Condition.OK


@dataclass(frozen=True)
class OutageGaps:
    """A gap check of the configured streams over an outage, from ``since`` to their newest candle.

    Made by the watchdog (:mod:`ost.gaps` over the store) when a recovery is due, so that the
    recovery message says whether the candles missed during the outage are all stored again.
    """

    #: The earliest open time checked.
    since: dt.datetime
    #: How many streams were checked.
    checked: int
    #: The streams with candles still missing, and how many (exchange-side gaps excepted).
    missing: tuple[tuple[Stream, int], ...] = ()
    #: The streams that could not be checked, and why.
    unchecked: tuple[tuple[Stream, str], ...] = ()

    @property
    def healed(self) -> bool:
        """Whether every stream was checked and none misses a candle."""
        return not self.missing and not self.unchecked


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


def freshness(
    now: dt.datetime,
    interval: str,
    newest_open_ms: int | None,
    grace: dt.timedelta,
    known_since: dt.datetime | None = None,
) -> Freshness:
    """How fresh a stream is at ``now``, given the open time of its newest stored candle."""
    now_ms = _epoch_ms(now)
    current = intervals.align(interval, now_ms)  # the candle still open at ``now``
    expected = _moment(intervals.align(interval, current - 1))
    if newest_open_ms is None:
        since = None if known_since is None else known_since + grace
        stale = since is not None and now >= since
        return Freshness(None, None, expected, None, None, None, since, stale)
    close_ms = intervals.next_open(interval, newest_open_ms)  # also the first missing open time
    first_missing_close_ms = intervals.next_open(interval, close_ms)
    since = _moment(first_missing_close_ms) + grace
    return Freshness(
        newest_open=_moment(newest_open_ms),
        newest_close=_moment(close_ms),
        expected_open=expected,
        behind=intervals.count_between(interval, close_ms, current),
        lag=now - _moment(close_ms),
        stale_after=dt.timedelta(milliseconds=first_missing_close_ms - close_ms) + grace,
        stale_since=since,
        stale=now >= since,
    )


def stream_health(now: dt.datetime, config: LadderConfig, state: StreamState) -> StreamHealth:
    """The level of one stream at ``now`` (see the module docstring for *down since*)."""
    reference = state.last_success_at or state.known_since
    overdue = (
        reference is not None and now - reference >= config.cadence + config.thresholds.monitor
    )
    fresh = freshness(
        now, state.interval, state.last_open_ms, config.stale_grace, state.known_since
    )
    candidates = [state.failing_since] if state.failing_since is not None else []
    if overdue and reference is not None:
        candidates.append(reference + config.cadence)
    if fresh.stale and fresh.stale_since is not None:
        candidates.append(fresh.stale_since)
    down_since = min(candidates, default=None)
    level = Level.NORMAL if down_since is None else config.thresholds.level_for(now - down_since)
    return StreamHealth(state.symbol, state.interval, level, down_since, overdue, state, fresh)


def evaluate(
    now: dt.datetime,
    config: LadderConfig,
    states: Mapping[Stream, StreamState],
    ladder: LadderState,
    *,
    gaps: OutageGaps | None = None,
) -> Evaluation:
    """Where the ladder stands at ``now``, and what is due (nothing is marked as sent).

    ``gaps`` is the gap check over the outage that a recovery message reports (None: unknown).
    """
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
        messages = _escalations(
            now, config, outage_since, down, level=level, notified=ladder.notified
        )
        return Evaluation(now, level, down_since, health, state, messages)
    if not ladder.notified:
        return Evaluation(now, level, None, health, LadderState(), ())
    state = LadderState(Level.NORMAL, ladder.outage_since, ladder.notified)
    recovery = _recovery(now, health, state, gaps)
    return Evaluation(now, level, None, health, state, (recovery,))


def mark_sent(state: LadderState, message: Message) -> LadderState:
    """The state once ``message`` was delivered (or had nowhere to go)."""
    if message.kind is Kind.RECOVERY:
        return replace(state, outage_since=None, notified=frozenset())
    return replace(state, notified=state.notified | {message.kind})


# ---- the messages -----------------------------------------------------------------------------


def _escalations(
    now: dt.datetime,
    config: LadderConfig,
    outage_since: dt.datetime,
    down: list[StreamHealth],
    *,
    level: Level,
    notified: frozenset[Kind],
) -> tuple[Message, ...]:
    """The alert and escalate messages due: each level reached and not yet notified."""
    due = [
        kind
        for kind, threshold in NOTIFIED_LEVELS.items()
        if level >= threshold and kind not in notified
    ]
    return tuple(_escalation(kind, now, config, outage_since, down) for kind in due)


def _escalation(
    kind: Kind,
    now: dt.datetime,
    config: LadderConfig,
    outage_since: dt.datetime,
    down: list[StreamHealth],
) -> Message:
    lasted = human_duration(now - outage_since)
    thresholds = config.thresholds
    threshold = thresholds.alert if kind is Kind.ALERT else thresholds.escalate
    title = f"ost-ingest {kind.value.upper()}: Binance ingestion down for {lasted}"
    level_line = (
        f"Level {kind.value}: down for at least {human_duration(threshold)}"
        f" (monitor after {human_duration(thresholds.monitor)}, alert after"
        f" {human_duration(thresholds.alert)}, escalate after"
        f" {human_duration(thresholds.escalate)})."
    )
    lines = [
        f"Binance candle ingestion has been down for {lasted}, since {alert_time(outage_since)}.",
        level_line,
        "",
        *_stream_lines(now, down),
        "",
        *(_ALERT_STEPS if kind is Kind.ALERT else _ESCALATE_STEPS),
    ]
    return Message(kind, NOTIFIED_LEVELS[kind], (kind.value,), title, "\n".join(lines))


_ALERT_STEPS: Final = (
    f"Runbook {RUNBOOK}, level alert:",
    "- check Binance and the network: `ost ping`;",
    "- see which streams are failing or stale, and their lag: `ost status`;",
    "- retry by hand: `ost ingest`;",
    "- if errors keep storming, consider pausing the schedule: `ost schedule pause`.",
)
_ESCALATE_STEPS: Final = (
    f"Runbook {RUNBOOK}, level escalate: next steps",
    "1. Pause the schedule: `ost schedule pause` (later `ost schedule resume`).",
    "2. Use cached data: the Parquet store keeps serving the last valid candles; how old they"
    " are per stream is the lag column of `ost status`, what is missing"
    " `ost gaps --interval 1d --days 7`.",
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
    parts: list[str] = []
    if state.failing_since is not None:
        reason = state.last_reason or "error"
        parts.append(f"failing ({reason}) since {alert_time(state.failing_since)}")
    elif item.overdue and state.last_attempt_at is None:
        parts.append("no run recorded")
    elif item.overdue:
        parts.append(f"no run since {alert_time(state.last_attempt_at)}")
    if item.stale:
        parts.append(_staleness(item.freshness))
    last = alert_time(state.last_success_at) if state.last_success_at else "never"
    parts.append(f"last success {last}")
    return "; ".join(parts)


def _staleness(fresh: Freshness) -> str:
    since = alert_time(fresh.stale_since)
    if fresh.newest_close is None or fresh.lag is None:
        return f"stale since {since}: no candle stored"
    return (
        f"stale since {since}: newest candle closed {alert_time(fresh.newest_close)}"
        f" (lag {human_duration(fresh.lag)}), {fresh.behind} closed"
        f" candle{'' if fresh.behind == 1 else 's'} not stored"
    )


def _recovery(
    now: dt.datetime,
    health: tuple[StreamHealth, ...],
    state: LadderState,
    gaps: OutageGaps | None,
) -> Message:
    """The recovery message: how long ingestion was down, and whether the gaps healed."""
    successes = [item.state.last_success_at for item in health if item.state.last_success_at]
    recovered_at = min(max(successes, default=now), now)
    since = state.outage_since or recovered_at
    lasted = human_duration(recovered_at - since)
    tags = tuple(kind.value for kind in (Kind.ALERT, Kind.ESCALATE) if kind in state.notified)
    lines = [
        f"Binance candle ingestion recovered at {alert_time(recovered_at)} after being down for"
        f" {lasted} (since {alert_time(since)}). Every stream is ingesting again, none is stale.",
        *_gaps_lines(gaps),
        "If the schedule was paused, resume it: `ost schedule resume`.",
    ]
    title = f"ost-ingest RECOVERED: Binance ingestion back after {lasted}"
    return Message(Kind.RECOVERY, Level.NORMAL, tags, title, "\n".join(lines))


def _gaps_lines(gaps: OutageGaps | None) -> list[str]:
    """What the gap check over the outage found, and the command that fixes the rest."""
    if gaps is None:
        return ["Gaps not checked: check with `ost gaps --interval all --days 1` (add --repair)."]
    start = report_time(_epoch_ms(gaps.since.replace(microsecond=0)))  # to the second
    lines = []
    if gaps.missing:
        total = sum(count for _, count in gaps.missing)
        listed = ", ".join(
            f"{s} {i}: {count}" for (s, i), count in gaps.missing[:MAX_LISTED_STREAMS]
        )
        lines.append(
            f"Gaps NOT healed: {total} candles since {alert_time(gaps.since)} are missing"
            f" ({listed});"
            f" fill them with `ost gaps --interval all --start {start} --repair`."
        )
    if gaps.unchecked:
        listed = "; ".join(f"{s} {i}: {why}" for (s, i), why in gaps.unchecked[:MAX_LISTED_STREAMS])
        lines.append(
            f"Gaps not checked for {len(gaps.unchecked)} streams ({listed}); check with"
            f" `ost gaps --interval all --start {start}` (add --repair)."
        )
    if not lines:
        lines.append(
            f"Gaps healed: the store has every candle of the outage (gap check of"
            f" {gaps.checked} streams from {alert_time(gaps.since)})."
        )
    return lines


def _epoch_ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def _moment(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)

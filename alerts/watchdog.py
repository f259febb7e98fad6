"""One evaluation of the escalation ladder: read the ledger, apply the policy, send, persist.

The ``watchdog`` flow and ``ost watchdog`` both call :func:`run_watchdog`; ``ost status`` calls
:func:`ladder_status`. Nothing here imports prefect, and nothing needs Prefect's server: the
ledger holds every outcome, so the watchdog also notices when the orchestrator itself is down.

**What it observes.** The ledger's record of every stream, with the newest candle read from the
*store* (``ost backfill`` and ``ost gaps --repair`` move it without an ingestion pass): the later
of the two, so a stream's freshness (lag, stale) is always that of what the backend reads. When
the store cannot be read, the ledger's record is used and a warning says so.

**Exactly one message per level.** The ladder's state is saved in the ledger after *each*
delivered message, not before sending: a message that failed (every target refused it) stays
due and is sent again at the next evaluation, while a delivered one is never repeated, even
by a new process. Only a crash in the few milliseconds between a delivery and its save could
repeat it (at least once, never lost). A message with nowhere to go (no apprise target, or none
with its tag) is not delivered either: it is logged, counted (``unconfigured``, ``no_target``)
and stays due, so it goes out at the first evaluation after a target is configured.

**The recovery's gap check.** When a recovery is due, :func:`outage_gaps` checks every
configured stream's candles over the outage with :func:`ost.gaps.check_gaps`: from the first
candle the outage could have cost (``outage_since - cadence - stale_grace``, aligned down to the
stream's interval) to the stream's newest stored candle (newer ones are the lag, which recovery
already requires to be within the grace). The message says what is still missing.

**One evaluation at a time.** A file lock next to the ledger (``ledger.sqlite3.watchdog.lock``)
serialises evaluations, so the scheduled flow and an operator's ``ost watchdog`` cannot both
send the same alert. An evaluation that cannot get the lock within ``lock_timeout_s`` sends
nothing and says so (``skipped``): the one holding the lock sends what is due.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import filelock
from ost.alerts.policy import (
    DEFAULT_CADENCE,
    Evaluation,
    Kind,
    LadderConfig,
    LadderState,
    Level,
    Message,
    OutageGaps,
    StreamHealth,
    evaluate,
    mark_sent,
)

from ost import intervals
from ost.errors import OstError
from ost.gaps import check_gaps
from ost.ledger import Ledger, Stream, StreamState, utcnow
from ost.store import CandleStore

if TYPE_CHECKING:
    from ost.alerts.notify import Delivery, Notifier

    from ost.settings import Settings

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S: Final = 120.0
#: The gap check over the outage that a recovery message reports (None: unknown).
GapsCheck = Callable[[], OutageGaps | None]


@dataclass(frozen=True)
class WatchdogReport:
    """What one evaluation saw, sent, and kept."""

    evaluation: Evaluation
    deliveries: tuple[tuple[Message, Delivery], ...]
    #: The ladder's state as persisted after this evaluation.
    state: LadderState
    #: True when another evaluation held the lock: nothing was sent or saved.
    skipped: bool = False

    @property
    def level(self) -> Level:
        """The overall escalation level now."""
        return self.evaluation.level

    @property
    def sent(self) -> tuple[Message, ...]:
        """The messages that some target accepted."""
        return tuple(message for message, delivery in self.deliveries if delivery == "sent")

    @property
    def pending(self) -> tuple[tuple[Message, Delivery], ...]:
        """The messages not delivered (no target, or none accepted): due at the next evaluation."""
        return tuple((message, d) for message, d in self.deliveries if d != "sent")


@dataclass(frozen=True)
class LadderStatus:
    """``ost status``'s view: every configured stream's health, and the ladder's memory."""

    evaluation: Evaluation
    ladder: LadderState

    @property
    def level(self) -> Level:
        """The overall escalation level now."""
        return self.evaluation.level

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready data (times as ISO-8601 UTC strings), for ``--json``."""
        return {
            "level": self.level.name.lower(),
            "level_value": int(self.level),
            "down_since": _iso(self.evaluation.down_since),
            "outage_since": _iso(self.ladder.outage_since),
            "notified": sorted(kind.value for kind in self.ladder.notified),
            "streams": [_stream_dict(item) for item in self.evaluation.streams],
        }


def _stream_dict(item: StreamHealth) -> dict[str, Any]:
    state = item.state
    fresh = item.freshness
    return {
        "symbol": item.symbol,
        "interval": item.interval,
        "level": item.level.name.lower(),
        "state": item.condition.value,
        "down_since": _iso(item.down_since),
        "overdue": item.overdue,
        "stale": item.stale,
        "stale_since": _iso(fresh.stale_since),
        "lag_seconds": None if fresh.lag is None else fresh.lag.total_seconds(),
        "candles_behind": fresh.behind,
        "last_success_at": _iso(state.last_success_at),
        "last_attempt_at": _iso(state.last_attempt_at),
        "failing_since": _iso(state.failing_since),
        "last_reason": state.last_reason,
        "last_error": state.last_error,
        "last_candle_open_time": _iso(fresh.newest_open),
        "last_candle_close_time": _iso(fresh.newest_close),
        "expected_last_open_time": _iso(fresh.expected_open),
    }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat()


def observed_states(
    states: Mapping[Stream, StreamState], store: CandleStore | None, streams: Iterable[Stream]
) -> dict[Stream, StreamState]:
    """The ledger's ``states``, with each of ``streams``' newest candle read from ``store``.

    A stream's ``last_open_ms`` becomes the later of the ledger's and the store's. When the
    store cannot be read, the ledger's record stays, and a warning names the stream.
    """
    observed = dict(states)
    if store is None:
        return observed
    for stream in streams:
        state = observed.get(stream) or StreamState(*stream)
        try:
            stored = store.last_open_time(*stream)
        except (OstError, OSError) as exc:
            log.warning(
                "Cannot read the newest stored candle of %s %s (%s): its freshness is the"
                " ledger's record of its last ingestion.",
                *stream,
                exc,
            )
            continue
        known = [ms for ms in (stored, state.last_open_ms) if ms is not None]
        observed[stream] = replace(state, last_open_ms=max(known, default=None))
    return observed


def outage_gaps(
    store: CandleStore,
    config: LadderConfig,
    outage_since: dt.datetime,
    states: Mapping[Stream, StreamState],
    now: dt.datetime,
) -> OutageGaps:
    """The gap check of every configured stream over the outage (see the module docstring)."""
    earliest_ms = int((outage_since - config.cadence - config.stale_grace).timestamp() * 1000)
    now_ms = int(now.timestamp() * 1000)
    missing: list[tuple[Stream, int]] = []
    unchecked: list[tuple[Stream, str]] = []
    for stream in config.streams:
        symbol, interval = stream
        state = states.get(stream)
        newest = None if state is None else state.last_open_ms
        if newest is None:
            unchecked.append((stream, "no candle stored"))
            continue
        start_ms = min(intervals.align(interval, earliest_ms), newest)
        try:
            result = check_gaps(store, symbol, interval, start_ms, newest, now_ms)
        except (OstError, OSError) as exc:
            unchecked.append((stream, str(exc)))
            continue
        if result.missing_candles:
            missing.append((stream, result.missing_candles))
    since = dt.datetime.fromtimestamp(earliest_ms / 1000, tz=dt.UTC)
    return OutageGaps(since, len(config.streams), tuple(missing), tuple(unchecked))


def run_watchdog(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    ledger: Ledger | None = None,
    notifier: Notifier | None = None,
    cadence: dt.timedelta = DEFAULT_CADENCE,
    store: CandleStore | None = None,
    gaps_check: GapsCheck | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> WatchdogReport:
    """Evaluate the ladder once at ``now``, send what is due, and persist the new state.

    ``store`` defaults to the one of ``settings``. ``gaps_check`` replaces :func:`outage_gaps`
    (called only when a recovery message is due). The notifier is built (from ``settings``) only
    when a message is due.
    """
    now = now or utcnow()
    ledger = ledger or Ledger.for_settings(settings)
    store = store if store is not None else CandleStore(settings.data_dir)
    config = LadderConfig.from_settings(settings, cadence)
    lock = filelock.FileLock(f"{ledger.path}.watchdog.lock", timeout=lock_timeout_s)
    try:
        with lock:
            return _evaluate_and_send(
                settings,
                now,
                ledger=ledger,
                store=store,
                config=config,
                notifier=notifier,
                gaps_check=gaps_check,
            )
    except filelock.Timeout:
        log.warning("Another watchdog evaluation holds %s: this one sends nothing.", lock.lock_file)
        ladder = LadderState.from_record(ledger.ladder())
        states = observed_states(ledger.stream_states(), store, config.streams)
        return WatchdogReport(evaluate(now, config, states, ladder), (), ladder, skipped=True)


def ladder_status(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    ledger: Ledger | None = None,
    store: CandleStore | None = None,
    cadence: dt.timedelta = DEFAULT_CADENCE,
) -> LadderStatus:
    """Where the ladder stands at ``now``, read-only: for ``ost status``."""
    ledger = ledger or Ledger.for_settings(settings)
    store = store if store is not None else CandleStore(settings.data_dir)
    ladder = LadderState.from_record(ledger.ladder())
    config = LadderConfig.from_settings(settings, cadence)
    states = observed_states(ledger.stream_states(), store, config.streams)
    return LadderStatus(evaluate(now or utcnow(), config, states, ladder), ladder)


def _evaluate_and_send(
    settings: Settings,
    now: dt.datetime,
    *,
    ledger: Ledger,
    store: CandleStore,
    config: LadderConfig,
    notifier: Notifier | None,
    gaps_check: GapsCheck | None,
) -> WatchdogReport:
    ledger.ensure_streams(config.streams, now)
    ladder = LadderState.from_record(ledger.ladder())
    states = observed_states(ledger.stream_states(), store, config.streams)
    evaluation = evaluate(now, config, states, ladder)
    if any(m.kind is Kind.RECOVERY for m in evaluation.messages) and ladder.outage_since:
        if gaps_check is not None:
            gaps = gaps_check()
        else:
            gaps = outage_gaps(store, config, ladder.outage_since, states, now)
        evaluation = evaluate(now, config, states, ladder, gaps=gaps)
    state = evaluation.state
    ledger.save_ladder(state.to_record(now))
    deliveries: list[tuple[Message, Delivery]] = []
    if evaluation.messages:
        notifier = notifier or _notifier(settings, ledger)
        for message in evaluation.messages:
            delivery = notifier.send(message)
            deliveries.append((message, delivery))
            if delivery.settled:
                state = mark_sent(state, message)
                ledger.save_ladder(state.to_record(now))
    _log_summary(evaluation, deliveries)
    return WatchdogReport(evaluation, tuple(deliveries), state)


def _notifier(settings: Settings, ledger: Ledger) -> Notifier:
    from ost.alerts.notify import Notifier  # noqa: PLC0415  # apprise loads in 0.5 s: only when needed

    return Notifier(settings, ledger)


def _log_summary(evaluation: Evaluation, deliveries: list[tuple[Message, Delivery]]) -> None:
    down = [item for item in evaluation.streams if item.down]
    log.info(
        "Watchdog: level %s, %d of %d streams down%s.",
        evaluation.level.name.lower(),
        len(down),
        len(evaluation.streams),
        "".join(f"; {message.kind.value}: {delivery.value}" for message, delivery in deliveries),
    )

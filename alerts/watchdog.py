"""One evaluation of the escalation ladder: read the ledger, apply the policy, send, persist.

The ``watchdog`` flow and ``ost watchdog`` both call :func:`run_watchdog`; ``ost status`` calls
:func:`ladder_status`. Nothing here imports prefect, and nothing needs Prefect's server: the
ledger holds every outcome, so the watchdog also notices when the orchestrator itself is down.

**Exactly one message per level.** The ladder's state is saved in the ledger after *each*
delivered message, not before sending: a message that failed (every target refused it) stays
due and is sent again at the next evaluation, while a delivered one is never repeated, even
by a new process. Only a crash in the few milliseconds between a delivery and its save could
repeat it (at least once, never lost). A message with nowhere to go (no apprise target, or none
with its tag) is logged, counted, and marked as done.

**One evaluation at a time.** A file lock next to the ledger (``ledger.sqlite3.watchdog.lock``)
serialises evaluations, so the scheduled flow and an operator's ``ost watchdog`` cannot both
send the same alert. An evaluation that cannot get the lock within ``lock_timeout_s`` sends
nothing and says so (``skipped``): the one holding the lock sends what is due.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import filelock

from alerts.policy import (
    DEFAULT_CADENCE,
    Evaluation,
    Kind,
    LadderConfig,
    LadderState,
    Level,
    Message,
    StreamHealth,
    evaluate,
    mark_sent,
)
from ost.ledger import Ledger, utcnow

if TYPE_CHECKING:
    from alerts.notify import Delivery, Notifier
    from ost.settings import Settings

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S: Final = 120.0
#: Whether the candles missed during an outage are all stored again (None: unknown).
GapsCheck = Callable[[], bool | None]


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
    last_open = state.last_open_ms
    return {
        "symbol": item.symbol,
        "interval": item.interval,
        "level": item.level.name.lower(),
        "down_since": _iso(item.down_since),
        "overdue": item.overdue,
        "last_success_at": _iso(state.last_success_at),
        "last_attempt_at": _iso(state.last_attempt_at),
        "failing_since": _iso(state.failing_since),
        "last_reason": state.last_reason,
        "last_error": state.last_error,
        "last_candle_open_time": _iso(
            None if last_open is None else dt.datetime.fromtimestamp(last_open / 1000, dt.UTC)
        ),
    }


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).isoformat()


def run_watchdog(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    ledger: Ledger | None = None,
    notifier: Notifier | None = None,
    cadence: dt.timedelta = DEFAULT_CADENCE,
    gaps_check: GapsCheck | None = None,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> WatchdogReport:
    """Evaluate the ladder once at ``now``, send what is due, and persist the new state.

    ``gaps_check`` is called only when a recovery message is due, to say whether the outage's
    gaps healed. The notifier is built (from ``settings``) only when a message is due.
    """
    now = now or utcnow()
    ledger = ledger or Ledger.for_settings(settings)
    config = LadderConfig.from_settings(settings, cadence)
    lock = filelock.FileLock(f"{ledger.path}.watchdog.lock", timeout=lock_timeout_s)
    try:
        with lock:
            return _evaluate_and_send(
                settings,
                now,
                ledger=ledger,
                config=config,
                notifier=notifier,
                gaps_check=gaps_check,
            )
    except filelock.Timeout:
        log.warning("Another watchdog evaluation holds %s: this one sends nothing.", lock.lock_file)
        ladder = LadderState.from_record(ledger.ladder())
        evaluation = evaluate(now, config, ledger.stream_states(), ladder)
        return WatchdogReport(evaluation, (), ladder, skipped=True)


def ladder_status(
    settings: Settings,
    now: dt.datetime | None = None,
    *,
    ledger: Ledger | None = None,
    cadence: dt.timedelta = DEFAULT_CADENCE,
) -> LadderStatus:
    """Where the ladder stands at ``now``, read-only: for ``ost status``."""
    ledger = ledger or Ledger.for_settings(settings)
    ladder = LadderState.from_record(ledger.ladder())
    config = LadderConfig.from_settings(settings, cadence)
    return LadderStatus(evaluate(now or utcnow(), config, ledger.stream_states(), ladder), ladder)


def _evaluate_and_send(
    settings: Settings,
    now: dt.datetime,
    *,
    ledger: Ledger,
    config: LadderConfig,
    notifier: Notifier | None,
    gaps_check: GapsCheck | None,
) -> WatchdogReport:
    ledger.ensure_streams(config.streams, now)
    ladder = LadderState.from_record(ledger.ladder())
    states = ledger.stream_states()
    evaluation = evaluate(now, config, states, ladder)
    if gaps_check is not None and any(m.kind is Kind.RECOVERY for m in evaluation.messages):
        evaluation = evaluate(now, config, states, ladder, gaps_healed=_gaps_healed(gaps_check))
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
    from alerts.notify import Notifier  # noqa: PLC0415  # apprise loads in 0.5 s: only when needed

    return Notifier(settings, ledger)


def _gaps_healed(gaps_check: GapsCheck) -> bool | None:
    try:
        return gaps_check()
    except Exception as exc:  # noqa: BLE001  # an unknown answer must not stop the recovery message
        log.warning("Could not check the outage's gaps (%s): reported as unknown.", exc)
        return None


def _log_summary(evaluation: Evaluation, deliveries: list[tuple[Message, Delivery]]) -> None:
    down = [item for item in evaluation.streams if item.down]
    log.info(
        "Watchdog: level %s, %d of %d streams down%s.",
        evaluation.level.name.lower(),
        len(down),
        len(evaluation.streams),
        "".join(f"; {message.kind.value}: {delivery.value}" for message, delivery in deliveries),
    )

"""The escalation ladder's pure policy: levels, no-run rule, one message per level, recovery."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.policy import (
    Kind,
    LadderConfig,
    LadderState,
    Level,
    Message,
    Thresholds,
    evaluate,
    human_duration,
    mark_sent,
    step,
    stream_health,
)
from ost.ledger import StreamState

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
BTC = ("BTCUSDT", "15m")
ETH = ("ETHUSDT", "15m")
CONFIG = LadderConfig(streams=(BTC, ETH))


def healthy(stream: tuple[str, str], at: dt.datetime) -> StreamState:
    """A stream whose last ingestion, at ``at``, succeeded."""
    return StreamState(*stream, known_since=T0, last_success_at=at, last_attempt_at=at)


def failing(stream: tuple[str, str], since: dt.datetime, last_try: dt.datetime) -> StreamState:
    """A stream failing since ``since`` (last success 15 min before), last tried at ``last_try``."""
    return StreamState(
        *stream,
        known_since=T0 - 60 * MIN,
        last_success_at=since - 15 * MIN,
        last_attempt_at=last_try,
        failing_since=since,
        last_reason="unavailable",
    )


def outage(minutes: float) -> dict[tuple[str, str], StreamState]:
    """BTC failing since T0 and observed ``minutes`` later; ETH healthy at that time."""
    now = T0 + minutes * MIN
    return {BTC: failing(BTC, T0, now), ETH: healthy(ETH, now)}


def kinds(messages: tuple[Message, ...]) -> list[Kind]:
    """The kinds of ``messages``, in order."""
    return [message.kind for message in messages]


def test_levels_follow_the_runbook_thresholds() -> None:
    """<15 min normal, 15-30 monitor, 30-60 alert, >=60 escalate (boundaries included upward)."""
    thresholds = Thresholds()
    assert thresholds.level_for(14 * MIN + dt.timedelta(seconds=59)) is Level.NORMAL
    assert thresholds.level_for(15 * MIN) is Level.MONITOR
    assert thresholds.level_for(29 * MIN) is Level.MONITOR
    assert thresholds.level_for(30 * MIN) is Level.ALERT
    assert thresholds.level_for(59 * MIN) is Level.ALERT
    assert thresholds.level_for(60 * MIN) is Level.ESCALATE


def test_monitor_level_sends_nothing() -> None:
    """Down 20 minutes: level monitor, the outage is remembered, but no message is due."""
    evaluation = evaluate(T0 + 20 * MIN, CONFIG, outage(20), LadderState())
    assert evaluation.level is Level.MONITOR
    assert evaluation.messages == ()
    assert evaluation.state.outage_since == T0
    assert evaluation.down_since == T0


def test_alert_then_escalate_each_once() -> None:
    """Alert at 30 min, escalate at 60, and nothing more while the outage lasts."""
    state = LadderState()
    sent: list[tuple[int, Kind]] = []
    for minute in range(0, 120, 5):
        state, messages = step(T0 + minute * MIN, CONFIG, outage(minute), state)
        sent += [(minute, kind) for kind in kinds(messages)]
    assert sent == [(30, Kind.ALERT), (60, Kind.ESCALATE)]
    assert state.notified == {Kind.ALERT, Kind.ESCALATE}


def test_alert_names_the_failing_stream_and_runbook() -> None:
    """The alert goes to tag alert and names the failing stream and reason, not the healthy one."""
    (message,) = evaluate(T0 + 31 * MIN, CONFIG, outage(31), LadderState()).messages
    assert message.tags == ("alert",)
    assert message.level is Level.ALERT
    assert "31 min" in message.title
    assert "BTCUSDT 15m: failing (unavailable)" in message.body
    assert "ETHUSDT" not in message.body
    assert "ost schedule pause" in message.body


def test_escalation_names_the_next_steps() -> None:
    """The escalate message names the runbook's steps: pause, cached data, gaps, the team."""
    state = LadderState(Level.ALERT, T0, frozenset({Kind.ALERT}))
    (message,) = evaluate(T0 + 61 * MIN, CONFIG, outage(61), state).messages
    assert message.kind is Kind.ESCALATE
    assert message.tags == ("escalate",)
    for step_text in ("ost schedule pause", "cached data", "ost gaps --interval 1d --days 7"):
        assert step_text in message.body
    assert "Escalate to the team" in message.body


def test_outage_discovered_late_sends_alert_then_escalate() -> None:
    """First seen at 70 min: both levels are due, the alert first (each audience hears once)."""
    evaluation = evaluate(T0 + 70 * MIN, CONFIG, outage(70), LadderState())
    assert kinds(evaluation.messages) == [Kind.ALERT, Kind.ESCALATE]
    assert evaluation.level is Level.ESCALATE


def test_undelivered_message_stays_due() -> None:
    """A message not marked as sent is due again at the next evaluation, and only it."""
    first = evaluate(T0 + 70 * MIN, CONFIG, outage(70), LadderState())
    alert, _escalate = first.messages
    kept = mark_sent(first.state, alert)  # the escalate delivery failed
    second = evaluate(T0 + 75 * MIN, CONFIG, outage(75), kept)
    assert kinds(second.messages) == [Kind.ESCALATE]


def test_recovery_after_alert_says_how_long_and_gaps() -> None:
    """All healthy after an alert: one recovery, to the tags notified, with duration and gaps."""
    state = LadderState(Level.ALERT, T0, frozenset({Kind.ALERT}))
    states = {BTC: healthy(BTC, T0 + 42 * MIN), ETH: healthy(ETH, T0 + 40 * MIN)}
    evaluation = evaluate(T0 + 45 * MIN, CONFIG, states, state, gaps_healed=True)
    (message,) = evaluation.messages
    assert message.kind is Kind.RECOVERY
    assert message.tags == ("alert",)
    assert "down for 42 min" in message.body
    assert "Gaps healed" in message.body
    assert mark_sent(evaluation.state, message) == LadderState()
    not_healed = evaluate(T0 + 45 * MIN, CONFIG, states, state, gaps_healed=False)
    assert "--repair" in not_healed.messages[0].body


def test_recovery_after_escalation_goes_to_both_tags() -> None:
    """A recovery after an escalation reaches both audiences; after it, nothing more is due."""
    state = LadderState(Level.ESCALATE, T0, frozenset({Kind.ALERT, Kind.ESCALATE}))
    states = {BTC: healthy(BTC, T0 + 80 * MIN), ETH: healthy(ETH, T0 + 80 * MIN)}
    new_state, messages = step(T0 + 81 * MIN, CONFIG, states, state)
    assert [m.tags for m in messages] == [("alert", "escalate")]
    assert step(T0 + 82 * MIN, CONFIG, states, new_state)[1] == ()


def test_blip_below_alert_sends_no_recovery() -> None:
    """A failure that heals at monitor level sends nothing at all, and the state resets."""
    state, messages = step(T0 + 20 * MIN, CONFIG, outage(20), LadderState())
    assert messages == ()
    states = {BTC: healthy(BTC, T0 + 21 * MIN), ETH: healthy(ETH, T0 + 21 * MIN)}
    state, messages = step(T0 + 22 * MIN, CONFIG, states, state)
    assert messages == ()
    assert state == LadderState()


def test_partial_recovery_keeps_the_outage() -> None:
    """One stream healed, another freshly failing: no recovery and no second alert."""
    state = LadderState(Level.ALERT, T0, frozenset({Kind.ALERT}))
    now = T0 + 50 * MIN
    states = {BTC: healthy(BTC, now), ETH: failing(ETH, now - 2 * MIN, now)}
    evaluation = evaluate(now, CONFIG, states, state)
    assert evaluation.messages == ()
    assert evaluation.state.outage_since == T0
    assert evaluation.level is Level.NORMAL


def test_no_run_at_all_counts_from_when_the_next_run_was_due() -> None:
    """Last success 40 min ago and no run since: down since success + cadence (25 min: monitor)."""
    states = {BTC: healthy(BTC, T0), ETH: healthy(ETH, T0)}
    at_29 = stream_health(T0 + 29 * MIN, CONFIG, states[BTC])
    assert (at_29.down_since, at_29.level) == (None, Level.NORMAL)
    at_40 = stream_health(T0 + 40 * MIN, CONFIG, states[BTC])
    assert at_40.overdue
    assert at_40.down_since == T0 + 15 * MIN
    assert at_40.level is Level.MONITOR
    evaluation = evaluate(T0 + 46 * MIN, CONFIG, states, LadderState())
    assert kinds(evaluation.messages) == [Kind.ALERT]
    assert "no run since" in evaluation.messages[0].body


def test_stream_never_ingested_counts_from_first_sighting() -> None:
    """A configured stream with no success counts from when the ledger first knew it."""
    never = StreamState(*BTC, known_since=T0)
    assert stream_health(T0 + 29 * MIN, CONFIG, never).level is Level.NORMAL
    assert stream_health(T0 + 75 * MIN, CONFIG, never).level is Level.ESCALATE
    unknown = StreamState(*BTC)
    assert stream_health(T0 + 999 * MIN, CONFIG, unknown).down_since is None


def test_ladder_state_survives_the_ledger_record() -> None:
    """A LadderState written as a ledger record reads back equal."""
    state = LadderState(Level.ESCALATE, T0, frozenset({Kind.ALERT, Kind.ESCALATE}))
    assert LadderState.from_record(state.to_record(T0)) == state


def test_human_durations() -> None:
    """Durations read naturally at every scale."""
    assert human_duration(dt.timedelta(seconds=16.7)) == "16 s"
    assert human_duration(31 * MIN) == "31 min"
    assert human_duration(65 * MIN) == "1 h 5 min"
    assert human_duration(dt.timedelta(days=2, hours=3)) == "2 d 3 h"


events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),  # minutes until the next evaluation
        st.sampled_from(["ok", "fail", "nothing"]),  # what ingestion recorded meanwhile
        st.booleans(),  # whether deliveries work at this evaluation
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_each_level_notified_at_most_once_per_outage(
    steps: list[tuple[int, str, bool]],
) -> None:
    """Whatever happens, each level is delivered at most once per outage, in ladder order."""
    config = LadderConfig(streams=(BTC,))
    now, state = T0, LadderState()
    ledger_state = healthy(BTC, T0)
    delivered: list[Kind] = []
    for minutes, event, delivery_works in steps:
        now += minutes * MIN
        if event == "ok":
            ledger_state = healthy(BTC, now)
        elif event == "fail":
            since = ledger_state.failing_since or now
            ledger_state = StreamState(*BTC, T0, ledger_state.last_success_at, now, since, "x")
        evaluation = evaluate(now, config, {BTC: ledger_state}, state)
        state = evaluation.state
        for message in evaluation.messages if delivery_works else ():
            state = mark_sent(state, message)
            delivered.append(message.kind)
    for outage_kinds in _split_outages(delivered):
        assert outage_kinds in ([], [Kind.ALERT], [Kind.ALERT, Kind.ESCALATE])


def _split_outages(delivered: list[Kind]) -> list[list[Kind]]:
    """The delivered kinds, split at each recovery (which must follow a notification)."""
    outages: list[list[Kind]] = [[]]
    for kind in delivered:
        if kind is Kind.RECOVERY:
            assert outages[-1], "a recovery was sent for an outage nobody was told about"
            outages.append([])
        else:
            outages[-1].append(kind)
    return outages

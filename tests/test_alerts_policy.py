"""The escalation ladder's pure policy: levels, no-run rule, staleness, one message per level."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from ost.alerts.policy import (
    Condition,
    Kind,
    LadderConfig,
    LadderState,
    Level,
    Message,
    OutageGaps,
    Thresholds,
    evaluate,
    freshness,
    human_duration,
    mark_sent,
    step,
    stream_health,
)

from ost.ledger import StreamState

T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)
GRACE = 20 * MIN
BTC = ("BTCUSDT", "15m")
ETH = ("ETHUSDT", "15m")
CONFIG = LadderConfig(streams=(BTC, ETH))


def ms(at: dt.datetime) -> int:
    """``at`` in epoch milliseconds."""
    return int(at.timestamp() * 1000)


def newest_closed_15m(at: dt.datetime) -> int:
    """Open time (ms) of the newest 15m candle closed at ``at``: the quarter before the last."""
    quarter = 15 * 60
    return (int(at.timestamp()) // quarter * quarter - quarter) * 1000


def healthy(stream: tuple[str, str], at: dt.datetime) -> StreamState:
    """A stream whose last ingestion, at ``at``, succeeded and stored every closed 15m candle."""
    return StreamState(
        *stream,
        known_since=T0,
        last_success_at=at,
        last_attempt_at=at,
        last_open_ms=newest_closed_15m(at),
    )


def failing(stream: tuple[str, str], since: dt.datetime, last_try: dt.datetime) -> StreamState:
    """A stream failing since ``since`` (last success 15 min before), last tried at ``last_try``."""
    return StreamState(
        *stream,
        known_since=T0 - 60 * MIN,
        last_success_at=since - 15 * MIN,
        last_attempt_at=last_try,
        failing_since=since,
        last_reason="unavailable",
        last_open_ms=newest_closed_15m(since - 15 * MIN),
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
    healed = OutageGaps(T0 - 35 * MIN, checked=2)
    evaluation = evaluate(T0 + 45 * MIN, CONFIG, states, state, gaps=healed)
    (message,) = evaluation.messages
    assert message.kind is Kind.RECOVERY
    assert message.tags == ("alert",)
    assert "down for 42 min" in message.body
    assert "Gaps healed" in message.body
    assert "2 streams from 2026-11-03 09:25:00 UTC" in message.body
    assert mark_sent(evaluation.state, message) == LadderState()
    missing = OutageGaps(T0 - 35 * MIN, checked=2, missing=((BTC, 3),))
    not_healed = evaluate(T0 + 45 * MIN, CONFIG, states, state, gaps=missing)
    body = not_healed.messages[0].body
    assert "Gaps NOT healed: 3 candles" in body
    assert "(BTCUSDT 15m: 3)" in body
    assert "`ost gaps --interval all --start 2026-11-03T09:25:00Z --repair`" in body
    unknown = evaluate(T0 + 45 * MIN, CONFIG, states, state).messages[0].body
    assert "Gaps not checked" in unknown


def test_recovery_names_streams_whose_gaps_could_not_be_checked() -> None:
    """A stream the gap check could not read is named, with why, and the command to check it."""
    state = LadderState(Level.ALERT, T0, frozenset({Kind.ALERT}))
    states = {BTC: healthy(BTC, T0 + 42 * MIN), ETH: healthy(ETH, T0 + 40 * MIN)}
    gaps = OutageGaps(T0 - 35 * MIN, checked=2, unchecked=((ETH, "no candle stored"),))
    (message,) = evaluate(T0 + 45 * MIN, CONFIG, states, state, gaps=gaps).messages
    assert "Gaps healed" not in message.body
    assert "Gaps not checked for 1 streams (ETHUSDT 15m: no candle stored)" in message.body


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
    assert human_duration(dt.timedelta(seconds=65)) == "1 min 5 s"
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
            ledger_state = StreamState(
                *BTC,
                T0,
                ledger_state.last_success_at,
                now,
                since,
                "x",
                last_open_ms=ledger_state.last_open_ms,
            )
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


# ---- freshness and the silent stall ------------------------------------------------------------


def at(text: str) -> dt.datetime:
    """An ISO time, UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def test_freshness_of_a_one_minute_stream() -> None:
    """Newest 10:00 at 10:03:30: lag 2 min 30 s, 2 candles behind; stale from 10:02 + grace."""
    newest = ms(at("2026-11-03T10:00:00"))
    fresh = freshness(at("2026-11-03T10:03:30"), "1m", newest, GRACE)
    assert fresh.newest_close == at("2026-11-03T10:01:00")
    assert fresh.expected_open == at("2026-11-03T10:02:00")
    assert fresh.lag == 2 * MIN + 30 * SEC
    assert fresh.behind == 2
    assert fresh.stale_after == 21 * MIN
    assert fresh.stale_since == at("2026-11-03T10:22:00")
    assert not fresh.stale
    assert not freshness(at("2026-11-03T10:21:59"), "1m", newest, GRACE).stale
    assert freshness(at("2026-11-03T10:22:00"), "1m", newest, GRACE).stale


def test_daily_weekly_and_monthly_streams_are_not_stale_for_being_behind_now() -> None:
    """1d, 1w and 1M streams far behind now are fresh while their newest closed candle is stored."""
    daily = freshness(at("2026-11-03T23:00:00"), "1d", ms(at("2026-11-02T00:00:00")), GRACE)
    assert (daily.lag, daily.behind, daily.stale) == (23 * 60 * MIN, 0, False)
    assert daily.stale_since == at("2026-11-04T00:20:00")
    weekly_newest = ms(at("2026-10-26T00:00:00"))  # a Monday: the week closes 2026-11-02 00:00
    weekly = freshness(at("2026-11-08T12:00:00"), "1w", weekly_newest, GRACE)
    assert (weekly.behind, weekly.stale) == (0, False)
    assert weekly.stale_since == at("2026-11-09T00:20:00")
    monthly = freshness(at("2026-11-15T00:00:00"), "1M", ms(at("2026-10-01T00:00:00")), GRACE)
    assert monthly.lag == dt.timedelta(days=14)
    assert (monthly.behind, monthly.stale) == (0, False)
    assert monthly.stale_after == dt.timedelta(days=30) + GRACE  # November has 30 days
    assert monthly.stale_since == at("2026-12-01T00:20:00")
    late = freshness(at("2026-12-01T00:20:00"), "1M", ms(at("2026-10-01T00:00:00")), GRACE)
    assert (late.behind, late.stale) == (1, True)


def test_a_stream_with_nothing_stored_is_stale_after_the_grace() -> None:
    """No candle at all: stale from the ledger's first sighting plus the grace; lag unknown."""
    empty = freshness(T0 + 20 * MIN, "15m", None, GRACE, known_since=T0)
    assert (empty.stale, empty.stale_since, empty.lag, empty.behind) == (
        True,
        T0 + GRACE,
        None,
        None,
    )
    assert not freshness(T0 + 19 * MIN, "15m", None, GRACE, known_since=T0).stale


def stalled(stream: tuple[str, str], newest_open: dt.datetime, now: dt.datetime) -> StreamState:
    """Runs keep succeeding (the last one 2 minutes ago) but the newest candle stays put."""
    return StreamState(
        *stream,
        known_since=T0 - 60 * MIN,
        last_success_at=now - 2 * MIN,
        last_attempt_at=now - 2 * MIN,
        last_open_ms=ms(newest_open),
    )


def test_silent_stall_is_an_outage_timed_from_when_it_went_stale() -> None:
    """Runs say ok, candles stop at 09:45: stale at 10:00 + 20 min; alert 30 min later, once."""
    config = LadderConfig(streams=(BTC,))
    newest = T0 - 15 * MIN  # the 09:45 candle closes at 10:00; the 10:00 one should close 10:15
    stale_since = T0 + 15 * MIN + GRACE
    quiet = stream_health(stale_since - SEC, config, stalled(BTC, newest, stale_since - SEC))
    assert (quiet.down_since, quiet.condition) == (None, Condition.OK)
    seen = stream_health(stale_since + SEC, config, stalled(BTC, newest, stale_since + SEC))
    assert (seen.down_since, seen.condition, seen.level) == (stale_since, Condition.STALE, 0)
    state = LadderState()
    sent: list[tuple[dt.timedelta, Kind]] = []
    for minute in range(0, 90):
        now = stale_since + minute * MIN
        state, messages = step(now, config, {BTC: stalled(BTC, newest, now)}, state)
        sent += [(now - stale_since, message.kind) for message in messages]
        if minute == 30:
            assert "BTCUSDT 15m: stale since 2026-11-03 10:35:00 UTC" in messages[0].body
            assert (
                "newest candle closed 2026-11-03 10:00:00 UTC (lag 1 h 5 min)" in messages[0].body
            )
    assert sent == [(30 * MIN, Kind.ALERT), (60 * MIN, Kind.ESCALATE)]
    caught_up = stale_since + 95 * MIN
    fresh = healthy(BTC, caught_up)
    state, messages = step(caught_up, config, {BTC: fresh}, state)
    assert [message.kind for message in messages] == [Kind.RECOVERY]
    assert step(caught_up + MIN, config, {BTC: fresh}, state)[1] == ()


def test_failing_overdue_and_stale_conditions() -> None:
    """The condition is the first of failing, overdue, stale that applies, else ok."""
    now = T0 + 50 * MIN
    assert stream_health(now, CONFIG, healthy(BTC, now)).condition is Condition.OK
    assert stream_health(now, CONFIG, failing(BTC, T0, now)).condition is Condition.FAILING
    worker_down = healthy(BTC, T0)  # nothing ran for 50 minutes: overdue and stale
    health = stream_health(now, CONFIG, worker_down)
    assert (health.condition, health.overdue, health.stale) == (Condition.OVERDUE, True, True)


def test_messages_state_the_real_duration_and_the_thresholds_in_force() -> None:
    """With thresholds of 1/2/3 min, a 3 min 10 s outage says so, never '30-60 min'."""
    config = LadderConfig(streams=(BTC,), thresholds=Thresholds(1 * MIN, 2 * MIN, 3 * MIN))
    now = T0 + 3 * MIN + 10 * SEC
    alert, escalate = evaluate(now, config, {BTC: failing(BTC, T0, now)}, LadderState()).messages
    assert alert.title == "ost-ingest ALERT: Binance ingestion down for 3 min 10 s"
    assert "Level alert: down for at least 2 min (monitor after 1 min, alert after 2 min," in (
        alert.body
    )
    assert "Level escalate: down for at least 3 min" in escalate.body
    for message in (alert, escalate):
        assert "has been down for 3 min 10 s, since 2026-11-03 10:00:00 UTC" in message.body
        assert "60 min" not in message.body
        assert "30-60" not in message.body

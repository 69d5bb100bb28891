"""Correlation as a pure function: open, attach, resolve, and idempotence under redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.correlation import StateAssembly, changelog_records, correlate, counted, incident_id_for
from pipeline.domain.incidents import fold
from pipeline.events import (
    CorrelationState,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Resource,
    Severity,
    Signal,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
POD = Resource(namespace="shop", kind="Pod", name="cart-1")


def signal(fingerprint: str, status: str, *, n: int = 0, severity: Severity = Severity.MEDIUM) -> Signal:
    return Signal(
        signal_id=f"{fingerprint}-{status}-{n}",
        source="alertmanager",
        resource=POD,
        name=f"Alert{fingerprint}",
        status=status,  # type: ignore[arg-type]
        severity=severity,
        fingerprint=fingerprint,
        starts_at=T0 + timedelta(minutes=n),
        observed_at=T0 + timedelta(minutes=n, seconds=1),
    )


def run(signals: list[Signal]) -> tuple[CorrelationState | None, list]:
    state, changes = None, []
    for s in signals:
        outcome = correlate(state, s)
        state = outcome.state
        if outcome.change is not None:
            changes.append(outcome.change)
    return state, changes


def test_first_firing_signal_opens_an_incident() -> None:
    state, (opened,) = run([signal("a", "firing")])
    assert isinstance(opened, IncidentOpened)
    incident = opened.incident
    assert incident.id == incident_id_for("a-firing-0")
    assert incident.status == IncidentStatus.ACTIVE and incident.resource_key == POD.key
    assert incident.target == "shop" and incident.resource == "Pod/cart-1"
    assert state is not None and state.incident == incident


def test_an_alert_first_seen_resolved_is_recorded_as_a_finished_incident() -> None:
    first_seen_resolved = signal("a", "resolved").model_copy(update={"ends_at": T0 + timedelta(minutes=3)})
    state, (change,) = run([first_seen_resolved])
    assert isinstance(change, IncidentResolved)  # not opened: nothing to enrich or remediate
    incident = change.incident
    assert incident.status == IncidentStatus.COMPLETED
    assert (incident.created_at, incident.resolved_at) == (T0, T0 + timedelta(minutes=3))
    assert incident.signals["a"].firing_seen is False and incident.signals["a"].resolved_by == "source"
    assert "never arrived" in incident.description
    assert state is not None and state.incident is None
    assert run([first_seen_resolved, first_seen_resolved])[1] == [change]  # redelivered: recorded once


def test_later_signals_attach_and_raise_severity() -> None:
    state, changes = run([signal("a", "firing"), signal("b", "firing", severity=Severity.CRITICAL)])
    assert [type(c) for c in changes] == [IncidentOpened, IncidentUpdated]
    updated = changes[1].incident
    assert set(updated.signals) == {"b"}  # the record carries the alert it attached; the state has both
    assert state is not None and state.incident is not None and set(state.incident.signals) == {"a", "b"}
    assert updated.severity == Severity.CRITICAL and (updated.alerts_total, updated.alerts_firing) == (2, 2)
    assert updated.id == changes[0].incident.id and updated.signal_count == 2


def test_severity_falls_back_when_the_most_severe_alert_resolves() -> None:
    state, changes = run([signal("a", "firing"), signal("b", "firing", severity=Severity.CRITICAL),
                          signal("b", "resolved")])
    assert changes[-1].incident.severity == Severity.MEDIUM and changes[-1].incident.alerts_firing == 1
    assert state is not None and state.firing_by_severity == {"medium": 1}


def test_incident_resolves_only_when_every_attached_alert_resolved() -> None:
    _, changes = run([signal("a", "firing"), signal("b", "firing"), signal("a", "resolved")])
    assert changes[-1].incident.status == IncidentStatus.ACTIVE
    state, changes = run(
        [signal("a", "firing"), signal("b", "firing"), signal("a", "resolved"), signal("b", "resolved")]
    )
    assert isinstance(changes[-1], IncidentResolved)
    assert changes[-1].incident.status == IncidentStatus.COMPLETED
    assert changes[-1].incident.resolved_at == T0 + timedelta(seconds=1)
    assert state is not None and state.incident is None


def test_firing_again_after_resolution_opens_a_new_incident() -> None:
    _, changes = run([signal("a", "firing"), signal("a", "resolved"), signal("a", "firing", n=5)])
    assert [type(c) for c in changes] == [IncidentOpened, IncidentResolved, IncidentOpened]
    assert changes[0].incident.id != changes[2].incident.id


def test_an_alert_first_seen_resolved_attaches_to_the_open_incident_without_closing_it() -> None:
    _, changes = run([signal("a", "firing"), signal("zzz", "resolved")])
    assert [type(c) for c in changes] == [IncidentOpened, IncidentUpdated]
    incident = changes[1].incident
    assert incident.status == IncidentStatus.ACTIVE and (incident.alerts_total, incident.alerts_firing) == (2, 1)
    assert (incident.signals["zzz"].status, incident.signals["zzz"].firing_seen) == ("resolved", False)
    assert changes[0].incident.signals["a"].firing_seen is True


def test_incident_times_are_the_alerts_times_and_the_receive_time_is_kept_apart() -> None:
    late = timedelta(hours=2)  # a backlog: every signal received two hours after it happened
    a_fires = signal("a", "firing").model_copy(update={"observed_at": T0 + late})
    b_fires = signal("b", "firing", n=-5).model_copy(update={"observed_at": T0 + late + timedelta(seconds=1)})
    a_ends = signal("a", "resolved").model_copy(
        update={"ends_at": T0 + timedelta(minutes=10), "observed_at": T0 + late + timedelta(seconds=2)}
    )
    b_ends = signal("b", "resolved", n=-5).model_copy(
        update={"ends_at": T0 + timedelta(minutes=7), "observed_at": T0 + late + timedelta(seconds=3)}
    )
    _, changes = run([a_fires, b_fires, a_ends, b_ends])
    opened, resolved = changes[0].incident, changes[-1].incident
    assert (opened.created_at, opened.received_at) == (T0, T0 + late)
    assert resolved.created_at == T0 - timedelta(minutes=5)  # b started earlier than a
    assert resolved.resolved_at == T0 + timedelta(minutes=10)  # the last alert's endsAt, not the receive time
    assert resolved.received_at == T0 + late and resolved.updated_at == T0 + late + timedelta(seconds=3)


def test_a_stale_resolve_of_an_older_alert_instance_does_not_close_the_newer_one() -> None:
    _, changes = run([signal("a", "firing", n=5), signal("a", "resolved", n=0)])
    assert [type(c) for c in changes] == [IncidentOpened]


def test_truncation_reported_by_alertmanager_is_kept_on_the_incident() -> None:
    cut = signal("a", "firing").model_copy(update={"truncated_alerts": 3})
    _, changes = run([cut])
    assert changes[0].incident.truncated_alerts == 3
    later_cut = signal("b", "firing", n=1).model_copy(update={"truncated_alerts": 7})
    uncut = signal("c", "firing", n=2)
    _, changes = run([cut, later_cut, uncut])
    assert [c.incident.truncated_alerts for c in changes] == [3, 7, 7]  # the most ever cut; never forgotten
    same_alert_cut_more = signal("a", "firing").model_copy(
        update={"signal_id": "a-again", "truncated_alerts": 9}
    )
    _, changes = run([signal("a", "firing"), same_alert_cut_more])
    assert [type(c) for c in changes] == [IncidentOpened, IncidentUpdated]
    assert changes[1].incident.truncated_alerts == 9 and changes[1].incident.signal_count == 1


alert_signals = st.lists(
    st.tuples(st.sampled_from("abc"), st.sampled_from(["firing", "resolved"]), st.integers(0, 2)),
    max_size=12,
).map(lambda xs: [signal(f, s, n=n) for f, s, n in xs])


@settings(max_examples=300, deadline=None)
@given(alert_signals, st.data())
def test_redelivered_signals_change_nothing(signals: list[Signal], data: st.DataObject) -> None:
    """At-least-once delivery: repeating any signal right after itself yields the same incident changes."""
    with_duplicates: list[Signal] = []
    for s in signals:
        with_duplicates.extend([s] * data.draw(st.integers(1, 3)))
    assert run(with_duplicates)[1] == run(signals)[1]


def folded(changes: list) -> list[dict[str, str]]:
    """The alerts' statuses after each change, as a reader folding the change records sees them."""
    out, incidents = [], {}
    for change in changes:
        current = incidents[change.incident.id] = fold(incidents.get(change.incident.id), change.incident, 100)
        out.append({fp: a.status for fp, a in current.signals.items()})
    return out


@settings(max_examples=300, deadline=None)
@given(alert_signals)
def test_every_resolved_incident_had_all_its_alerts_resolved(signals: list[Signal]) -> None:
    _, changes = run(signals)
    for change, statuses in zip(changes, folded(changes), strict=True):
        if isinstance(change, IncidentResolved):
            assert set(statuses.values()) == {"resolved"}
        else:
            assert "firing" in statuses.values()
        assert change.incident.alerts_total == len(statuses)
        assert change.incident.alerts_firing == sum(1 for s in statuses.values() if s == "firing")


@settings(max_examples=300, deadline=None)
@given(alert_signals)
def test_the_kept_counts_match_the_alerts(signals: list[Signal]) -> None:
    """The counts kept instead of walking the alerts on each signal are what walking them would give."""
    state = None
    for s in signals:
        state = correlate(state, s).state
        assert state == counted(state)
        if state.incident is not None:
            firing = [a.severity for a in state.incident.signals.values() if a.status == "firing"]
            assert state.incident.severity == max(firing, key=lambda v: v.rank)


def test_records_stay_the_same_size_as_an_incident_grows() -> None:
    """Write volume per signal is constant: the 1,000th alert's change and changelog records are no larger than
    the 2nd's (they used to carry the whole incident: 620x the webhook for 1,000 alerts)."""
    state, sizes = None, []
    for n in range(1000):
        before = state
        outcome = correlate(state, signal(f"fp{n:04d}", "firing"))
        state = outcome.state
        header, alerts, gone = changelog_records(state, outcome.alerts, ())
        assert outcome.change is not None and not gone and before is not None or n == 0
        sizes.append(len(outcome.change.model_dump_json()) + len(header.model_dump_json())
                     + sum(len(a.model_dump_json()) for a in alerts))
    assert state is not None and state.incident is not None and state.incident.alerts_total == 1000
    # past the fixed-size parts (64 recent signal ids, 32 tags) nothing grows with the incident
    assert sizes[999] - sizes[100] < 16 and sizes[100] < 2 * sizes[1]  # only the counts gain digits
    assert len(state.incident.tags) == 32


def test_the_changelog_rebuilds_the_state_with_every_alert() -> None:
    """Header and alert records, tombstones for a resolved incident's alerts, and an older whole-state record."""
    assembly = StateAssembly()
    state, closed = None, ()
    for s in [signal("a", "firing"), signal("b", "firing"), signal("a", "resolved"), signal("b", "resolved"),
              signal("c", "firing", n=3), signal("d", "firing", n=3)]:
        before = state
        outcome = correlate(state, s)
        state = outcome.state
        closed = before.incident.signals if before and before.incident and not state.incident else ()
        header, alerts, gone = changelog_records(state, outcome.alerts, closed)
        for key in gone:
            assembly.add(key, None)
        for alert in alerts:
            assembly.add(alert.key, alert)
        assert header.incident is None or header.incident.signals == {}
        assembly.add(header.resource_key, header)
    assert state is not None and assembly.result() == {POD.key: state}
    assert set(assembly.alerts) == {f"{POD.key}#c", f"{POD.key}#d"}  # a and b were deleted with their incident
    whole = CorrelationState(resource_key="x/Pod/y", incident=state.incident)  # as written before 0.6
    assembly.add("x/Pod/y", whole)
    rebuilt = assembly.result()["x/Pod/y"]
    assert rebuilt.incident is not None and set(rebuilt.incident.signals) == {"c", "d"}
    assert rebuilt.firing_by_severity == {"medium": 2} and rebuilt.incident.alerts_firing == 2

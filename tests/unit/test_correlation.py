"""Correlation as a pure function: open, attach, resolve, and idempotence under redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.correlation import correlate, incident_id_for
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


def test_a_resolved_signal_for_nothing_open_opens_nothing() -> None:
    state, changes = run([signal("a", "resolved")])
    assert changes == [] and state is not None and state.incident is None


def test_later_signals_attach_and_raise_severity() -> None:
    _, changes = run([signal("a", "firing"), signal("b", "firing", severity=Severity.CRITICAL)])
    assert [type(c) for c in changes] == [IncidentOpened, IncidentUpdated]
    updated = changes[1].incident
    assert set(updated.signals) == {"a", "b"} and updated.severity == Severity.CRITICAL
    assert updated.id == changes[0].incident.id and updated.signal_count == 2


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


def test_resolving_an_alert_not_attached_changes_nothing() -> None:
    _, changes = run([signal("a", "firing"), signal("zzz", "resolved")])
    assert len(changes) == 1


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


@settings(max_examples=300, deadline=None)
@given(alert_signals)
def test_every_resolved_incident_had_all_its_alerts_resolved(signals: list[Signal]) -> None:
    _, changes = run(signals)
    for change in changes:
        statuses = {s.status for s in change.incident.signals.values()}
        if isinstance(change, IncidentResolved):
            assert statuses == {"resolved"}
        else:
            assert "firing" in statuses

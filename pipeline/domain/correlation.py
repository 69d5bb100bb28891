"""Correlation: signals about one resource become one incident.

An incident opens on the first firing signal for a resource, later signals attach to it, and it
resolves when every attached alert has resolved. Its `confidence` is 1.0 (`incidents.OBSERVED`): every
signal is an observation (an alert that fired, an object state or event read from the API server), attached by
exact resource key, never by inference. The state of one resource is a `CorrelationState`;
`correlate` is a pure function of that state and a signal, so the stage can replay it from the log.
Handling is idempotent: a signal id seen recently, or a signal that changes nothing, yields no change.

Times are the alerts' own: an incident's `created_at` is the earliest `starts_at` of its alerts and its
`resolved_at` the latest `ends_at` (the resolving signal's receive time when no alert says when it ended);
`received_at` is when the pipeline received the opening signal and `updated_at` when it last changed the
incident (receive time, so the read model orders changes by it whatever the alerts' clocks say).

An alert first received already resolved (its firing never arrived) is recorded: with nothing open for its
resource, as an incident opened and completed at once (`IncidentResolved`, the alert's `firing_seen` false);
with an incident open, attached to it as resolved. `truncated_alerts` keeps the most alerts Alertmanager said
it cut from a webhook that brought alerts to the incident.

Records stay bounded however many alerts an incident gathers: a change carries only the alert it touched
(`Outcome.alerts`; the incident's `alerts_total`/`alerts_firing` count them all) and the state keeps per-severity
counts of firing alerts, so handling a signal does not walk the incident's alerts (only resolving does, once).
On the changelog each alert is its own record; `StateAssembly` rebuilds the states from them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.incidents import OBSERVED
from pipeline.events import (
    AttachedSignal,
    CorrelatedAlert,
    CorrelationState,
    Incident,
    IncidentChange,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Severity,
    Signal,
    alert_key,
)

RECENT_SIGNAL_IDS = 64
MAX_TAGS = 32  # an incident's tags (its sources and alert names) stop growing here
_INCIDENT_NAMESPACE = uuid.UUID("0b8f7c1e-52d4-4f7e-8d4b-3f1e2a9c6d10")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The new state of the resource, the incident change to publish (its `incident.signals` holds only the
    alerts it touched) if anything changed, and those alerts (for the changelog)."""

    state: CorrelationState
    change: IncidentChange | None
    alerts: tuple[AttachedSignal, ...] = ()


def incident_id_for(opening_signal_id: str) -> str:
    """Deterministic, so replaying the same signals opens the same incident."""
    return "inc-" + uuid.uuid5(_INCIDENT_NAMESPACE, opening_signal_id).hex[:12]


def correlate(state: CorrelationState | None, signal: Signal) -> Outcome:
    """Apply one signal to the state of its resource."""
    state = state or CorrelationState(resource_key=signal.resource_key)
    if signal.signal_id in state.recent_signal_ids:
        return Outcome(state, None)
    seen = [*state.recent_signal_ids[-(RECENT_SIGNAL_IDS - 1) :], signal.signal_id]
    incident = state.incident

    if incident is None:
        opened = _open(signal)
        alert = opened.signals[signal.fingerprint]
        if signal.status != "firing":  # first seen resolved: recorded as a finished incident
            resolved = _resolved(opened, signal)
            return Outcome(_state(state, None, seen, {}),
                           IncidentResolved(incident=resolved, signal_id=signal.signal_id), (alert,))
        return Outcome(_state(state, opened, seen, {signal.severity.value: 1}),
                       IncidentOpened(incident=opened, signal_id=signal.signal_id), (alert,))

    attached = incident.signals.get(signal.fingerprint)
    if attached is not None and signal.starts_at < attached.starts_at:  # an older instance of the alert: stale
        return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
    truncated = max(incident.truncated_alerts, signal.truncated_alerts)
    if attached is not None and (attached.status, attached.starts_at) == (signal.status, signal.starts_at):
        if truncated == incident.truncated_alerts:
            return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
        noted = incident.model_copy(update={"truncated_alerts": truncated, "updated_at": _later(incident, signal)})
        return Outcome(_state(state, noted, seen, state.firing_by_severity),
                       IncidentUpdated(incident=_delta(noted), signal_id=signal.signal_id))

    updated, firing = _attach(incident, signal, state.firing_by_severity)
    alert = updated.signals[signal.fingerprint]
    if updated.alerts_firing == 0:
        resolved = _resolved(updated, signal)
        return Outcome(_state(state, None, seen, {}),
                       IncidentResolved(incident=_delta(resolved, alert), signal_id=signal.signal_id), (alert,))
    return Outcome(_state(state, updated, seen, firing),
                   IncidentUpdated(incident=_delta(updated, alert), signal_id=signal.signal_id), (alert,))


def _state(
    state: CorrelationState, incident: Incident | None, seen: list[str], firing: Mapping[str, int]
) -> CorrelationState:
    return CorrelationState(resource_key=state.resource_key, incident=incident, recent_signal_ids=seen,
                            firing_by_severity=dict(firing))


def _delta(incident: Incident, *alerts: AttachedSignal) -> Incident:
    """The incident as a change record carries it: with only the alerts the change touched."""
    return incident.model_copy(update={"signals": {a.fingerprint: a for a in alerts}})


def counted(state: CorrelationState) -> CorrelationState:
    """The state with its counts (`alerts_total`, `alerts_firing`, `firing_by_severity`) taken from its alerts:
    for a state rebuilt from the changelog, whatever version wrote it."""
    incident = state.incident
    if incident is None:
        return state
    firing: dict[str, int] = {}
    for alert in incident.signals.values():
        if alert.status == "firing":
            firing[alert.severity.value] = firing.get(alert.severity.value, 0) + 1
    incident = incident.model_copy(update={"alerts_total": len(incident.signals),
                                           "alerts_firing": sum(firing.values())})
    return state.model_copy(update={"incident": incident, "firing_by_severity": firing})


@dataclass
class StateAssembly:
    """Rebuilds the correlate states of resources from their changelog records, read in log order: a
    `CorrelationState` per resource (its incident without alerts) and a `CorrelatedAlert` per alert, deleted by a
    tombstone (a record with a key and no value) when the incident resolves."""

    states: dict[str, CorrelationState] = field(default_factory=dict)
    alerts: dict[str, CorrelatedAlert] = field(default_factory=dict)

    def add(self, key: str, payload: object | None) -> None:
        """One record: its key and decoded payload, or None for a tombstone."""
        if payload is None:
            self.alerts.pop(key, None)
        elif isinstance(payload, CorrelationState):
            self.states[payload.resource_key] = payload
        elif isinstance(payload, CorrelatedAlert):
            self.alerts[payload.key] = payload

    def result(self) -> dict[str, CorrelationState]:
        """Every resource's state, its open incident with all of its alerts."""
        by_incident: dict[tuple[str, str], dict[str, AttachedSignal]] = {}
        for record in self.alerts.values():
            by_incident.setdefault((record.resource_key, record.incident_id), {})[record.alert.fingerprint] = (
                record.alert)
        out: dict[str, CorrelationState] = {}
        for key, state in self.states.items():
            incident = state.incident
            if incident is not None:
                alerts = by_incident.get((key, incident.id), {})
                state = counted(state.model_copy(update={"incident": incident.model_copy(
                    update={"signals": {**incident.signals, **alerts}})}))
            out[key] = state
        return out


def changelog_records(
    state: CorrelationState, alerts: Iterable[AttachedSignal], closed: Iterable[str]
) -> tuple[CorrelationState, list[CorrelatedAlert], list[str]]:
    """What the changelog gets for a resource after a batch: its state without the alerts, the alerts that
    changed (of the open incident), and the keys to delete (`closed`: fingerprints of a resolved incident)."""
    header = state
    if state.incident is not None and state.incident.signals:
        header = state.model_copy(update={"incident": state.incident.model_copy(update={"signals": {}})})
    changed = ([CorrelatedAlert(resource_key=state.resource_key, incident_id=state.incident.id, alert=a)
                for a in alerts] if state.incident is not None else [])
    live = {a.alert.fingerprint for a in changed}
    gone = [alert_key(state.resource_key, fp) for fp in closed if fp not in live]
    return header, changed, gone


def _tags(tags: list[str], signal: Signal) -> list[str]:
    """The incident's tags with the signal's source and name, while fewer than MAX_TAGS."""
    new = [t for t in (signal.source, signal.name) if t not in tags]
    return sorted([*tags, *new][: max(MAX_TAGS, len(tags))]) if new else tags


def _later(incident: Incident, signal: Signal) -> datetime:
    """`updated_at` never goes back, so the read model keeps the newest change."""
    return max(incident.updated_at, signal.observed_at)


def _resolved(incident: Incident, signal: Signal) -> Incident:
    """The incident completed: it ended when its last alert ended (`ends_at`), else when the resolving signal
    was received; never before it started."""
    ended = max(s.ends_at or signal.observed_at for s in incident.signals.values())
    return incident.model_copy(
        update={"status": IncidentStatus.COMPLETED, "resolved_at": max(ended, incident.created_at)}
    )


def _attached(signal: Signal, *, firing_seen: bool = True) -> AttachedSignal:
    resolved = signal.status == "resolved"
    return AttachedSignal(
        fingerprint=signal.fingerprint,
        name=signal.name,
        source=signal.source,
        status=signal.status,
        severity=signal.severity,
        starts_at=signal.starts_at,
        ends_at=signal.ends_at,
        last_signal_id=signal.signal_id,
        summary=signal.summary,
        firing_seen=firing_seen,
        resolved_by=(signal.inferred_by or "source") if resolved else None,
    )


def _open(signal: Signal) -> Incident:
    resource = signal.resource
    where = f"{resource.namespace}/{resource.ref}" if resource.namespace else resource.ref
    firing = signal.status == "firing"
    description = signal.summary or signal.description or f"{signal.name} is firing for {where}"
    if not firing:
        description += " (received only as resolved: its firing notification never arrived)"
    return Incident(
        id=incident_id_for(signal.signal_id),
        title=f"{signal.name} on {where}",
        description=description,
        severity=signal.severity,
        status=IncidentStatus.ACTIVE,
        source=signal.source,
        namespace=resource.namespace,
        resource=resource.ref,
        resource_key=resource.key,
        target=resource.namespace or resource.name,
        issue_type=signal.name,
        signals={signal.fingerprint: _attached(signal, firing_seen=firing)},
        labels=signal.labels,
        affected_resources=[resource.ref],
        tags=sorted({signal.source, signal.name}),
        confidence=OBSERVED,
        created_at=signal.starts_at,
        updated_at=signal.observed_at,
        received_at=signal.observed_at,
        signal_count=1,
        alerts_total=1,
        alerts_firing=1 if firing else 0,
        truncated_alerts=signal.truncated_alerts,
    )


def _attach(incident: Incident, signal: Signal, firing_by_severity: Mapping[str, int]) -> tuple[Incident, dict[str, int]]:
    """The incident with the signal's alert attached, and the new count of firing alerts per severity."""
    before = incident.signals.get(signal.fingerprint)
    same_instance = before is not None and before.starts_at == signal.starts_at
    firing_seen = signal.status == "firing" or (same_instance and before is not None and before.firing_seen)
    alert = _attached(signal, firing_seen=firing_seen)
    firing = dict(firing_by_severity)
    if before is not None and before.status == "firing":
        firing[before.severity.value] = firing.get(before.severity.value, 1) - 1
    if alert.status == "firing":
        firing[alert.severity.value] = firing.get(alert.severity.value, 0) + 1
    firing = {severity: n for severity, n in firing.items() if n > 0}
    severity = max((Severity(s) for s in firing), key=lambda s: s.rank, default=incident.severity)
    updated = incident.model_copy(
        update={
            "signals": {**incident.signals, signal.fingerprint: alert},
            "severity": severity,
            "created_at": min(incident.created_at, signal.starts_at),
            "updated_at": _later(incident, signal),
            "signal_count": incident.signal_count + 1,
            "alerts_total": incident.alerts_total + (before is None),
            "alerts_firing": sum(firing.values()),
            "tags": _tags(incident.tags, signal),
            "truncated_alerts": max(incident.truncated_alerts, signal.truncated_alerts),
        }
    )
    return updated, firing

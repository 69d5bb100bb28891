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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.incidents import OBSERVED
from pipeline.events import (
    AttachedSignal,
    CorrelationState,
    Incident,
    IncidentChange,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Signal,
)

RECENT_SIGNAL_IDS = 64
_INCIDENT_NAMESPACE = uuid.UUID("0b8f7c1e-52d4-4f7e-8d4b-3f1e2a9c6d10")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The new state of the resource and the incident change to publish, if anything changed."""

    state: CorrelationState
    change: IncidentChange | None


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
        if signal.status != "firing":  # first seen resolved: recorded as a finished incident
            resolved = _resolved(opened, signal)
            return Outcome(_state(state, None, seen), IncidentResolved(incident=resolved, signal_id=signal.signal_id))
        return Outcome(_state(state, opened, seen), IncidentOpened(incident=opened, signal_id=signal.signal_id))

    attached = incident.signals.get(signal.fingerprint)
    if attached is not None and signal.starts_at < attached.starts_at:  # an older instance of the alert: stale
        return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
    truncated = max(incident.truncated_alerts, signal.truncated_alerts)
    if attached is not None and (attached.status, attached.starts_at) == (signal.status, signal.starts_at):
        if truncated == incident.truncated_alerts:
            return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
        noted = incident.model_copy(update={"truncated_alerts": truncated, "updated_at": _later(incident, signal)})
        return Outcome(_state(state, noted, seen), IncidentUpdated(incident=noted, signal_id=signal.signal_id))

    updated = _attach(incident, signal)
    if all(s.status == "resolved" for s in updated.signals.values()):
        resolved = _resolved(updated, signal)
        return Outcome(_state(state, None, seen), IncidentResolved(incident=resolved, signal_id=signal.signal_id))
    return Outcome(_state(state, updated, seen), IncidentUpdated(incident=updated, signal_id=signal.signal_id))


def _state(state: CorrelationState, incident: Incident | None, seen: list[str]) -> CorrelationState:
    return CorrelationState(resource_key=state.resource_key, incident=incident, recent_signal_ids=seen)


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
        truncated_alerts=signal.truncated_alerts,
    )


def _attach(incident: Incident, signal: Signal) -> Incident:
    before = incident.signals.get(signal.fingerprint)
    same_instance = before is not None and before.starts_at == signal.starts_at
    firing_seen = signal.status == "firing" or (same_instance and before is not None and before.firing_seen)
    signals = {**incident.signals, signal.fingerprint: _attached(signal, firing_seen=firing_seen)}
    firing = [s for s in signals.values() if s.status == "firing"]
    severity = max((s.severity for s in firing), key=lambda s: s.rank, default=incident.severity)
    return incident.model_copy(
        update={
            "signals": signals,
            "severity": severity,
            "created_at": min(incident.created_at, signal.starts_at),
            "updated_at": _later(incident, signal),
            "signal_count": incident.signal_count + 1,
            "tags": sorted({*incident.tags, signal.source, signal.name}),
            "truncated_alerts": max(incident.truncated_alerts, signal.truncated_alerts),
        }
    )

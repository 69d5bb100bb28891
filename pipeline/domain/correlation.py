"""Correlation: signals about one resource become one incident.

An incident opens on the first firing signal for a resource, later signals attach to it, and it
resolves when every attached alert has resolved. Its `confidence` is 1.0 (`incidents.OBSERVED`): every
signal is an observation (an alert that fired, an object state or event read from the API server), attached by
exact resource key, never by inference. The state of one resource is a `CorrelationState`;
`correlate` is a pure function of that state and a signal, so the stage can replay it from the log.
Handling is idempotent: a signal id seen recently, or a signal that changes nothing, yields no change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

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
        if signal.status != "firing":
            return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
        opened = _open(signal)
        return Outcome(_state(state, opened, seen), IncidentOpened(incident=opened, signal_id=signal.signal_id))

    attached = incident.signals.get(signal.fingerprint)
    if attached is None and signal.status == "resolved":
        return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)
    if attached is not None and (attached.status, attached.starts_at) == (signal.status, signal.starts_at):
        return Outcome(state.model_copy(update={"recent_signal_ids": seen}), None)

    updated = _attach(incident, signal)
    if all(s.status == "resolved" for s in updated.signals.values()):
        resolved = updated.model_copy(
            update={"status": IncidentStatus.COMPLETED, "resolved_at": signal.observed_at}
        )
        return Outcome(_state(state, None, seen), IncidentResolved(incident=resolved, signal_id=signal.signal_id))
    return Outcome(_state(state, updated, seen), IncidentUpdated(incident=updated, signal_id=signal.signal_id))


def _state(state: CorrelationState, incident: Incident | None, seen: list[str]) -> CorrelationState:
    return CorrelationState(resource_key=state.resource_key, incident=incident, recent_signal_ids=seen)


def _attached(signal: Signal) -> AttachedSignal:
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
    )


def _open(signal: Signal) -> Incident:
    resource = signal.resource
    where = f"{resource.namespace}/{resource.ref}" if resource.namespace else resource.ref
    return Incident(
        id=incident_id_for(signal.signal_id),
        title=f"{signal.name} on {where}",
        description=signal.summary or signal.description or f"{signal.name} is firing for {where}",
        severity=signal.severity,
        status=IncidentStatus.ACTIVE,
        source=signal.source,
        namespace=resource.namespace,
        resource=resource.ref,
        resource_key=resource.key,
        target=resource.namespace or resource.name,
        issue_type=signal.name,
        signals={signal.fingerprint: _attached(signal)},
        labels=signal.labels,
        affected_resources=[resource.ref],
        tags=sorted({signal.source, signal.name}),
        confidence=OBSERVED,
        created_at=signal.observed_at,
        updated_at=signal.observed_at,
        signal_count=1,
    )


def _attach(incident: Incident, signal: Signal) -> Incident:
    signals = {**incident.signals, signal.fingerprint: _attached(signal)}
    firing = [s for s in signals.values() if s.status == "firing"]
    severity = max((s.severity for s in firing), key=lambda s: s.rank, default=incident.severity)
    return incident.model_copy(
        update={
            "signals": signals,
            "severity": severity,
            "updated_at": signal.observed_at,
            "signal_count": incident.signal_count + 1,
            "tags": sorted({*incident.tags, signal.source, signal.name}),
        }
    )

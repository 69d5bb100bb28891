"""A synthetic history of the read-model topics: incidents opened, updated and resolved, some with a proposal, its
decision and a workflow's transitions, and some events delivered twice (at least once). `pipeline bench rebuild`
and the snapshot tests build it on a real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.arbitration import Policy, resolve
from pipeline.domain.workflows import Detected, plan, start, step_started
from pipeline.events import (
    AttachedSignal,
    DecisionMade,
    Event,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Payload,
    Proposal,
    RemediationProposed,
    Severity,
    TargetState,
    WorkflowChanged,
)

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
_IDS = uuid.UUID("6f1f7f0e-3c1d-4d0b-9a55-0c5e3f2b9d11")
NAMESPACES = 20


def _alert(name: str, at: datetime, status: str = "firing") -> AttachedSignal:
    return AttachedSignal(fingerprint=name, name=name, source="alertmanager", status=status,
                          severity=Severity.HIGH, starts_at=at, ends_at=at if status == "resolved" else None,
                          last_signal_id=f"{name}-{status}")


def incident_id(i: int) -> str:
    return f"inc-{i:07d}"


def _incident(i: int, at: datetime, alerts: dict[str, AttachedSignal], **kw: object) -> Incident:
    ns = f"ns-{i % NAMESPACES}"
    return Incident.model_validate({
        "id": incident_id(i), "title": f"KubePodCrashLooping on {ns}/Pod/web-{i}", "severity": Severity.HIGH,
        "source": "alertmanager", "namespace": ns, "resource": f"Pod/web-{i}", "resource_key": f"{ns}/Pod/web-{i}",
        "target": ns, "issue_type": "KubePodCrashLooping", "signals": alerts, "labels": {"namespace": ns},
        "created_at": EPOCH + timedelta(seconds=i), "updated_at": at, "received_at": EPOCH + timedelta(seconds=i),
        "alerts_total": 1, **kw})


def _event(payload: Payload, name: str, i: int, at: datetime) -> Event:
    return Event.of(payload, source="bench/history", id=str(uuid.uuid5(_IDS, f"{name}/{i}")), time=at)


def incident_events(i: int, *, later: bool = False, opening_only: bool = False) -> Iterator[Event]:
    """Incident i's changes: opened; every third gets a second alert; every second resolves. `later`: only the
    changes after its opening; `opening_only`: only its opening (a history cut in two)."""
    opened_at = EPOCH + timedelta(seconds=i)
    if not later:
        yield _event(IncidentOpened(incident=_incident(i, opened_at, {"a": _alert("a", opened_at)},
                                                        alerts_firing=1)), "opened", i, opened_at)
    if opening_only:
        return
    at = opened_at + timedelta(milliseconds=500)
    if i % 3 == 0:
        yield _event(IncidentUpdated(incident=_incident(i, at, {"b": _alert("b", at)}, alerts_total=2,
                                                        alerts_firing=2)), "updated", i, at)
    if i % 2 == 0:
        done = at + timedelta(milliseconds=500)
        gone = {"a": _alert("a", done, "resolved")} | ({"b": _alert("b", done, "resolved")} if i % 3 == 0 else {})
        yield _event(IncidentResolved(incident=_incident(i, done, gone, status=IncidentStatus.COMPLETED,
                                                          resolved_at=done, alerts_total=len(gone))),
                     "resolved", i, done)


def remediation_events(i: int) -> Iterator[Event]:
    """Every tenth incident gets a manual proposal and its decision; every twentieth a workflow that starts."""
    if i % 10:
        return
    ns, at = f"ns-{i % NAMESPACES}", EPOCH + timedelta(seconds=i, milliseconds=200)
    p = Proposal.model_validate({
        "id": f"p-{i:07d}", "target": f"{ns}/Pod/web-{i}", "namespace": ns, "action": "restart_pod",
        "source": "manual", "priority": 50, "incident_id": incident_id(i), "risk": "low", "workflow_id": f"wf-{i}",
        "parameters": {"request_key": f"key:{i}", "request_hash": "h"}})
    yield _event(RemediationProposed(namespace=ns, proposal=p), "proposed", i, at)
    (decision,) = resolve([p], TargetState(), Policy(approval=()), at)
    yield _event(DecisionMade(namespace=ns, decision=decision, resolution_seconds=0.01), "decided", i, at)
    if i % 20 == 0:
        w = plan(decision, workflow_id=f"wf-{i}", mode="auto", now=at,
                 detected={p.target: Detected("manual")})
        yield _event(WorkflowChanged(namespace=ns, transition="created", sequence=1, workflow=w), "created", i, at)
        running = step_started(start(w, at), w.steps[0], at)
        yield _event(WorkflowChanged(namespace=ns, transition="step_started", sequence=2, workflow=running),
                     "started", i, at)


def outputs(settings: Settings, events: Iterator[Event]) -> Iterator[Output]:
    """Each event to its topic, keyed as the pipeline keys it."""
    for event in events:
        topic = "incidents" if isinstance(event.payload, IncidentOpened | IncidentUpdated | IncidentResolved) else (
            "remediation" if isinstance(event.payload, RemediationProposed) else
            "decisions" if isinstance(event.payload, DecisionMade) else "workflows")
        yield Output.event(settings.topic(topic), event)


def history(first: int, last: int, *, open_only: range = range(0), later_of: range = range(0),
            again: range = range(0)) -> Iterator[Event]:
    """Incidents first..last-1 (only the opening of those in `open_only`), the opening of every 50th delivered
    twice; then the changes after the opening of those in `later_of` (a history cut in two), and the events of
    those in `again` delivered once more (at least once, across the cut)."""
    for i in range(first, last):
        yield from incident_events(i, opening_only=i in open_only)
        yield from remediation_events(i)
        if i % 50 == 0:
            yield from incident_events(i, opening_only=i in open_only)  # a redelivery: the same ids again
    for i in later_of:
        yield from incident_events(i, later=True)
    for i in again:
        yield from incident_events(i)
        yield from remediation_events(i)


async def publish(settings: Settings, events: Iterator[Event], chunk: int = 5000) -> int:
    """Produce the events (acknowledged); how many."""
    producer = EventProducer(settings)
    await producer.start()
    count = 0
    try:
        batch: list[Output] = []
        for output in outputs(settings, events):
            batch.append(output)
            if len(batch) >= chunk:
                await producer.publish(batch)
                count, batch = count + len(batch), []
        await producer.publish(batch)
        return count + len(batch)
    finally:
        await producer.stop()

"""The one event envelope and every event payload.

An event on the bus is a Kafka record whose value is the JSON payload and whose headers carry the
CloudEvents 1.0 attributes in binary mode (`ce_id`, `ce_type`, ...), plus our extensions
`ce_incidentid`, `ce_workflowid`, `ce_causationid` and `ce_traceparent`.
Payload models are versioned by their event type name; `pipeline schemas export` turns them into
JSON Schema and AsyncAPI documents under `schemas/`.

One module per part of the flow: `base` (envelope, payload base, severity), `incidents` (signals,
incidents, features, scores), `remediation` (proposals, decisions, arbitration state), `workflows`
(workflow transitions, runtime controls), `watch` (the watcher's changelog). Import from `pipeline.events`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipeline.events.base import (
    CONTENT_TYPE,
    SPECVERSION,
    Envelope,
    Event,
    IncidentStatus,
    InvalidEvent,
    Payload,
    Severity,
    derived_id,
    iso_z,
    new_id,
    utcnow,
)
from pipeline.events.incidents import (
    AttachedSignal,
    CorrelatedAlert,
    CorrelationState,
    FeaturesComputed,
    Incident,
    IncidentChange,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    RecommendedAction,
    Resource,
    ScoreComputed,
    Signal,
    alert_key,
)
from pipeline.events.remediation import (
    ActionReleased,
    ActiveAction,
    ArbitrationState,
    Decision,
    DecisionMade,
    Outcome,
    Proposal,
    Reason,
    ReasonCode,
    RemediationProposed,
    Risk,
    Source,
    TargetState,
)
from pipeline.events.watch import (
    WatchedCondition,
    WatchState,
)
from pipeline.events.workflows import (
    FINISHED,
    ControlChanged,
    ControlKind,
    Layer,
    StepStatus,
    Transition,
    Workflow,
    WorkflowChanged,
    WorkflowCheckpoint,
    WorkflowStatus,
    WorkflowStep,
)

EVENT_TYPES: dict[str, type[Payload]] = {
    model.event_type: model
    for model in (
        Signal, IncidentOpened, IncidentUpdated, IncidentResolved, CorrelationState, CorrelatedAlert, FeaturesComputed, ScoreComputed,
        RemediationProposed, ActionReleased, DecisionMade, ArbitrationState, WatchState, WorkflowChanged,
        ControlChanged,
    )
}


def decode(value: bytes | None, headers: Any) -> Event:
    """Parse a Kafka record into an Event; raises InvalidEvent for anything that is not one of ours."""
    envelope = Envelope.from_headers(headers)
    model = EVENT_TYPES.get(envelope.type)
    if model is None:
        raise InvalidEvent(f"unknown event type {envelope.type!r}")
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        payload = model.model_validate_json(value)
    except ValidationError as exc:
        raise InvalidEvent(f"{envelope.type} payload invalid: {exc.errors(include_url=False)}") from exc
    return Event(envelope, payload)


__all__ = [
    "ActionReleased",
    "ActiveAction",
    "ArbitrationState",
    "AttachedSignal",
    "CONTENT_TYPE",
    "ControlChanged",
    "ControlKind",
    "CorrelatedAlert",
    "CorrelationState",
    "Decision",
    "DecisionMade",
    "EVENT_TYPES",
    "Envelope",
    "Event",
    "FINISHED",
    "FeaturesComputed",
    "Incident",
    "IncidentChange",
    "IncidentOpened",
    "IncidentResolved",
    "IncidentStatus",
    "IncidentUpdated",
    "InvalidEvent",
    "Layer",
    "Outcome",
    "Payload",
    "Proposal",
    "Reason",
    "ReasonCode",
    "RecommendedAction",
    "RemediationProposed",
    "Resource",
    "Risk",
    "SPECVERSION",
    "ScoreComputed",
    "Severity",
    "Signal",
    "Source",
    "StepStatus",
    "TargetState",
    "Transition",
    "WatchState",
    "WatchedCondition",
    "Workflow",
    "WorkflowChanged",
    "WorkflowCheckpoint",
    "WorkflowStatus",
    "WorkflowStep",
    "alert_key",
    "decode",
    "derived_id",
    "new_id",
    "iso_z",
    "utcnow",
]

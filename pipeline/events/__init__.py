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
    held,
    iso_z,
    new_id,
    share,
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
from pipeline.events.snapshots import (
    INDEX_HEADER,
    Folded,
    IncidentRow,
    IncidentSnapshot,
    RemediationSnapshot,
    SnapshotWatermark,
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
        ControlChanged, IncidentSnapshot, RemediationSnapshot, SnapshotWatermark,
    )
}


def decode(value: bytes | None, headers: Any) -> Event:
    """Parse a Kafka record into an Event; raises InvalidEvent for anything that is not one of ours."""
    envelope = Envelope.from_headers(headers)
    return Event(envelope, _payload(envelope.type, value))


def decode_payload(value: bytes | None, headers: Any) -> Payload:
    """Only the payload of a record (its type from the `ce_type` header, no other attribute parsed): for reads
    of many records that need nothing else, such as a snapshot topic read whole at start-up."""
    kind = next((v.decode() for k, v in headers or () if k == "ce_type" and v is not None), None)
    if kind is None:
        raise InvalidEvent("missing CloudEvents header(s): ce_type")
    return _payload(kind, value)


def _payload(kind: str, value: bytes | None) -> Payload:
    model = EVENT_TYPES.get(kind)
    if model is None:
        raise InvalidEvent(f"unknown event type {kind!r}")
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        raise InvalidEvent(f"{kind} payload invalid: {exc.errors(include_url=False)}") from exc


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
    "Folded",
    "Incident",
    "IncidentSnapshot",
    "IncidentRow",
    "INDEX_HEADER",
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
    "RemediationSnapshot",
    "Resource",
    "Risk",
    "SPECVERSION",
    "ScoreComputed",
    "Severity",
    "Signal",
    "SnapshotWatermark",
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
    "decode_payload",
    "derived_id",
    "held",
    "new_id",
    "iso_z",
    "share",
    "utcnow",
]

"""The one event envelope and every event payload.

An event on the bus is a Kafka record whose value is the JSON payload and whose headers carry the
CloudEvents 1.0 attributes in binary mode (`ce_id`, `ce_type`, ...), plus our extensions
`ce_incidentid`, `ce_workflowid`, `ce_causationid` and `ce_traceparent`.
Payload models are versioned by their event type name; `pipeline schemas export` turns them into
JSON Schema and AsyncAPI documents under `schemas/`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
_EXTENSIONS = ("subject", "incidentid", "workflowid", "causationid", "traceparent")


class InvalidEvent(ValueError):
    """A record that is not one of our events: missing CloudEvents headers or a payload that fails validation."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Severity(StrEnum):
    """Incident and signal severity, the engine's vocabulary."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @property
    def priority(self) -> int:
        """The MCP client reads `priority` as an integer: 1 is the most urgent."""
        return 5 - self.rank


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class IncidentStatus(StrEnum):
    """The MCP server's status vocabulary. An incident whose alerts all resolved is `completed`."""

    ACTIVE = "active"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Payload(BaseModel):
    """Base of every event payload. `event_type` is the CloudEvents `type` of the event carrying it."""

    model_config = ConfigDict(extra="ignore", frozen=False)
    event_type: ClassVar[str]
    key_field: ClassVar[str]


class Resource(BaseModel):
    """The Kubernetes object a signal or incident is about. Cluster-scoped objects have namespace ''."""

    model_config = ConfigDict(frozen=True)
    namespace: str = ""
    kind: str
    name: str

    @property
    def key(self) -> str:
        """Partition key of everything about this resource: `namespace/Kind/name`."""
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


class Signal(Payload):
    """One observation about one resource: an alert instance changed state, or a cluster event happened.

    `signal_id` is deterministic for an alert instance and status, so a redelivered webhook yields the same id.
    """

    event_type: ClassVar[str] = "pipeline.signal.observed.v1"
    key_field: ClassVar[str] = "resource_key"

    signal_id: str
    source: Literal["alertmanager", "kubernetes", "manual"]
    origin: str = Field("", description="Where it came from: Alertmanager externalURL, cluster name, ...")
    resource: Resource
    name: str = Field(description="alertname, or the Kubernetes reason (CrashLoopBackOff, ...)")
    status: Literal["firing", "resolved"]
    severity: Severity
    summary: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = Field(description="Stable identity of the alert (label-set hash) within its source")
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    observed_at: datetime

    @property
    def resource_key(self) -> str:
        return self.resource.key


class AttachedSignal(BaseModel):
    """The latest state of one alert (or event kind) attached to an incident."""

    fingerprint: str
    name: str
    source: str
    status: Literal["firing", "resolved"]
    severity: Severity
    starts_at: datetime
    ends_at: datetime | None = None
    last_signal_id: str
    summary: str = ""


class Incident(BaseModel):
    """An incident: everything wrong with one resource from its first firing signal until all resolved."""

    id: str
    title: str
    description: str = ""
    severity: Severity
    status: IncidentStatus = IncidentStatus.ACTIVE
    source: str
    namespace: str = ""
    resource: str = Field("", description="Kind/name of the affected object")
    resource_key: str = ""
    target: str = ""
    issue_type: str = ""
    signals: dict[str, AttachedSignal] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    affected_resources: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    confidence: float | None = None
    correlation_id: str | None = None
    external_id: str | None = None
    created_by: str | None = None
    workflow_id: str | None = None
    action_type: str | None = Field(None, description="The action of the incident's latest workflow")
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    signal_count: int = 0


class IncidentChange(Payload):
    """An incident changed; the payload carries the whole incident after the change (event-carried state)."""

    key_field: ClassVar[str] = "incident_id"
    incident: Incident
    signal_id: str | None = Field(None, description="The signal that caused the change, if any")

    @property
    def incident_id(self) -> str:
        return self.incident.id


class IncidentOpened(IncidentChange):
    """A new incident: the first firing signal for a resource, or one created through the API."""

    event_type: ClassVar[str] = "pipeline.incident.opened.v1"


class IncidentUpdated(IncidentChange):
    """A signal was attached to an open incident, or an attached alert changed state."""

    event_type: ClassVar[str] = "pipeline.incident.updated.v1"


class IncidentResolved(IncidentChange):
    """Every alert attached to the incident has resolved."""

    event_type: ClassVar[str] = "pipeline.incident.resolved.v1"


class CorrelationState(Payload):
    """Changelog record of the correlate stage: the open incident of one resource (compacted topic)."""

    event_type: ClassVar[str] = "pipeline.correlation.state.v1"
    key_field: ClassVar[str] = "resource_key"
    resource_key: str
    incident: Incident | None = None
    recent_signal_ids: list[str] = Field(default_factory=list)


class FeaturesComputed(Payload):
    """The anomaly-detector's 45-feature vector for an incident, with the provenance of every value.

    `values[i]` is the feature named `feature_names[i]`; None means missing, and `missing[name]` says why.
    """

    event_type: ClassVar[str] = "pipeline.features.computed.v1"
    key_field: ClassVar[str] = "incident_id"
    incident_id: str
    scope: dict[str, str] = Field(description="namespace / deployment / pod / node the vector describes")
    evaluated_at: datetime
    feature_names: list[str]
    values: list[float | None]
    missing: dict[str, str] = Field(default_factory=dict)
    query_count: int
    query_seconds: float
    source: str = Field("", description="The Prometheus / Thanos URL queried")
    target: str = Field("", description="The incident's resource key, namespace/Kind/name")
    severity: Severity | None = Field(None, description="The incident's severity when the vector was computed")


class RecommendedAction(BaseModel):
    action: str
    confidence: float
    reason: str


class ScoreComputed(Payload):
    """An ML verdict on an incident's feature vector, or "degraded" (rules only) with the reason."""

    event_type: ClassVar[str] = "pipeline.score.computed.v1"
    key_field: ClassVar[str] = "incident_id"
    incident_id: str
    verdict: Literal["anomaly", "normal", "degraded"]
    model: str | None = None
    model_version: str | None = None
    score: float | None = Field(None, description="0..1, higher is more anomalous")
    confidence: float | None = None
    prediction: int | None = Field(None, description="-1 anomaly, 1 normal")
    recommended_actions: list[RecommendedAction] = Field(default_factory=list)
    degraded_reason: str | None = None
    source: str = Field("", description="kserve | ml-service | rules")
    latency_seconds: float = 0.0
    features_event_id: str
    target: str = Field("", description="The incident's resource key, namespace/Kind/name (from the features)")
    namespace: str = ""
    severity: Severity | None = None


# --- Remediation: proposals, decisions, released actions, arbitration state -----------------------------------

Source = Literal["deterministic", "ai", "manual"]
Risk = Literal["none", "low", "medium", "high"]
Outcome = Literal["approved", "rejected", "awaiting_approval", "superseded"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Proposal(_Record):
    """An action someone (rules, a model, a human) proposes for one target resource."""

    id: str
    target: str = Field(description="Resource key `namespace/Kind/name`")
    namespace: str
    action: str
    source: Source
    priority: int = Field(ge=0, le=100)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    incident_id: str
    rule_id: str | None = None
    risk: Risk = "high"
    groups: tuple[str, ...] = Field((), description="Exclusive groups the action belongs to")
    severity: Severity = Severity.MEDIUM
    scores: dict[str, float] = Field(default_factory=dict)
    reason: str = ""
    dry_run: bool = Field(False, description="Decide, but never change the cluster; holds no target")
    workflow_id: str | None = None
    requested_by: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ReasonCode(StrEnum):
    MATCHED_RULE = "matched_rule"
    AI_SCORE = "ai_score"
    MANUAL = "manual"
    KILL_SWITCH = "kill_switch"
    PROTECTED_NAMESPACE = "protected_namespace"
    BELOW_CONFIDENCE = "below_confidence_threshold"
    TARGET_BUSY = "target_busy"
    COOLDOWN = "cooldown"
    NAMESPACE_BUDGET = "namespace_budget"
    DUPLICATE = "duplicate"
    LOST_CONFLICT = "lost_conflict"
    WON_CONFLICT = "won_conflict"
    APPROVAL_REQUIRED = "approval_required"


class Reason(_Record):
    """One reason of a decision. `rule` names the matched rule, resolution or approval rule; `other` and
    `other_action` the conflicting proposal; `conflict` is `target` or `group:<name>`."""

    code: ReasonCode
    message: str
    rule: str | None = None
    other: str | None = None
    other_action: str | None = None
    conflict: str | None = None
    values: dict[str, float] = Field(default_factory=dict)


class Decision(_Record):
    proposal: Proposal
    outcome: Outcome
    reasons: tuple[Reason, ...]
    decided_at: datetime


class ActiveAction(_Record):
    proposal_id: str
    action: str
    namespace: str
    started_at: datetime
    incident_id: str = ""


class TargetState(_Record):
    """What arbitration remembers: the running action per target, when each target last had an action,
    and how many actions run per namespace."""

    active: dict[str, ActiveAction] = Field(default_factory=dict)
    last_action_at: dict[str, datetime] = Field(default_factory=dict)
    namespace_active: dict[str, int] = Field(default_factory=dict)


class RemediationProposed(Payload):
    """A proposal entering arbitration: from the rules (incidents), a model (scores) or an operator."""

    event_type: ClassVar[str] = "pipeline.remediation.proposed.v1"
    key_field: ClassVar[str] = "namespace"
    namespace: str = Field(description="The target's namespace: one arbitrator owns a namespace")
    proposal: Proposal


class ActionReleased(Payload):
    """The action on a target is over (done, failed, or its incident resolved): the target is free and its
    cooldown starts."""

    event_type: ClassVar[str] = "pipeline.remediation.released.v1"
    key_field: ClassVar[str] = "namespace"
    namespace: str
    target: str
    incident_id: str | None = Field(None, description="Release only an action started for this incident")
    proposal_id: str | None = Field(None, description="Release only this action")
    reason: Literal["completed", "failed", "incident_resolved", "cancelled"]
    released_at: datetime


class DecisionMade(Payload):
    """The arbitration outcome of one proposal, with every reason."""

    event_type: ClassVar[str] = "pipeline.remediation.decided.v1"
    key_field: ClassVar[str] = "namespace"
    namespace: str
    decision: Decision
    resolution_seconds: float = Field(description="From the proposal's event time to the decision")


class ArbitrationState(Payload):
    """Changelog of the arbitrate stage: one namespace's state and the proposals it already decided."""

    event_type: ClassVar[str] = "pipeline.arbitration.state.v1"
    key_field: ClassVar[str] = "namespace"
    namespace: str
    state: TargetState = Field(default_factory=TargetState)
    decided: dict[str, Outcome] = Field(default_factory=dict, description="Recent proposal ids and outcomes")


# --- Remediation execution: workflows and runtime controls ------------------------------------------------------

Layer = Literal["infrastructure", "platform", "application"]
WorkflowStatus = Literal["pending", "awaiting_approval", "running", "completed", "failed", "rejected", "skipped"]
StepStatus = Literal["pending", "running", "completed", "failed", "skipped"]
Transition = Literal[
    "created", "awaiting_approval", "approved", "rejected", "step_started", "step_succeeded", "step_failed",
    "step_skipped", "checkpoint_passed", "checkpoint_failed", "checkpoint_skipped", "paused", "rolled_back", "completed", "failed", "skipped",
]
FINISHED: frozenset[str] = frozenset({"completed", "failed", "rejected", "skipped"})


class WorkflowStep(BaseModel):
    """One step of a workflow: an action on one object (or a wait for one), in its layer's order.

    `escalates` marks a rung of an escalation ladder: it runs only when the checkpoint after the previous
    rung failed. `mutating` steps change the cluster and carry `marker` (recorded on the object, so a resumed
    workflow never repeats one); `change` records what was (or, in a dry run, would have been) sent."""

    id: str
    order: int
    layer: Layer = "application"
    action: str
    description: str
    target: str = Field(description="`namespace/Kind/name` of the object acted on")
    mutating: bool = True
    escalates: bool = False
    required: bool = True
    timeout_s: float = 120.0
    status: StepStatus = "pending"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    marker: str = ""
    change: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    rollback: dict[str, Any] = Field(default_factory=dict, description="How to undo it, when it can be undone")


class WorkflowCheckpoint(BaseModel):
    """Checks polled after a step until they all pass or `timeout_s` runs out."""

    id: str
    layer: Layer = "application"
    after_step: str
    checks: list[str]
    target: str
    timeout_s: float = 120.0
    required: bool = True
    status: Literal["pending", "passed", "failed", "skipped"] = "pending"
    checked_at: datetime | None = None
    message: str = ""
    observed: dict[str, Any] = Field(default_factory=dict)


class Workflow(BaseModel):
    """A remediation workflow: a decision put into steps and checkpoints, and what happened to each."""

    id: str
    incident_id: str
    proposal_id: str
    namespace: str
    target: str
    resource_kind: str
    resource_name: str
    action: str
    source: str
    issue_type: str = ""
    mode: Literal["off", "dry-run", "approve", "auto"] = "auto"
    dry_run: bool = False
    status: WorkflowStatus = "pending"
    deployment_method: str = "unknown"
    deployment: dict[str, Any] = Field(default_factory=dict, description="The detection record (method, source, ...)")
    remediator: str = ""
    layers: list[Layer] = Field(default_factory=list)
    steps: list[WorkflowStep] = Field(default_factory=list)
    checkpoints: list[WorkflowCheckpoint] = Field(default_factory=list)
    waiting_for: str | None = Field(None, description="Why it waits: approval_mode, approval_rule, storm_guard, paused")
    reason: str | None = Field(None, description="Why it was skipped, rejected or failed")
    error_message: str | None = None
    approved_by: str | None = None
    decision: Decision
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class WorkflowChanged(Payload):
    """A workflow transition; the payload carries the whole workflow after it (event-carried state)."""

    event_type: ClassVar[str] = "pipeline.workflow.changed.v1"
    key_field: ClassVar[str] = "namespace"
    namespace: str
    transition: Transition
    step_id: str | None = None
    sequence: int = Field(description="Transitions of this workflow so far: the latest state has the highest")
    workflow: Workflow


ControlKind = Literal["kill_switch", "pause", "approve", "reject", "remediator"]


class ControlChanged(Payload):
    """A runtime control: the kill switch or the pause turned on or off, a waiting workflow approved or rejected,
    or a remediator's start-up self-check (its mode and RBAC permissions)."""

    event_type: ClassVar[str] = "pipeline.control.changed.v1"
    key_field: ClassVar[str] = "key"
    key: str = Field(description="kill-switch | pause | approval/<workflow id> | remediator/<identity>")
    kind: ControlKind
    enabled: bool | None = None
    workflow_id: str | None = None
    namespace: str | None = None
    by: str = ""
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class WatchedCondition(BaseModel):
    """A condition of a Kubernetes object the watcher emitted as firing (and will resolve when it goes)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    fingerprint: str
    name: str
    severity: Severity
    resource: Resource
    starts_at: datetime
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    episode: str = Field("", description="Identifies this firing among the condition's episodes (in signal ids)")


class WatchState(Payload):
    """Changelog of the Kubernetes watcher: what it emitted per object uid (a tombstone once nothing fires),
    so a restarted or new leader re-lists without emitting anything twice."""

    event_type: ClassVar[str] = "pipeline.watch.state.v1"
    key_field: ClassVar[str] = "uid"
    uid: str
    kind: str
    namespace: str = ""
    name: str
    conditions: dict[str, WatchedCondition] = Field(default_factory=dict)


EVENT_TYPES: dict[str, type[Payload]] = {
    model.event_type: model
    for model in (
        Signal, IncidentOpened, IncidentUpdated, IncidentResolved, CorrelationState, FeaturesComputed, ScoreComputed,
        RemediationProposed, ActionReleased, DecisionMade, ArbitrationState, WatchState, WorkflowChanged,
        ControlChanged,
    )
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """CloudEvents 1.0 attributes of one event, carried as Kafka headers (binary mode)."""

    type: str
    source: str
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=utcnow)
    subject: str | None = None
    incidentid: str | None = None
    workflowid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        for name in _EXTENSIONS:
            value = getattr(self, name)
            if value:
                out.append((f"ce_{name}", value.encode()))
        return out

    @classmethod
    def from_headers(cls, headers: Any) -> Envelope:
        found = {k: v.decode() for k, v in headers or () if k.startswith("ce_") and v is not None}
        missing = [n for n in ("ce_id", "ce_type", "ce_source", "ce_specversion") if n not in found]
        if missing:
            raise InvalidEvent(f"missing CloudEvents header(s): {', '.join(missing)}")
        try:
            time = datetime.fromisoformat(found["ce_time"]) if "ce_time" in found else utcnow()
        except ValueError as exc:
            raise InvalidEvent(f"ce_time is not an RFC 3339 timestamp: {found['ce_time']!r}") from exc
        return cls(
            type=found["ce_type"],
            source=found["ce_source"],
            id=found["ce_id"],
            time=time,
            **{name: found.get(f"ce_{name}") for name in _EXTENSIONS},
        )


@dataclass(frozen=True, slots=True)
class Event:
    """An envelope and its payload; `key` is the Kafka record key (the payload's partition key)."""

    envelope: Envelope
    payload: Payload

    @property
    def key(self) -> str:
        return str(getattr(self.payload, self.payload.key_field))

    @classmethod
    def of(cls, payload: Payload, *, source: str, id: str | None = None, **attrs: Any) -> Event:
        """Wrap a payload; the type comes from the payload class, the id is new unless given."""
        env = Envelope(type=payload.event_type, source=source, id=id or new_id(), **attrs)
        return cls(env, payload)

    def encode(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of the Kafka record."""
        return self.key.encode(), self.payload.model_dump_json().encode(), self.envelope.headers()


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

"""What the incident, decision, workflow and remediation routes answer, as models: the contract in
`docs/openapi.json` (`pipeline.api.contract`). The routes build these bodies from the read model
(`pipeline.domain.incidents.to_api`, `pipeline.gateway.remediation_view`); Schemathesis checks every answer of
the live gateway against these schemas, so a field that changes shape here or there fails the suite.

Field types say what clients may rely on: a field that can be null is declared nullable, one that is always
present is required. The MCP server and the notebook client decode several of them into Go non-pointer or
Python non-optional types (`/work/shared/contracts/COMPATIBILITY.md`); those are never null."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.contract import Body
from pipeline.events import IncidentStatus, Severity
from pipeline.events.remediation import Outcome

Timestamp = str  # RFC 3339, UTC


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="allow", json_schema_extra={"examples": [example]})


# ------------------------------------------------------------------------------------------------ queries
class IncidentListQuery(BaseModel):
    """`GET /api/v1/incidents`. An empty value or `all` means no filter; values are case-insensitive."""

    namespace: str | None = Field(None, description="only incidents of this namespace")
    severity: Literal["", "all", "critical", "high", "medium", "low"] | None = None
    status: Literal["", "all", "active", "open", "running", "completed", "resolved", "failed",
                    "cancelled"] | None = Field(None, description="`open` is `active`, `resolved` is `completed`")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


class DecisionListQuery(BaseModel):
    """`GET /api/v1/decisions`. An empty value or `all` means no filter."""

    namespace: str | None = Field(None, description="only decisions about this namespace")
    outcome: Literal["", "all", "approved", "rejected", "awaiting_approval", "superseded"] | None = None
    since: datetime | Literal[""] | None = Field(None, description="RFC 3339: only decisions made at or after it")
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


# ------------------------------------------------------------------------------------------------ incidents
class AlertView(Body):
    """One alert (or Kubernetes signal) of an incident."""

    fingerprint: str
    name: str
    source: str
    status: Literal["firing", "resolved"]
    severity: Severity
    starts_at: Timestamp | None
    ends_at: Timestamp | None
    summary: str
    firing_seen: bool
    resolved_by: str | None


_INCIDENT = {
    "id": "inc-c68d8b0b52b3", "title": "PodOOMKilled: shop/Pod/cart-7d9f8b6c5-hw7kz", "description": "Container "
    "app in shop/cart-7d9f8b6c5-hw7kz was OOMKilled", "severity": "critical", "status": "active", "priority": 1,
    "target": "shop/Pod/cart-7d9f8b6c5-hw7kz", "action_type": "scale_resources", "source": "alertmanager",
    "confidence": 1.0, "parameters": {}, "created_at": "2026-11-21T23:55:50.879714Z",
    "updated_at": "2026-12-06T17:49:50.207337Z", "started_at": "2026-11-21T23:55:50.879714Z", "completed_at": None,
    "resolved_at": None, "received_at": "2026-12-06T17:49:50.207337Z", "duration_seconds": None,
    "tags": ["alertmanager"], "namespace": "shop", "resource": "Pod/cart-7d9f8b6c5-hw7kz",
    "issue_type": "oom_killed", "workflow_id": "wf-3f1c0d2e9a7b", "remediation_status": "completed",
    "remediation_dry_run": False, "labels": {"namespace": "shop", "pod": "cart-7d9f8b6c5-hw7kz"},
    "affected_resources": ["shop/Pod/cart-7d9f8b6c5-hw7kz"], "correlation_id": None, "external_id": None,
    "signal_count": 1, "alerts_total": 1, "alerts_firing": 1, "alerts_listed": 1, "truncated_alerts": 0,
    "alerts": [{"fingerprint": "c21d0e9d3c87b1c3", "name": "PodOOMKilled", "source": "alertmanager",
                "status": "firing", "severity": "critical", "starts_at": "2026-11-21T23:55:50.879714Z",
                "ends_at": None, "summary": "Container app in shop/cart-7d9f8b6c5-hw7kz was OOMKilled",
                "firing_seen": True, "resolved_by": None}],
}


class IncidentView(Body):
    """One incident: the MCP server's fields, the engine's and the pipeline's."""

    model_config = _example(_INCIDENT)
    id: str
    title: str
    description: str
    severity: Severity
    status: IncidentStatus = Field(description="`completed` once every alert resolved")
    priority: int = Field(description="1 (critical) to 4 (low)")
    target: str
    action_type: str = Field(description="the remediation action, `none` when nothing is being done")
    source: str
    confidence: float = Field(ge=0, le=1)
    parameters: dict[str, Any]
    created_at: Timestamp = Field(description="the first alert's startsAt")
    updated_at: Timestamp
    started_at: Timestamp
    completed_at: Timestamp | None = Field(description="null until the incident is finished")
    resolved_at: Timestamp | None
    received_at: Timestamp = Field(description="when the pipeline received it")
    duration_seconds: float | None = Field(description="null until the incident is finished")
    tags: list[str]
    namespace: str
    resource: str
    issue_type: str
    workflow_id: str | None = Field(description="the remediation workflow, null when none")
    remediation_status: str | None = Field(description="the workflow's status; `none` when no action applies; "
                                                       "null while its decision is not known yet")
    remediation_dry_run: bool | None
    labels: dict[str, str]
    affected_resources: list[str]
    correlation_id: str | None
    external_id: str | None
    signal_count: int
    alerts_total: int
    alerts_firing: int
    alerts_listed: int
    truncated_alerts: int = Field(description="alerts not listed (an incident lists at most ALERTS_LISTED)")
    alerts: list[AlertView]


class SeverityCounts(BaseModel):
    low: int
    medium: int
    high: int
    critical: int


class IncidentSummary(Body):
    """Counts over every incident matching the namespace filter (the status and severity filters aside)."""

    total: int
    active: int
    running: int
    completed: int
    failed: int
    cancelled: int
    by_severity: SeverityCounts


class IncidentList(Body):
    """A page of incidents, newest first, with the total matching and a summary."""

    incidents: list[IncidentView]
    total: int = Field(description="incidents matching the filters")
    count: int = Field(description="incidents on this page")
    limit: int
    offset: int
    summary: IncidentSummary


class IncidentCreated(Body):
    """The incident is on the incidents topic and visible in this gateway's read model."""

    status: IncidentStatus
    incident_id: str
    created_at: Timestamp
    title: str
    description: str
    severity: Severity
    priority: int
    incident: IncidentView
    message: str


# ------------------------------------------------------------------------------------------------ forensics
class LogPosition(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp: Timestamp | None = Field(description="the record's broker timestamp")


class LoggedEvent(BaseModel):
    """One record of the log: where it is, its key, and the CloudEvent (structured JSON)."""

    position: LogPosition
    key: str | None
    event: dict[str, Any] = Field(description="CloudEvents 1.0: specversion, id, type, source, time, subject, "
                                              "data (the payload; its schema per type is in schemas/)")


class TimelineWindow(BaseModel):
    from_: Timestamp = Field(alias="from", description="where the scan of each topic started")
    margin_seconds: float


class Timeline(Body):
    """Every event of the incident on every topic, in causal order (causation ids, then time, then position)."""

    incident_id: str
    window: TimelineWindow
    count: int
    events: list[LoggedEvent]


class ReasonView(Body):
    """Why: a matched rule, a conflict, a cooldown, a budget, an approval rule, ..."""

    code: str
    message: str
    rule: str | None = None
    other: str | None = None
    other_action: str | None = None
    conflict: str | None = None
    values: dict[str, float] | None = None


class DecisionView(Body):
    """An arbitration decision with the proposal it decided."""

    proposal_id: str
    outcome: Outcome
    decided_at: Timestamp
    resolution_seconds: float | None = Field(description="proposal to decision; null when not measured")
    source: str = Field(description="deterministic, ai or manual")
    action: str
    target: str = Field(description="namespace/Kind/name")
    rule_id: str | None
    priority: int
    confidence: float
    scores: dict[str, float]
    reasons: list[ReasonView]


class DecisionItem(DecisionView):
    """A decision in the list, with where it led."""

    namespace: str
    incident_id: str
    workflow_id: str | None
    dry_run: bool
    status: str = Field(description="the action's status now: approved, running, completed, failed, skipped, ...")


class DecisionList(Body):
    """A page of decisions, newest first."""

    decisions: list[DecisionItem]
    total: int
    count: int
    limit: int
    offset: int


# ------------------------------------------------------------------------------------------------ workflows
class StepView(Body):
    order: int
    id: str
    layer: str
    action: str
    description: str
    target: str
    status: str
    mutating: bool
    escalates: bool
    started_at: Timestamp | None
    completed_at: Timestamp | None
    error_message: str | None
    change: dict[str, Any]
    result: dict[str, Any]


class CheckpointView(Body):
    id: str
    layer: str
    after_step: str
    checks: list[str]
    target: str
    status: str
    timeout_seconds: float
    checked_at: Timestamp | None
    message: str
    observed: dict[str, Any]


class WorkflowView(Body):
    """A remediation: the proposal, its decision, and — once a remediator took it — its steps and checkpoints.
    Fields from `mode` on are present once a remediator took it (`remediator` is not null)."""

    id: str
    workflow_id: str
    incident_id: str
    status: str = Field(description="pending, awaiting_approval, approved, running, completed, failed, rejected, "
                                    "superseded, skipped, cancelled, expired")
    namespace: str
    resource_kind: str
    resource_name: str
    issue_type: str
    deployment_method: str = Field(description="argocd, helm, operator, manual; `unknown` until detected")
    action: str
    dry_run: bool
    created_at: Timestamp
    decision: DecisionView | None = Field(description="null until arbitrated")
    remediator: str | None
    steps: list[StepView]
    checkpoints: list[CheckpointView]
    message: str | None = None
    mode: str | None = None
    layers: list[str] | None = None
    waiting_for: str | None = None
    reason: str | None = None
    error_message: str | None = None
    approved_by: str | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    duration: str | None = Field(None, description="Go duration (`1m30s`), null until started")
    deployment: dict[str, Any] | None = None


class WorkflowListQuery(BaseModel):
    """`GET /api/v1/workflows`. An empty value or `all` means no filter."""

    namespace: str | None = Field(None, description="only workflows in this namespace")
    status: Literal["", "all", "pending", "awaiting_approval", "running", "completed", "failed", "rejected",
                    "superseded", "skipped", "cancelled"] | None = None
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=10**9)


class WorkflowList(Body):
    """A page of workflows, newest first, each as `GET /api/v1/workflows/{id}` shows it."""

    workflows: list[WorkflowView]
    total: int
    count: int
    limit: int
    offset: int


class Answered(Body):
    """The approval or rejection is on the control topic; `accepted` is false when the other answer came first."""

    workflow_id: str
    decision: Literal["approved", "rejected"]
    by: str
    reason: str | None
    status: str
    accepted: bool


class SwitchState(Body):
    """The kill switch or the pause, as the control topic says."""

    enabled: bool
    changed_at: Timestamp | None
    by: str | None
    reason: str | None


class Triggered(Body):
    """The manual proposal is on the remediation topic; it passes the same arbitration as every other."""

    workflow_id: str
    status: str = Field(description="`pending` until arbitrated, then the workflow's status")
    deployment_method: str = Field(description="argocd, helm, operator, manual; `unknown` when not detected")
    estimated_duration: str = Field(description="always `5m`: the Go engine's constant, kept for its clients; not an "
                                                "estimate (the workflow's steps and checkpoints say how long it takes)")
    dry_run: bool
    incident_id: str


class Queued(Body):
    """The Python engine's answer: the action and its place in the queue (0 once decided)."""

    status: str
    action_id: str | None
    workflow_id: str
    queued: bool
    position_in_queue: int
    dry_run: bool


class CoordinationTriggered(Body):
    """A multi-layer remediation proposed (the engine's R14)."""

    workflow_id: str
    status: Literal["pending"]
    affected_layers: list[str]
    root_cause_layer: str
    estimated_steps: int


class CoordinationWorkflow(Body):
    """The engine's CoordinationWorkflow: the layered issue, the plan (durations in nanoseconds) and the result."""

    id: str
    incident_id: str
    status: str
    layered_issue: dict[str, Any]
    remediation_plan: dict[str, Any]
    execution_result: dict[str, Any] | None
    created_at: Timestamp
    started_at: Timestamp | None
    completed_at: Timestamp | None
    error_message: str | None
    workflow: str = Field(description="the path of the same workflow in the pipeline's own shape")
    checked_at: float


class CoordinationWorkflows(Body):
    workflows: list[CoordinationWorkflow]
    total: int


class EngineStatus(Body):
    """The coordination engine's status: engine, queue, actions, conflicts, layers, controls and policy."""

    status: str
    timestamp: Timestamp
    engine_status: str
    active_actions: int
    queued_actions: int
    conflicts_detected_today: int
    conflicts_resolved_today: int
    layers: dict[str, dict[str, Any]]
    engine: dict[str, Any]
    queue: dict[str, int]
    actions: dict[str, Any]
    conflicts: dict[str, Any]
    controls: dict[str, SwitchState]
    policy: dict[str, Any]


class ClusterStatus(Body):
    """What the MCP server's cluster-health tool reads."""

    status: Literal["healthy", "degraded"]
    reasons: list[str] = Field(description="why degraded: kill switch on, paused, no remediate worker, ...")
    timestamp: Timestamp
    actions: dict[str, int]
    conflicts: dict[str, int]
    engine: dict[str, Any]


# ------------------------------------------------------------------------------------------------ anomaly reports
class AnomalyAccepted(Body):
    """The anomaly is an incident on the incidents topic; when a layer's rule gives an action, it is proposed."""

    anomaly_id: str
    status: Literal["accepted"]
    assigned_layer: str
    priority: int
    estimated_resolution_time: str | None = Field(description="null when no action was proposed")
    action_id: str | None
    action: str | None
    rule_id: str | None
    action_status: str | None
    workflow_id: str | None
    dry_run: bool | None
    message: str
    created_at: Timestamp


class AnomalyView(Body):
    """An anomaly report, its action and its workflow."""

    anomaly_id: str
    status: IncidentStatus
    anomaly_type: str | None
    assigned_layer: str | None
    layer_reason: str | None
    severity: Severity
    priority: int
    confidence: float | None
    namespace: str
    resource: Any
    title: str
    description: str
    source: str
    metrics: dict[str, Any]
    details: dict[str, Any]
    recommended_action: str | None
    detected_at: str | None
    created_at: Timestamp
    action_id: str | None
    workflow_id: str | None
    action: dict[str, Any] | None
    workflow: WorkflowView | None
    resolution: dict[str, Any] | None
    incident: IncidentView

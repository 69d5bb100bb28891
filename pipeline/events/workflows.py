"""Remediation execution: workflows and runtime controls."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from pipeline.events.base import Payload
from pipeline.events.remediation import Decision

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

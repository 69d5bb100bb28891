"""Remediation: proposals, decisions, released actions, arbitration state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.events.base import Payload, Severity

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

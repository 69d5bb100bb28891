"""The remediation read model: proposals, decisions and released actions, applied from the log.

Pure: the runner feeds it events from the `remediation` and `decisions` topics. It answers what the
coordination routes show: workflows (a manual trigger and its decision), the queue (proposals not yet
decided), running actions, outcome and conflict counters by source and layer.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.domain.incidents import PENDING_DECISION, Remediation
from pipeline.events import (
    ActionReleased,
    Decision,
    DecisionMade,
    Proposal,
    ReasonCode,
    RemediationProposed,
    Workflow,
    WorkflowChanged,
    iso_z,
)

APPLIED_IDS = 100_000
LAYERS = ("infrastructure", "platform", "application")


def layer_of(proposal: Proposal) -> str:
    """The engine's layers: nodes and cluster-scoped targets are infrastructure, openshift-*/kube-* namespaces
    the platform, the rest the application."""
    kind = proposal.target.split("/")[1] if proposal.target.count("/") >= 2 else ""
    if not proposal.namespace or kind == "Node":
        return "infrastructure"
    if proposal.namespace.startswith(("openshift-", "kube-")) or proposal.namespace in ("openshift", "default"):
        return "platform"
    return "application"


class AppliedIds:
    """The event ids a read model applied (the most recent ones), and writers waiting to see theirs."""

    def __init__(self, size: int = APPLIED_IDS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """Remember an id; False when it was already applied."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def notify(self, event_id: str) -> None:
        waiter = self._waiters.pop(event_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for(self, event_id: str, timeout: float) -> bool:
        """True once the event is applied, False if `timeout` seconds pass first (read your writes)."""
        if event_id in self._ids:
            return True
        waiter = self._waiters.setdefault(event_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter.done() or event_id not in self._ids:
                self._waiters.pop(event_id, None)


@dataclass
class Entry:
    """One proposal and what became of it."""

    proposal: Proposal
    submitted_at: datetime
    decision: Decision | None = None
    resolution_seconds: float | None = None
    released: str | None = None  # ActionReleased.reason
    released_at: datetime | None = None
    workflow: Workflow | None = None  # the remediate stage's workflow, once it has one
    sequence: int = 0

    @property
    def status(self) -> str:
        """The workflow's status once a remediator has it (pending, awaiting_approval, running, completed, failed,
        rejected, skipped); before that: pending (not decided, or approved and waiting for a remediator),
        awaiting_approval, rejected, superseded; `cancelled` when the incident resolved before anything ran."""
        if self.workflow is not None:
            return self.workflow.status
        if self.decision is None:
            return "pending"
        outcome = self.decision.outcome
        if outcome not in ("approved", "awaiting_approval"):
            return outcome
        if self.released is not None:
            return {"completed": "completed", "failed": "failed"}.get(self.released, "cancelled")
        return "pending" if outcome == "approved" else outcome


@dataclass
class RemediationView:
    entries: dict[str, Entry] = field(default_factory=dict)  # by proposal id
    workflows: dict[str, str] = field(default_factory=dict)  # workflow id -> proposal id
    by_target: dict[str, list[str]] = field(default_factory=dict)  # target -> proposal ids
    requests: dict[str, str] = field(default_factory=dict)  # manual request key -> proposal id
    by_incident: dict[str, list[str]] = field(default_factory=dict)  # incident id -> its proposal ids, in order
    action_timeout: timedelta = timedelta(seconds=1800)
    applied: AppliedIds = field(default_factory=AppliedIds)

    def apply(self, event_id: str, payload: object, at: datetime) -> bool:
        """Apply one event; False when its id was already applied or it is not ours."""
        if event_id in self.applied:
            return False
        if isinstance(payload, RemediationProposed):
            p = payload.proposal
            entry = self.entries.get(p.id)
            if entry is None:
                self._add(Entry(p, at))
                if p.workflow_id:
                    self.workflows[p.workflow_id] = p.id
                if isinstance(key := p.parameters.get("request_key"), str):
                    self.requests[key] = p.id
        elif isinstance(payload, DecisionMade):
            p = payload.decision.proposal
            entry = self.entries.get(p.id)
            if entry is None:
                entry = self._add(Entry(p, payload.decision.decided_at))
            if p.workflow_id:
                self.workflows.setdefault(p.workflow_id, p.id)
            if entry.decision is None:
                entry.decision = payload.decision
                entry.resolution_seconds = payload.resolution_seconds
        elif isinstance(payload, ActionReleased):
            self._release(payload)
        elif isinstance(payload, WorkflowChanged):
            w = payload.workflow
            entry = self.entries.get(w.proposal_id)
            if entry is None:
                entry = self._add(Entry(w.decision.proposal, w.created_at, decision=w.decision))
            if entry.decision is None:
                entry.decision = w.decision
            if entry.workflow is None or payload.sequence >= entry.sequence:
                entry.workflow, entry.sequence = w, payload.sequence
            self.workflows.setdefault(w.id, w.proposal_id)
            if w.incident_id and w.incident_id != entry.proposal.incident_id:
                self._index_incident(w.incident_id, w.proposal_id)
        else:
            return False
        self.applied.add(event_id)
        self.applied.notify(event_id)
        return True

    def _add(self, entry: Entry) -> Entry:
        p = entry.proposal
        self.entries[p.id] = entry
        self.by_target.setdefault(p.target, []).append(p.id)
        if p.incident_id:
            self._index_incident(p.incident_id, p.id)
        return entry

    def _index_incident(self, incident_id: str, proposal_id: str) -> None:
        ids = self.by_incident.setdefault(incident_id, [])
        if proposal_id not in ids:
            ids.append(proposal_id)

    def _release(self, released: ActionReleased) -> None:
        for pid in self.by_target.get(released.target, ()):
            entry = self.entries[pid]
            p = entry.proposal
            if (
                entry.released is None and entry.decision is not None
                and entry.decision.outcome in ("approved", "awaiting_approval")
                and (released.incident_id is None or p.incident_id == released.incident_id)
                and (released.proposal_id is None or p.id == released.proposal_id)
            ):
                entry.released, entry.released_at = released.reason, released.released_at

    def for_incident(self, incident_id: str) -> Entry | None:
        """The proposal that speaks for an incident: the highest `Remediation.rank` (an approved action over one
        waiting for a human over one not decided over a rejected or skipped one), the latest among equals -- so a
        duplicate rejected after an approved action never hides it."""
        best: tuple[int, int] | None = None
        chosen: Entry | None = None
        for order, pid in enumerate(self.by_incident.get(incident_id, ())):
            entry = self.entries[pid]
            key = (remediation_of(entry).rank, order)
            if best is None or key > best:
                best, chosen = key, entry
        return chosen

    def remediation(self, incident_id: str) -> Remediation | None:
        """What is being done about an incident (domain.incidents.Remediation), None when nothing was proposed."""
        entry = self.for_incident(incident_id)
        return remediation_of(entry) if entry is not None else None

    def workflow(self, workflow_id: str) -> Entry | None:
        pid = self.workflows.get(workflow_id)
        return self.entries.get(pid) if pid else None

    def by_request(self, key: str) -> Entry | None:
        """The latest manual proposal submitted under a request key (Idempotency-Key or body hash)."""
        pid = self.requests.get(key)
        return self.entries.get(pid) if pid else None

    def pending(self) -> list[Entry]:
        """Proposals not decided yet, oldest first: the arbitration queue."""
        return sorted((e for e in self.entries.values() if e.decision is None), key=lambda e: e.submitted_at)

    def counts(self, now: datetime) -> dict[str, Any]:
        """Counters for the status routes. An approved action never reported finished stops counting as
        running after the action timeout, as it stops holding its target in arbitration."""
        statuses: Counter[str] = Counter()
        by_source: Counter[str] = Counter()
        layers = {name: Counter[str]() for name in LAYERS}
        conflicts: Counter[str] = Counter()
        for entry in self.entries.values():
            status = entry.status
            if (status == "pending" and entry.workflow is None and entry.decision is not None
                    and entry.decision.outcome == "approved" and entry.released is None
                    and now - entry.decision.decided_at >= self.action_timeout):
                status = "expired"  # approved, never picked up by a remediator, no longer holding its target
            statuses[status] += 1
            by_source[entry.proposal.source] += 1
            layer = layers[layer_of(entry.proposal)]
            layer["actions"] += 1
            layer[status] += 1
            for reason in entry.decision.reasons if entry.decision else ():
                if reason.code in (ReasonCode.LOST_CONFLICT, ReasonCode.DUPLICATE):
                    conflicts[reason.conflict or "target"] += 1
                    layer["conflicts"] += 1
        return {
            "total": len(self.entries),
            "statuses": dict(statuses),
            "by_source": dict(by_source),
            "layers": {name: dict(c) for name, c in layers.items()},
            "conflicts": dict(conflicts),
        }


def remediation_of(entry: Entry) -> Remediation:
    """An entry as an incident's remediation: `pending_decision` until arbitration decides, then the workflow's or
    the decision's status."""
    p, w = entry.proposal, entry.workflow
    state = PENDING_DECISION if entry.decision is None else entry.status
    completed_at = w.completed_at if w is not None else (
        entry.released_at if entry.released in ("completed", "failed") else None)
    return Remediation(state=state, action=w.action if w is not None else p.action,
                       workflow_id=w.id if w is not None else p.workflow_id, completed_at=completed_at,
                       dry_run=w.dry_run if w is not None else p.dry_run)


def go_duration(seconds: float) -> str:
    """A duration as Go's `time.Duration.String()` writes it, to the millisecond: `1h2m3.5s`, `2m0s`, `45s`,
    `250ms`, `0s` -- what a person reads, and what Go's `time.ParseDuration` reads back."""
    ms = round(seconds * 1000)
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{sign}{out}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"


def workflow_view(workflow_id: str, entry: Entry) -> dict[str, Any]:
    """`GET /api/v1/workflows/{id}`: the engine's workflow fields, our steps and checkpoints, and the decision."""
    p, d, w = entry.proposal, entry.decision, entry.workflow
    kind, _, name = p.target.partition("/")[2].partition("/")
    out: dict[str, Any] = {
        "id": workflow_id,
        "workflow_id": workflow_id,
        "incident_id": p.incident_id,
        "status": entry.status,
        "namespace": p.namespace,
        "resource_kind": kind,
        "resource_name": name,
        "issue_type": p.parameters.get("issue_type", ""),
        "deployment_method": w.deployment_method if w else "unknown",
        "action": p.action,
        "dry_run": p.dry_run if w is None else w.dry_run,
        "created_at": entry.submitted_at.isoformat(),
        "decision": decision_view(d, entry.resolution_seconds) if d else None,
    }
    if w is None:
        out["remediator"] = None
        out["steps"] = []
        out["checkpoints"] = []
        out["message"] = ("decided; no remediator has picked it up yet" if d and d.outcome == "approved"
                          else None)
        return out
    end = w.completed_at
    out.update({
        "remediator": w.remediator or None,
        "mode": w.mode,
        "layers": w.layers,
        "waiting_for": w.waiting_for,
        "reason": w.reason,
        "error_message": w.error_message,
        "approved_by": w.approved_by,
        "started_at": iso_z(w.started_at),
        "completed_at": iso_z(end),
        "duration": go_duration(((end or w.updated_at) - w.started_at).total_seconds()) if w.started_at else None,
        "deployment": w.deployment,
        "steps": [
            {"order": s.order, "id": s.id, "layer": s.layer, "action": s.action, "description": s.description,
             "target": s.target, "status": s.status, "mutating": s.mutating, "escalates": s.escalates,
             "started_at": iso_z(s.started_at), "completed_at": iso_z(s.completed_at),
             "error_message": s.error_message, "change": s.change, "result": s.result}
            for s in w.steps
        ],
        "checkpoints": [
            {"id": c.id, "layer": c.layer, "after_step": c.after_step, "checks": c.checks, "target": c.target,
             "status": c.status, "timeout_seconds": c.timeout_s, "checked_at": iso_z(c.checked_at),
             "message": c.message, "observed": c.observed}
            for c in w.checkpoints
        ],
    })
    return out


def decision_view(decision: Decision, resolution_seconds: float | None = None) -> dict[str, Any]:
    p = decision.proposal
    return {
        "proposal_id": p.id,
        "outcome": decision.outcome,
        "decided_at": decision.decided_at.isoformat(),
        "resolution_seconds": resolution_seconds,
        "source": p.source,
        "action": p.action,
        "target": p.target,
        "rule_id": p.rule_id,
        "priority": p.priority,
        "confidence": p.confidence,
        "scores": p.scores,
        "reasons": [r.model_dump(mode="json", exclude_defaults=True) for r in decision.reasons],
    }

"""The remediation read model's HTTP shapes: the gateway's applied-ids with read-your-writes waiters, and the
workflow and decision views. The view itself is pure (`pipeline/domain/remediation_view.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain import remediation_view
from pipeline.domain.remediation_view import APPLIED_IDS, LAYERS, Entry, SeenIds, layer_of, remediation_of
from pipeline.events import Decision, iso_z

__all__ = ["LAYERS", "AppliedIds", "Entry", "RemediationView", "decision_view", "go_duration", "layer_of",
           "remediation_of", "workflow_view"]


class AppliedIds(SeenIds):
    """The event ids a read model applied (the most recent ones), and writers waiting to see theirs."""

    def __init__(self, size: int = APPLIED_IDS) -> None:
        super().__init__(size)
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def notify(self, event_id: str) -> None:
        waiter = self._waiters.pop(event_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for(self, event_id: str, timeout: float) -> bool:
        """True once the event is applied, False if `timeout` seconds pass first (read your writes)."""
        if event_id in self:
            return True
        waiter = self._waiters.setdefault(event_id, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter.done() or event_id not in self:
                self._waiters.pop(event_id, None)


@dataclass
class RemediationView(remediation_view.RemediationView):
    """The pure view, with applied ids that writers can wait on (read your writes)."""

    applied: AppliedIds = field(default_factory=AppliedIds)


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

"""The remediation read model: proposals, decisions, released actions and workflows, applied from the log.

Pure: the gateway's projection (and the snapshot stage, which writes it to `remediation.snapshot`) feed it events
from the `remediation`, `decisions` and `workflows` topics. It answers what the coordination routes show:
workflows (a manual trigger and its decision), the queue (proposals not yet decided), running actions, outcome
and conflict counters by source and layer. Its indexes are a function of its entries (`restore`), so a view
rebuilt from a snapshot of its entries answers as the view that folded the log.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
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
    share,
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


class SeenIds:
    """The event ids a read model applied, the most recent `size` of them."""

    def __init__(self, size: int = APPLIED_IDS) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

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
        """An event was applied (the gateway's AppliedIds wakes a writer waiting for it)."""


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
    request_key: str | None = None  # the manual request key it answers (registered when its proposal came first)
    incidents: list[str] = field(default_factory=list)  # the incidents it is indexed under
    proposed: bool = False  # its proposal was applied (not only its decision or workflow)

    @property
    def order(self) -> tuple[datetime, str]:
        """Which of two entries is the later: by submission time, then id (the same however topics interleave)."""
        return self.submitted_at, self.proposal.id

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


# Whether an object already holds an event (its snapshot covers the event's offset): `apply` skips it for that one.
Covers = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


@dataclass
class RemediationView:
    entries: dict[str, Entry] = field(default_factory=dict)  # by proposal id
    workflows: dict[str, str] = field(default_factory=dict)  # workflow id -> proposal id
    by_target: dict[str, list[str]] = field(default_factory=dict)  # target -> proposal ids
    requests: dict[str, str] = field(default_factory=dict)  # manual request key -> proposal id
    by_incident: dict[str, list[str]] = field(default_factory=dict)  # incident id -> its proposal ids
    action_timeout: timedelta = timedelta(seconds=1800)
    applied: SeenIds = field(default_factory=SeenIds)
    changed: set[str] | None = None  # when a set: the proposal ids each applied event changed (snapshot writer)

    def apply(self, event_id: str, payload: object, at: datetime, covers: Covers = _never) -> bool:
        """Apply one event; False when its id was already applied or it is not ours. `covers(proposal id)` says
        that an entry restored from a snapshot already holds this event: it is left as it is."""
        if event_id in self.applied:
            return False
        if isinstance(payload, ActionReleased):
            self._release(payload, covers)
        elif isinstance(payload, RemediationProposed | DecisionMade | WorkflowChanged):
            pid = _proposal_id(payload)
            if not covers(pid):
                self._apply_one(payload, at)
                self._changed(pid)
        else:
            return False
        self.applied.add(event_id)
        self.applied.notify(event_id)
        return True

    def _apply_one(self, payload: RemediationProposed | DecisionMade | WorkflowChanged, at: datetime) -> None:
        if isinstance(payload, RemediationProposed):
            p = payload.proposal
            key = p.parameters.get("request_key")
            entry = self.entries.get(p.id)
            if entry is None:
                entry = self._add(Entry(p, at, request_key=key if isinstance(key, str) else None, proposed=True))
            elif not entry.proposed:  # its decision or workflow came first: the same entry as the other order gives
                self._remove(entry)
                entry.submitted_at, entry.proposed = at, True
                entry.request_key = key if isinstance(key, str) else None
                self._add(entry)
        elif isinstance(payload, DecisionMade):
            p = payload.decision.proposal
            entry = self.entries.get(p.id) or self._add(Entry(p, payload.decision.decided_at))
            if entry.decision is None:
                entry.decision = payload.decision
            if entry.resolution_seconds is None:  # a workflow may have brought the decision, never its timing
                entry.resolution_seconds = payload.resolution_seconds
        else:
            w = payload.workflow
            entry = self.entries.get(w.proposal_id) or self._add(
                Entry(w.decision.proposal, w.created_at, decision=w.decision))
            if entry.decision is None:
                entry.decision = w.decision
            if entry.workflow is None or payload.sequence >= entry.sequence:
                entry.workflow, entry.sequence = w, payload.sequence
            self.workflows.setdefault(w.id, w.proposal_id)
            if w.incident_id:
                self._index_incident(entry, w.incident_id)
        _share(entry)

    def _changed(self, pid: str) -> None:
        if self.changed is not None:
            self.changed.add(pid)

    def _add(self, entry: Entry) -> Entry:
        p = entry.proposal
        self.entries[p.id] = entry
        self.by_target.setdefault(p.target, []).append(p.id)
        if p.workflow_id:
            self.workflows.setdefault(p.workflow_id, p.id)
        if entry.request_key is not None:
            held = self.entries.get(self.requests.get(entry.request_key, ""))
            if held is None or held.order <= entry.order:
                self.requests[entry.request_key] = p.id
        for incident_id in [p.incident_id, *entry.incidents]:
            if incident_id:
                self._index_incident(entry, incident_id)
        return entry

    def _remove(self, entry: Entry) -> None:
        """Take an entry out of the indexes that depend on its submission (to add it again)."""
        pid = entry.proposal.id
        self.by_target[entry.proposal.target].remove(pid)
        if entry.request_key is not None and self.requests.get(entry.request_key) == pid:
            del self.requests[entry.request_key]

    def _index_incident(self, entry: Entry, incident_id: str) -> None:
        if incident_id not in entry.incidents:
            entry.incidents.append(incident_id)
        ids = self.by_incident.setdefault(incident_id, [])
        if entry.proposal.id not in ids:
            ids.append(entry.proposal.id)

    def restore(self, entries: Iterable[Entry]) -> None:
        """Entries from a snapshot, with the indexes they imply."""
        for entry in sorted(entries, key=lambda e: e.order):
            _share(entry)
            self._add(entry)
            if entry.workflow is not None:
                self.workflows.setdefault(entry.workflow.id, entry.proposal.id)

    def _release(self, released: ActionReleased, covers: Covers) -> None:
        for pid in self.by_target.get(released.target, ()):
            entry = self.entries[pid]
            p = entry.proposal
            if (
                entry.released is None and entry.decision is not None
                and entry.decision.outcome in ("approved", "awaiting_approval")
                and (released.incident_id is None or p.incident_id == released.incident_id)
                and (released.proposal_id is None or p.id == released.proposal_id)
                and not covers(pid)
            ):
                entry.released, entry.released_at = released.reason, released.released_at
                self._changed(pid)

    def for_incident(self, incident_id: str) -> Entry | None:
        """The proposal that speaks for an incident: the highest `Remediation.rank` (an approved action over one
        waiting for a human over one not decided over a rejected or skipped one); among equals, one a remediator
        took (a workflow that ended `skipped` says what was decided and why it did not run, a rejected duplicate
        says nothing about the incident), then the latest submitted -- so a duplicate rejected after an approved
        action never hides it."""
        entries = [self.entries[pid] for pid in self.by_incident.get(incident_id, ())]
        return max(entries, key=lambda e: (remediation_of(e).rank, e.workflow is not None, e.order), default=None)

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




def _share(entry: Entry) -> None:
    """One proposal and one decision held per entry: its decision's and its workflow's copies are the entry's own
    when equal (they are, unless an event changed one of them)."""
    d, w = entry.decision, entry.workflow
    if d is not None:
        share(d, "proposal", entry.proposal)
        if w is not None:
            share(w, "decision", d)


def _proposal_id(payload: RemediationProposed | DecisionMade | WorkflowChanged) -> str:
    if isinstance(payload, RemediationProposed):
        return payload.proposal.id
    if isinstance(payload, DecisionMade):
        return payload.decision.proposal.id
    return payload.workflow.proposal_id

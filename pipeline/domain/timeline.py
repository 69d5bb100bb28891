"""An incident's timeline, pure: which events of the log belong to an incident, and their causal order.

Every event carries its CloudEvents attributes (`pipeline.events.Envelope`); the forensic reads
(`pipeline.bus.log`) turn each record into a `Node` and hand the nodes here.

* **Belonging.** An event belongs to incident X when its `incidentid` is X; when it is caused by an event that
  belongs (`causationid`, transitively) or shares a `workflowid` with one (a workflow's later transitions, an
  operator's approval); or when it is the cause of one (the signals that opened or changed the incident carry
  no incident id: the pipeline did not know it yet). An event whose `incidentid` names another incident never
  belongs. Causes are followed upwards only (the other events a signal caused are not pulled in through it).
* **Causal order.** A topological order on causation ids: every event after its cause when its cause is in the
  set -- after every record carrying the cause's id: a redelivered duplicate, and another event with the same id
  (derived ids are unique per source, not across sources: the enrich and propose stages derive the same id from
  one incident event, `Event.caused`), so the true cause is always before. Ties by the event's time, then by the
  record's broker time, topic, partition and offset. Events caught in a causation cycle (only a corrupt log
  has one) come last in tie order, never dropped.
* **The scan's bound.** An incident's events are produced after the pipeline received its first signal, so a
  scan for them starts at `received_at` (else `created_at`) minus a margin for clock skew between producers
  (`timeline_start`, `TIMELINE_MARGIN_S`) and ends at the end of the log when the read began.
* **What an event says.** `summary`: one line per event, as `pipeline replay` and `pipeline incidents timeline`
  print it.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from pipeline.events import (
    ActionReleased,
    ControlChanged,
    DecisionMade,
    FeaturesComputed,
    Incident,
    IncidentChange,
    Payload,
    RemediationProposed,
    ScoreComputed,
    Signal,
    WorkflowChanged,
)


@dataclass(frozen=True, slots=True)
class Node:
    """What ordering and belonging need of one record: its event's links and its place in the log. `id` is None
    for a record that is not one of our events (it has no links)."""

    id: str | None
    causation: str | None
    incident: str | None
    workflow: str | None
    time: datetime  # the event's time (CloudEvents `time`), or the broker's for a record that is not an event
    logged: datetime  # the broker's timestamp
    topic: str
    partition: int
    offset: int

    @property
    def tie(self) -> tuple[datetime, datetime, str, int, int]:
        return self.time, self.logged, self.topic, self.partition, self.offset


class HasNode(Protocol):
    @property
    def node(self) -> Node: ...


T = TypeVar("T", bound=HasNode)


def timeline_start(incident: Incident, margin: timedelta) -> datetime:
    """Where a scan for the incident's events starts: when the pipeline received its first signal (else when it
    started), minus `margin`."""
    return (incident.received_at or incident.created_at) - margin


def members(items: Sequence[T], incident_id: str) -> list[T]:
    """The items whose events belong to the incident (see the module's doc), in their given order."""
    nodes = [item.node for item in items]
    free = [n.id is not None and n.incident in (None, incident_id) for n in nodes]
    by_cause: dict[str, list[int]] = {}
    by_workflow: dict[str, list[int]] = {}
    by_id: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        if not free[i]:
            continue
        if n.causation:
            by_cause.setdefault(n.causation, []).append(i)
        if n.workflow:
            by_workflow.setdefault(n.workflow, []).append(i)
        by_id.setdefault(n.id or "", []).append(i)
    found = {i for i, n in enumerate(nodes) if n.id is not None and n.incident == incident_id}
    todo = list(found)
    while todo:  # downwards: what the members caused, and their workflows' other events
        n = nodes[todo.pop()]
        for j in [*by_cause.get(n.id or "", ()), *(by_workflow.get(n.workflow, ()) if n.workflow else ())]:
            if j not in found:
                found.add(j)
                todo.append(j)
    todo = list(found)
    while todo:  # upwards: the causes of members (the signals behind the incident's changes)
        cause = nodes[todo.pop()].causation
        for j in by_id.get(cause, ()) if cause else ():
            if j not in found:
                found.add(j)
                todo.append(j)
    return [item for i, item in enumerate(items) if i in found]


def causal_order(items: Iterable[T]) -> list[T]:
    """The items in causal order (see the module's doc)."""
    listed = list(items)
    nodes = [item.node for item in listed]
    copies = Counter(n.id for n in nodes if n.id is not None)  # records carrying each id, not yet placed
    children: dict[str, list[int]] = {}
    ready: list[tuple[tuple[datetime, datetime, str, int, int], int]] = []
    for i, n in enumerate(nodes):
        if n.causation is not None and copies[n.causation] and n.causation != n.id:
            children.setdefault(n.causation, []).append(i)
        else:
            ready.append((n.tie, i))
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(i)
        node_id = nodes[i].id
        if node_id is None:
            continue
        copies[node_id] -= 1
        if not copies[node_id]:
            for j in children.pop(node_id, ()):
                heapq.heappush(ready, (nodes[j].tie, j))
    stranded = sorted((j for waiting in children.values() for j in waiting), key=lambda j: nodes[j].tie)
    return [listed[i] for i in [*out, *stranded]]


def depths(items: Sequence[T]) -> list[int]:
    """Each item's causal depth in a causally ordered sequence: 0 for an event whose cause is not in it, else its
    cause's depth + 1 (what the terminal rendering indents by)."""
    seen: dict[str, int] = {}
    out: list[int] = []
    for item in items:
        n = item.node
        depth = seen[n.causation] + 1 if n.causation is not None and n.causation in seen else 0
        if n.id is not None:
            seen.setdefault(n.id, depth)
        out.append(depth)
    return out


def summary(payload: Payload) -> str:
    """One line saying what an event says."""
    match payload:
        case Signal():
            return f"{payload.name} {payload.status} {payload.severity} {payload.resource_key}"
        case IncidentChange():
            i = payload.incident
            return f"{i.status} {i.severity} {i.title!r} ({i.alerts_firing}/{i.alerts_total} alerts firing)"
        case FeaturesComputed():
            present = sum(v is not None for v in payload.values)
            return f"{present}/{len(payload.values)} features, {len(payload.missing)} missing, scope {payload.scope}"
        case ScoreComputed():
            score = f" score={payload.score:.3f}" if payload.score is not None else ""
            why = f": {payload.degraded_reason}" if payload.degraded_reason else ""
            return f"{payload.verdict}{score} via {payload.source or 'rules'}{why}"
        case RemediationProposed():
            p = payload.proposal
            return f"{p.source} proposes {p.action} on {p.target}" + (f" (rule {p.rule_id})" if p.rule_id else "")
        case DecisionMade():
            d = payload.decision
            codes = ", ".join(r.code.value for r in d.reasons)
            return f"{d.outcome} {d.proposal.action} on {d.proposal.target} [{codes}]"
        case ActionReleased():
            return f"released {payload.target}: {payload.reason}"
        case WorkflowChanged():
            w = payload.workflow
            step = f" step {payload.step_id}" if payload.step_id else ""
            return f"{payload.transition}{step}: {w.action} {w.status}" + (f" ({w.reason})" if w.reason else "")
        case ControlChanged():
            state = "" if payload.enabled is None else (" on" if payload.enabled else " off")
            return f"{payload.kind}{state} {payload.key} by {payload.by or '?'}"
    return type(payload).__name__

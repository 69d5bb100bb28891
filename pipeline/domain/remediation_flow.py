"""What the propose and arbitrate stages do with one event or one consumed batch, pure: shared by the stages
and by the what-if re-run (`pipeline.domain.whatif`), so a re-run decides exactly as the stages did.

`proposed_by` turns an incident change or a score into proposals (and a resolved incident into a release);
`decide_batch` decides one namespace's share of a consumed batch: releases first, then every new proposal
together, against the namespace's state, remembering the decided ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pipeline.domain.arbitration import (
    Policy,
    Rules,
    Target,
    apply,
    expire,
    propose_from_incident,
    propose_from_score,
    release,
    resolve,
)
from pipeline.events import (
    ActionReleased,
    ArbitrationState,
    Decision,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    Payload,
    Proposal,
    RemediationProposed,
    ScoreComputed,
)


def proposed_by(change: Payload, rules: Rules, now: datetime) -> list[RemediationProposed | ActionReleased]:
    """The propose stage's answer to one event: on open every matching rule, on update the rules matching the
    signals that just changed, a model's anomaly score its recommended actions, a resolved incident the
    release of the action started for it (at the incident's last update, else `now`)."""
    if isinstance(change, IncidentOpened):
        return [RemediationProposed(namespace=p.namespace, proposal=p)
                for p in propose_from_incident(change.incident, rules)]
    if isinstance(change, IncidentUpdated) and change.signal_id:
        changed = [s.name for s in change.incident.signals.values()
                   if s.last_signal_id == change.signal_id and s.status == "firing"]
        return [RemediationProposed(namespace=p.namespace, proposal=p)
                for p in propose_from_incident(change.incident, rules, names=changed)]
    if isinstance(change, IncidentResolved) and change.incident.resource:
        target = Target.of_incident(change.incident)
        # when the pipeline learnt of it (resolved_at is the alert's endsAt, which after a backlog would start
        # the cooldown in the past)
        return [ActionReleased(namespace=target.namespace, target=target.key, incident_id=target.incident_id,
                               reason="incident_resolved", released_at=change.incident.updated_at or now)]
    if isinstance(change, ScoreComputed) and change.verdict == "anomaly" and change.model:
        scored = Target.of_score(change)
        if scored is not None:
            return [RemediationProposed(namespace=p.namespace, proposal=p)
                    for p in propose_from_score(change, scored, rules)]
    return []


@dataclass(frozen=True, slots=True)
class BatchDecided:
    """A namespace's state after a batch, the batch's decisions, and the proposal ids it skipped as already
    decided (a redelivery or a re-proposal)."""

    state: ArbitrationState
    decisions: list[Decision]
    skipped: list[str]


def decide_batch(current: ArbitrationState, inputs: Sequence[Proposal | ActionReleased], policy: Policy,
                 now: datetime, memory: int) -> BatchDecided:
    """One namespace's share of a batch: expire actions never reported finished, apply the releases, resolve
    every proposal not decided before together, and keep the last `memory` decided ids."""
    state = expire(current.state, now, policy.action_timeout_seconds)
    proposals: dict[str, Proposal] = {}
    skipped: list[str] = []
    for item in inputs:
        if isinstance(item, ActionReleased):
            state = release(state, item.target, item.released_at, incident_id=item.incident_id,
                            proposal_id=item.proposal_id)
        elif item.id in current.decided or item.id in proposals:
            skipped.append(item.id)
        else:
            proposals[item.id] = item
    decisions = resolve(list(proposals.values()), state, policy, now)
    decided = dict(current.decided)
    for decision in decisions:
        decided[decision.proposal.id] = decision.outcome
    while len(decided) > memory:
        del decided[next(iter(decided))]
    return BatchDecided(ArbitrationState(namespace=current.namespace, state=apply(state, decisions), decided=decided),
                        decisions, skipped)

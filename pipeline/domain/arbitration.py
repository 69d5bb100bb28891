"""Arbitration: which proposed remediation actions may run, which wait for a human, and why.

Deterministic proposals come from the versioned rules file (`rules/remediation.yaml`), AI proposals from a
score's recommended actions. `resolve` decides a batch of simultaneous proposals against the current
`TargetState` and the `Policy`; it is a pure function and its answer does not depend on the order of the
batch, because every choice is made along a total order of the proposals.

Conflicts: two proposals conflict when they target the same resource, or when their actions share an
exclusive group and they are in the same namespace. On the same target a manual proposal beats a
deterministic one, which beats an AI one; otherwise the higher priority wins (then source, confidence and
finally the proposal id break ties). AI proposals under the confidence threshold are rejected outright,
so they never beat anything. Every decision carries its reasons.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.config import Settings
from pipeline.events import (
    ActiveAction,
    Decision,
    Incident,
    Outcome,
    Proposal,
    Reason,
    ReasonCode,
    Risk,
    ScoreComputed,
    Severity,
    Source,
    TargetState,
)

__all__ = [
    "ActiveAction", "ApprovalRule", "Decision", "Outcome", "Policy", "Proposal", "Reason", "ReasonCode", "Risk",
    "Rules", "RulesError", "Source", "Target", "TargetState", "UnknownAction", "apply", "expire",
    "manual_action", "policy_from_settings", "propose_from_incident",
    "propose_from_score", "propose_manual", "release", "resolve",
]

RULES_VERSION = 1
CONFIDENCE_THRESHOLD = 0.7
FALLBACK_ACTION = "manual_intervention"
_PROPOSAL_NAMESPACE = uuid.UUID("5d0c7a2e-9b41-4c3f-a8e6-1f2b3c4d5e6f")

_SOURCE_RANK: dict[str, int] = {"manual": 2, "deterministic": 1, "ai": 0}


class RulesError(ValueError):
    """The rules file is unreadable, of an unknown version, or refers to actions it does not define."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActionSpec(_Frozen):
    """One action of the catalogue."""

    risk: Risk
    priority: int = Field(ge=0, le=100)


class Rule(_Frozen):
    """Incident types (glob patterns, case-insensitive) that map to one action."""

    id: str
    match: tuple[str, ...] = Field(min_length=1)
    kinds: tuple[str, ...] = ()
    action: str
    priority: int = Field(ge=0, le=100)

    def matches(self, names: Iterable[str], kind: str) -> bool:
        if self.kinds and kind.lower() not in {k.lower() for k in self.kinds}:
            return False
        return any(fnmatchcase(name.lower(), pattern.lower()) for name in names for pattern in self.match)


class Limits(_Frozen):
    """Bounds of the actions that change sizes: how far a remediation may raise a memory limit or scale out."""

    memory_factor: float = Field(1.5, gt=1.0, le=4.0, description="New memory limit = old x factor")
    memory_max: str = Field("4Gi", description="Never raise a memory limit above this quantity")
    replicas_step: int = Field(1, ge=1, le=10)
    replicas_max: int = Field(10, ge=1)


class Rules(_Frozen):
    """The parsed rules file."""

    version: int
    actions: dict[str, ActionSpec]
    exclusive: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        if self.version != RULES_VERSION:
            raise ValueError(f"unsupported rules version {self.version}, expected {RULES_VERSION}")
        ids = [r.id for r in self.rules]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate rule ids: {sorted({i for i in ids if ids.count(i) > 1})}")
        used = [(f"rule {r.id}", r.action) for r in self.rules]
        used += [(f"exclusive group {g}", a) for g, actions in self.exclusive.items() for a in actions]
        unknown = [f"{where}: {action}" for where, action in used if action not in self.actions]
        if unknown:
            raise ValueError(f"unknown actions: {', '.join(unknown)}")
        return self

    def groups_of(self, action: str) -> tuple[str, ...]:
        return tuple(sorted(g for g, actions in self.exclusive.items() if action in actions))


class ApprovalRule(_Frozen):
    """A proposal matching every condition given here needs a human; an empty condition matches anything."""

    name: str
    severities: frozenset[Severity] = frozenset()
    risks: frozenset[Risk] = frozenset()
    sources: frozenset[Source] = frozenset()
    below_confidence: float | None = None

    def matches(self, p: Proposal) -> bool:
        return (
            (not self.severities or p.severity in self.severities)
            and (not self.risks or p.risk in self.risks)
            and (not self.sources or p.source in self.sources)
            and (self.below_confidence is None or (p.confidence or 0.0) < self.below_confidence)
        )


DEFAULT_APPROVAL = (
    ApprovalRule(name="high-risk", risks=frozenset({"high"})),
    ApprovalRule(name="ai-below-0.8", sources=frozenset({"ai"}), below_confidence=0.8),
)


class Policy(_Frozen):
    confidence_threshold: float = CONFIDENCE_THRESHOLD
    cooldown_seconds: float = Field(300.0, ge=0)
    namespace_budget: int = Field(2, ge=0, description="Active actions allowed at once per namespace")
    protected_namespaces: frozenset[str] = frozenset({"kube-system", "openshift-etcd", "openshift-kube-apiserver"})
    kill_switch: bool = False
    approval: tuple[ApprovalRule, ...] = DEFAULT_APPROVAL
    action_timeout_seconds: float = Field(
        1800.0, gt=0, description="An action never reported finished stops holding its target after this long")


def policy_from_settings(settings: Settings) -> Policy:
    """The arbitration policy the settings describe (REMEDIATION_* and CONFIDENCE_THRESHOLD)."""
    approval = (tuple(ApprovalRule.model_validate(r) for r in settings.remediation_approval)
                if settings.remediation_approval is not None else DEFAULT_APPROVAL)
    return Policy(
        confidence_threshold=settings.confidence_threshold,
        cooldown_seconds=settings.remediation_cooldown_s,
        namespace_budget=settings.remediation_namespace_budget,
        protected_namespaces=frozenset(settings.remediation_protected_namespaces),
        kill_switch=settings.remediation_kill_switch,
        approval=approval,
        action_timeout_seconds=settings.remediation_action_timeout_s,
    )


def proposal_id(incident_id: str, source: str, origin: str, action: str, target: str) -> str:
    """Deterministic, so replaying the same incident and score proposes the same ids."""
    name = "\x1f".join((incident_id, source, origin, action, target))
    return "prop-" + uuid.uuid5(_PROPOSAL_NAMESPACE, name).hex[:12]


class Target(_Frozen):
    """What a proposal is about: the resource, its namespace and kind, and the incident that raised it."""

    key: str = Field(description="Resource key `namespace/Kind/name`")
    namespace: str
    kind: str
    incident_id: str
    severity: Severity = Severity.MEDIUM

    @classmethod
    def of_incident(cls, incident: Incident) -> Target:
        key = incident.resource_key or f"{incident.namespace}/{incident.resource}"
        return cls(key=key, namespace=incident.namespace, kind=incident.resource.partition("/")[0],
                   incident_id=incident.id, severity=incident.severity)

    @classmethod
    def of_score(cls, score: ScoreComputed) -> Target | None:
        """The score's own target context (copied from its features); None when it has none."""
        if not score.target:
            return None
        namespace, _, rest = score.target.partition("/")
        return cls(key=score.target, namespace=score.namespace or namespace, kind=rest.partition("/")[0],
                   incident_id=score.incident_id, severity=score.severity or Severity.MEDIUM)


def propose_from_incident(incident: Incident, rules: Rules, names: Iterable[str] | None = None) -> list[Proposal]:
    """One deterministic proposal per rule matching the incident's type or one of its firing signals
    (or, when `names` is given, one of those names only: the signals that just changed)."""
    if not incident.resource:
        return []  # nothing to act on (an API incident without a target)
    target = Target.of_incident(incident)
    if names is None:
        names = [incident.issue_type, *(s.name for s in incident.signals.values() if s.status == "firing")]
    names = [n for n in names if n]
    return [
        Proposal(
            id=proposal_id(incident.id, "deterministic", rule.id, rule.action, target.key),
            target=target.key,
            namespace=target.namespace,
            action=rule.action,
            source="deterministic",
            priority=rule.priority,
            confidence=1.0,
            incident_id=incident.id,
            rule_id=rule.id,
            risk=rules.actions[rule.action].risk,
            groups=rules.groups_of(rule.action),
            severity=incident.severity,
            reason=f"{incident.issue_type or target.kind} matched rule {rule.id}",
        )
        for rule in rules.rules
        if rule.matches(names, target.kind)
    ]


def propose_from_score(score: ScoreComputed, target: Target, rules: Rules | None = None) -> list[Proposal]:
    """One AI proposal per recommended action. Without the catalogue (or for an action it lacks) the
    action counts as high risk with priority 0, so it never outranks a known action by accident."""
    origin = score.model or score.source or "score"
    values = {k: v for k, v in (("score", score.score), ("model_confidence", score.confidence)) if v is not None}
    proposals = []
    for rec in score.recommended_actions:
        spec = rules.actions.get(rec.action) if rules else None
        proposals.append(
            Proposal(
                id=proposal_id(target.incident_id, "ai", origin, rec.action, target.key),
                target=target.key,
                namespace=target.namespace,
                action=rec.action,
                source="ai",
                priority=spec.priority if spec else 0,
                confidence=min(max(rec.confidence, 0.0), 1.0),
                incident_id=target.incident_id,
                risk=spec.risk if spec else "high",
                groups=rules.groups_of(rec.action) if rules else (),
                severity=target.severity,
                scores={**values, "action_confidence": rec.confidence},
                reason=f"{origin} ({score.verdict}): {rec.reason}",
            )
        )
    return proposals


class UnknownAction(ValueError):
    """A manual request names an action the catalogue lacks, or an issue type no rule maps."""


def manual_action(rules: Rules, issue_type: str, kind: str, action: str | None = None) -> tuple[str, str | None]:
    """The action of a manual request and the rule that chose it: the requested action if given (it must be
    in the catalogue), else the highest-priority rule matching the issue type and kind, else
    `manual_intervention`."""
    if action:
        if action not in rules.actions:
            raise UnknownAction(f"unknown action {action!r}; known: {', '.join(sorted(rules.actions))}")
        return action, None
    matching = sorted((r for r in rules.rules if r.matches([issue_type], kind)), key=lambda r: -r.priority)
    if matching:
        return matching[0].action, matching[0].id
    if FALLBACK_ACTION in rules.actions:  # nothing we know how to do: ask a human, never guess
        return FALLBACK_ACTION, None
    raise UnknownAction(f"no rule maps issue type {issue_type!r} on a {kind or 'resource'}; name an `action`")


def propose_manual(
    rules: Rules,
    target: Target,
    action: str,
    *,
    request_id: str,
    rule_id: str | None = None,
    priority: int | None = None,
    dry_run: bool = False,
    workflow_id: str | None = None,
    requested_by: str | None = None,
    reason: str = "",
    parameters: Mapping[str, object] | None = None,
) -> Proposal:
    """An operator's proposal. Its id comes from `request_id` (the idempotency key), so a retried request is
    the same proposal and is decided once."""
    spec = rules.actions[action]
    return Proposal(
        id=proposal_id(target.incident_id, "manual", request_id, action, target.key),
        target=target.key,
        namespace=target.namespace,
        action=action,
        source="manual",
        priority=spec.priority if priority is None else priority,
        confidence=1.0,
        incident_id=target.incident_id,
        rule_id=rule_id,
        risk=spec.risk,
        groups=rules.groups_of(action),
        severity=target.severity,
        reason=reason or f"requested by {requested_by or 'an operator'}",
        dry_run=dry_run,
        workflow_id=workflow_id,
        requested_by=requested_by,
        parameters=dict(parameters or {}),
    )


def _target_rank(p: Proposal) -> tuple[int, int, float, str, str]:
    return (-_SOURCE_RANK[p.source], -p.priority, -(p.confidence or 0.0), p.id, p.action)


def _group_rank(p: Proposal) -> tuple[int, int, float, str, str]:
    return (-p.priority, -_SOURCE_RANK[p.source], -(p.confidence or 0.0), p.id, p.action)


def _resolution(winner: Proposal, loser: Proposal, by_source_first: bool) -> str:
    source = "source_precedence" if winner.source != loser.source else None
    priority = "higher_priority" if winner.priority != loser.priority else None
    first, second = (source, priority) if by_source_first else (priority, source)
    if first or second:
        return first or second or ""
    if (winner.confidence or 0.0) != (loser.confidence or 0.0):
        return "higher_confidence"
    return "tie_break_by_id"


def _origin(p: Proposal) -> Reason:
    if p.source == "deterministic":
        return Reason(code=ReasonCode.MATCHED_RULE, message=p.reason, rule=p.rule_id, values={"priority": p.priority})
    if p.source == "ai":
        return Reason(code=ReasonCode.AI_SCORE, message=p.reason,
                      values={**p.scores, "confidence": p.confidence or 0.0, "priority": p.priority})
    return Reason(code=ReasonCode.MANUAL, message=p.reason or "proposed by an operator", values={"priority": p.priority})


def _guards(p: Proposal, state: TargetState, policy: Policy, now: datetime) -> list[Reason]:
    """Reasons that block a proposal whatever else is proposed."""
    out = []
    if policy.kill_switch:
        out.append(Reason(code=ReasonCode.KILL_SWITCH, message="the global kill switch is on"))
    if p.namespace in policy.protected_namespaces:
        out.append(Reason(code=ReasonCode.PROTECTED_NAMESPACE, message=f"namespace {p.namespace!r} is protected"))
    if p.source == "ai" and (p.confidence or 0.0) < policy.confidence_threshold:
        out.append(Reason(code=ReasonCode.BELOW_CONFIDENCE,
                          message=f"AI confidence {p.confidence or 0.0:.2f} < {policy.confidence_threshold:.2f}",
                          values={"confidence": p.confidence or 0.0, "threshold": policy.confidence_threshold}))
    active = state.active.get(p.target)
    if active is not None:
        out.append(Reason(code=ReasonCode.TARGET_BUSY, message=f"{active.action} is running on {p.target}",
                          other=active.proposal_id, other_action=active.action))
    last = state.last_action_at.get(p.target)
    if last is not None and now - last < timedelta(seconds=policy.cooldown_seconds):
        remaining = policy.cooldown_seconds - (now - last).total_seconds()
        out.append(Reason(code=ReasonCode.COOLDOWN, message=f"{p.target} is cooling down for {remaining:.0f}s more",
                          values={"remaining_seconds": remaining, "cooldown_seconds": policy.cooldown_seconds}))
    return out


def resolve(proposals: Sequence[Proposal], state: TargetState, policy: Policy, now: datetime) -> list[Decision]:
    """Decide a batch of simultaneous proposals. The result is sorted by target and rank, so it is the same
    for any order of `proposals`."""
    reasons: dict[int, list[Reason]] = {}
    outcome: dict[int, Outcome] = {}
    items = list(enumerate(proposals))
    # Ties break on content, never on arrival position: equal proposals are interchangeable.
    keys = {i: p.model_dump_json() for i, p in items}
    for i, p in items:
        blocked = _guards(p, state, policy, now)
        reasons[i] = [_origin(p), *blocked]
        if blocked:
            outcome[i] = "rejected"

    def lose(i: int, winner: Proposal, code: ReasonCode, conflict: str, rule: str) -> None:
        outcome[i] = "superseded"
        reasons[i].append(Reason(code=code, message=f"{winner.action} ({winner.source}) wins: {rule}", rule=rule,
                                 other=winner.id, other_action=winner.action, conflict=conflict))

    def win(w: int, loser: Proposal, conflict: str, rule: str) -> None:
        reasons[w].append(Reason(code=ReasonCode.WON_CONFLICT, message=f"beats {loser.action} ({loser.source}): {rule}",
                                 rule=rule, other=loser.id, other_action=loser.action, conflict=conflict))

    # Same target: dedup identical actions, then one winner per target.
    by_target: dict[str, list[int]] = {}
    for i, p in items:
        if i not in outcome:
            by_target.setdefault(p.target, []).append(i)
    winners = []
    for ids in by_target.values():
        ids.sort(key=lambda i: (_target_rank(proposals[i]), keys[i], i))
        best = ids[0]
        kept: dict[str, int] = {}
        for i in ids:
            kept.setdefault(proposals[i].action, i)
        for i in ids[1:]:
            p, first = proposals[i], kept[proposals[i].action]
            if first != i:
                lose(i, proposals[first], ReasonCode.DUPLICATE, "target", "duplicate")
            else:
                rule = _resolution(proposals[best], p, by_source_first=True)
                lose(i, proposals[best], ReasonCode.LOST_CONFLICT, "target", rule)
                win(best, p, "target", rule)
        winners.append(best)

    # Across targets: exclusive groups within a namespace, then the namespace budget.
    winners.sort(key=lambda i: (_group_rank(proposals[i]), keys[i], i))
    accepted: list[int] = []
    used = dict(state.namespace_active)
    for i in winners:
        p = proposals[i]
        rival = next((a for a in accepted if proposals[a].namespace == p.namespace
                      and set(proposals[a].groups) & set(p.groups)), None)
        if rival is not None:
            w = proposals[rival]
            conflict = "group:" + min(set(w.groups) & set(p.groups))
            rule = _resolution(w, p, by_source_first=False)
            lose(i, w, ReasonCode.LOST_CONFLICT, conflict, rule)
            win(rival, p, conflict, rule)
            continue
        if used.get(p.namespace, 0) >= policy.namespace_budget:
            outcome[i] = "rejected"
            reasons[i].append(Reason(code=ReasonCode.NAMESPACE_BUDGET,
                                     message=f"{used.get(p.namespace, 0)} actions already run in {p.namespace!r}",
                                     values={"active": used.get(p.namespace, 0), "budget": policy.namespace_budget}))
            continue
        used[p.namespace] = used.get(p.namespace, 0) + 1
        accepted.append(i)
        needs = [r for r in policy.approval if r.matches(p)]
        reasons[i] += [Reason(code=ReasonCode.APPROVAL_REQUIRED, message=f"approval rule {r.name} applies",
                              rule=r.name) for r in needs]
        outcome[i] = "awaiting_approval" if needs else "approved"

    order = {"approved": 0, "awaiting_approval": 1, "rejected": 2, "superseded": 3}
    decisions = [Decision(proposal=p, outcome=outcome[i], reasons=tuple(reasons[i]), decided_at=now) for i, p in items]
    return sorted(decisions, key=lambda d: (d.proposal.target, _target_rank(d.proposal), order[d.outcome],
                                            d.model_dump_json()))


def apply(state: TargetState, decisions: Iterable[Decision]) -> TargetState:
    """The state after the approved decisions start. A decision awaiting approval holds its target too (until it is
    approved and done, rejected, or expires): two actions must not be approved on one target. Other outcomes,
    and dry runs, change nothing."""
    active, last, per_ns = dict(state.active), dict(state.last_action_at), dict(state.namespace_active)
    for d in decisions:
        p = d.proposal
        if d.outcome not in ("approved", "awaiting_approval") or p.dry_run or p.target in active:
            continue
        active[p.target] = ActiveAction(proposal_id=p.id, action=p.action, namespace=p.namespace,
                                        started_at=d.decided_at, incident_id=p.incident_id)
        last[p.target] = d.decided_at
        per_ns[p.namespace] = per_ns.get(p.namespace, 0) + 1
    return TargetState(active=active, last_action_at=last, namespace_active=per_ns)


def release(state: TargetState, target: str, finished_at: datetime, *, incident_id: str | None = None,
            proposal_id: str | None = None) -> TargetState:
    """The state after the action on `target` finished; the cooldown runs from `finished_at`. With
    `incident_id` or `proposal_id`, only an action started for that incident or proposal is released."""
    running = state.active.get(target)
    if running is None:
        return state
    if (incident_id is not None and running.incident_id != incident_id) or (
        proposal_id is not None and running.proposal_id != proposal_id
    ):
        return state
    active = {k: v for k, v in state.active.items() if k != target}
    per_ns: Mapping[str, int] = {**state.namespace_active,
                                 running.namespace: max(state.namespace_active.get(running.namespace, 0) - 1, 0)}
    return TargetState(active=active, last_action_at={**state.last_action_at, target: finished_at},
                       namespace_active=dict(per_ns))


def expire(state: TargetState, now: datetime, timeout_seconds: float) -> TargetState:
    """Release actions started more than `timeout_seconds` ago and never reported finished; their cooldown
    runs from the moment they timed out."""
    limit = timedelta(seconds=timeout_seconds)
    for target, running in sorted(state.active.items()):
        if now - running.started_at >= limit:
            state = release(state, target, running.started_at + limit)
    return state

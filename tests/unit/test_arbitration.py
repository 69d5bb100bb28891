"""Arbitration rules as pure functions: table tests of every rule and guard, and properties of `resolve`."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.adapters.rules import load_rules
from pipeline.domain.arbitration import (
    ActiveAction,
    ApprovalRule,
    Decision,
    Policy,
    Proposal,
    ReasonCode,
    RulesError,
    Target,
    TargetState,
    UnknownAction,
    apply,
    expire,
    manual_action,
    propose_from_incident,
    propose_from_score,
    propose_manual,
    release,
    resolve,
)
from pipeline.events import AttachedSignal, Incident, RecommendedAction, ScoreComputed, Severity

RULES_PATH = Path(__file__).resolve().parents[2] / "rules" / "remediation.yaml"
RULES = load_rules(RULES_PATH)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OPEN = Policy(approval=(), protected_namespaces=frozenset(), namespace_budget=100, cooldown_seconds=300)
EMPTY = TargetState()


def prop(
    pid: str = "p1", target: str = "shop/Deployment/web", action: str = "restart_deployment",
    source: str = "deterministic", priority: int = 50, confidence: float | None = 1.0, **kw: object,
) -> Proposal:
    namespace = kw.pop("namespace", target.split("/")[0])
    return Proposal.model_validate({
        "id": pid, "target": target, "namespace": namespace, "action": action, "source": source,
        "priority": priority, "confidence": confidence, "incident_id": "inc-1", "risk": "low", **kw,
    })


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.proposal.id: d for d in decisions}


def codes(d: Decision) -> list[ReasonCode]:
    return [r.code for r in d.reasons]


def incident(issue: str, resource: str = "Deployment/web", namespace: str = "shop", **kw: object) -> Incident:
    return Incident.model_validate({
        "id": "inc-1", "title": issue, "severity": "high", "source": "alertmanager", "namespace": namespace,
        "resource": resource, "resource_key": f"{namespace}/{resource}", "issue_type": issue,
        "created_at": NOW, "updated_at": NOW, **kw,
    })


# --- rules file -------------------------------------------------------------------------------------------


def test_rules_file_loads_and_is_consistent() -> None:
    assert RULES.version == 1
    assert {r.action for r in RULES.rules} <= set(RULES.actions)
    assert RULES.groups_of("drain_node") == ("node_disruption",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\nactions: {}\n", "unsupported rules version"),
        ("version: 1\nactions: {}\nrules: [{id: a, match: [X], action: nope, priority: 1}]\n", "unknown actions"),
        ("version: 1\nactions: {a: {risk: low, priority: 1}}\nexclusive: {g: [b]}\n", "unknown actions"),
        ("version: 1\nactions: {a: {risk: low, priority: 1}}\n"
         "rules: [{id: r, match: [X], action: a, priority: 1}, {id: r, match: [Y], action: a, priority: 1}]\n",
         "duplicate rule ids"),
        ("version: 1\nactions: {a: {risk: extreme, priority: 1}}\n", "invalid rules"),
        ("version: [1\n", "cannot read rules"),
    ],
)
def test_invalid_rules_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_missing_rules_file() -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules("/nonexistent/rules.yaml")


# --- proposals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issue", "resource", "namespace", "expected"),
    [
        ("CrashLoopBackOff", "Deployment/web", "shop", [("crashloop-deployment", "restart_deployment")]),
        ("KubePodCrashLooping", "Pod/web-1", "shop", [("crashloop-pod", "restart_pod")]),
        ("pod_crash_loop", "Pod/web-1", "shop", [("crashloop-pod", "restart_pod")]),
        ("OOMKilled", "Pod/web-1", "shop", [("oom-killed", "scale_resources")]),
        ("ImagePullBackOff", "Pod/web-1", "shop", [("image-pull-failure", "manual_intervention")]),
        ("ErrImagePull", "Pod/web-1", "shop", [("image-pull-failure", "manual_intervention")]),
        ("MemoryPressure", "Deployment/web", "shop", [("memory-pressure", "scale_resources")]),
        ("CPUThrottlingHigh", "Deployment/web", "shop", [("cpu-throttling", "scale_resources")]),
        ("NodeNotReady", "Node/n1", "", [("node-not-ready", "cordon_node")]),
        ("FailedScheduling", "Pod/web-1", "shop", [("failed-scheduling", "manual_intervention")]),
        ("KubeDeploymentReplicasMismatch", "Deployment/web", "shop", [("replicas-mismatch", "rollback_deployment")]),
        ("crashloopbackoff", "StatefulSet/db", "shop", []),
        ("SomethingElse", "Deployment/web", "shop", []),
    ],
)
def test_propose_from_incident(issue: str, resource: str, namespace: str, expected: list[tuple[str, str]]) -> None:
    proposals = propose_from_incident(incident(issue, resource, namespace), RULES)
    assert [(p.rule_id, p.action) for p in proposals] == expected
    for p in proposals:
        assert p.source == "deterministic" and p.target == f"{namespace}/{resource}" and p.namespace == namespace
        assert p.risk == RULES.actions[p.action].risk and p.severity == Severity.HIGH
    assert propose_from_incident(incident(issue, resource, namespace), RULES) == proposals  # stable ids


def test_propose_from_incident_uses_firing_signals_too() -> None:
    signal = AttachedSignal(fingerprint="f", name="OOMKilled", source="kubernetes", status="firing",
                            severity=Severity.HIGH, starts_at=NOW, last_signal_id="s")
    resolved = signal.model_copy(update={"fingerprint": "g", "name": "CPUThrottlingHigh", "status": "resolved"})
    inc = incident("CrashLoopBackOff", "Pod/web-1", signals={"f": signal, "g": resolved})
    assert [p.rule_id for p in propose_from_incident(inc, RULES)] == ["crashloop-pod", "oom-killed"]


def test_propose_from_score() -> None:
    score = ScoreComputed(
        incident_id="inc-1", verdict="anomaly", model="iforest", score=0.9, confidence=0.85, features_event_id="e",
        recommended_actions=[RecommendedAction(action="restart_pod", confidence=0.85, reason="x"),
                             RecommendedAction(action="mystery", confidence=0.9, reason="y")],
    )
    known, unknown = propose_from_score(score, Target.of_incident(incident("X", "Pod/web-1")), RULES)
    assert (known.source, known.action, known.confidence, known.priority, known.risk, known.groups) == (
        "ai", "restart_pod", 0.85, RULES.actions["restart_pod"].priority, "low", ("restart",))
    assert known.scores == {"score": 0.9, "model_confidence": 0.85, "action_confidence": 0.85}
    assert (unknown.priority, unknown.risk) == (0, "high")
    assert all(p.risk == "high" for p in propose_from_score(score, Target.of_incident(incident("X"))))


# --- guards ---------------------------------------------------------------------------------------------------


def test_lone_proposal_is_approved_with_its_rule() -> None:
    (d,) = resolve([prop(rule_id="r1")], EMPTY, OPEN, NOW)
    assert d.outcome == "approved" and codes(d) == [ReasonCode.MATCHED_RULE] and d.reasons[0].rule == "r1"


@pytest.mark.parametrize(
    ("policy", "state", "proposal", "code"),
    [
        (OPEN.model_copy(update={"kill_switch": True}), EMPTY, prop(), ReasonCode.KILL_SWITCH),
        (OPEN.model_copy(update={"protected_namespaces": frozenset({"shop"})}), EMPTY, prop(),
         ReasonCode.PROTECTED_NAMESPACE),
        (OPEN, EMPTY, prop(source="ai", confidence=0.69), ReasonCode.BELOW_CONFIDENCE),
        (OPEN, EMPTY, prop(source="ai", confidence=None), ReasonCode.BELOW_CONFIDENCE),
        (OPEN, TargetState(active={"shop/Deployment/web": ActiveAction(
            proposal_id="old", action="restart_pod", namespace="shop", started_at=NOW)}), prop(),
         ReasonCode.TARGET_BUSY),
        (OPEN, TargetState(last_action_at={"shop/Deployment/web": NOW - timedelta(seconds=299)}), prop(),
         ReasonCode.COOLDOWN),
        (OPEN.model_copy(update={"namespace_budget": 1}), TargetState(namespace_active={"shop": 1}), prop(),
         ReasonCode.NAMESPACE_BUDGET),
    ],
)
def test_guards_reject(policy: Policy, state: TargetState, proposal: Proposal, code: ReasonCode) -> None:
    (d,) = resolve([proposal], state, policy, NOW)
    assert d.outcome == "rejected" and code in codes(d)


def test_guards_that_do_not_apply() -> None:
    state = TargetState(last_action_at={"shop/Deployment/web": NOW - timedelta(seconds=300)},
                        namespace_active={"other": 5})
    for p in (prop(), prop(source="ai", confidence=0.7)):
        assert resolve([p], state, OPEN.model_copy(update={"namespace_budget": 1}), NOW)[0].outcome == "approved"


def test_namespace_budget_counts_the_batch() -> None:
    policy = OPEN.model_copy(update={"namespace_budget": 2})
    batch = [prop(f"p{i}", target=f"shop/Deployment/d{i}", action="scale_replicas", priority=10 + i) for i in range(3)]
    got = by_id(resolve(batch, EMPTY, policy, NOW))
    assert [got[f"p{i}"].outcome for i in range(3)] == ["rejected", "approved", "approved"]  # lowest priority loses
    assert ReasonCode.NAMESPACE_BUDGET in codes(got["p0"])


# --- conflicts ------------------------------------------------------------------------------------------------


def test_same_target_deterministic_beats_higher_priority_ai() -> None:
    det, ai = prop("det", priority=10), prop("ai", action="restart_pod", source="ai", priority=99, confidence=0.99)
    got = by_id(resolve([ai, det], EMPTY, OPEN, NOW))
    assert got["det"].outcome == "approved" and got["ai"].outcome == "superseded"
    lost = got["ai"].reasons[-1]
    assert (lost.code, lost.rule, lost.other, lost.other_action, lost.conflict) == (
        ReasonCode.LOST_CONFLICT, "source_precedence", "det", "restart_deployment", "target")
    assert got["det"].reasons[-1].code == ReasonCode.WON_CONFLICT and got["det"].reasons[-1].other == "ai"


def test_manual_beats_deterministic_on_the_same_target() -> None:
    got = by_id(resolve([prop("det", priority=90), prop("man", action="restart_pod", source="manual", priority=1)],
                        EMPTY, OPEN, NOW))
    assert (got["man"].outcome, got["det"].outcome) == ("approved", "superseded")


@pytest.mark.parametrize(
    ("a", "b", "rule"),
    [
        (prop("a", priority=60), prop("b", action="restart_pod", priority=50), "higher_priority"),
        (prop("a", source="ai", confidence=0.9), prop("b", action="restart_pod", source="ai", confidence=0.8),
         "higher_confidence"),
        (prop("a"), prop("b", action="restart_pod"), "tie_break_by_id"),
    ],
)
def test_same_target_resolution_rules(a: Proposal, b: Proposal, rule: str) -> None:
    got = by_id(resolve([b, a], EMPTY, OPEN, NOW))
    assert (got["a"].outcome, got["b"].outcome, got["b"].reasons[-1].rule) == ("approved", "superseded", rule)


def test_exclusive_group_in_a_namespace_higher_priority_wins() -> None:
    ai = prop("ai", target="shop/Pod/web-1", action="restart_pod", source="ai", priority=70, confidence=0.9,
              groups=("restart",))
    det = prop("det", target="shop/Deployment/web", priority=50, groups=("restart",))
    got = by_id(resolve([det, ai], EMPTY, OPEN, NOW))
    assert (got["ai"].outcome, got["det"].outcome) == ("approved", "superseded")
    lost = got["det"].reasons[-1]
    assert (lost.rule, lost.conflict, lost.other_action) == ("higher_priority", "group:restart", "restart_pod")


def test_exclusive_group_ties_fall_back_to_source() -> None:
    ai = prop("ai", target="shop/Pod/web-1", action="restart_pod", source="ai", confidence=0.9, groups=("restart",))
    det = prop("det", target="shop/Deployment/web", groups=("restart",))
    got = by_id(resolve([ai, det], EMPTY, OPEN, NOW))
    assert (got["det"].outcome, got["ai"].reasons[-1].rule) == ("approved", "source_precedence")


def test_exclusive_groups_do_not_cross_namespaces_and_unrelated_actions_coexist() -> None:
    batch = [prop("a", target="shop/Pod/x", action="restart_pod", groups=("restart",)),
             prop("b", target="blog/Pod/y", action="restart_pod", groups=("restart",)),
             prop("c", target="shop/Deployment/z", action="scale_replicas")]
    assert {d.outcome for d in resolve(batch, EMPTY, OPEN, NOW)} == {"approved"}


def test_node_actions_exclude_each_other_cluster_wide() -> None:
    batch = [prop("n1", target="/Node/n1", action="cordon_node", priority=85, groups=("node_disruption",)),
             prop("n2", target="/Node/n2", action="drain_node", priority=55, groups=("node_disruption",))]
    got = by_id(resolve(batch, EMPTY, OPEN, NOW))
    assert (got["n1"].outcome, got["n2"].outcome) == ("approved", "superseded")


def test_identical_proposals_are_deduplicated() -> None:
    a, b = prop("a"), prop("b")  # same target and action, different rules/incidents
    got = by_id(resolve([b, a], EMPTY, OPEN, NOW))
    assert got["a"].outcome == "approved"
    assert got["b"].outcome == "superseded" and got["b"].reasons[-1].code == ReasonCode.DUPLICATE
    assert [d.outcome for d in resolve([a, a], EMPTY, OPEN, NOW)] == ["approved", "superseded"]


def test_rejected_proposals_do_not_block_others() -> None:
    ai_low = prop("ai", source="ai", action="restart_pod", priority=99, confidence=0.5)
    det = prop("det", priority=1)
    assert by_id(resolve([ai_low, det], EMPTY, OPEN, NOW))["det"].outcome == "approved"


# --- approval -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "proposal", "needs"),
    [
        (ApprovalRule(name="r", risks=frozenset({"high"})), prop(risk="high"), True),
        (ApprovalRule(name="r", risks=frozenset({"high"})), prop(risk="medium"), False),
        (ApprovalRule(name="r", severities=frozenset({Severity.CRITICAL})), prop(severity="critical"), True),
        (ApprovalRule(name="r", severities=frozenset({Severity.CRITICAL})), prop(severity="high"), False),
        (ApprovalRule(name="r", sources=frozenset({"ai"})), prop(source="ai", confidence=0.9), True),
        (ApprovalRule(name="r", sources=frozenset({"ai"})), prop(), False),
        (ApprovalRule(name="r", below_confidence=0.8), prop(source="ai", confidence=0.79), True),
        (ApprovalRule(name="r", below_confidence=0.8), prop(source="ai", confidence=0.8), False),
        (ApprovalRule(name="r", risks=frozenset({"high"}), sources=frozenset({"ai"})),
         prop(source="ai", confidence=0.9, risk="low"), False),
    ],
)
def test_approval_policy(rule: ApprovalRule, proposal: Proposal, needs: bool) -> None:
    (d,) = resolve([proposal], EMPTY, OPEN.model_copy(update={"approval": (rule,)}), NOW)
    assert d.outcome == ("awaiting_approval" if needs else "approved")
    assert (d.reasons[-1].code == ReasonCode.APPROVAL_REQUIRED and d.reasons[-1].rule == "r") == needs


def test_default_policy() -> None:
    policy = Policy()
    assert policy.confidence_threshold == 0.7 and not policy.kill_switch
    got = by_id(resolve([prop("hi", risk="high"), prop("ai", target="shop/Pod/x", action="restart_pod",
                                                       source="ai", confidence=0.75)], EMPTY, policy, NOW))
    assert got["hi"].outcome == got["ai"].outcome == "awaiting_approval"
    assert resolve([prop(namespace="kube-system")], EMPTY, policy, NOW)[0].outcome == "rejected"


# --- state ------------------------------------------------------------------------------------------------------


def test_apply_and_release() -> None:
    decisions = resolve([prop("a", risk="high"), prop("b", target="shop/Pod/x", action="restart_pod")],
                        EMPTY, OPEN.model_copy(update={"approval": (ApprovalRule(name="r", risks=frozenset({"high"})),)}),
                        NOW)
    state = apply(EMPTY, decisions)
    # the approved action and the one awaiting approval both hold their targets (one action per target)
    assert set(state.active) == {"shop/Pod/x", "shop/Deployment/web"} and state.namespace_active == {"shop": 2}
    assert state.last_action_at == {"shop/Pod/x": NOW, "shop/Deployment/web": NOW}
    assert resolve([prop("d", action="restart_pod")], state, OPEN, NOW)[0].outcome == "rejected"
    state = release(state, "shop/Deployment/web", NOW, proposal_id=decisions[0].proposal.id
                    if decisions[0].proposal.target == "shop/Deployment/web" else decisions[1].proposal.id)
    assert set(state.active) == {"shop/Pod/x"} and state.namespace_active == {"shop": 1}
    assert resolve([prop("c", target="shop/Pod/x")], state, OPEN, NOW)[0].outcome == "rejected"
    later = NOW + timedelta(seconds=60)
    freed = release(state, "shop/Pod/x", later)
    assert freed.active == {} and freed.namespace_active == {"shop": 0} and freed.last_action_at["shop/Pod/x"] == later
    (d,) = resolve([prop("c", target="shop/Pod/x")], freed, OPEN, later + timedelta(seconds=10))
    assert d.outcome == "rejected" and codes(d)[-1] == ReasonCode.COOLDOWN
    assert resolve([prop("c", target="shop/Pod/x")], freed, OPEN, later + timedelta(seconds=300))[0].outcome == "approved"
    assert release(freed, "shop/Pod/x", later) == freed


# --- properties ------------------------------------------------------------------------------------------------

TARGETS = ["shop/Deployment/web", "shop/Pod/web-1", "blog/Pod/b", "kube-system/Pod/k", "/Node/n1", "/Node/n2"]
ACTIONS = {"restart_pod": ("restart",), "restart_deployment": ("restart",), "scale_replicas": (),
           "cordon_node": ("node_disruption",), "drain_node": ("node_disruption",)}


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    action = draw(st.sampled_from(sorted(ACTIONS)))
    return prop(
        draw(st.sampled_from(["p0", "p1", "p2", "p3", "p4", "p5"])), target=draw(st.sampled_from(TARGETS)),
        action=action, groups=ACTIONS[action], source=draw(st.sampled_from(["deterministic", "ai", "manual"])),
        priority=draw(st.integers(0, 3)), confidence=draw(st.sampled_from([None, 0.5, 0.69, 0.7, 0.9, 1.0])),
        risk=draw(st.sampled_from(["none", "low", "medium", "high"])),
        severity=draw(st.sampled_from(list(Severity))),
    )


policies = st.builds(
    Policy, kill_switch=st.booleans(), namespace_budget=st.integers(0, 3), cooldown_seconds=st.sampled_from([0, 300]),
    protected_namespaces=st.sampled_from([frozenset(), frozenset({"kube-system"}), frozenset({"shop", ""})]),
    approval=st.sampled_from([(), Policy().approval]),
)
states = st.builds(
    TargetState,
    last_action_at=st.dictionaries(st.sampled_from(TARGETS), st.integers(0, 600).map(lambda s: NOW - timedelta(seconds=s))),
    namespace_active=st.dictionaries(st.sampled_from(["shop", "blog", ""]), st.integers(0, 2)),
)
batches = st.lists(proposals(), max_size=8)


@settings(max_examples=300)
@given(batches, states, policies, st.randoms())
def test_resolve_ignores_arrival_order(batch: list[Proposal], state: TargetState, policy: Policy, rnd: random.Random) -> None:
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    assert resolve(shuffled, state, policy, NOW) == resolve(batch, state, policy, NOW)


@settings(max_examples=300)
@given(batches, states, policies)
def test_resolve_invariants(batch: list[Proposal], state: TargetState, policy: Policy) -> None:
    decisions = resolve(batch, state, policy, NOW)
    assert len(decisions) == len(batch)
    live = [d for d in decisions if d.outcome in ("approved", "awaiting_approval")]
    targets = [d.proposal.target for d in live]
    assert len(targets) == len(set(targets))  # at most one action per target
    if policy.kill_switch:
        assert not live
    assert not any(d.proposal.namespace in policy.protected_namespaces for d in live)
    for d in live:
        p = d.proposal
        assert p.source != "ai" or (p.confidence or 0.0) >= policy.confidence_threshold
        last = state.last_action_at.get(p.target)
        assert last is None or NOW - last >= timedelta(seconds=policy.cooldown_seconds)  # cooldown respected
        assert d.reasons[0].code in (ReasonCode.MATCHED_RULE, ReasonCode.AI_SCORE, ReasonCode.MANUAL)
        assert (d.outcome == "awaiting_approval") == any(r.matches(p) for r in policy.approval)
    for ns in {d.proposal.namespace for d in live}:
        assert state.namespace_active.get(ns, 0) + sum(d.proposal.namespace == ns for d in live) <= policy.namespace_budget
    for a in live:  # no two live actions of one exclusive group in one namespace
        for b in live:
            if a is not b and a.proposal.namespace == b.proposal.namespace:
                assert not set(a.proposal.groups) & set(b.proposal.groups)
    for d in decisions:
        assert d.outcome != "superseded" or d.reasons[-1].code in (ReasonCode.LOST_CONFLICT, ReasonCode.DUPLICATE)
        for r in d.reasons:  # an AI proposal under the threshold never beats anything
            if r.code == ReasonCode.WON_CONFLICT:
                assert d.proposal.source != "ai" or (d.proposal.confidence or 0.0) >= policy.confidence_threshold
    holding = [d for d in live if not d.proposal.dry_run]
    assert len(apply(state, decisions).active) == len(state.active) + len(holding)


@settings(max_examples=200)
@given(batches, policies)
def test_deterministic_beats_ai_on_the_same_target(batch: list[Proposal], policy: Policy) -> None:
    batch = [p.model_copy(update={"id": f"u{i}"}) for i, p in enumerate(batch)]
    for d in resolve(batch, EMPTY, policy, NOW):
        for r in d.reasons:
            if r.code == ReasonCode.LOST_CONFLICT and r.conflict == "target" and d.proposal.source == "deterministic":
                winner = next(p for p in batch if p.id == r.other)
                assert winner.source == "manual" or winner.source == "deterministic"


# --- targets, manual proposals, releases and expiry -------------------------------------------------------------


def test_target_of_score_comes_from_the_features_context() -> None:
    score = ScoreComputed(incident_id="inc-9", verdict="anomaly", features_event_id="e",
                          target="shop/Deployment/web", namespace="shop", severity=Severity.CRITICAL)
    target = Target.of_score(score)
    assert target == Target(key="shop/Deployment/web", namespace="shop", kind="Deployment", incident_id="inc-9",
                            severity=Severity.CRITICAL)
    assert Target.of_score(score.model_copy(update={"target": ""})) is None


@pytest.mark.parametrize(
    ("issue", "kind", "action", "expected"),
    [
        ("pod_crash", "Deployment", None, ("restart_deployment", "crashloop-deployment")),
        ("pod_crash", "Pod", None, ("restart_pod", "crashloop-pod")),
        ("oom_kill", "Pod", None, ("scale_resources", "oom-killed")),
        ("high_cpu", "Deployment", None, ("scale_resources", "cpu-throttling")),
        ("high_memory", "StatefulSet", None, ("scale_resources", "memory-pressure")),
        ("network_issue", "DaemonSet", None, ("manual_intervention", "network-issue-other")),
        ("pod_crash", "StatefulSet", None, ("manual_intervention", None)),  # no rule: a human decides
        ("anything", "Pod", "restart_pod", ("restart_pod", None)),
    ],
)
def test_manual_action(issue: str, kind: str, action: str | None, expected: tuple[str, str | None]) -> None:
    assert manual_action(RULES, issue, kind, action) == expected


def test_manual_action_rejects_unknown_actions() -> None:
    with pytest.raises(UnknownAction, match="unknown action 'reboot_cluster'"):
        manual_action(RULES, "pod_crash", "Pod", "reboot_cluster")


def test_manual_proposals_are_identified_by_their_request() -> None:
    target = Target(key="shop/Pod/web-1", namespace="shop", kind="Pod", incident_id="inc-1")
    a = propose_manual(RULES, target, "restart_pod", request_id="key-1", dry_run=True, requested_by="alice")
    assert a == propose_manual(RULES, target, "restart_pod", request_id="key-1", dry_run=True, requested_by="alice")
    assert a.id != propose_manual(RULES, target, "restart_pod", request_id="key-2").id
    assert (a.source, a.priority, a.risk, a.groups, a.dry_run) == ("manual", 50, "low", ("restart",), True)


def test_a_manual_proposal_beats_a_higher_priority_rule() -> None:
    target = Target(key="shop/Pod/web-1", namespace="shop", kind="Pod", incident_id="inc-1")
    manual = propose_manual(RULES, target, "restart_pod", request_id="k", priority=10)
    rule = prop("p-rule", target="shop/Pod/web-1", action="scale_resources", priority=90)
    decisions = {d.proposal.id: d for d in resolve([rule, manual], EMPTY, OPEN, NOW)}
    assert decisions[manual.id].outcome == "approved"
    assert decisions["p-rule"].outcome == "superseded"
    assert decisions["p-rule"].reasons[-1].rule == "source_precedence"


def test_dry_run_decisions_hold_no_target() -> None:
    dry = prop("p-dry", dry_run=True)
    (decision,) = resolve([dry], EMPTY, OPEN, NOW)
    assert decision.outcome == "approved"
    assert apply(EMPTY, [decision]) == EMPTY


def test_release_only_the_action_of_the_given_incident_or_proposal() -> None:
    (decision,) = resolve([prop("p1", incident_id="inc-1")], EMPTY, OPEN, NOW)
    state = apply(EMPTY, [decision])
    later = NOW + timedelta(seconds=5)
    assert release(state, "shop/Deployment/web", later, incident_id="inc-2") == state
    assert release(state, "shop/Deployment/web", later, proposal_id="p2") == state
    freed = release(state, "shop/Deployment/web", later, incident_id="inc-1")
    assert freed.active == {} and freed.namespace_active == {"shop": 0}
    assert freed.last_action_at["shop/Deployment/web"] == later


def test_expire_frees_targets_whose_action_never_reported() -> None:
    (decision,) = resolve([prop("p1")], EMPTY, OPEN, NOW)
    state = apply(EMPTY, [decision])
    assert expire(state, NOW + timedelta(seconds=599), 600) == state
    freed = expire(state, NOW + timedelta(seconds=900), 600)
    assert freed.active == {}
    assert freed.last_action_at["shop/Deployment/web"] == NOW + timedelta(seconds=600)

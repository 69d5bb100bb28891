"""Planning and running remediation workflows (pure): strategies by deployment method, escalation, undo,
dry runs, the storm guard and memory quantities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.domain import quantity
from pipeline.domain import workflows as wf
from pipeline.domain.arbitration import Policy, resolve
from pipeline.events import Decision, Proposal, TargetState

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def decision(target: str = "shop/Deployment/web", action: str = "restart_deployment", **kw: Any) -> Decision:
    p = Proposal.model_validate({"id": "p1", "target": target, "namespace": target.split("/")[0], "action": action,
                                 "source": "deterministic", "priority": 50, "incident_id": "inc-1", "risk": "low",
                                 **kw})
    (d,) = resolve([p], TargetState(), Policy(approval=(), protected_namespaces=frozenset()), NOW)
    return d


def plan(d: Decision, detected: dict[str, wf.Detected] | None = None, **kw: Any) -> Any:
    return wf.plan(d, workflow_id=wf.workflow_id_of(d), mode=kw.pop("mode", "auto"), now=NOW,
                   detected=detected or {}, **kw)


def actions(w: Any) -> list[tuple[str, str, bool]]:
    return [(s.action, s.target, s.escalates) for s in w.steps]


def test_a_hand_made_deployment_is_restarted_then_rolled_back_if_that_does_not_help() -> None:
    w = plan(decision(), {"shop/Deployment/web": wf.Detected("manual")})
    assert w.remediator == "manual" and w.deployment_method == "manual" and w.layers == ["application"]
    assert actions(w) == [("rollout_restart", "shop/Deployment/web", False),
                          ("rollback_revision", "shop/Deployment/web", True)]
    assert [c.checks for c in w.checkpoints] == [["deployment_available"], ["deployment_available"]]
    assert w.steps[0].marker == f"{w.id}/s1" and w.status == "pending"


def test_a_crash_looping_pod_escalates_from_delete_to_restart_to_rollback() -> None:
    d = decision("shop/Pod/web-1", "restart_pod")
    w = plan(d, {"shop/Pod/web-1": wf.Detected("manual", workload="shop/Deployment/web")})
    assert actions(w) == [("delete_pod", "shop/Pod/web-1", False), ("rollout_restart", "shop/Deployment/web", True),
                          ("rollback_revision", "shop/Deployment/web", True)]
    assert w.checkpoints[0].target == "shop/Deployment/web"
    bare = plan(d, {"shop/Pod/web-1": wf.Detected("manual")})  # no controller: the pod alone
    assert actions(bare) == [("delete_pod", "shop/Pod/web-1", False)] and bare.checkpoints[0].checks == ["pod_replaced"]


def test_gitops_helm_and_operators_are_never_patched_directly() -> None:
    d = decision()
    argo = plan(d, {"shop/Deployment/web": wf.Detected("argocd", application="argocd/shop",
                                                       workload="shop/Deployment/web")})
    assert actions(argo) == [("argocd_sync", "argocd/Application/shop", False)]
    assert argo.checkpoints[0].checks == ["application_synced_healthy"]
    lost = plan(d, {"shop/Deployment/web": wf.Detected("argocd")})
    assert lost.status == "pending" and lost.steps == [] and "no Application lists it" in (lost.reason or "")
    assert wf.next_move(lost) == wf.Finish("failed", lost.reason or "")
    helm = plan(d, {"shop/Deployment/web": wf.Detected("helm", release="web")})
    assert actions(helm) == [("helm_rollback", "shop/Deployment/web", False)]
    assert helm.steps[0].change == {"release": "web", "helm_available": False}
    op = plan(d, {"shop/Deployment/web": wf.Detected("operator", owner="cache.example.com/v1alpha1|Memcached|mc",
                                                     workload="shop/Deployment/web")})
    assert actions(op) == [("operator_reconcile", "shop/Memcached/mc", False)]
    assert op.checkpoints[0].target == "shop/Deployment/web" and op.remediator == "operator"


def test_sizes_nodes_and_actions_that_need_a_human() -> None:
    mem = plan(decision(action="scale_resources"), limits=wf.Limits(memory_factor=2, memory_max_bytes=2**31))
    assert actions(mem) == [("raise_memory_limit", "shop/Deployment/web", False)]
    assert mem.steps[0].change == {"factor": 2, "max_bytes": 2**31}
    node = plan(decision("/Node/n1", "cordon_node"))
    assert actions(node) == [("cordon_node", "/Node/n1", False)] and node.layers == ["infrastructure"]
    wrong = plan(decision("shop/Deployment/web", "cordon_node"))
    assert wrong.status == "pending" and "needs a Node" in (wrong.reason or "")
    assert isinstance(wf.next_move(wrong), wf.Finish) and wf.next_move(wrong).status == "failed"
    human = plan(decision(action="manual_intervention"))
    assert human.steps == [] and human.reason == "manual_intervention needs a human: not automated"
    assert wf.next_move(human) == wf.Finish("skipped", human.reason)


def test_multi_layer_plans_run_infrastructure_first() -> None:
    resources = [{"kind": "Deployment", "name": "web", "namespace": "shop"},
                 {"kind": "Node", "name": "n1", "namespace": ""},
                 {"kind": "IngressOperator", "name": "default", "namespace": "openshift-ingress"}]
    w = plan(decision(action="multi_layer", parameters={"resources": resources}),
             {"shop/Deployment/web": wf.Detected("manual")})
    assert [s.layer for s in w.steps] == ["infrastructure", "platform", "application", "application"]
    assert [s.action for s in w.steps] == ["observe", "observe", "rollout_restart", "rollback_revision"]
    assert w.layers == ["infrastructure", "platform", "application"] and not w.steps[0].mutating


def complete(w: Any, sid: str, checkpoint: bool | None = True, **rollback: Any) -> Any:
    step = next(s for s in w.steps if s.id == sid)
    w = wf.step_succeeded(wf.step_started(w, step, NOW), step, NOW, rollback=rollback)
    cp = next((c for c in w.checkpoints if c.after_step == sid), None)
    if cp is not None and checkpoint is not None:
        w = wf.checkpoint_done(w, cp, NOW, checkpoint, "ok" if checkpoint else "still crashing")
    return w


def test_escalation_runs_the_next_rung_only_when_the_checkpoint_failed() -> None:
    d = decision("shop/Pod/web-1", "restart_pod")
    w = wf.start(plan(d, {"shop/Pod/web-1": wf.Detected("manual", workload="shop/Deployment/web")}), NOW)
    assert wf.next_move(w) == wf.Run(w.steps[0])
    w = complete(w, "s1", checkpoint=None)
    assert wf.next_move(w) == wf.Check(w.checkpoints[0])
    worked = wf.checkpoint_done(w, w.checkpoints[0], NOW, True, "available")
    assert isinstance(wf.next_move(worked), wf.Skip) and wf.next_move(worked).step.id == "s2"
    for step in worked.steps[1:]:
        worked = wf.step_skipped(worked, step, NOW, "not needed")
    assert wf.next_move(worked) == wf.Finish("completed")
    failed = wf.checkpoint_done(w, w.checkpoints[0], NOW, False, "still crashing")
    assert wf.next_move(failed) == wf.Run(failed.steps[1])  # escalate: rollout restart
    failed = complete(failed, "s2", checkpoint=False)
    assert wf.next_move(failed) == wf.Run(failed.steps[2])  # escalate: roll back
    step = failed.steps[2]
    failed = wf.step_failed(wf.step_started(failed, step, NOW), step, NOW, "no previous revision")
    move = wf.next_move(failed)
    assert isinstance(move, wf.Finish) and move.status == "failed" and "no previous revision" in move.reason


def test_a_failed_workflow_undoes_what_can_be_undone_once() -> None:
    w = wf.start(plan(decision(action="scale_resources")), NOW)
    w = complete(w, "s1", checkpoint=False, memory={"app": "256Mi"})
    move = wf.next_move(w)
    assert move == wf.Undo(w.steps[0])
    w = wf.rolled_back(w, w.steps[0], NOW, "restored")
    final = wf.next_move(w)
    assert isinstance(final, wf.Finish) and final.status == "failed" and "checkpoint c1" in final.reason


def test_dry_runs_record_the_first_rung_and_skip_checks_and_undo() -> None:
    w = wf.start(plan(decision(dry_run=True), {"shop/Deployment/web": wf.Detected("manual")}), NOW)
    assert w.dry_run
    w = complete(w, "s1", checkpoint=None)
    w = wf.checkpoint_done(w, w.checkpoints[0], NOW, None, "dry run")
    assert w.checkpoints[0].status == "skipped" and isinstance(wf.next_move(w), wf.Skip)
    assert plan(decision(), mode="dry-run").dry_run


def test_resuming_a_running_step_runs_it_again_and_finished_workflows_stay_finished() -> None:
    w = wf.start(plan(decision()), NOW)
    running = wf.step_started(w, w.steps[0], NOW, uid="u1")
    assert wf.next_move(running) == wf.Run(running.steps[0]) and running.steps[0].result == {"uid": "u1"}
    done = wf.finish(running, "rejected", NOW, "rejected by sre")
    assert wf.next_move(done) == wf.Finish("rejected") and done.finished and done.reason == "rejected by sre"


@pytest.mark.parametrize(("unhealthy", "total", "storm"), [(2, 2, False), (3, 4, True), (3, 6, False), (0, 0, False),
                                                            (10, 100, False), (51, 100, True)])
def test_storm_guard(unhealthy: int, total: int, storm: bool) -> None:
    assert (wf.storm(unhealthy, total, 0.5, 3) is not None) == storm


@pytest.mark.parametrize(("current", "raised"), [("256Mi", "384Mi"), ("1Gi", "1536Mi"), ("3Gi", "4Gi"),
                                                 ("4Gi", None), ("5G", None), (None, None), ("100M", "144Mi"),
                                                 ("1e9", "1431Mi")])
def test_memory_limits_are_raised_within_bounds(current: str | None, raised: str | None) -> None:
    assert quantity.raised_memory(current, 1.5, 4 * 2**30) == raised


def test_quantities() -> None:
    assert quantity.parse_bytes("512Mi") == 512 * 2**20 and quantity.parse_bytes("1G") == 10**9 and quantity.parse_bytes("1024") == 1024
    assert quantity.format_quantity(1536 * 2**20) == "1536Mi" and quantity.format_quantity(2**31) == "2Gi" and quantity.format_quantity(1000) == "1000"
    with pytest.raises(ValueError):
        quantity.parse_bytes("lots")


def test_workflow_ids_are_stable_and_manual_commands_keep_theirs() -> None:
    assert wf.workflow_id_of(decision()) == wf.workflow_id_of(decision()) != wf.workflow_id_of(decision(id="p2"))
    assert wf.workflow_id_of(decision(workflow_id="wf-abc")) == "wf-abc"


def test_layers_without_substring_false_positives() -> None:
    assert wf.layer_of_kind("Deployment", "postgres-hosts") == "application"
    assert wf.layer_of_kind("Node", "") == "infrastructure" and wf.layer_of_kind("ClusterOperator", "") == "platform"

"""Remediation workflows: how a decision becomes steps and checkpoints, and what to do next.

Pure: no I/O, no clock (times come in). The remediate stage asks `plan` for a workflow when a decision
arrives, then repeatedly asks `next_move` what to do, does it against the cluster, and records the outcome
with the transition functions below; each transition is published, so a restarted executor resumes from
the last one it published.

Strategies respect how the workload is deployed:

* **ArgoCD**: request a sync (and a hard refresh) of its Application, then wait for Synced and Healthy.
  A GitOps-managed workload is never patched: ArgoCD would revert it.
* **Helm**: `helm rollback` of its release when a helm binary is configured; otherwise the step fails
  with "needs helm" and nothing is patched.
* **Operator**: annotate the owning custom resource so its operator reconciles, then wait for the workload.
* **Manual** (and unknown): act on the object itself, with escalation for crash loops — delete the pod,
  then a rollout restart, then a rollback to the previous revision — each rung with its own checkpoint,
  the next rung only when the checkpoint failed.

Multi-layer workflows order their steps infrastructure → platform → application, with a checkpoint after
each layer's last step.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pipeline.domain.quantity import format_quantity
from pipeline.events import (
    Decision,
    Layer,
    Workflow,
    WorkflowCheckpoint,
    WorkflowStep,
)

_WORKFLOW_NAMESPACE = uuid.UUID("8f0e6a52-3b7d-4c1e-9d2a-6b5c4e3f2a10")
LAYER_ORDER: dict[str, int] = {"infrastructure": 0, "platform": 1, "application": 2}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
MARKER_ANNOTATION = "remediation.pipeline.io/step"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
# Actions that need a human: a workflow for them is recorded and ends `skipped`, saying so.
NOT_AUTOMATED = frozenset({"manual_intervention", "investigate_node", "immediate_investigation", "schedule_review"})
Mode = Literal["off", "dry-run", "approve", "auto"]


def workflow_id_of(decision: Decision) -> str:
    """The workflow of a decision: the manual command's own id, else one derived from the proposal."""
    p = decision.proposal
    return p.workflow_id or "wf-" + uuid.uuid5(_WORKFLOW_NAMESPACE, p.id).hex[:12]


def split_target(target: str) -> tuple[str, str, str]:
    """`namespace/Kind/name` -> (namespace, kind, name)."""
    namespace, _, rest = target.partition("/")
    kind, _, name = rest.partition("/")
    return namespace, kind, name


def layer_of_kind(kind: str, namespace: str) -> Layer:
    """The engine's layers, without its substring bugs: nodes and machine configs are infrastructure,
    operators, cluster operators and network policies the platform, workloads the application."""
    if kind in ("Node", "MachineConfig", "MachineConfigPool") or not namespace and kind not in ("ClusterOperator",):
        return "infrastructure"
    if kind == "ClusterOperator" or "Operator" in kind or kind == "NetworkPolicy":
        return "platform"
    return "application"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for the actions that change sizes (from the rules file)."""

    memory_factor: float = 1.5
    memory_max_bytes: int = 4 * 1024**3
    replicas_step: int = 1
    replicas_max: int = 10


@dataclass(frozen=True, slots=True)
class Timeouts:
    step_s: float = 120.0
    checkpoint_s: float = 180.0


@dataclass(frozen=True, slots=True)
class Detected:
    """How one object is deployed, as the stage found it (the detection record, plus the workload acted on)."""

    method: str = "unknown"  # argocd | helm | operator | manual | unknown
    record: Mapping[str, Any] | None = None  # the engine's DeploymentInfo JSON
    workload: str | None = None  # namespace/Kind/name of the controller remediation acts on
    owner: str | None = None  # operator: apiVersion|Kind|name of the owning custom resource
    application: str | None = None  # argocd: namespace/name of the Application
    release: str | None = None  # helm: release name


# --- Planning --------------------------------------------------------------------------------------------------


class _Plan:
    def __init__(self, workflow_id: str, timeouts: Timeouts) -> None:
        self.workflow_id = workflow_id
        self.timeouts = timeouts
        self.steps: list[WorkflowStep] = []
        self.checkpoints: list[WorkflowCheckpoint] = []

    def step(self, action: str, target: str, description: str, *, layer: Layer = "application",
             mutating: bool = True, escalates: bool = False, required: bool = True,
             change: dict[str, Any] | None = None, checks: Sequence[str] = (), check_target: str | None = None,
             ) -> WorkflowStep:
        sid = f"s{len(self.steps) + 1}"
        step = WorkflowStep(
            id=sid, order=len(self.steps) + 1, layer=layer, action=action, description=description, target=target,
            mutating=mutating, escalates=escalates, required=required, timeout_s=self.timeouts.step_s,
            marker=f"{self.workflow_id}/{sid}" if mutating else "", change=dict(change or {}),
        )
        self.steps.append(step)
        if checks:
            self.checkpoints.append(WorkflowCheckpoint(
                id=f"c{len(self.checkpoints) + 1}", layer=layer, after_step=sid, checks=list(checks),
                target=check_target or target, timeout_s=self.timeouts.checkpoint_s, required=required,
            ))
        return step


def _workload_checks(kind: str) -> list[str]:
    return ["deployment_available"] if kind == "Deployment" else ["rollout_complete"]


def _manual_steps(plan: _Plan, action: str, target: str, detected: Detected, limits: Limits,
                  layer: Layer = "application") -> None:
    """Act on the object itself (no GitOps, Helm or operator owns it)."""
    namespace, kind, name = split_target(target)
    workload = detected.workload or (target if kind in WORKLOAD_KINDS else None)
    w_kind = split_target(workload)[1] if workload else ""
    if action in ("restart_pod", "restart_deployment", "rollback_deployment"):
        ladder: list[str] = []
        if action == "restart_pod" and kind == "Pod":
            ladder.append("delete_pod")
        if action in ("restart_pod", "restart_deployment") and workload:
            ladder.append("rollout_restart")
        if workload and w_kind == "Deployment" and action in ("restart_pod", "restart_deployment",
                                                               "rollback_deployment"):
            ladder.append("rollback_revision")
        if not ladder:
            raise PlanError(f"{action} needs a pod or a workload; {target} is neither")
        for i, rung in enumerate(ladder):
            if rung == "delete_pod":
                plan.step("delete_pod", target, f"Delete pod {namespace}/{name} so its controller replaces it",
                          layer=layer, escalates=i > 0,
                          checks=_workload_checks(w_kind) if workload else ["pod_replaced"],
                          check_target=workload or target)
            elif rung == "rollout_restart":
                assert workload is not None
                plan.step("rollout_restart", workload, f"Rollout restart {workload}", layer=layer, escalates=i > 0,
                          checks=_workload_checks(w_kind))
            else:
                assert workload is not None
                plan.step("rollback_revision", workload, f"Roll {workload} back to its previous revision",
                          layer=layer, escalates=i > 0, checks=_workload_checks(w_kind))
        return
    if action == "scale_resources":
        if not workload:
            raise PlanError(f"scale_resources needs a workload; {target} has no controller")
        plan.step("raise_memory_limit", workload,
                  f"Raise the memory limits of {workload} x{limits.memory_factor:g}, at most "
                  f"{format_quantity(limits.memory_max_bytes)}", layer=layer,
                  change={"factor": limits.memory_factor, "max_bytes": limits.memory_max_bytes},
                  checks=_workload_checks(w_kind))
        return
    if action == "scale_replicas":
        if not workload or w_kind == "DaemonSet":
            raise PlanError(f"scale_replicas needs a Deployment or StatefulSet; {target} is not one")
        plan.step("scale_replicas", workload, f"Scale {workload} out by {limits.replicas_step}, at most "
                  f"{limits.replicas_max} replicas", layer=layer,
                  change={"step": limits.replicas_step, "max": limits.replicas_max}, checks=_workload_checks(w_kind))
        return
    if action in ("cordon_node", "drain_node"):
        if kind != "Node":
            raise PlanError(f"{action} needs a Node; {target} is a {kind}")
        plan.step("cordon_node", target, f"Cordon node {name}", layer="infrastructure",
                  checks=["node_unschedulable"])
        return
    raise PlanError(f"no strategy for action {action!r}")


def _owned_steps(plan: _Plan, action: str, target: str, detected: Detected, helm_available: bool,
                 limits: Limits, layer: Layer = "application") -> str:
    """The steps for one object, by how it is deployed; returns the remediator's name."""
    workload = detected.workload or target
    w_kind = split_target(workload)[1]
    if detected.method == "argocd":
        if not detected.application:
            raise PlanError(f"{workload} is managed by ArgoCD but no Application lists it: sync it in ArgoCD")
        app_ns, _, app_name = detected.application.partition("/")
        app = f"{app_ns}/Application/{app_name}"
        plan.step("argocd_sync", app,
                  f"Request a sync of ArgoCD Application {detected.application} (a GitOps workload is never patched)",
                  layer=layer, checks=["application_synced_healthy"])
        return "argocd"
    if detected.method == "helm":
        release = detected.release or split_target(workload)[2]
        plan.step("helm_rollback", workload, f"helm rollback {release} in {split_target(workload)[0]}",
                  layer=layer, change={"release": release, "helm_available": helm_available},
                  checks=_workload_checks(w_kind))
        return "helm"
    if detected.method == "operator" and detected.owner:
        api_version, kind, name = detected.owner.split("|")
        owner_target = f"{split_target(workload)[0]}/{kind}/{name}"
        plan.step("operator_reconcile", owner_target,
                  f"Annotate {kind} {name} ({api_version}) so its operator reconciles {workload}",
                  layer=layer, change={"api_version": api_version}, checks=_workload_checks(w_kind),
                  check_target=workload)
        return "operator"
    _manual_steps(plan, action, target, detected, limits, layer)
    return "manual"


class PlanError(ValueError):
    """The decision cannot be put into steps (an action without a strategy for this kind of object)."""


def plan(decision: Decision, *, workflow_id: str, mode: Mode, now: datetime, detected: Mapping[str, Detected],
         limits: Limits = Limits(), timeouts: Timeouts = Timeouts(), helm_available: bool = False) -> Workflow:
    """The workflow of an approved (or awaiting-approval) decision, not started yet.

    `detected` maps each object's `namespace/Kind/name` to how it is deployed. A multi-layer decision (action
    `multi_layer`) lists its resources in `parameters["resources"]`; its steps run infrastructure first."""
    p = decision.proposal
    namespace, kind, name = split_target(p.target)
    base = Workflow(
        id=workflow_id, incident_id=p.incident_id, proposal_id=p.id, namespace=p.namespace, target=p.target,
        resource_kind=kind, resource_name=name, action=p.action, source=p.source,
        issue_type=str(p.parameters.get("issue_type", "")), mode=mode, dry_run=p.dry_run or mode == "dry-run",
        decision=decision, created_at=now, updated_at=now,
    )
    steps = _Plan(workflow_id, timeouts)
    try:
        if p.action in NOT_AUTOMATED:
            return base.model_copy(update={"remediator": "none", "reason": f"{p.action} needs a human: not automated",
                                           "layers": [layer_of_kind(kind, namespace)]})
        if p.action == "multi_layer":
            remediators = _multi_layer(steps, p.parameters.get("resources") or [], detected, helm_available, limits)
            remediator = "+".join(dict.fromkeys(remediators)) or "none"
        else:
            info = detected.get(p.target, Detected())
            remediator = _owned_steps(steps, p.action, p.target, info, helm_available, limits,
                                      layer_of_kind(kind, namespace))
    except PlanError as exc:
        # still `pending`: it fails when a remediator takes it (or is skipped, with no cluster to act on)
        return base.model_copy(update={"remediator": "none", "reason": str(exc), "error_message": str(exc)})
    info = detected.get(p.target, Detected())
    layers = sorted({s.layer for s in steps.steps} or {layer_of_kind(kind, namespace)}, key=LAYER_ORDER.__getitem__)
    return base.model_copy(update={
        "deployment_method": info.method if p.action != "multi_layer" else "mixed",
        "deployment": dict(info.record or {}), "remediator": remediator, "layers": layers,
        "steps": steps.steps, "checkpoints": steps.checkpoints,
    })


def _multi_layer(plan_: _Plan, resources: Sequence[Mapping[str, Any]], detected: Mapping[str, Detected],
                 helm_available: bool, limits: Limits) -> list[str]:
    """Infrastructure, then platform, then application; a checkpoint after each layer's last step."""
    keyed = []
    for r in resources:
        kind, name, namespace = str(r.get("kind", "")), str(r.get("name", "")), str(r.get("namespace", ""))
        keyed.append((LAYER_ORDER[layer_of_kind(kind, namespace)], f"{namespace}/{kind}/{name}", kind))
    remediators = []
    for _, target, kind in sorted(keyed):
        namespace = split_target(target)[0]
        layer = layer_of_kind(kind, namespace)
        if kind == "Node":
            plan_.step("observe", target, f"Wait for node {split_target(target)[2]} to be Ready", layer=layer,
                       mutating=False, checks=["node_ready"])
            remediators.append("observe")
        elif kind == "Pod" or kind in WORKLOAD_KINDS:
            action = "restart_pod" if kind == "Pod" else "restart_deployment"
            remediators.append(_owned_steps(plan_, action, target, detected.get(target, Detected()), helm_available,
                                            limits, layer))
        else:
            plan_.step("observe", target, f"Observe {kind} {split_target(target)[2]} (no automated action)",
                       layer=layer, mutating=False)
            remediators.append("observe")
    return remediators


# --- Execution: what to do next, and the transitions ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    step: WorkflowStep


@dataclass(frozen=True, slots=True)
class Check:
    checkpoint: WorkflowCheckpoint


@dataclass(frozen=True, slots=True)
class Skip:
    step: WorkflowStep
    reason: str


@dataclass(frozen=True, slots=True)
class Undo:
    step: WorkflowStep


@dataclass(frozen=True, slots=True)
class Finish:
    status: Literal["completed", "failed", "skipped"]
    reason: str = ""


Move = Run | Check | Skip | Undo | Finish


def _checkpoint_after(w: Workflow, step_id: str) -> WorkflowCheckpoint | None:
    return next((c for c in w.checkpoints if c.after_step == step_id), None)


def _succeeded(w: Workflow, step: WorkflowStep) -> bool | None:
    """Did a step do its job (its checkpoint passed, or it completed without one)? None: not known yet."""
    if step.status == "skipped":
        return None
    if step.status == "failed":
        return False
    if step.status != "completed":
        return None
    cp = _checkpoint_after(w, step.id)
    if cp is None or cp.status in ("passed", "skipped"):
        return True
    if cp.status == "failed":
        return False
    return None


def next_move(w: Workflow) -> Move:
    """What the executor does next. An escalation rung runs only when the rungs before it did not work
    (the step failed or its checkpoint did); a required step or checkpoint that failed with no rung left
    fails the workflow, after undoing what can be undone."""
    if w.finished:
        return Finish(w.status)  # type: ignore[arg-type]
    if w.reason and not w.steps:
        return Finish("failed" if w.error_message else "skipped", w.reason)
    failure: str | None = None
    ladder_ok = False  # an earlier rung of the current ladder worked
    for i, step in enumerate(w.steps):
        if not step.escalates:
            ladder_ok = False
        elif ladder_ok:
            if step.status == "pending":
                return Skip(step, "not needed: an earlier rung worked")
            continue
        if step.status in ("pending", "running"):
            return Run(step)
        if step.status == "skipped":
            continue
        ok = _succeeded(w, step)
        if ok is None:
            cp = _checkpoint_after(w, step.id)
            assert cp is not None
            return Check(cp)
        if ok:
            ladder_ok = True
            continue
        later = w.steps[i + 1] if i + 1 < len(w.steps) else None
        if (later is not None and later.escalates) or not step.required:
            continue
        cp = _checkpoint_after(w, step.id)
        failure = (f"step {step.id} ({step.action}) failed: {step.error_message}" if step.status == "failed"
                   else f"checkpoint {cp.id if cp else '?'} after {step.id} failed: {cp.message if cp else ''}")
        break
    if failure is not None:
        for step in reversed(w.steps):
            if step.status == "completed" and step.rollback and not step.result.get("rolled_back") and not w.dry_run:
                return Undo(step)
        return Finish("failed", failure)
    return Finish("completed")


def _replace_step(w: Workflow, step: WorkflowStep, now: datetime, **update: Any) -> Workflow:
    steps = [s.model_copy(update=update) if s.id == step.id else s for s in w.steps]
    return w.model_copy(update={"steps": steps, "updated_at": now})


def _replace_checkpoint(w: Workflow, cp: WorkflowCheckpoint, now: datetime, **update: Any) -> Workflow:
    cps = [c.model_copy(update=update) if c.id == cp.id else c for c in w.checkpoints]
    return w.model_copy(update={"checkpoints": cps, "updated_at": now})


def start(w: Workflow, now: datetime) -> Workflow:
    return w.model_copy(update={"status": "running", "started_at": w.started_at or now, "waiting_for": None,
                                "updated_at": now})


def wait(w: Workflow, why: str, now: datetime) -> Workflow:
    return w.model_copy(update={"status": "awaiting_approval", "waiting_for": why, "updated_at": now})


def approve(w: Workflow, by: str, now: datetime) -> Workflow:
    return w.model_copy(update={"status": "pending", "waiting_for": None, "approved_by": by or "api",
                                "updated_at": now})


def step_started(w: Workflow, step: WorkflowStep, now: datetime, **result: Any) -> Workflow:
    return _replace_step(w, step, now, status="running", started_at=step.started_at or now,
                         result={**step.result, **result})


def step_succeeded(w: Workflow, step: WorkflowStep, now: datetime, *, change: Mapping[str, Any] | None = None,
                   result: Mapping[str, Any] | None = None, rollback: Mapping[str, Any] | None = None) -> Workflow:
    return _replace_step(w, step, now, status="completed", completed_at=now,
                         change={**step.change, **(change or {})}, result={**step.result, **(result or {})},
                         rollback=dict(rollback or {}))


def step_failed(w: Workflow, step: WorkflowStep, now: datetime, error: str,
                result: Mapping[str, Any] | None = None) -> Workflow:
    return _replace_step(w, step, now, status="failed", completed_at=now, error_message=error,
                         result={**step.result, **(result or {})})


def step_skipped(w: Workflow, step: WorkflowStep, now: datetime, reason: str) -> Workflow:
    w = _replace_step(w, step, now, status="skipped", completed_at=now, error_message=None,
                      result={**step.result, "skipped": reason})
    cp = _checkpoint_after(w, step.id)
    return _replace_checkpoint(w, cp, now, status="skipped", message=reason) if cp else w


def rolled_back(w: Workflow, step: WorkflowStep, now: datetime, outcome: str) -> Workflow:
    return _replace_step(w, step, now, result={**step.result, "rolled_back": outcome})


def checkpoint_done(w: Workflow, cp: WorkflowCheckpoint, now: datetime, passed: bool | None, message: str,
                    observed: Mapping[str, Any] | None = None) -> Workflow:
    status = "skipped" if passed is None else ("passed" if passed else "failed")
    return _replace_checkpoint(w, cp, now, status=status, checked_at=now, message=message,
                               observed=dict(observed or {}))


def finish(w: Workflow, status: Literal["completed", "failed", "skipped", "rejected"], now: datetime,
           reason: str = "") -> Workflow:
    update: dict[str, Any] = {"status": status, "completed_at": now, "updated_at": now, "waiting_for": None}
    if reason:
        update["reason"] = reason
    if status == "failed" and reason:
        update["error_message"] = reason
    return w.model_copy(update=update)


# --- Guards -----------------------------------------------------------------------------------------------------


def storm(unhealthy: int, total: int, max_share: float, min_unhealthy: int) -> str | None:
    """Medik8s' minHealthy, the other way round: when more than `max_share` of the objects are unhealthy
    at once (and at least `min_unhealthy`), restarting things is not the fix: ask a human."""
    if total <= 0 or unhealthy < min_unhealthy:
        return None
    share = unhealthy / total
    if share > max_share:
        return f"{unhealthy} of {total} pods unhealthy ({share:.0%} > {max_share:.0%}): storm guard"
    return None

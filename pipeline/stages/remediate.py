"""Remediate stage: approved decisions -> workflows that really act on the cluster.

`decisions` is keyed by the target's namespace, so one instance owns every workflow of a namespace. A
consumed decision becomes a planned workflow (how the workload is deployed decides the strategy), published
as `created` on `workflows` (co-partitioned with `decisions`) before the decision's offset is committed. Each
workflow then runs in its own task: approval gates, steps, checkpoints polled until they pass or time out,
escalation, undo — every transition published with the whole workflow. When it ends (completed, failed,
rejected, skipped) the arbitration target is released on `remediation`, so the next incident on the target
is decided normally.

On assignment the stage reads its partitions of `workflows` and resumes the unfinished ones; a mutating step
that a killed executor already applied is recognised by its marker on the object and not applied again.
Runtime controls (kill switch, pause, approvals) come from the `control` topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stamina

from pipeline.bus.control import ControlFollower
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import ChangelogReader, Origin, Stage
from pipeline.config import Settings
from pipeline.domain import workflows as wf
from pipeline.domain.arbitration import Rules
from pipeline.domain.quantity import parse_bytes
from pipeline.events import (
    FINISHED,
    ActionReleased,
    ControlChanged,
    DecisionMade,
    Event,
    Transition,
    Workflow,
    WorkflowChanged,
)
from pipeline.observability import (
    REMEDIATE_FIRST_CALL_SECONDS,
    REMEDIATE_RUNNING,
    REMEDIATE_STEPS,
    REMEDIATE_WORKFLOWS,
    bind_context,
    get_logger,
    trace_id,
)

log = get_logger("pipeline.remediate")
_RELEASE_REASON = {"completed": "completed", "failed": "failed", "skipped": "cancelled", "rejected": "cancelled"}


def identity(settings: Settings) -> str:
    return settings.remediation_identity or f"{socket.gethostname()}-{os.getpid()}"


class RemediateStage(Stage):
    """Consumes `decisions`; publishes `workflows` and releases on `remediation`; follows `control`."""

    name = "remediate"
    inputs = ("decisions",)

    def __init__(self, settings: Settings, rules: Rules, clock: Callable[[], datetime] | None = None) -> None:
        """`rules` bound the actions that change sizes (`limits` of the rules file)."""
        super().__init__(settings)
        self.workflows_topic = settings.topic("workflows")
        self.remediation_topic = settings.topic("remediation")
        self.control_topic = settings.topic("control")
        self.mode = settings.remediation_mode
        self.limits = wf.Limits(memory_factor=rules.limits.memory_factor,
                                memory_max_bytes=parse_bytes(rules.limits.memory_max),
                                replicas_step=rules.limits.replicas_step, replicas_max=rules.limits.replicas_max)
        self.timeouts = wf.Timeouts(step_s=settings.remediation_step_timeout_s,
                                    checkpoint_s=settings.remediation_checkpoint_timeout_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.identity = identity(settings)
        self.producer = EventProducer(settings)
        self.control = ControlFollower(settings)
        self.api: Any = None
        self.kube: Any = None  # KubeRemediator
        self.detector: Any = None  # adapters.detection.Detector
        self.no_cluster: str | None = None
        self.self_check: dict[str, Any] = {}
        self._known: dict[str, Workflow] = {}
        self._sequence: dict[str, int] = {}
        self._partition: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # decision event id -> planned workflow, the decision's time, its trace id
        self._created: dict[str, tuple[Workflow, float, str | None]] = {}

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.producer.start()
        await self.control.start()
        if self.mode == "off":
            self.no_cluster = None
        elif not self.settings.cluster_configured:
            self.no_cluster = "no cluster configured (set KUBECONFIG, or run in a pod with a service account)"
        else:
            from pipeline.adapters.detection import Detector
            from pipeline.adapters.kube import api_client
            from pipeline.adapters.remediation import KubeRemediator

            try:
                self.api = await api_client(self.settings)
            except Exception as exc:  # noqa: BLE001 - an unusable kubeconfig: say so in every workflow
                self.no_cluster = f"cannot use the cluster: {exc}"
            else:
                self.kube = KubeRemediator(self.api, helm_binary=self.settings.helm_binary)
                self.detector = Detector(self.api, application_namespaces=self.settings.argocd_namespaces)
                try:
                    self.self_check = await self.kube.self_check(self.settings.remediation_namespaces,
                                                                 self.settings.argocd_namespaces)
                except Exception as exc:  # noqa: BLE001 - unreachable API server: report, keep going
                    self.self_check = {"error": repr(exc)}
        await self._announce()

    async def _announce(self) -> None:
        """Publish this remediator's mode and RBAC self-check, shown in /api/v1/health."""
        details = {"mode": self.mode, "cluster": self.no_cluster is None and self.mode != "off",
                   "no_cluster": self.no_cluster, **self.self_check}
        change = ControlChanged(key=f"remediator/{self.identity}", kind="remediator", by=self.identity,
                                details=details, at=self.clock())
        if self.self_check.get("denied"):
            log.warning("remediator lacks permissions", denied=self.self_check["denied"])
        await self.producer.publish([Output.event(self.control_topic, Event.of(change, source="pipeline/remediate"))])

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.control.stop()
        await self.producer.stop()
        if self.api is not None:
            await self.api.close()

    # --- consuming decisions ------------------------------------------------------------------------------------

    async def prepare(self, events: list[Event]) -> None:
        """Plan a workflow for every new approved (or awaiting-approval) decision. Detection is I/O: the batch's
        detections run concurrently, so one slow target does not hold up the others for long."""
        todo: list[tuple[Event, DecisionMade, str]] = []
        for event in events:
            payload = event.payload
            if not isinstance(payload, DecisionMade) or payload.decision.outcome not in ("approved",
                                                                                         "awaiting_approval"):
                continue
            workflow_id = wf.workflow_id_of(payload.decision)
            if workflow_id in self._known or event.envelope.id in self._created:
                continue
            todo.append((event, payload, workflow_id))
        found = await asyncio.gather(*(self._detect(p.decision.proposal.target,
                                                    p.decision.proposal.parameters.get("resources"))
                                       for _, p, _ in todo))
        for (event, payload, workflow_id), detected in zip(todo, found, strict=True):
            planned = wf.plan(payload.decision, workflow_id=workflow_id, mode=self.mode, now=self.clock(),
                              detected=detected, limits=self.limits, timeouts=self.timeouts,
                              helm_available=bool(self.kube and self.kube.helm))
            self._created[event.envelope.id] = (planned, event.envelope.time.timestamp(),
                                                trace_id(event.envelope.traceparent))

    async def _detect(self, target: str, resources: Any) -> dict[str, wf.Detected]:
        targets = [target]
        for r in resources or []:
            if isinstance(r, dict):
                targets.append(f"{r.get('namespace', '')}/{r.get('kind', '')}/{r.get('name', '')}")
        out: dict[str, wf.Detected] = {}
        if self.detector is None:
            return out
        for key in dict.fromkeys(targets):
            namespace, kind, name = wf.split_target(key)
            if kind not in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
                continue
            try:
                info = await asyncio.wait_for(self.detector.detect(namespace, kind, name), 30)
            except Exception as exc:  # noqa: BLE001 - undetectable (gone, forbidden): act on the object itself
                out[key] = wf.Detected(method="unknown", record={"method": "unknown", "error": str(exc)})
                continue
            out[key] = detected_of(info)
        return out

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        planned = self._created.get(event.envelope.id)
        if planned is None:
            return []
        workflow = planned[0]
        self._partition[workflow.id] = origin.partition
        self.journal.note("workflow created", workflow_id=workflow.id, action=workflow.action, target=workflow.target,
                          mode=workflow.mode, status=workflow.status, steps=[s.action for s in workflow.steps])
        return [self._output(workflow, "created", None, cause=event)]

    def commit(self) -> None:
        for workflow, decided_at, trace in self._created.values():
            if workflow.id in self._known:
                continue
            self._known[workflow.id] = workflow
            self._sequence[workflow.id] = 1
            REMEDIATE_WORKFLOWS.labels("created").inc()
            self._launch(workflow, decided_at, trace)
        self._created.clear()

    def rollback(self) -> None:
        self._created.clear()

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        latest: dict[str, tuple[int, Workflow, int]] = {}
        for record, event in await reader.read(self.workflows_topic, partitions):
            if event is None or not isinstance(event.payload, WorkflowChanged):
                continue
            w, seq = event.payload.workflow, event.payload.sequence
            if w.id not in latest or seq >= latest[w.id][0]:
                latest[w.id] = (seq, w, record.partition)
        for workflow_id, (seq, workflow, partition) in latest.items():
            self._known[workflow_id] = workflow
            self._sequence[workflow_id] = seq
            self._partition[workflow_id] = partition
            if not workflow.finished and workflow_id not in self._tasks:
                log.info("resuming workflow", workflow_id=workflow_id, status=workflow.status)
                self._launch(workflow, None)

    def release(self, partitions: list[int]) -> None:
        for workflow_id, partition in list(self._partition.items()):
            if partition in partitions:
                task = self._tasks.pop(workflow_id, None)
                if task is not None:
                    task.cancel()
                self._known.pop(workflow_id, None)
                self._partition.pop(workflow_id, None)

    # --- executing ------------------------------------------------------------------------------------------------

    def _launch(self, workflow: Workflow, decided_at: float | None, trace: str | None = None) -> None:
        task = asyncio.create_task(self._execute(workflow, decided_at, trace), name=f"workflow-{workflow.id}")
        self._tasks[workflow.id] = task
        task.add_done_callback(self._done)
        REMEDIATE_RUNNING.set(len(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        for workflow_id, t in list(self._tasks.items()):
            if t is task:
                del self._tasks[workflow_id]
        REMEDIATE_RUNNING.set(len(self._tasks))

    def _output(self, w: Workflow, transition: Transition, step_id: str | None, *,
                cause: Event | None = None) -> Output:
        """A workflow transition; `created` is caused by the decision event (its id derived from the decision's)."""
        payload = WorkflowChanged(namespace=w.namespace, transition=transition, step_id=step_id,
                                  sequence=self._sequence.get(w.id, 0) + 1 if cause is None else 1, workflow=w)
        attrs: dict[str, Any] = {"subject": w.target, "incidentid": w.incident_id or None, "workflowid": w.id}
        event = (Event.of(payload, source="pipeline/remediate", **attrs) if cause is None
                 else cause.caused(payload, source="pipeline/remediate", **attrs))
        return Output.event(self.workflows_topic, event, partition=self._partition.get(w.id))

    async def _publish(self, w: Workflow, transition: Transition, step_id: str | None = None,
                       extra: list[Output] | None = None) -> Workflow:
        out = self._output(w, transition, step_id)
        async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None, wait_initial=0.2,
                                                   wait_max=5.0):
            with attempt:
                await self.producer.publish([out, *(extra or [])])
        self._sequence[w.id] = self._sequence.get(w.id, 0) + 1
        self._known[w.id] = w
        _log_transition(w, transition, step_id)
        return w

    async def _finish(self, w: Workflow, status: Any, reason: str) -> None:
        w = wf.finish(w, status, self.clock(), reason)
        released = ActionReleased(namespace=w.namespace, target=w.target, proposal_id=w.proposal_id,
                                  reason=_RELEASE_REASON[status], released_at=self.clock())
        release = Output.event(self.remediation_topic, Event.of(released, source="pipeline/remediate",
                                                                 subject=w.target, workflowid=w.id,
                                                                 incidentid=w.incident_id or None))
        await self._publish(w, status, extra=[release])
        REMEDIATE_WORKFLOWS.labels(status).inc()

    async def _execute(self, w: Workflow, decided_at: float | None, trace: str | None) -> None:
        # this task's lines (and those of the tasks it starts) carry the workflow's ids
        bind_context(stage=self.name, workflow_id=w.id, incident_id=w.incident_id or None, trace_id=trace)
        try:
            gated = await self._gate(w)
            if gated is None:
                return
            w = gated
            first_call = decided_at
            while True:
                move = wf.next_move(w)
                now = self.clock()
                if isinstance(move, wf.Finish):
                    await self._finish(w, move.status, move.reason)
                    return
                if isinstance(move, wf.Run):
                    step = move.step
                    if step.mutating and self.control.state.killed:
                        started = any(s.status != "pending" for s in w.steps)
                        await self._finish(w, "failed" if started else "skipped",
                                           f"the kill switch is on: stopped before step {step.id}")
                        return
                    if w.status != "running":
                        w = wf.start(w, now)
                    try:
                        if step.status == "pending":
                            recorded = await self.kube.prepare(step)
                            w = await self._publish(wf.step_started(w, step, now, **recorded), "step_started",
                                                    step.id)
                            step = next(s for s in w.steps if s.id == step.id)
                        if first_call is not None:
                            REMEDIATE_FIRST_CALL_SECONDS.observe(max(time.time() - first_call, 0.0))
                            first_call = None
                        outcome = await asyncio.wait_for(self.kube.run(step, dry_run=w.dry_run), step.timeout_s)
                    except Exception as exc:  # noqa: BLE001 - StepError, timeouts, API errors: the step failed
                        message = str(exc) or f"{type(exc).__name__} after {step.timeout_s:g}s"
                        REMEDIATE_STEPS.labels(step.action, "failed").inc()
                        w = await self._publish(wf.step_failed(w, step, self.clock(), message), "step_failed",
                                                step.id)
                        continue
                    REMEDIATE_STEPS.labels(step.action, "completed").inc()
                    w = await self._publish(wf.step_succeeded(w, step, self.clock(), change=outcome.change,
                                                              result=outcome.result, rollback=outcome.rollback),
                                            "step_succeeded", step.id)
                elif isinstance(move, wf.Check):
                    w = await self._checkpoint(w, move.checkpoint)
                elif isinstance(move, wf.Skip):
                    w = await self._publish(wf.step_skipped(w, move.step, now, move.reason), "step_skipped",
                                            move.step.id)
                elif isinstance(move, wf.Undo):
                    try:
                        outcome_text = await self.kube.undo(move.step)
                    except Exception as exc:  # noqa: BLE001 - undo failed: record it, the workflow still fails
                        outcome_text = f"undo failed: {exc}"
                    w = await self._publish(wf.rolled_back(w, move.step, self.clock(), outcome_text), "rolled_back",
                                            move.step.id)
        except asyncio.CancelledError:
            raise  # partitions revoked or stopping: the next owner resumes from the last transition
        except Exception as exc:  # noqa: BLE001 - an executor bug must not leave a workflow running forever
            log.error("workflow executor failed", workflow_id=w.id, error=repr(exc))
            with contextlib.suppress(Exception):
                await self._finish(w, "failed", f"executor error: {type(exc).__name__}: {exc}")

    async def _checkpoint(self, w: Workflow, cp: Any) -> Workflow:
        step = next(s for s in w.steps if s.id == cp.after_step)
        if w.dry_run:
            return await self._publish(wf.checkpoint_done(w, cp, self.clock(), None,
                                                          "dry run: nothing changed, nothing to check"),
                                       "checkpoint_skipped", step.id)
        deadline = time.monotonic() + cp.timeout_s
        message, observed = "", {}
        while True:
            try:
                passed, message, observed = await self.kube.check(cp, step)
            except Exception as exc:  # noqa: BLE001 - a check that cannot be read is "not yet"
                passed, message = None, str(exc)
            if passed is True:
                return await self._publish(wf.checkpoint_done(w, cp, self.clock(), True, message, observed),
                                           "checkpoint_passed", step.id)
            if passed is False or time.monotonic() >= deadline:
                text = message if passed is False else f"timed out after {cp.timeout_s:g}s: {message}"
                return await self._publish(wf.checkpoint_done(w, cp, self.clock(), False, text, observed),
                                           "checkpoint_failed", step.id)
            await asyncio.sleep(self.settings.remediation_poll_s)

    async def _gate(self, w: Workflow) -> Workflow | None:
        """Before the first step: mode, cluster, kill switch, approvals, storm guard, pause. None: it ended."""
        if w.status == "running" or w.completed_at is not None:
            return w
        if self.mode == "off":
            await self._finish(w, "skipped", "remediation mode is off (REMEDIATION_MODE=off)")
            return None
        if self.no_cluster:
            await self._finish(w, "skipped", self.no_cluster)
            return None
        if w.finished or not w.steps:
            return w  # not plannable, or nothing to do on the cluster: next_move finishes it with its reason
        automatic = w.source != "manual"
        why: list[str] = []
        if w.decision.outcome == "awaiting_approval":
            rules = [r.rule for r in w.decision.reasons if r.code == "approval_required" and r.rule]
            why.append("approval_rule: " + ", ".join(rules))
        if self.mode == "approve" and not w.dry_run:
            why.append("approval_mode")
        if automatic and not w.dry_run and not w.approved_by:
            try:
                unhealthy, total = await self.kube.pod_health(w.namespace)
                storm = wf.storm(unhealthy, total, self.settings.remediation_storm_max_unhealthy,
                                 self.settings.remediation_storm_min_unhealthy)
            except Exception:  # noqa: BLE001 - cannot count: no storm evidence
                storm = None
            if storm:
                why.append(f"storm_guard: {storm}")
        while why and not w.approved_by:
            if self.control.state.killed:
                await self._finish(w, "skipped", "the kill switch is on")
                return None
            answer = self.control.state.decisions.get(w.id)
            if answer is not None and answer.kind == "reject":
                await self._finish(w, "rejected",
                                   f"rejected by {answer.by or 'api'}" + (f": {answer.reason}" if answer.reason else ""))
                return None
            if answer is not None and answer.kind == "approve":
                w = await self._publish(wf.approve(w, answer.by, self.clock()), "approved")
                break
            waited = (self.clock() - w.created_at).total_seconds()
            if waited >= self.settings.remediation_action_timeout_s:
                # arbitration stops holding the target after this long: an approval now could race another action
                await self._finish(w, "skipped", f"no approval within {self.settings.remediation_action_timeout_s:g}s")
                return None
            if w.status != "awaiting_approval":
                w = await self._publish(wf.wait(w, "; ".join(why), self.clock()), "awaiting_approval")
            await self.control.wait_changed(5.0)
        while automatic and self.control.state.paused and not self.control.state.killed:
            if w.waiting_for != "paused":
                w = await self._publish(w.model_copy(update={"waiting_for": "paused", "updated_at": self.clock()}),
                                        "paused")
            await self.control.wait_changed(5.0)
        if self.control.state.killed:
            await self._finish(w, "skipped", "the kill switch is on")
            return None
        return wf.start(w, self.clock())


def _log_transition(w: Workflow, transition: Transition, step_id: str | None) -> None:
    """One INFO line per published transition: a step's (started, succeeded, failed, skipped, rolled back, its
    checkpoint), waiting for approval or a pause, approved, and how the workflow finished."""
    fields: dict[str, Any] = {"workflow_id": w.id}
    if transition in FINISHED:
        event = "workflow finished"
        fields.update(status=transition, action=w.action, target=w.target, reason=w.reason)
    elif step_id is not None:
        event = "workflow step"
        step = next((s for s in w.steps if s.id == step_id), None)
        fields.update(step=step_id, state=transition, action=step.action if step else None,
                      error=step.error_message if step else None)
        if transition.startswith("checkpoint_"):
            fields["message"] = next((c.message for c in w.checkpoints if c.after_step == step_id), None)
    else:  # awaiting_approval, paused, approved
        event = f"workflow {transition.replace('_', ' ')}"
        fields.update(waiting_for=w.waiting_for, approved_by=w.approved_by)
    log.info(event, **{k: v for k, v in fields.items() if v is not None})


def detected_of(info: Any) -> wf.Detected:
    """The stage's view of a detection record (adapters.detection.DeploymentInfo)."""
    from pipeline.domain.detection import to_api

    record = to_api(info)
    workload = owner = application = None
    if getattr(info, "workload", None) is not None:
        ref = info.workload
        workload = f"{getattr(ref, 'namespace', None) or info.namespace}/{ref.kind}/{ref.name}"
    if getattr(info, "owner", None) is not None:
        owner = f"{info.owner.api_version}|{info.owner.kind}|{info.owner.name}"
    if getattr(info, "application", None) is not None:
        application = f"{info.application.namespace or info.namespace}/{info.application.name}"
    return wf.Detected(method=info.method, record=record, workload=workload, owner=owner, application=application,
                       release=(info.details or {}).get("release_name"))

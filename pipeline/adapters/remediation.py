"""The remediate stage's hands: each workflow step and checkpoint as Kubernetes API calls (kubernetes-asyncio).

Objects stay JSON dicts. Every mutation can be sent with server-side `dryRun=All` (the API server validates
and admits it, and stores nothing) and records what it sent. Mutating steps put their marker
(`remediation.pipeline.io/step: <workflow>/<step>`) on the object in the same request, and look for it
first: a step that a killed executor already applied is not applied again. A pod deletion is made
idempotent by the pod's uid instead (recorded before deleting, sent as a precondition).

A 403 fails the step with the API server's reason; so does any other API error. Nothing here retries a
mutation: the workflow's escalation and the operator decide what happens next.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

from pipeline.adapters.kube import ApiStatus, json_of
from pipeline.domain.quantity import format_quantity, raised_memory
from pipeline.domain.workflows import MARKER_ANNOTATION, RESTARTED_AT_ANNOTATION, split_target
from pipeline.events import WorkflowCheckpoint, WorkflowStep

FIELD_MANAGER = "pipeline-remediate"
REQUEST_TIMEOUT_S = 15
RECONCILE_ANNOTATION = "remediation.pipeline.io/reconcile"

# What the remediator may need, checked at start-up with SelfSubjectAccessReviews (verb, group, resource).
PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("get", "", "pods"), ("list", "", "pods"), ("delete", "", "pods"),
    ("get", "apps", "deployments"), ("patch", "apps", "deployments"),
    ("get", "apps", "statefulsets"), ("patch", "apps", "statefulsets"),
    ("get", "apps", "daemonsets"), ("patch", "apps", "daemonsets"),
    ("list", "apps", "replicasets"), ("get", "", "nodes"), ("patch", "", "nodes"),
    ("get", "argoproj.io", "applications"), ("patch", "argoproj.io", "applications"),
)

CLUSTER_SCOPED = frozenset({"nodes"})  # of PERMISSIONS' resources, those without a namespace


class StepError(Exception):
    """A step or check could not be carried out; the message says why (the API server's reason on 403)."""


@dataclass
class Outcome:
    """What a step did: the request sent (or that would be sent), what came back, how to undo it."""

    change: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    rollback: dict[str, Any] = field(default_factory=dict)


def _reason(exc: client.ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or exc.reason
    except (TypeError, ValueError):
        message = exc.reason
    return f"{exc.status} {exc.reason}: {message}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeRemediator:
    """Runs workflow steps and polls checkpoints against one cluster."""

    def __init__(self, api: client.ApiClient, *, helm_binary: str = "") -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.auth = client.AuthorizationV1Api(api)
        self.helm = shutil.which(helm_binary) if helm_binary else None
        self._plurals: dict[str, str] = {}

    # --- reading -----------------------------------------------------------------------------------------------

    async def _call(self, coro: Any) -> dict[str, Any]:
        """Raw JSON of a call made with `_preload_content=False`; a non-2xx answer is a StepError with the API
        server's reason."""
        try:
            return await json_of(await coro)  # type: ignore[no-any-return]
        except client.ApiException as exc:
            raise StepError(_reason(exc)) from None
        except ApiStatus as exc:
            raise StepError(f"{exc.status} {exc.reason}: {exc.message}") from None

    async def get(self, target: str) -> dict[str, Any]:
        namespace, kind, name = split_target(target)
        kw: dict[str, Any] = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT_S}
        if kind == "Pod":
            return await self._call(self.core.read_namespaced_pod(name, namespace, **kw))
        if kind == "Node":
            return await self._call(self.core.read_node(name, **kw))
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            fn = getattr(self.apps, f"read_namespaced_{_snake(kind)}")
            return await self._call(fn(name, namespace, **kw))
        if kind == "Application":
            return await self._call(self.custom.get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "applications", name, **kw))
        raise StepError(f"cannot read {kind} objects")

    async def exists(self, target: str) -> dict[str, Any] | None:
        try:
            return await self.get(target)
        except StepError as exc:
            if str(exc).startswith("404"):
                return None
            raise

    async def _patch(self, target: str, body: Any, *, dry_run: bool, content_type: str | None = None,
                     api_version: str | None = None) -> dict[str, Any]:
        namespace, kind, name = split_target(target)
        kw: dict[str, Any] = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT_S,
                              "field_manager": FIELD_MANAGER}
        if dry_run:
            kw["dry_run"] = "All"
        if content_type:
            kw["_content_type"] = content_type
        if kind == "Node":
            return await self._call(self.core.patch_node(name, body, **kw))
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            fn = getattr(self.apps, f"patch_namespaced_{_snake(kind)}")
            return await self._call(fn(name, namespace, body, **kw))
        kw["_content_type"] = "application/merge-patch+json"
        if kind == "Application":
            return await self._call(self.custom.patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "applications", name, body, **kw))
        if api_version:
            group, _, version = api_version.rpartition("/")
            plural = await self._plural(api_version, kind)
            return await self._call(self.custom.patch_namespaced_custom_object(
                group, version, namespace, plural, name, body, **kw))
        raise StepError(f"cannot patch {kind} objects")

    async def _plural(self, api_version: str, kind: str) -> str:
        key = f"{api_version}|{kind}"
        if key not in self._plurals:
            path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            try:
                body = await self._call(self.api.call_api(
                    path, "GET", _preload_content=False, auth_settings=["BearerToken"],
                    _request_timeout=REQUEST_TIMEOUT_S, _return_http_data_only=True))
            except StepError as exc:
                raise StepError(f"API discovery of {api_version}: {exc}") from None
            for resource in body.get("resources") or []:
                if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                    self._plurals[key] = resource["name"]
                    break
            else:
                raise StepError(f"{api_version} serves no {kind}")
        return self._plurals[key]

    # --- steps -------------------------------------------------------------------------------------------------

    async def prepare(self, step: WorkflowStep) -> dict[str, Any]:
        """What to record when a step starts, before it mutates anything (a pod's uid for a deletion)."""
        if step.action == "delete_pod" and "uid" not in step.result:
            pod = await self.exists(step.target)
            return {"uid": (pod or {}).get("metadata", {}).get("uid")}
        return {}

    async def run(self, step: WorkflowStep, *, dry_run: bool) -> Outcome:
        handler = getattr(self, f"_step_{step.action}", None)
        if handler is None:
            raise StepError(f"no executor for step action {step.action!r}")
        outcome: Outcome = await handler(step, dry_run)
        outcome.result.setdefault("dry_run", dry_run)
        return outcome

    async def _already(self, step: WorkflowStep, obj: Mapping[str, Any]) -> Outcome | None:
        """The step's marker is on the object: a previous executor applied it (resume without repeating)."""
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if step.marker and annotations.get(MARKER_ANNOTATION) == step.marker:
            return Outcome(result={"already_applied": True, "generation": obj["metadata"].get("generation"),
                                   "resource_version": obj["metadata"].get("resourceVersion")},
                           rollback=dict(step.rollback))
        return None

    def _applied(self, sent: Any, obj: Mapping[str, Any], dry_run: bool) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        return {"generation": meta.get("generation"), "resource_version": meta.get("resourceVersion"),
                "would_change" if dry_run else "changed": True}

    async def _step_delete_pod(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        namespace, _, name = split_target(step.target)
        uid = step.result.get("uid")
        pod = await self.exists(step.target)
        if pod is None or not uid or pod["metadata"].get("uid") != uid:
            return Outcome(result={"already_applied": True, "reason": "the pod is gone or was replaced"})
        body = {"preconditions": {"uid": uid}, "gracePeriodSeconds": 30}
        kw: dict[str, Any] = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT_S, "body": body}
        if dry_run:
            kw["dry_run"] = "All"
        await self._call(self.core.delete_namespaced_pod(name, namespace, **kw))
        return Outcome(change={"delete": f"pods/{name}", "preconditions": {"uid": uid}},
                       result={"uid": uid, "would_change" if dry_run else "changed": True})

    async def _step_rollout_restart(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        obj = await self.get(step.target)
        if done := await self._already(step, obj):
            return done
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: step.marker}},
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: _now()}}}}}
        out = await self._patch(step.target, body, dry_run=dry_run)
        return Outcome(change={"patch": body, "type": "strategic-merge"}, result=self._applied(body, out, dry_run))

    async def _step_rollback_revision(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        namespace, _, name = split_target(step.target)
        obj = await self.get(step.target)
        if done := await self._already(step, obj):
            return done
        uid = obj["metadata"]["uid"]
        rs_list = await self._call(self.apps.list_namespaced_replica_set(
            namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))
        owned = [rs for rs in rs_list.get("items") or []
                 if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]
        revisions = sorted(
            ((int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0")), rs)
             for rs in owned), key=lambda pair: pair[0])
        current = _comparable(obj["spec"]["template"])
        earlier = [(rev, rs) for rev, rs in revisions if _comparable(rs["spec"]["template"]) != current]
        if not earlier:
            raise StepError(f"{name} has no earlier revision with a different pod template to roll back to")
        revision, previous = earlier[-1]  # the newest version that is not the current one (restarts do not count)
        template = json.loads(json.dumps(previous["spec"]["template"]))
        (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
        annotations = dict(obj["metadata"].get("annotations") or {})
        annotations[MARKER_ANNOTATION] = step.marker
        body = [{"op": "replace", "path": "/spec/template", "value": template},
                {"op": "add" if obj["metadata"].get("annotations") is None else "replace",
                 "path": "/metadata/annotations", "value": annotations}]
        out = await self._patch(step.target, body, dry_run=dry_run, content_type="application/json-patch+json")
        return Outcome(change={"patch": body, "type": "json-patch", "to_revision": revision},
                       result=self._applied(body, out, dry_run))

    async def _step_raise_memory_limit(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        obj = await self.get(step.target)
        if done := await self._already(step, obj):
            return done
        factor = float(step.change.get("factor", 1.5))
        max_bytes = int(step.change.get("max_bytes", 4 * 2**30))
        containers, old = [], {}
        for c in obj["spec"]["template"]["spec"].get("containers") or []:
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            new = raised_memory(limit, factor, max_bytes)
            if new is not None:
                containers.append({"name": c["name"], "resources": {"limits": {"memory": new}}})
                old[c["name"]] = limit
        if not containers:
            raise StepError(f"no container of {step.target} has a memory limit below {format_quantity(max_bytes)} "
                            "to raise (the rules' limits.memory_max)")
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: step.marker}},
                "spec": {"template": {"spec": {"containers": containers}}}}
        out = await self._patch(step.target, body, dry_run=dry_run)
        return Outcome(change={"patch": body, "type": "strategic-merge", "from": old},
                       result=self._applied(body, out, dry_run), rollback={"memory": old})

    async def _step_scale_replicas(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        obj = await self.get(step.target)
        if done := await self._already(step, obj):
            return done
        current = int(obj["spec"].get("replicas", 1))
        target = min(int(step.change.get("max", 10)), current + int(step.change.get("step", 1)))
        if target <= current:
            raise StepError(f"{step.target} already runs {current} replicas, the rules' limit")
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: step.marker}}, "spec": {"replicas": target}}
        out = await self._patch(step.target, body, dry_run=dry_run)
        return Outcome(change={"patch": body, "type": "strategic-merge", "from": current},
                       result=self._applied(body, out, dry_run), rollback={"replicas": current})

    async def _step_cordon_node(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        obj = await self.get(step.target)
        if done := await self._already(step, obj):
            return done
        if (obj.get("spec") or {}).get("unschedulable"):
            return Outcome(result={"already_unschedulable": True})
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: step.marker}}, "spec": {"unschedulable": True}}
        out = await self._patch(step.target, body, dry_run=dry_run)
        return Outcome(change={"patch": body, "type": "strategic-merge"}, result=self._applied(body, out, dry_run),
                       rollback={"unschedulable": False})

    async def _step_argocd_sync(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        app = await self.get(step.target)
        if done := await self._already(step, app):
            return done
        source = (app.get("spec") or {}).get("source") or {}
        body = {
            "metadata": {"annotations": {MARKER_ANNOTATION: step.marker, "argocd.argoproj.io/refresh": "hard"}},
            "operation": {"initiatedBy": {"username": FIELD_MANAGER, "automated": True},
                          "sync": {"revision": source.get("targetRevision") or "HEAD", "prune": False}},
        }
        out = await self._patch(step.target, body, dry_run=dry_run)
        return Outcome(change={"patch": body, "type": "merge"}, result=self._applied(body, out, dry_run))

    async def _step_operator_reconcile(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        api_version = str(step.change.get("api_version", ""))
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: step.marker, RECONCILE_ANNOTATION: _now()}}}
        out = await self._patch(step.target, body, dry_run=dry_run, api_version=api_version)
        return Outcome(change={"patch": body, "type": "merge"}, result=self._applied(body, out, dry_run))

    async def _step_helm_rollback(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        release = str(step.change.get("release", ""))
        namespace = split_target(step.target)[0]
        if not self.helm:
            raise StepError(f"needs helm: {step.target} is managed by Helm release {release!r} and no helm binary "
                            "is configured (HELM_BINARY); nothing was patched")
        argv = [self.helm, "rollback", release, "-n", namespace, "--wait", "--timeout", "5m0s"]
        if dry_run:
            argv.append("--dry-run")
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise StepError(f"helm rollback {release} failed: {err.decode(errors='replace').strip()[:500]}")
        return Outcome(change={"command": argv[1:]}, result={"output": out.decode(errors="replace")[-500:]})

    async def _step_observe(self, step: WorkflowStep, dry_run: bool) -> Outcome:
        return Outcome(result={"observed": True})

    async def undo(self, step: WorkflowStep) -> str:
        """Undo a completed step where that is possible; returns what was done."""
        body: dict[str, Any]
        if "replicas" in step.rollback:
            body = {"spec": {"replicas": step.rollback["replicas"]}}
        elif "memory" in step.rollback:
            body = {"spec": {"template": {"spec": {"containers": [
                {"name": n, "resources": {"limits": {"memory": v}}} for n, v in step.rollback["memory"].items()]}}}}
        elif "unschedulable" in step.rollback:
            body = {"spec": {"unschedulable": step.rollback["unschedulable"]}}
        else:
            return "nothing to undo"
        await self._patch(step.target, body, dry_run=False)
        return f"restored {json.dumps(step.rollback, sort_keys=True)}"

    # --- checkpoints -------------------------------------------------------------------------------------------

    async def check(self, cp: WorkflowCheckpoint, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        """(passed, message, observed); passed None means "not yet" (keep polling), False "failed for good"."""
        results = [await getattr(self, f"_check_{name}")(cp.target, step) for name in cp.checks]
        for passed, message, observed in results:
            if passed is not True:
                return passed, message, observed
        return True, "; ".join(m for _, m, _ in results), {k: v for _, _, o in results for k, v in o.items()}

    async def _check_deployment_available(self, target: str, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        obj = await self.get(target)
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        want = int(spec.get("replicas", 1))
        observed = {k: status.get(k, 0) for k in ("observedGeneration", "updatedReplicas", "readyReplicas",
                                                   "availableReplicas", "unavailableReplicas")}
        observed["generation"] = meta.get("generation")
        needed = max(int(step.result.get("generation") or 0), int(meta.get("generation") or 0))
        if int(status.get("observedGeneration", 0)) < needed:
            return None, f"generation {needed} not observed yet", observed
        if (observed["updatedReplicas"], observed["availableReplicas"], observed["readyReplicas"]) == (want,) * 3 \
                and not observed["unavailableReplicas"]:
            # Complete, whatever Progressing still says: rolled back to a revision that was running, the controller
            # observes the generation before it replaces an earlier rollout's ProgressDeadlineExceeded.
            return True, f"{target} available: {want}/{want} updated, ready and available", observed
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                return False, f"rollout stuck: {cond.get('message', '')}", observed
        return None, f"{observed['availableReplicas']}/{want} available, {observed['updatedReplicas']} updated", \
            observed

    async def _check_rollout_complete(self, target: str, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        obj = await self.get(target)
        meta, status = obj["metadata"], obj.get("status") or {}
        want = int(status.get("desiredNumberScheduled", (obj.get("spec") or {}).get("replicas", 1)))
        updated = int(status.get("updatedNumberScheduled", status.get("updatedReplicas", 0)))
        ready = int(status.get("numberReady", status.get("readyReplicas", 0)))
        observed = {"observedGeneration": status.get("observedGeneration"), "generation": meta.get("generation"),
                    "updated": updated, "ready": ready, "desired": want}
        if int(status.get("observedGeneration", 0)) < int(meta.get("generation") or 0):
            return None, "new generation not observed yet", observed
        if updated != want or ready != want:
            return None, f"{ready}/{want} ready, {updated} updated", observed
        return True, f"{target} rolled out: {want}/{want} ready", observed

    async def _check_pod_replaced(self, target: str, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        pod = await self.exists(target)
        uid = step.result.get("uid")
        if pod is None or pod["metadata"].get("uid") != uid:
            return True, "the pod was deleted", {}
        return None, "the pod still exists", {"uid": uid}

    async def _check_node_ready(self, target: str, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        node = await self.get(target)
        ready = next((c.get("status") for c in (node.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), "Unknown")
        return (True if ready == "True" else None), f"node Ready={ready}", {"ready": ready}

    async def _check_node_unschedulable(self, target: str, step: WorkflowStep) -> tuple[bool | None, str, dict[str, Any]]:
        node = await self.get(target)
        cordoned = bool((node.get("spec") or {}).get("unschedulable"))
        return (True if cordoned else None), f"node unschedulable={cordoned}", {"unschedulable": cordoned}

    async def _check_application_synced_healthy(self, target: str, step: WorkflowStep,
                                                ) -> tuple[bool | None, str, dict[str, Any]]:
        app = await self.get(target)
        status = app.get("status") or {}
        sync = (status.get("sync") or {}).get("status", "Unknown")
        health = (status.get("health") or {}).get("status", "Unknown")
        phase = (status.get("operationState") or {}).get("phase")
        observed = {"sync": sync, "health": health, "operation_phase": phase, "operation_pending": "operation" in app}
        if phase in ("Failed", "Error"):
            return False, f"ArgoCD sync {phase}: {(status.get('operationState') or {}).get('message', '')}", observed
        if health == "Degraded" and "operation" not in app:
            return False, "ArgoCD reports the application Degraded after the sync", observed
        if "operation" in app or sync != "Synced" or health != "Healthy":
            return None, f"ArgoCD: sync {sync}, health {health}", observed
        return True, "ArgoCD: Synced and Healthy", observed

    # --- guards and self-check ---------------------------------------------------------------------------------

    async def pod_health(self, namespace: str) -> tuple[int, int]:
        """(unhealthy, total) pods of a namespace, for the storm guard."""
        pods = await self._call(self.core.list_namespaced_pod(namespace, _preload_content=False,
                                                              _request_timeout=REQUEST_TIMEOUT_S))
        unhealthy = total = 0
        for pod in pods.get("items") or []:
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            status = pod.get("status") or {}
            if status.get("phase") == "Succeeded":
                continue
            total += 1
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if status.get("phase") != "Running" or not ready:
                unhealthy += 1
        return unhealthy, total

    async def self_check(self, namespaces: Sequence[str] = (), application_namespaces: Sequence[str] = ()
                         ) -> dict[str, Any]:
        """SelfSubjectAccessReviews for every permission a step may need: cluster-wide, or with `namespaces`
        (namespace-scoped RBAC, REMEDIATION_NAMESPACES) each namespaced one in each of them, ArgoCD
        Applications in `application_namespaces` (ARGOCD_NAMESPACES) when given, nodes cluster-wide."""
        allowed: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        for verb, group, resource in PERMISSIONS:
            scopes: Sequence[str] = ("",)
            if namespaces and resource not in CLUSTER_SCOPED:
                scopes = (application_namespaces or namespaces) if resource == "applications" else namespaces
            for namespace in scopes:
                attributes = {"verb": verb, "group": group, "resource": resource}
                if namespace:
                    attributes["namespace"] = namespace
                body: Any = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                             "spec": {"resourceAttributes": attributes}}
                name = f"{verb} {resource}{'.' + group if group else ''}" + (f" in {namespace}" if namespace else "")
                try:
                    out = await self._call(self.auth.create_self_subject_access_review(
                        body, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S))
                    allowed[name] = bool((out.get("status") or {}).get("allowed"))
                    if not allowed[name]:
                        reasons[name] = (out.get("status") or {}).get("reason", "")
                except StepError as exc:
                    allowed[name], reasons[name] = False, str(exc)
        return {"permissions": allowed, "denied": sorted(k for k, v in allowed.items() if not v), "reasons": reasons}


def _comparable(template: Mapping[str, Any]) -> str:
    """A pod template without what a restart or the ReplicaSet controller adds, to tell versions apart."""
    t = json.loads(json.dumps(template))
    meta = t.setdefault("metadata", {})
    (meta.get("labels") or {}).pop("pod-template-hash", None)
    (meta.get("annotations") or {}).pop(RESTARTED_AT_ANNOTATION, None)
    for key in ("labels", "annotations"):
        if not meta.get(key):
            meta.pop(key, None)
    meta.pop("creationTimestamp", None)
    return json.dumps(t, sort_keys=True)


def _snake(kind: str) -> str:
    return {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}[kind]

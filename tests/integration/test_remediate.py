"""The remediate stage against a real cluster with controllers (kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) and a real Kafka broker: decisions become workflows that really act, or say why not.

Every test runs the whole pipeline in this process (ingest, every stage, the gateway) with its own topics and
its own namespace, and talks to it over HTTP as the MCP server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.embedded.kube import RESTRICTED_USER
from pipeline.embedded.kube_cluster import KubeCluster
from tests.components.kube import (
    crashloop_status,
    create_namespace,
    deployment_manifest,
    list_pods,
    pod_ready,
    wait_deployment_available,
)
from tests.support import PipelineUnderTest, eventually, incidents, read_topic

pytestmark = pytest.mark.asyncio


def remediation_settings(settings: Settings, cluster: KubeCluster, tmp_path: Path, user: str = "admin",
                         **kw: Any) -> Settings:
    kubeconfig = cluster.kubeconfig(tmp_path / f"{user}.kubeconfig", user=user)
    return settings.model_copy(update={
        "kubeconfig": str(kubeconfig), "remediation_poll_s": 0.2, "remediation_checkpoint_timeout_s": 60.0,
        "remediation_cooldown_s": 0.0, "remediation_identity": f"test-{uuid.uuid4().hex[:6]}", **kw})


@pytest.fixture
async def cluster_api(kube_cluster: KubeCluster) -> AsyncIterator[Any]:
    async with kube_cluster.api_client() as api:
        yield api


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[PipelineUnderTest, httpx.AsyncClient]]:
    async with PipelineUnderTest(settings) as pipeline:
        async with httpx.AsyncClient(base_url=pipeline.url, timeout=30.0, trust_env=False) as http:
            yield pipeline, http


async def deploy(api: Any, namespace: str, name: str, **kw: Any) -> dict[str, Any]:
    from kubernetes_asyncio.client import AppsV1Api

    await AppsV1Api(api).create_namespaced_deployment(namespace, deployment_manifest(name, **kw))
    await wait_deployment_available(api, namespace, name)
    return await read_deployment(api, namespace, name)


async def read_deployment(api: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes_asyncio.client import AppsV1Api

    d = await AppsV1Api(api).read_namespaced_deployment(name, namespace)
    return api.sanitize_for_serialization(d)  # type: ignore[no-any-return]


async def trigger(http: httpx.AsyncClient, namespace: str, name: str, kind: str = "Deployment",
                  issue: str = "pod_crash", **extra: Any) -> str:
    body = {"incident_id": f"inc-{uuid.uuid4().hex[:8]}", "namespace": namespace,
            "resource": {"kind": kind, "name": name}, "issue": {"type": issue, "severity": "high"}, **extra}
    response = await http.post("/api/v1/remediation/trigger", json=body)
    assert response.status_code == 202, response.text
    return response.json()["workflow_id"]  # type: ignore[no-any-return]


async def workflow_until(http: httpx.AsyncClient, workflow_id: str, statuses: set[str],
                         timeout: float = 60.0) -> dict[str, Any]:
    last: list[Any] = [None]

    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/api/v1/workflows/{workflow_id}")
        last[0] = response.text
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["status"] in statuses else None

    try:
        return await eventually(check, timeout=timeout, every=0.2)
    except AssertionError:
        raise AssertionError(f"workflow {workflow_id} never {statuses}: {last[0]}") from None


async def test_an_alert_for_a_crash_looping_deployment_is_remediated_end_to_end(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "rem")
    before = await deploy(cluster_api, namespace, "cart")
    pods = await list_pods(cluster_api, namespace, "app=cart")
    from kubernetes_asyncio.client import CoreV1Api

    await CoreV1Api(cluster_api).patch_namespaced_pod_status(pods[0].metadata.name, namespace, crashloop_status())
    s = remediation_settings(settings, kube_cluster, tmp_path)
    async with running(s) as (_, http):
        alert = {"version": "4", "status": "firing", "receiver": "pipeline", "groupKey": "{}:{}",
                 "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                 "alerts": [{"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "namespace": namespace,
                                                             "deployment": "cart", "severity": "warning"},
                             "annotations": {"summary": "cart is crash looping"},
                             "startsAt": datetime.now(UTC).isoformat(), "endsAt": "0001-01-01T00:00:00Z",
                             "generatorURL": "", "fingerprint": uuid.uuid4().hex[:16]}]}
        assert (await http.post("/api/v1/alerts", json=alert)).status_code == 200

        async def remediated() -> dict[str, Any] | None:
            found = [i for i in (await incidents(http, namespace=namespace))["incidents"] if i["workflow_id"]]
            return found[0] if found and found[0]["status"] == "completed" else None

        incident = await eventually(remediated, timeout=90)
        assert incident["action_type"] == "restart_deployment"
        w = (await http.get(f"/api/v1/workflows/{incident['workflow_id']}")).json()
        assert w["status"] == "completed" and w["deployment_method"] == "manual" and w["remediator"] == "manual"
        assert [(s["action"], s["status"]) for s in w["steps"]] == [("rollout_restart", "completed"),
                                                                    ("rollback_revision", "skipped")]
        assert w["checkpoints"][0]["status"] == "passed" and w["started_at"] and w["completed_at"] and w["duration"]
        # the cluster really changed: a new generation rolled out, every pod Ready
        after = await read_deployment(cluster_api, namespace, "cart")
        assert after["metadata"]["generation"] > before["metadata"]["generation"]
        assert "kubectl.kubernetes.io/restartedAt" in after["spec"]["template"]["metadata"]["annotations"]
        assert after["metadata"]["annotations"]["remediation.pipeline.io/step"] == f"{w['id']}/s1"
        assert all(pod_ready(p) for p in await list_pods(cluster_api, namespace, "app=cart"))
        # the MCP server's remediation history sees it
        history = (await http.get("/api/v1/incidents", params={"status": "completed", "severity": "all"})).json()
        assert incident["id"] in [i["id"] for i in history["incidents"]]
        # the target is free again: the next trigger on it is approved and runs
        again = await trigger(http, namespace, "cart")
        second = await workflow_until(http, again, {"completed", "failed"})
        assert second["status"] == "completed" and second["decision"]["outcome"] == "approved"
        status = (await http.get("/api/v1/status")).json()
        assert status["active_actions"] == 0 and status["actions"]["completed"] >= 2
        health = (await http.get("/api/v1/health")).json()
        (remediator,) = health["components"]["remediation"]["remediators"].values()
        assert remediator["mode"] == "auto" and remediator["denied"] == []


async def test_gitops_helm_and_dry_run_never_patch_the_workload(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    from kubernetes_asyncio.client import CustomObjectsApi

    namespace = await create_namespace(cluster_api, "rem")
    argo = await deploy(cluster_api, namespace, "shop", annotations={
        "argocd.argoproj.io/tracking-id": f"shop:apps/Deployment:{namespace}/shop"})
    helm = await deploy(cluster_api, namespace, "blog", labels={"app.kubernetes.io/managed-by": "Helm"},
                        annotations={"meta.helm.sh/release-name": "blog", "meta.helm.sh/release-namespace": namespace})
    plain = await deploy(cluster_api, namespace, "web")
    custom = CustomObjectsApi(cluster_api)
    await custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "applications", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "shop"},
        "spec": {"project": "default", "source": {"repoURL": "https://git.example/shop.git", "path": "deploy",
                                                   "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace}},
        "status": {"resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": namespace,
                                  "name": "shop"}], "sync": {"status": "OutOfSync"}, "health": {"status": "Degraded"}},
    })
    s = remediation_settings(settings, kube_cluster, tmp_path)
    async with running(s) as (_, http):
        argo_wf = await trigger(http, namespace, "shop")

        async def sync_requested() -> dict[str, Any] | None:
            app = await custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "applications",
                                                            "shop")
            return app if "operation" in app else None

        app = await eventually(sync_requested, timeout=60)
        assert app["operation"]["sync"]["revision"] == "main"
        assert app["metadata"]["annotations"]["argocd.argoproj.io/refresh"] == "hard"
        # play ArgoCD: it takes the operation, syncs, and reports Synced + Healthy
        del app["operation"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        app["status"].update({"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
                              "operationState": {"phase": "Succeeded", "operation": {"sync": {"revision": "main"}},
                                                 "startedAt": now, "finishedAt": now}})
        await custom.replace_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "applications", "shop",
                                                      app)
        done = await workflow_until(http, argo_wf, {"completed", "failed"})
        assert done["status"] == "completed" and done["deployment_method"] == "argocd"
        assert [s["action"] for s in done["steps"]] == ["argocd_sync"]

        helm_wf = await trigger(http, namespace, "blog")
        failed = await workflow_until(http, helm_wf, {"completed", "failed"})
        assert failed["status"] == "failed" and failed["deployment_method"] == "helm"
        assert failed["steps"][0]["action"] == "helm_rollback" and "needs helm" in failed["steps"][0]["error_message"]

        dry_wf = await trigger(http, namespace, "web", dry_run=True)
        dry = await workflow_until(http, dry_wf, {"completed", "failed"})
        assert dry["status"] == "completed" and dry["dry_run"] is True
        step = dry["steps"][0]
        assert step["action"] == "rollout_restart" and step["result"]["would_change"] is True
        assert step["change"]["patch"]["spec"]["template"]["metadata"]["annotations"]
        assert dry["checkpoints"][0]["status"] == "skipped"

    for name, before in (("shop", argo), ("blog", helm), ("web", plain)):
        after = await read_deployment(cluster_api, namespace, name)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], name
    patches = kube_cluster.mutations("deployments", namespace=namespace, user="admin", verbs=frozenset({"patch"}))
    assert len(patches) == 1 and "dryRun=All" in patches[0]["requestURI"]  # the dry run's, which stored nothing


async def test_approve_mode_waits_for_a_human(settings: Settings, kube_cluster: KubeCluster, cluster_api: Any,
                                              tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "rem")
    before = await deploy(cluster_api, namespace, "api", replicas=1)
    s = remediation_settings(settings, kube_cluster, tmp_path, remediation_mode="approve")
    async with running(s) as (_, http):
        first = await trigger(http, namespace, "api")
        waiting = await workflow_until(http, first, {"awaiting_approval"})
        assert waiting["waiting_for"] == "approval_mode" and waiting["steps"][0]["status"] == "pending"
        assert (await read_deployment(cluster_api, namespace, "api"))["metadata"]["generation"] == \
            before["metadata"]["generation"]
        answer = await http.post(f"/api/v1/workflows/{first}/reject", json={"by": "sre", "reason": "not now"})
        assert answer.status_code == 202 and answer.json()["decision"] == "rejected"
        rejected = await workflow_until(http, first, {"rejected"})
        assert "rejected by sre" in rejected["reason"]
        assert (await http.post(f"/api/v1/workflows/{first}/approve")).status_code == 409
        # rejection released the target: the next trigger is decided normally, and approval lets it run
        second = await trigger(http, namespace, "api", issue="network_issue")
        await workflow_until(http, second, {"awaiting_approval"})
        assert (await http.post(f"/api/v1/workflows/{second}/approve", json={"by": "sre"})).status_code == 202
        done = await workflow_until(http, second, {"completed", "failed"})
        assert done["status"] == "completed" and done["approved_by"] == "sre"
        # the answers name the incident of the workflow, so they show in its timeline
        incident_of = {first.encode(): rejected["incident_id"].encode(), second.encode(): done["incident_id"].encode()}
        answers = [dict(r.headers) for r in await read_topic(s, "control")
                   if dict(r.headers).get("ce_workflowid") in incident_of]
        assert len(answers) == 2 and all(h["ce_incidentid"] == incident_of[h["ce_workflowid"]] for h in answers)
    after = await read_deployment(cluster_api, namespace, "api")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


async def test_the_kill_switch_at_runtime_stops_everything(settings: Settings, kube_cluster: KubeCluster,
                                                           cluster_api: Any, tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "rem")
    before = await deploy(cluster_api, namespace, "cart", replicas=1)
    s = remediation_settings(settings, kube_cluster, tmp_path)
    async with running(s) as (_, http):
        on = await http.post("/api/v1/remediation/kill-switch", json={"enabled": True, "reason": "incident review"})
        assert on.status_code == 200 and on.json()["enabled"] is True
        wf = await trigger(http, namespace, "cart")

        async def decided() -> dict[str, Any] | None:
            body = (await http.get(f"/api/v1/workflows/{wf}")).json()
            return body if body.get("decision") else None

        d = await eventually(decided, timeout=30)
        assert d["status"] == "rejected" and d["decision"]["reasons"][-1]["code"] == "kill_switch"
        status = (await http.get("/api/v1/status")).json()
        assert status["engine_status"] == "stopped" and status["controls"]["kill_switch"]["enabled"] is True
        assert (await http.post("/api/v1/remediation/kill-switch", json={"enabled": False})).status_code == 200
        wf2 = await trigger(http, namespace, "cart", issue="network_issue")
        assert (await workflow_until(http, wf2, {"completed", "failed"}))["status"] == "completed"
    after = await read_deployment(cluster_api, namespace, "cart")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


async def test_a_forbidden_call_fails_its_step_with_the_reason(settings: Settings, kube_cluster: KubeCluster,
                                                               cluster_api: Any, tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "rem")
    before = await deploy(cluster_api, namespace, "cart", replicas=1)
    s = remediation_settings(settings, kube_cluster, tmp_path, user=RESTRICTED_USER)
    async with running(s) as (_, http):
        wf = await trigger(http, namespace, "cart")
        failed = await workflow_until(http, wf, {"failed"})
        errors = [step["error_message"] or "" for step in failed["steps"] if step["status"] == "failed"]
        assert errors and all("403" in e and "forbidden" in e.lower() for e in errors)
        health = (await http.get("/api/v1/health")).json()
        (remediator,) = health["components"]["remediation"]["remediators"].values()
        assert "patch deployments.apps" in remediator["denied"]
    assert (await read_deployment(cluster_api, namespace, "cart"))["metadata"]["resourceVersion"] == \
        before["metadata"]["resourceVersion"]


async def test_without_a_cluster_workflows_end_skipped_at_once(settings: Settings) -> None:
    async with running(settings) as (_, http):
        wf = await trigger(http, "shop", "cart")
        skipped = await workflow_until(http, wf, {"skipped"}, timeout=30)
        assert "no cluster configured" in skipped["reason"] and skipped["steps"][0]["status"] == "pending"
        assert (await http.get("/api/v1/status")).json()["active_actions"] == 0
        await asyncio.sleep(0)

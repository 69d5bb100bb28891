"""Strategies, escalation and guards of the remediate stage on a real cluster with controllers: an operator's
custom resource annotated, a memory limit raised after an OOM kill, a bad rollout escalated from deleting the
pod to a rollback, a multi-layer coordination workflow, the pause and the storm guard."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.embedded.kube_cluster import KubeCluster
from tests.components.kube import (
    create_namespace,
    deployment_manifest,
    list_pods,
    wait_deployment_available,
    wait_for,
)
from tests.integration.test_remediate import (
    deploy,
    read_deployment,
    remediation_settings,
    running,
    trigger,
    workflow_until,
)
from tests.support import eventually

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def cluster_api(kube_cluster: KubeCluster) -> Any:
    async with kube_cluster.api_client() as api:
        yield api


def alert(namespace: str, name: str, alertname: str, kind: str = "deployment") -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "pipeline", "groupKey": "{}:{}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [{"status": "firing", "labels": {"alertname": alertname, "namespace": namespace, kind: name,
                                                        "severity": "warning"},
                        "annotations": {"summary": f"{name}: {alertname}"}, "startsAt": datetime.now(UTC).isoformat(),
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": uuid.uuid4().hex[:16]}]}


async def workflow_of_incident(http: httpx.AsyncClient, namespace: str) -> str:
    async def found() -> str | None:
        body = (await http.get("/api/v1/incidents", params={"namespace": namespace, "status": "all",
                                                            "severity": "all"})).json()
        return next((i["workflow_id"] for i in body["incidents"] if i["workflow_id"]), None)

    return await eventually(found, timeout=60)


async def test_an_operator_managed_deployment_is_reconciled_through_its_custom_resource(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    from kubernetes_asyncio.client import AppsV1Api, CustomObjectsApi, V1OwnerReference

    namespace = await create_namespace(cluster_api, "op")
    custom = CustomObjectsApi(cluster_api)
    cr = await custom.create_namespaced_custom_object("cache.example.com", "v1alpha1", namespace, "memcacheds", {
        "apiVersion": "cache.example.com/v1alpha1", "kind": "Memcached", "metadata": {"name": "cache"},
        "spec": {"size": 1}})
    manifest = deployment_manifest("cache", replicas=1)
    manifest.metadata.owner_references = [V1OwnerReference(api_version="cache.example.com/v1alpha1", kind="Memcached",
                                                           name="cache", uid=cr["metadata"]["uid"], controller=True)]
    await AppsV1Api(cluster_api).create_namespaced_deployment(namespace, manifest)
    await wait_deployment_available(cluster_api, namespace, "cache")
    before = await read_deployment(cluster_api, namespace, "cache")
    async with running(remediation_settings(settings, kube_cluster, tmp_path)) as (_, http):
        done = await workflow_until(http, await trigger(http, namespace, "cache"), {"completed", "failed"})
    assert done["status"] == "completed" and done["deployment_method"] == "operator", done
    assert [(s["action"], s["target"]) for s in done["steps"]] == [("operator_reconcile", f"{namespace}/Memcached/cache")]
    annotated = await custom.get_namespaced_custom_object("cache.example.com", "v1alpha1", namespace, "memcacheds",
                                                          "cache")
    assert annotated["metadata"]["annotations"]["remediation.pipeline.io/step"] == f"{done['id']}/s1"
    assert "remediation.pipeline.io/reconcile" in annotated["metadata"]["annotations"]
    after = await read_deployment(cluster_api, namespace, "cache")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # the operator's to change


async def test_an_oom_killed_workload_gets_a_bounded_memory_raise(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    from kubernetes_asyncio.client import AppsV1Api, V1ResourceRequirements

    namespace = await create_namespace(cluster_api, "oom")
    manifest = deployment_manifest("etl", replicas=1)
    manifest.spec.template.spec.containers[0].resources = V1ResourceRequirements(limits={"memory": "256Mi"})
    await AppsV1Api(cluster_api).create_namespaced_deployment(namespace, manifest)
    await wait_deployment_available(cluster_api, namespace, "etl")
    async with running(remediation_settings(settings, kube_cluster, tmp_path)) as (_, http):
        assert (await http.post("/api/v1/alerts", json=alert(namespace, "etl", "KubeContainerOOMKilled"))).status_code \
            == 200
        done = await workflow_until(http, await workflow_of_incident(http, namespace), {"completed", "failed"})
    assert done["status"] == "completed" and done["action"] == "scale_resources", done
    step = done["steps"][0]
    assert step["action"] == "raise_memory_limit" and step["change"]["from"] == {"app": "256Mi"}
    after = await read_deployment(cluster_api, namespace, "etl")
    assert after["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "384Mi"


async def test_a_bad_rollout_escalates_from_deleting_the_pod_to_a_rollback(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    from kubernetes_asyncio.client import AppsV1Api

    namespace = await create_namespace(cluster_api, "esc")
    await deploy(cluster_api, namespace, "shop", replicas=1)
    # a new version whose pods crash: the old pod stays, the new one loops
    await AppsV1Api(cluster_api).patch_namespaced_deployment("shop", namespace, {"spec": {"template": {
        "metadata": {"labels": {"crashloop": "true"}}, "spec": {"containers": [{"name": "app",
                                                                             "image": "registry.example/shop:2"}]}}}})

    async def crashing() -> str | None:
        pods = [p for p in await list_pods(cluster_api, namespace, "crashloop=true")]
        return pods[0].metadata.name if pods else None

    pod = await wait_for(crashing, timeout=30)
    s = remediation_settings(settings, kube_cluster, tmp_path, remediation_checkpoint_timeout_s=8.0)
    async with running(s) as (_, http):
        done = await workflow_until(http, await trigger(http, namespace, pod, kind="Pod"), {"completed", "failed"},
                                    timeout=120)
    assert done["status"] == "completed", done
    assert [(s["action"], s["status"]) for s in done["steps"]] == [
        ("delete_pod", "completed"), ("rollout_restart", "completed"), ("rollback_revision", "completed")]
    assert [c["status"] for c in done["checkpoints"]] == ["failed", "failed", "passed"]
    assert "timed out" in done["checkpoints"][0]["message"]
    after = await read_deployment(cluster_api, namespace, "shop")
    assert "crashloop" not in after["spec"]["template"]["metadata"]["labels"]  # back on the version that worked
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] != "registry.example/shop:2"


async def test_coordination_trigger_runs_a_multi_layer_workflow(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "ml")
    before = await deploy(cluster_api, namespace, "web", replicas=1)
    async with running(remediation_settings(settings, kube_cluster, tmp_path)) as (_, http):
        response = await http.post("/api/v1/coordination/trigger", json={
            "incident_id": "inc-ml", "description": "node pressure and a degraded web tier",
            "resources": [{"kind": "Deployment", "name": "web", "namespace": namespace, "issue": "degraded"},
                          {"kind": "Node", "name": "kwok-node-0", "issue": "memory pressure"}]})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["affected_layers"] == ["infrastructure", "application"]
        assert accepted["root_cause_layer"] == "infrastructure" and accepted["estimated_steps"] == 2
        await workflow_until(http, accepted["workflow_id"], {"completed", "failed"})
        shown = (await http.get(f"/api/v1/coordination/workflows/{accepted['workflow_id']}")).json()
        listed = (await http.get("/api/v1/coordination/workflows")).json()
        bad = await http.post("/api/v1/coordination/trigger", json={"incident_id": "x", "description": "d",
                                                                    "resources": []})
    assert shown["status"] == "completed" and shown["execution_result"]["status"] == "success", shown
    plan = shown["remediation_plan"]
    assert [(s["layer"], s["action_type"]) for s in plan["steps"]] == [
        ("infrastructure", "observe"), ("application", "rollout_restart"), ("application", "rollback_revision")]
    assert plan["steps"][0]["wait_time"] > 10**9 and plan["checkpoints"][0]["checks"] == ["node_ready"]
    assert listed["total"] == 1 and listed["workflows"][0]["id"] == accepted["workflow_id"]
    assert bad.status_code == 400 and bad.json()["field"].startswith("resources")
    after = await read_deployment(cluster_api, namespace, "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


async def test_pause_holds_automatic_remediation_and_the_storm_guard_asks_a_human(
        settings: Settings, kube_cluster: KubeCluster, cluster_api: Any, tmp_path: Path) -> None:
    namespace = await create_namespace(cluster_api, "storm")
    await deploy(cluster_api, namespace, "calm", replicas=1)
    async with running(remediation_settings(settings, kube_cluster, tmp_path)) as (_, http):
        assert (await http.post("/api/v1/remediation/pause", json={"enabled": True, "reason": "maintenance"})
                ).json()["enabled"] is True
        assert (await http.post("/api/v1/alerts", json=alert(namespace, "calm", "KubePodCrashLooping"))
                ).status_code == 200
        held = await workflow_of_incident(http, namespace)

        async def paused() -> dict[str, Any] | None:
            w = (await http.get(f"/api/v1/workflows/{held}")).json()
            return w if w.get("waiting_for") == "paused" else None

        waiting = await eventually(paused, timeout=30)
        assert waiting["status"] == "pending" and all(s["status"] == "pending" for s in waiting["steps"])
        health = (await http.get("/api/v1/health")).json()
        assert health["components"]["remediation"]["pause"]["enabled"] is True
        assert (await http.post("/api/v1/remediation/pause", json={"enabled": False})).status_code == 200
        assert (await workflow_until(http, held, {"completed", "failed"}))["status"] == "completed"

        # a storm: most of the namespace crash-loops at once
        from kubernetes_asyncio.client import AppsV1Api

        await AppsV1Api(cluster_api).create_namespaced_deployment(
            namespace, deployment_manifest("flaky", replicas=3, pod_labels={"crashloop": "true"}))

        async def storming() -> int | None:
            pods = await list_pods(cluster_api, namespace, "app=flaky")
            return len(pods) if len(pods) == 3 else None

        await wait_for(storming, timeout=30)
        assert (await http.post("/api/v1/alerts", json=alert(namespace, "flaky", "KubePodCrashLooping"))
                ).status_code == 200

        async def guarded() -> dict[str, Any] | None:
            body = (await http.get("/api/v1/incidents", params={"namespace": namespace, "status": "all",
                                                                "severity": "all"})).json()
            for incident in body["incidents"]:
                if incident["workflow_id"] and incident["workflow_id"] != held:
                    w = (await http.get(f"/api/v1/workflows/{incident['workflow_id']}")).json()
                    if w["status"] == "awaiting_approval":
                        return w
            return None

        storm = await eventually(guarded, timeout=60)
        assert storm["waiting_for"].startswith("storm_guard") and "of 4 pods unhealthy" in storm["waiting_for"]
        assert all(s["status"] == "pending" for s in storm["steps"])

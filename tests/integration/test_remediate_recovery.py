"""A remediator that dies mid-workflow: the next one resumes from the `workflows` topic and never repeats a
mutating call (counted in the real API server's audit log)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.adapters.rules import load_rules
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.domain import workflows as wf
from pipeline.domain.arbitration import Policy, Target, propose_manual, resolve
from pipeline.embedded.kube_cluster import KubeCluster
from pipeline.embedded.process import free_port
from pipeline.events import Event, Severity, TargetState, WorkflowChanged
from pipeline.stages import stage_classes
from tests.components.kube import create_namespace, deployment_manifest, wait_deployment_available
from tests.support import PipelineUnderTest, eventually, publish, read_topic

pytestmark = pytest.mark.asyncio
FIELD_MANAGER = "fieldManager=pipeline-remediate"


def remediator_patches(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """The remediator's own (not dry-run) patches of one Deployment, from the audit log."""
    return [e for e in cluster.mutations("deployments", name, namespace=namespace, verbs=frozenset({"patch"}))
            if FIELD_MANAGER in e["requestURI"] and "dryRun" not in e["requestURI"]]


def spawn_remediator(settings: Settings, kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "TOPIC_PREFIX": settings.topic_prefix, "KUBECONFIG": str(kubeconfig), "HOST": "127.0.0.1",
           "PORT": str(free_port()), "REMEDIATION_POLL_S": "0.2", "REMEDIATION_CHECKPOINT_TIMEOUT_S": "120",
           "KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "STAGE_BATCH_TIMEOUT_MS": "20"}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "stage", "remediate"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def slow_deployment(api: Any, namespace: str, name: str) -> None:
    """One replica that becomes available only 15 s after its pod is Ready: a checkpoint that takes a while."""
    from kubernetes_asyncio.client import AppsV1Api

    manifest = deployment_manifest(name, replicas=1)
    manifest.spec.min_ready_seconds = 15
    await AppsV1Api(api).create_namespaced_deployment(namespace, manifest)
    await wait_deployment_available(api, namespace, name, timeout=60)


async def test_a_remediator_killed_mid_workflow_resumes_without_repeating_a_mutation(
        settings: Settings, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    kubeconfig = kube_cluster.kubeconfig(tmp_path / "admin.kubeconfig")
    async with kube_cluster.api_client() as api:
        namespace = await create_namespace(api, "kill")
        await slow_deployment(api, namespace, "slow")
    others = [name for name in stage_classes() if name != "remediate"]
    log = tmp_path / "remediate.log"
    async with PipelineUnderTest(settings, Plan(stages=others, ingest=True, gateway=True, apply_topics=True)) as p:
        remediator = spawn_remediator(settings, kubeconfig, log)
        try:
            async with httpx.AsyncClient(base_url=p.url, timeout=30, trust_env=False) as http:
                body = {"incident_id": "inc-kill", "namespace": namespace, "resource": {"kind": "Deployment",
                                                                                         "name": "slow"},
                        "issue": {"type": "pod_crash", "severity": "high"}}
                workflow_id = (await http.post("/api/v1/remediation/trigger", json=body)).json()["workflow_id"]

                async def checking() -> dict[str, Any] | None:
                    w = (await http.get(f"/api/v1/workflows/{workflow_id}")).json()
                    steps, cps = w.get("steps") or [], w.get("checkpoints") or []
                    return w if steps and steps[0]["status"] == "completed" and cps[0]["status"] == "pending" else None

                await eventually(checking, timeout=60)  # the restart is applied; its checkpoint is being polled
                remediator.send_signal(signal.SIGKILL)  # ... and the remediator dies without a word
                remediator.wait(timeout=10)
                remediator = spawn_remediator(settings, kubeconfig, log)

                async def finished() -> dict[str, Any] | None:
                    w = (await http.get(f"/api/v1/workflows/{workflow_id}")).json()
                    return w if w["status"] in ("completed", "failed") else None

                done = await eventually(finished, timeout=120)
        finally:
            remediator.send_signal(signal.SIGTERM)
            remediator.wait(timeout=20)
    assert done["status"] == "completed", (done, log.read_text()[-3000:])
    assert done["checkpoints"][0]["status"] == "passed" and done["steps"][1]["status"] == "skipped"
    assert len(remediator_patches(kube_cluster, namespace, "slow")) == 1  # one rollout restart, not two
    transitions = [json.loads(r.value) for r in await read_topic(settings, "workflows")]
    mine = [t["transition"] for t in transitions if t["workflow"]["id"] == workflow_id]
    assert mine.count("step_started") == 1 and mine.count("step_succeeded") == 1 and mine.count("created") == 1
    assert mine[-1] == "completed" and mine.count("completed") == 1


async def test_a_step_applied_before_the_crash_is_recognised_by_its_marker(
        settings: Settings, kube_cluster: KubeCluster, tmp_path: Path) -> None:
    """The executor died after its PATCH reached the API server but before it recorded the step as done: the
    next one finds the step's marker on the Deployment and does not patch again."""
    from kubernetes_asyncio.client import AppsV1Api

    async with kube_cluster.api_client() as api:
        namespace = await create_namespace(api, "mark")
        await AppsV1Api(api).create_namespaced_deployment(namespace, deployment_manifest("web", replicas=1))
        await wait_deployment_available(api, namespace, "web")
        rules = load_rules(settings.remediation_rules_path)
        target = Target(key=f"{namespace}/Deployment/web", namespace=namespace, kind="Deployment",
                        incident_id="inc-mark", severity=Severity.HIGH)
        proposal = propose_manual(rules, target, "restart_deployment", request_id="r1", workflow_id="wf-marked")
        (decision,) = resolve([proposal], TargetState(), Policy(approval=()), datetime.now(UTC))
        planned = wf.plan(decision, workflow_id="wf-marked", mode="auto", now=datetime.now(UTC),
                          detected={target.key: wf.Detected("manual")})
        started = wf.step_started(wf.start(planned, datetime.now(UTC)), planned.steps[0], datetime.now(UTC))
        # what the dead executor had sent: the restart, with its marker
        await AppsV1Api(api).patch_namespaced_deployment("web", namespace, {
            "metadata": {"annotations": {wf.MARKER_ANNOTATION: "wf-marked/s1"}},
            "spec": {"template": {"metadata": {"annotations": {wf.RESTARTED_AT_ANNOTATION: "2026-12-05T00:00:00Z"}}}}})
    s = settings.model_copy(update={"kubeconfig": str(kube_cluster.kubeconfig(tmp_path / "a.kubeconfig")),
                                    "remediation_poll_s": 0.2})
    async with PipelineUnderTest(s, Plan(stages=[], apply_topics=True)):
        pass  # topics only
    await publish(s, "workflows", [
        Event.of(WorkflowChanged(namespace=namespace, transition="created", sequence=1, workflow=planned),
                 source="test"),
        Event.of(WorkflowChanged(namespace=namespace, transition="step_started", sequence=2, workflow=started),
                 source="test"),
    ])
    async with PipelineUnderTest(s) as p, httpx.AsyncClient(base_url=p.url, timeout=30, trust_env=False) as http:
        async def finished() -> dict[str, Any] | None:
            response = await http.get("/api/v1/workflows/wf-marked")
            w = response.json() if response.status_code == 200 else {}
            return w if w.get("status") in ("completed", "failed") else None

        done = await eventually(finished, timeout=60)
    assert done["status"] == "completed" and done["steps"][0]["result"]["already_applied"] is True
    assert remediator_patches(kube_cluster, namespace, "web") == []
    await asyncio.sleep(0)

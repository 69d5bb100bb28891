"""The Kubernetes watcher against a real kube-apiserver and a real broker: pod status changes become signals
that correlate with an Alertmanager alert on the same pod into one incident; a restarted watcher emits
nothing twice and catches up on what changed meanwhile; an expired resourceVersion (410) is re-listed
without loss; two watchers elect one leader and the standby takes over when it stops.

Each test watches only its own namespace (and holds its Lease there), so tests sharing the API server do
not see each other's pods."""

from __future__ import annotations

import asyncio
import json
import os
import signal as signal_module
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes_asyncio.client import (
    ApiClient,
    CoordinationV1Api,
    CoreV1Api,
    CoreV1Event,
    V1Node,
    V1ObjectMeta,
)

from pipeline.bus.producer import EventProducer
from pipeline.bus.topics import apply
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.embedded.kube import KubeAPIServer
from pipeline.ingest.kube import WatchService
from pipeline.observability import WATCH_RELISTS
from tests.components.alertmanager import AlertmanagerServer
from tests.components.kube import crashloop_status, create_namespace, pod_manifest, unique_name
from tests.support import PipelineUnderTest, eventually, incidents, read_topic


def watch_settings(settings: Settings, kube: KubeAPIServer, tmp_path: Path, namespace: str,
                   **overrides: Any) -> Settings:
    return settings.model_copy(update={
        "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")), "kube_watch": True, "cluster_name": "test",
        "watch_namespaces": [namespace], "watch_lease_namespace": namespace, "watch_lease_duration_s": 4.0,
        "watch_lease_renew_s": 1.0, "watch_lease_retry_s": 0.5, **overrides,
    })


def oom_status(restarts: int = 6) -> dict[str, Any]:
    """A kubelet's report of a container whose last run was OOMKilled and that is now backing off."""
    body = crashloop_status(restarts=restarts)
    body["status"]["containerStatuses"][0]["lastState"]["terminated"].update({"reason": "OOMKilled", "exitCode": 137})
    return body


async def kube_signals(settings: Settings) -> list[dict[str, Any]]:
    """Signals from the watcher on the topic: one per record (duplicates would show)."""
    records = await read_topic(settings, "signals")
    return [v for v in (json.loads(r.value) for r in records) if v["source"] == "kubernetes"]


def summary(signals: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter((s["resource"]["name"], s["name"], s["status"]) for s in signals)


async def until_signals(settings: Settings, expected: Counter[tuple[str, str, str]], timeout: float = 30) -> None:
    async def check() -> bool:
        return summary(await kube_signals(settings)) == expected

    try:
        await eventually(check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"expected {dict(expected)}, got {dict(summary(await kube_signals(settings)))}") from None


@pytest.fixture
async def admin(kube_apiserver: KubeAPIServer) -> AsyncIterator[ApiClient]:
    async with kube_apiserver.api_client() as api:
        yield api


@dataclass
class Env:
    """This test's namespace on the real API server, and settings that watch only it (topics applied)."""

    core: CoreV1Api
    ns: str
    settings: Settings


@pytest.fixture
async def env(settings: Settings, kube_apiserver: KubeAPIServer, admin: ApiClient, tmp_path: Path) -> Env:
    ns = await create_namespace(admin)
    s = watch_settings(settings, kube_apiserver, tmp_path, ns)
    await apply(s)
    return Env(CoreV1Api(admin), ns, s)


async def watcher(settings: Settings, **overrides: Any) -> tuple[WatchService, EventProducer]:
    s = settings.model_copy(update=overrides)
    producer = EventProducer(s)
    await producer.start()
    service = WatchService(s, producer)
    await service.start()
    return service, producer


async def stop(service: WatchService, producer: EventProducer) -> None:
    await service.stop()
    await producer.stop()


async def test_pod_events_and_an_alert_on_the_same_pod_become_one_incident(
    settings: Settings, kube_apiserver: KubeAPIServer, admin: ApiClient, tmp_path: Path
) -> None:
    core = CoreV1Api(admin)
    ns = await create_namespace(admin)
    s = watch_settings(settings, kube_apiserver, tmp_path, ns)
    plan = Plan(stages=["correlate"], ingest=True, gateway=True, apply_topics=True, watch=True)
    async with PipelineUnderTest(s, plan) as running:
        assert running.process is not None
        await running.process.watch.wait_synced(60)
        await core.create_namespaced_pod(ns, pod_manifest("cart"))
        am = AlertmanagerServer(tmp_path / "am", f"{running.url}/api/v1/alerts")
        with am:
            am.fire({"alertname": "KubePodCrashLooping", "namespace": ns, "pod": "cart", "severity": "warning"})
            await core.patch_namespaced_pod_status("cart", ns, crashloop_status())
            await until_signals(s, Counter({("cart", "CrashLoopBackOff", "firing"): 1}))
            await core.patch_namespaced_pod_status("cart", ns, oom_status())
            await until_signals(s, Counter({("cart", "CrashLoopBackOff", "firing"): 1, ("cart", "OOMKilled", "firing"): 1}))
            async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as http:

                async def one_incident_with_three_signals() -> dict[str, Any] | None:
                    found = (await incidents(http, namespace=ns))["incidents"]
                    return found[0] if len(found) == 1 and found[0].get("signal_count") == 3 else None

                incident = await eventually(one_incident_with_three_signals, timeout=30)
                health = (await http.get("/api/v1/health")).json()["components"]["watch"]
                assert health["leading"] and health["synced"] and health["firing_objects"] == 1
        assert incident["resource"] == "Pod/cart" and incident["namespace"] == ns
        changes = [json.loads(r.value) for r in await read_topic(s, "incidents")]
        # each change record carries the alerts it touched: together they are the incident's alerts
        alerts = {fp: a for c in changes if c["incident"]["id"] == incident["id"]
                  for fp, a in c["incident"]["signals"].items()}
        assert sorted((a["source"], a["name"]) for a in alerts.values()) == [
            ("alertmanager", "KubePodCrashLooping"), ("kubernetes", "CrashLoopBackOff"), ("kubernetes", "OOMKilled")]
        # Status churn that changes no condition emits nothing more.
        await core.patch_namespaced_pod_status("cart", ns, oom_status(restarts=9))
        await asyncio.sleep(1.0)
    assert summary(await kube_signals(s)) == Counter({("cart", "CrashLoopBackOff", "firing"): 1,
                                                      ("cart", "OOMKilled", "firing"): 1})


async def test_warning_events_from_both_event_apis_count_once_and_filters_hold(env: Env, admin: ApiClient) -> None:
    core, ns = env.core, env.ns
    s = env.settings.model_copy(update={"watch_event_apis": ["core", "events.k8s.io"]})
    service, producer = await watcher(s)
    try:
        await service.wait_synced(60)
        await core.create_namespaced_pod(ns, pod_manifest("web"))

        def event(name: str, type_: str, reason: str, count: int) -> CoreV1Event:
            now = datetime.now(UTC)
            return CoreV1Event(metadata=V1ObjectMeta(name=name, namespace=ns), type=type_, reason=reason, count=count,
                               message="Readiness probe failed: HTTP probe failed with statuscode: 503",
                               involved_object={"kind": "Pod", "name": "web", "namespace": ns},
                               first_timestamp=now, last_timestamp=now, source={"component": "kubelet"})

        await core.create_namespaced_event(ns, event("web.1", "Normal", "Pulled", 1))  # noise
        await core.create_namespaced_event(ns, event("web.2", "Warning", "Unhealthy", 1))  # below the threshold
        await core.create_namespaced_event(ns, event("web.3", "Warning", "Unhealthy", 5))  # repeated: a signal
        other = await create_namespace(admin)  # not watched
        await core.create_namespaced_pod(other, pod_manifest("web"))
        await core.patch_namespaced_pod_status("web", other, crashloop_status())
        await until_signals(s, Counter({("web", "ProbeFailure", "firing"): 1}))
        await core.delete_namespaced_event("web.3", ns)  # the event expires: the condition resolves
        await until_signals(s, Counter({("web", "ProbeFailure", "firing"): 1, ("web", "ProbeFailure", "resolved"): 1}))
    finally:
        await stop(service, producer)
    (probe,) = [x for x in await kube_signals(s) if x["status"] == "firing"]
    assert probe["resource"] == {"namespace": ns, "kind": "Pod", "name": "web"} and probe["severity"] == "medium"
    assert probe["origin"] == "test" and probe["labels"]["alertname"] == "ProbeFailure"


async def test_a_restarted_watcher_emits_nothing_twice_and_catches_up(env: Env) -> None:
    core, ns, s = env.core, env.ns, env.settings
    for name in ("a", "b", "c"):
        await core.create_namespaced_pod(ns, pod_manifest(name))
    for name in ("a", "b"):
        await core.patch_namespaced_pod_status(name, ns, crashloop_status())
    service, producer = await watcher(s)
    try:
        await service.wait_synced(60)
        await until_signals(s, Counter({("a", "CrashLoopBackOff", "firing"): 1, ("b", "CrashLoopBackOff", "firing"): 1}))
    finally:
        await stop(service, producer)
    # While nobody watches: c starts crash-looping, b is deleted, a recovers.
    await core.patch_namespaced_pod_status("c", ns, crashloop_status())
    await core.delete_namespaced_pod("b", ns, grace_period_seconds=0)
    recovered = crashloop_status()  # running for a while now: its last crash is long past
    container = recovered["status"]["containerStatuses"][0]
    container["state"] = {"running": {"startedAt": "2026-11-22T00:00:00Z"}}
    container["lastState"]["terminated"]["finishedAt"] = "2026-11-21T23:50:00Z"
    await core.patch_namespaced_pod_status("a", ns, recovered)
    expected = Counter({("a", "CrashLoopBackOff", "firing"): 1, ("b", "CrashLoopBackOff", "firing"): 1,
                        ("c", "CrashLoopBackOff", "firing"): 1, ("b", "CrashLoopBackOff", "resolved"): 1,
                        ("a", "CrashLoopBackOff", "resolved"): 1})
    for _ in range(2):  # the second restart has nothing to catch up on
        service, producer = await watcher(s, watch_identity=unique_name("again"))
        try:
            await service.wait_synced(60)
            await until_signals(s, expected)
        finally:
            await stop(service, producer)
    assert summary(await kube_signals(s)) == expected


async def test_namespaces_listed_by_name_are_watched_one_by_one_and_a_restart_resolves_nothing_in_the_others(
    env: Env, admin: ApiClient
) -> None:
    """WATCH_NAMESPACES of exact names: each namespace is listed and watched on its own (what a Role per
    namespace allows). A restarted watcher's list of one namespace must not resolve what fires in another."""
    core, first, s = env.core, env.ns, env.settings
    second = await create_namespace(admin)
    s = s.model_copy(update={"watch_namespaces": [first, second]})
    for ns, name in ((first, "a"), (second, "b")):
        await core.create_namespaced_pod(ns, pod_manifest(name))
        await core.patch_namespaced_pod_status(name, ns, crashloop_status())
    expected = Counter({("a", "CrashLoopBackOff", "firing"): 1, ("b", "CrashLoopBackOff", "firing"): 1})
    for identity in ("first", "again"):
        service, producer = await watcher(s, watch_identity=unique_name(identity))
        try:
            await service.wait_synced(60)
            assert service.watcher is not None
            assert sorted(c.key for c in service.watcher.collections if c.name == "pods") == sorted(
                f"pods in {ns}" for ns in (first, second))
            await until_signals(s, expected)
        finally:
            await stop(service, producer)
    assert summary(await kube_signals(s)) == expected


async def test_an_expired_resource_version_is_relisted_without_loss(env: Env, kube_apiserver: KubeAPIServer) -> None:
    core, ns = env.core, env.ns
    # A Lease that outlives the API server's restart: the same leadership must resume its watch.
    s = env.settings.model_copy(update={"watch_lease_duration_s": 60.0})
    await core.create_namespaced_pod(ns, pod_manifest("a"))
    before = WATCH_RELISTS.labels("pods")._value.get()
    service, producer = await watcher(s)
    try:
        await service.wait_synced(60)
        # Other writes move etcd past the pods watch's resourceVersion; a restarted API server's watch cache
        # starts there, so resuming the pods watch gets 410 Gone.
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "bump"}})
        await asyncio.to_thread(kube_apiserver.restart_apiserver)
        async with kube_apiserver.api_client() as fresh:  # pooled connections died with the server
            await CoreV1Api(fresh).patch_namespaced_pod_status("a", ns, crashloop_status())
            await until_signals(s, Counter({("a", "CrashLoopBackOff", "firing"): 1}), timeout=60)
            await eventually(lambda: _true(WATCH_RELISTS.labels("pods")._value.get() > before), timeout=60)
        assert service.elector.transitions == 1  # not a new leadership's fresh list: the 410 path re-listed
    finally:
        await stop(service, producer)
    assert summary(await kube_signals(s)) == Counter({("a", "CrashLoopBackOff", "firing"): 1})


async def _true(value: bool) -> bool:
    return value


async def test_two_watchers_elect_one_leader_and_the_standby_takes_over(env: Env, admin: ApiClient) -> None:
    core, ns, s = env.core, env.ns, env.settings
    first = await watcher(s, watch_identity="first")
    second = await watcher(s, watch_identity="second")
    services = {"first": first, "second": second}
    try:
        async def one_leader() -> str | None:
            leading = [n for n, (svc, _) in services.items() if svc.elector and svc.elector.leading.is_set()]
            return leading[0] if len(leading) == 1 else None

        leader = await eventually(one_leader, timeout=30)
        standby = "second" if leader == "first" else "first"
        await services[leader][0].wait_synced(60)
        await core.create_namespaced_pod(ns, pod_manifest("a"))
        await core.patch_namespaced_pod_status("a", ns, crashloop_status())
        await until_signals(s, Counter({("a", "CrashLoopBackOff", "firing"): 1}))
        assert not services[standby][0].elector.leading.is_set()

        await stop(*services.pop(leader))  # the leader stops (and releases the Lease)
        await eventually(lambda: _true(services[standby][0].elector.leading.is_set()), timeout=30)
        lease = await CoordinationV1Api(admin).read_namespaced_lease(s.watch_lease_name, ns)
        assert lease.spec.holder_identity == standby and lease.spec.lease_transitions >= 1
        await services[standby][0].wait_synced(60)
        await core.create_namespaced_pod(ns, pod_manifest("b"))
        await core.patch_namespaced_pod_status("b", ns, oom_status())
        await until_signals(s, Counter({("a", "CrashLoopBackOff", "firing"): 1, ("b", "CrashLoopBackOff", "firing"): 1,
                                        ("b", "OOMKilled", "firing"): 1}))
    finally:
        for svc, producer in services.values():
            await stop(svc, producer)


async def test_node_conditions_become_signals(env: Env) -> None:
    core, s = env.core, env.settings
    node = unique_name("node")
    await core.create_node(V1Node(metadata=V1ObjectMeta(name=node)))
    service, producer = await watcher(s)
    try:
        await service.wait_synced(60)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "PLEG is not healthy",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "MemoryPressure", "status": "True", "reason": "KubeletHasInsufficientMemory",
             "lastHeartbeatTime": now, "lastTransitionTime": now},
        ]
        await core.patch_node_status(node, {"status": {"conditions": conditions}})
        await until_signals(s, Counter({(node, "NodeNotReady", "firing"): 1, (node, "NodeMemoryPressure", "firing"): 1}))
        (ready,) = [x for x in await kube_signals(s) if x["name"] == "NodeNotReady"]
        assert ready["resource"] == {"namespace": "", "kind": "Node", "name": node} and ready["severity"] == "critical"
    finally:
        await stop(service, producer)
        await core.delete_node(node)


async def test_pipeline_stage_watch_runs_from_the_environment_and_releases_its_lease_on_sigterm(
    env: Env, admin: ApiClient, tmp_path: Path
) -> None:
    core, ns, s = env.core, env.ns, env.settings
    environ = {
        **os.environ, "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers, "TOPIC_PREFIX": s.topic_prefix,
        "KUBECONFIG": s.kubeconfig, "WATCH_NAMESPACES": ns, "WATCH_LEASE_NAMESPACE": ns, "CLUSTER_NAME": "prod-eu",
        "WATCH_IDENTITY": "cli", "HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "watch.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "stage", "watch"], env=environ, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        await core.create_namespaced_pod(ns, pod_manifest("api"))
        await core.patch_namespaced_pod_status("api", ns, crashloop_status())
        await until_signals(s, Counter({("api", "CrashLoopBackOff", "firing"): 1}), timeout=60)
        (signal,) = await kube_signals(s)
        assert signal["origin"] == "prod-eu"
    finally:
        proc.send_signal(signal_module.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, (tmp_path / "watch.log").read_text()[-3000:]
    lease = await CoordinationV1Api(admin).read_namespaced_lease("pipeline-watch", ns)
    assert lease.spec.holder_identity is None  # released: a standby need not wait for it to expire

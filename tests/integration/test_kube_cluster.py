"""The test cluster with controllers (`kube_cluster`: kube-apiserver + kube-controller-manager +
kube-scheduler + kwok, pipeline.embedded.kube_cluster.KubeCluster): Deployments roll out to Running, Ready pods on
the fake node, rollout restarts make new ReplicaSets, pods labelled ``crashloop=true`` crash-loop, the
ArgoCD Application and Memcached CRDs serve objects, and the audit log counts mutating calls.

Needs the binaries from scripts/build-kube-apiserver.sh; fails (never skips) without them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiException, AppsV1Api, CustomObjectsApi

from pipeline.embedded.kube import ADMIN_USER
from pipeline.embedded.kube_cluster import KWOK_NODE, KubeCluster
from tests.components.kube import (
    create_namespace,
    deployment_manifest,
    list_pods,
    pod_ready,
    wait_deployment_available,
    wait_for,
    waiting_reason,
)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _owner(obj: Any) -> str | None:
    refs = obj.metadata.owner_references or []
    return refs[0].name if refs else None


async def test_a_deployment_becomes_available_with_ready_pods_on_the_kwok_node(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_cluster.api_client() as api:
        ns = await create_namespace(api)
        await AppsV1Api(api).create_namespaced_deployment(ns, deployment_manifest("cart", replicas=2))

        dep = await wait_deployment_available(api, ns, "cart")
        assert (dep.status.observed_generation, dep.status.ready_replicas, dep.status.available_replicas) == (
            1,
            2,
            2,
        )
        conditions = {c.type: (c.status, c.reason) for c in dep.status.conditions}
        assert conditions["Available"] == ("True", "MinimumReplicasAvailable")
        assert conditions["Progressing"] == ("True", "NewReplicaSetAvailable")

        replica_sets = (await AppsV1Api(api).list_namespaced_replica_set(ns, label_selector="app=cart")).items
        assert [_owner(rs) for rs in replica_sets] == ["cart"]
        pods = await list_pods(api, ns, "app=cart")
        assert len(pods) == 2
        for pod in pods:
            assert _owner(pod) == replica_sets[0].metadata.name
            assert pod.spec.node_name == KWOK_NODE  # bound by kube-scheduler
            assert pod.status.phase == "Running"  # reported by kwok
            assert pod_ready(pod)
            assert pod.status.pod_ip and pod.status.container_statuses[0].ready


async def test_a_rollout_restart_makes_a_new_replica_set_with_new_ready_pods(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_cluster.api_client() as api:
        apps = AppsV1Api(api)
        ns = await create_namespace(api)
        await apps.create_namespaced_deployment(ns, deployment_manifest("cart", replicas=2))
        await wait_deployment_available(api, ns, "cart")
        old_pods = {p.metadata.name for p in await list_pods(api, ns, "app=cart")}
        (old_rs,) = (await apps.list_namespaced_replica_set(ns, label_selector="app=cart")).items

        # What `kubectl rollout restart` does.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patched = await apps.patch_namespaced_deployment(
            "cart", ns, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        )
        assert patched.metadata.generation == 2

        dep = await wait_deployment_available(api, ns, "cart", generation=2)
        assert dep.status.observed_generation == 2
        assert (dep.status.updated_replicas, dep.status.available_replicas) == (2, 2)

        async def old_pods_gone() -> list[Any] | None:
            pods = await list_pods(api, ns, "app=cart")
            return pods if len(pods) == 2 and not old_pods & {p.metadata.name for p in pods} else None

        new_pods = await wait_for(old_pods_gone, what="the old pods to be replaced")
        replica_sets = {
            rs.metadata.name: rs
            for rs in (await apps.list_namespaced_replica_set(ns, label_selector="app=cart")).items
        }
        assert len(replica_sets) == 2
        new_rs = next(rs for name, rs in replica_sets.items() if name != old_rs.metadata.name)
        assert replica_sets[old_rs.metadata.name].spec.replicas == 0
        assert (new_rs.spec.replicas, new_rs.status.ready_replicas) == (2, 2)
        assert new_rs.spec.template.metadata.annotations[RESTARTED_AT] == now
        for pod in new_pods:
            assert _owner(pod) == new_rs.metadata.name
            assert pod.metadata.annotations[RESTARTED_AT] == now
            assert pod_ready(pod)


async def test_a_pod_labelled_crashloop_goes_to_crashloopbackoff_and_is_not_ready(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_cluster.api_client() as api:
        ns = await create_namespace(api)
        await AppsV1Api(api).create_namespaced_deployment(
            ns, deployment_manifest("cart", replicas=1, pod_labels={"crashloop": "true"})
        )

        async def crash_looping() -> Any:
            pods = await list_pods(api, ns, "app=cart")
            return pods[0] if pods and waiting_reason(pods[0]) == "CrashLoopBackOff" else None

        pod = await wait_for(crash_looping, timeout=45, what="the pod to crash-loop")
        assert pod.spec.node_name == KWOK_NODE
        assert pod.status.phase == "Running"
        assert not pod_ready(pod)
        status = pod.status.container_statuses[0]
        assert not status.ready
        assert status.restart_count >= 1
        assert status.last_state.terminated.exit_code == 1

        # As in a real cluster the ReplicaSet keeps the pod; the Deployment reports it unavailable.
        dep = await AppsV1Api(api).read_namespaced_deployment("cart", ns)
        assert not dep.status.available_replicas
        assert [p.metadata.name for p in await list_pods(api, ns, "app=cart")] == [pod.metadata.name]


async def test_an_argocd_application_is_created_and_its_status_merge_patched(
    kube_cluster: KubeCluster,
) -> None:
    async with kube_cluster.api_client() as api:
        custom = CustomObjectsApi(api)
        ns = await create_namespace(api)
        app = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "shop"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": "https://git.example/shop.git",
                    "path": "deploy",
                    "targetRevision": "main",
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
            },
        }
        await custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "applications", app)

        # This CRD version has no status subresource: status is patched through the object itself.
        status = {"status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Degraded"}}}
        await custom.patch_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            ns,
            "applications",
            "shop",
            status,
            _content_type="application/merge-patch+json",
        )
        got = await custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "applications", "shop")
        assert got["status"]["sync"]["status"] == "OutOfSync"
        assert got["status"]["health"]["status"] == "Degraded"
        assert got["spec"]["source"]["repoURL"] == "https://git.example/shop.git"

        # The CRD's schema is enforced.
        bad = {**app, "metadata": {"name": "bad"}, "spec": {**app["spec"], "source": {"repoURL": 42}}}
        with pytest.raises(ApiException) as invalid:
            await custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", ns, "applications", bad)
        assert invalid.value.status == 422
        assert "spec.source.repoURL" in invalid.value.body


async def test_a_memcached_custom_resource_is_created_with_a_status(kube_cluster: KubeCluster) -> None:
    async with kube_cluster.api_client() as api:
        custom = CustomObjectsApi(api)
        ns = await create_namespace(api)
        body = {
            "apiVersion": "cache.example.com/v1alpha1",
            "kind": "Memcached",
            "metadata": {"name": "sessions"},
            "spec": {"size": 3, "containerPort": 11211},
        }
        created = await custom.create_namespaced_custom_object(
            "cache.example.com", "v1alpha1", ns, "memcacheds", body
        )
        assert created["spec"] == {"size": 3, "containerPort": 11211}  # unknown fields are kept

        await custom.patch_namespaced_custom_object_status(
            "cache.example.com",
            "v1alpha1",
            ns,
            "memcacheds",
            "sessions",
            {"status": {"nodes": ["sessions-0", "sessions-1"]}},
            _content_type="application/merge-patch+json",
        )
        got = await custom.get_namespaced_custom_object(
            "cache.example.com", "v1alpha1", ns, "memcacheds", "sessions"
        )
        assert got["status"] == {"nodes": ["sessions-0", "sessions-1"]}
        assert got["metadata"]["generation"] == 1  # a status write is not a spec change


async def test_the_audit_log_records_a_patch_of_a_deployment_exactly_once(kube_cluster: KubeCluster) -> None:
    async with kube_cluster.api_client() as api:
        apps = AppsV1Api(api)
        ns = await create_namespace(api)
        await apps.create_namespaced_deployment(ns, deployment_manifest("cart", replicas=1))
        await wait_deployment_available(api, ns, "cart")
        await apps.patch_namespaced_deployment("cart", ns, {"metadata": {"annotations": {"team": "shop"}}})

        def admin_patches() -> list[dict[str, Any]]:
            return kube_cluster.mutations(
                "deployments", "cart", namespace=ns, user=ADMIN_USER, verbs=frozenset({"patch"})
            )

        (patch,) = await wait_for(admin_patches, what="the patch in the audit log")
        assert patch["stage"] == "ResponseComplete"
        assert patch["responseStatus"]["code"] == 200
        assert patch["objectRef"]["apiGroup"] == "apps"

        # Everything the test itself changed, once each; the controllers write the status subresource.
        mine = kube_cluster.mutations("deployments", "cart", namespace=ns, user=ADMIN_USER)
        assert sorted(e["verb"] for e in mine) == ["create", "patch"]
        status_writers = {
            e["user"]["username"]
            for e in kube_cluster.mutations("deployments", "cart", namespace=ns, subresource="status")
        }
        assert status_writers == {"system:serviceaccount:kube-system:deployment-controller"}
        # Reads are logged too, but are no mutations.
        assert any(
            e["verb"] == "get"
            for e in kube_cluster.audit_events()
            if (e.get("objectRef") or {}).get("namespace") == ns
        )

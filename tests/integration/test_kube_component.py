"""The real kube-apiserver v1.31.3 (on etcd) the Kubernetes watcher is tested against, through
kubernetes_asyncio: pods and their status, RBAC, watches (and their expiry), leases, kubeconfigs.

Needs the binaries from scripts/build-kube-apiserver.sh; fails (never skips) without them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import config, watch
from kubernetes_asyncio.client import (
    ApiException,
    AuthenticationV1Api,
    CoordinationV1Api,
    CoreV1Api,
    RbacAuthorizationV1Api,
    RbacV1Subject,
    V1ConfigMap,
    V1Lease,
    V1LeaseSpec,
    V1ObjectMeta,
    V1PolicyRule,
    V1Role,
    V1RoleBinding,
    V1RoleRef,
    V1SelfSubjectReview,
)

from pipeline.embedded.kube import ADMIN_USER, RESTRICTED_USER, KubeAPIServer
from tests.components.kube import FAKE_NODE, crashloop_status, create_namespace, pod_manifest

Event = dict[str, Any]


def _status(exc: ApiException) -> dict[str, Any]:
    """The Status object the API server answered with."""
    assert exc.body is not None, exc
    return json.loads(exc.body)


def _waiting_reason(pod: Any) -> str | None:
    statuses = pod.status.container_statuses or []
    return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None


async def _next_matching(
    stream: watch.Watch, match: Callable[[Event], bool], timeout: float = 15
) -> list[Event]:
    """Events from `stream` up to and including the first that matches (fails on timeout or stream end)."""
    seen: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            seen.append(event)
            if match(event):
                return seen
    summary = [(e["type"], e["raw_object"].get("metadata", {}).get("name")) for e in seen]
    raise AssertionError(f"the watch ended without the expected event; saw {summary}")


async def _watch_error(func: Callable[..., Any], *args: Any, resource_version: str) -> ApiException:
    """Open a watch from `resource_version` and return the ApiException it ends with. A restarted server
    answers 429 while its watch cache initialises: retried for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            async with watch.Watch() as w:
                async for event in w.stream(
                    func, *args, resource_version=resource_version, timeout_seconds=5
                ):
                    raise AssertionError(f"expected an error, got a {event['type']} event")
        except ApiException as exc:
            if exc.status == 429 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
            return exc
        raise AssertionError(f"the watch from resourceVersion {resource_version} ended without an error")


async def test_admin_creates_a_pod_and_plays_kubelet_with_a_crashloop_status(
    kube_apiserver: KubeAPIServer,
) -> None:
    async with kube_apiserver.api_client() as api:
        core = CoreV1Api(api)
        ns = await create_namespace(api)
        created = await core.create_namespaced_pod(ns, pod_manifest("cart"))
        assert created.spec.node_name == FAKE_NODE
        assert created.status.phase == "Pending"  # no kubelet: nothing moves it on by itself

        # Status written through the main resource is silently dropped; only pods/status sets it.
        await core.patch_namespaced_pod("cart", ns, crashloop_status())
        assert (await core.read_namespaced_pod("cart", ns)).status.container_statuses is None

        patched = await core.patch_namespaced_pod_status("cart", ns, crashloop_status(restarts=7))
        assert _waiting_reason(patched) == "CrashLoopBackOff"

        pod = await core.read_namespaced_pod_status("cart", ns)
        status = pod.status.container_statuses[0]
        assert (pod.status.phase, status.name, status.restart_count, status.ready) == (
            "Running",
            "app",
            7,
            False,
        )
        assert status.state.waiting.reason == "CrashLoopBackOff"
        assert status.last_state.terminated.exit_code == 1
        assert int(pod.metadata.resource_version) > int(created.metadata.resource_version)

        # Some of the status is validated (IPs); much is not (phase, restartCount, container names).
        with pytest.raises(ApiException) as invalid:
            await core.patch_namespaced_pod_status("cart", ns, {"status": {"podIP": "not-an-ip"}})
        assert invalid.value.status == 422, invalid.value.body


async def test_restricted_user_is_forbidden_until_a_role_binding_grants_it(
    kube_apiserver: KubeAPIServer,
) -> None:
    async with kube_apiserver.api_client() as admin, kube_apiserver.api_client(RESTRICTED_USER) as restricted:
        ns = await create_namespace(admin)
        other = await create_namespace(admin)
        await CoreV1Api(admin).create_namespaced_pod(ns, pod_manifest("cart"))
        as_restricted = CoreV1Api(restricted)

        with pytest.raises(ApiException) as denied:
            await as_restricted.list_namespaced_pod(ns)
        assert denied.value.status == 403
        status = _status(denied.value)
        assert (status["reason"], status["code"]) == ("Forbidden", 403)
        assert f'User "{RESTRICTED_USER}" cannot list resource "pods"' in status["message"]

        rbac = RbacAuthorizationV1Api(admin)
        await rbac.create_namespaced_role(
            ns,
            V1Role(
                metadata=V1ObjectMeta(name="pod-reader"),
                rules=[V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"])],
            ),
        )
        rbac_group = "rbac.authorization.k8s.io"
        await rbac.create_namespaced_role_binding(
            ns,
            V1RoleBinding(
                metadata=V1ObjectMeta(name="pod-reader"),
                role_ref=V1RoleRef(api_group=rbac_group, kind="Role", name="pod-reader"),
                subjects=[RbacV1Subject(api_group=rbac_group, kind="User", name=RESTRICTED_USER)],
            ),
        )

        # The RBAC authorizer reads through informers: the grant applies within milliseconds, not at once.
        deadline = time.monotonic() + 10
        while True:
            try:
                pods = await as_restricted.list_namespaced_pod(ns)
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        assert [p.metadata.name for p in pods.items] == ["cart"]

        # Only that namespace, and only reading.
        for forbidden in (
            as_restricted.list_namespaced_pod(other),
            as_restricted.list_pod_for_all_namespaces(),
            as_restricted.delete_namespaced_pod("cart", ns),
        ):
            with pytest.raises(ApiException) as still_denied:
                await forbidden
            assert still_denied.value.status == 403


async def test_a_watch_from_the_lists_resource_version_sees_the_status_patch(
    kube_apiserver: KubeAPIServer,
) -> None:
    async with kube_apiserver.api_client() as api:
        core = CoreV1Api(api)
        ns = await create_namespace(api)
        await core.create_namespaced_pod(ns, pod_manifest("cart"))
        listed = await core.list_namespaced_pod(ns)
        assert [p.metadata.name for p in listed.items] == ["cart"]

        async with watch.Watch() as w:
            stream = w.stream(
                core.list_namespaced_pod,
                ns,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=30,
            )

            async def patch_soon() -> None:
                await asyncio.sleep(0.3)  # let the watch connect first
                await core.patch_namespaced_pod_status("cart", ns, crashloop_status())

            patcher = asyncio.create_task(patch_soon())
            events = await _next_matching(
                stream,
                lambda e: e["type"] == "MODIFIED" and _waiting_reason(e["object"]) == "CrashLoopBackOff",
            )
            await patcher

        # Starting from the list's resourceVersion: no replay of the pod that the list already returned.
        assert [e["type"] for e in events] == ["MODIFIED"]
        event = events[0]
        assert event["object"].metadata.name == "cart"
        assert (
            event["raw_object"]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CrashLoopBackOff"
        )
        assert int(event["object"].metadata.resource_version) > int(listed.metadata.resource_version)
        assert w.resource_version == event["object"].metadata.resource_version  # where to resume from


async def test_a_watch_resumed_after_an_apiserver_restart_from_an_old_resource_version_gets_410(
    kube_apiserver: KubeAPIServer,
) -> None:
    async with kube_apiserver.api_client() as api:
        core = CoreV1Api(api)
        ns = await create_namespace(api)
        await core.create_namespaced_pod(ns, pod_manifest("cart"))
        stale_rv = (await core.list_namespaced_pod(ns)).metadata.resource_version
        # Any later write moves etcd's revision past the one the restarted server's watch cache starts at.
        await core.create_namespaced_config_map(ns, V1ConfigMap(metadata=V1ObjectMeta(name="bump")))

    port = kube_apiserver.url
    await asyncio.to_thread(kube_apiserver.restart_apiserver)
    assert kube_apiserver.url == port

    # A fresh client: connections pooled before the restart are dead.
    async with kube_apiserver.api_client() as api:
        core = CoreV1Api(api)
        expired = await _watch_error(core.list_namespaced_pod, ns, resource_version=stale_rv)
        assert expired.status == 410, expired
        assert "too old resource version" in str(expired.reason)

        # The recovery a watcher must do: relist, then watch from the new list's resourceVersion.
        relisted = await core.list_namespaced_pod(ns)
        assert [p.metadata.name for p in relisted.items] == ["cart"]  # etcd kept the data
        async with watch.Watch() as w:
            stream = w.stream(
                core.list_namespaced_pod,
                ns,
                resource_version=relisted.metadata.resource_version,
                timeout_seconds=30,
            )
            await core.create_namespaced_pod(ns, pod_manifest("checkout"))
            events = await _next_matching(stream, lambda e: e["type"] == "ADDED")
        assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "checkout")]


async def test_a_lease_is_updated_with_optimistic_concurrency(kube_apiserver: KubeAPIServer) -> None:
    async with kube_apiserver.api_client() as api:
        leases = CoordinationV1Api(api)
        ns = await create_namespace(api)
        now = datetime.now(UTC)
        created = await leases.create_namespaced_lease(
            ns,
            V1Lease(
                metadata=V1ObjectMeta(name="pipeline-watcher"),
                spec=V1LeaseSpec(
                    holder_identity="replica-a", lease_duration_seconds=15, acquire_time=now, renew_time=now
                ),
            ),
        )
        assert created.spec.holder_identity == "replica-a"
        assert created.spec.renew_time == now  # MicroTime keeps microseconds

        # Replica b reads, then takes the lease over: the update carries the resourceVersion it read.
        read = await leases.read_namespaced_lease("pipeline-watcher", ns)
        read.spec.holder_identity = "replica-b"
        read.spec.lease_transitions = 1
        taken = await leases.replace_namespaced_lease("pipeline-watcher", ns, read)
        assert taken.spec.holder_identity == "replica-b"
        assert int(taken.metadata.resource_version) > int(created.metadata.resource_version)

        # Replica a renews from its stale copy: 409 Conflict, and the lease stays b's.
        created.spec.renew_time = datetime.now(UTC)
        with pytest.raises(ApiException) as conflict:
            await leases.replace_namespaced_lease("pipeline-watcher", ns, created)
        assert conflict.value.status == 409
        assert _status(conflict.value)["reason"] == "Conflict"
        assert "the object has been modified" in _status(conflict.value)["message"]
        assert (
            await leases.read_namespaced_lease("pipeline-watcher", ns)
        ).spec.holder_identity == "replica-b"

        # Creating it again is a 409 too (AlreadyExists), the other half of leader election.
        with pytest.raises(ApiException) as exists:
            await leases.create_namespaced_lease(ns, V1Lease(metadata=V1ObjectMeta(name="pipeline-watcher")))
        assert (exists.value.status, _status(exists.value)["reason"]) == (409, "AlreadyExists")


@pytest.mark.parametrize(
    ("user", "groups"),
    [(ADMIN_USER, ["system:masters", "system:authenticated"]), (RESTRICTED_USER, ["system:authenticated"])],
)
async def test_kubeconfig_authenticates_as_its_user(
    kube_apiserver: KubeAPIServer, tmp_path: Path, user: str, groups: list[str]
) -> None:
    path = kube_apiserver.kubeconfig(tmp_path / "kubeconfig", user=user)
    api = await config.new_client_from_config(config_file=str(path))
    async with api:
        review = await AuthenticationV1Api(api).create_self_subject_review(V1SelfSubjectReview())
    assert review.status.user_info.username == user
    assert review.status.user_info.groups == groups


async def test_the_api_server_listens_on_loopback_only(kube_apiserver: KubeAPIServer) -> None:
    import psutil

    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for pid in (kube_apiserver.apiserver.pid, kube_apiserver.etcd.pid)
        if pid is not None
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert listening, "no listening sockets found"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening

"""The session's Kubernetes API server for tests, and helpers to put objects in it.

The server is the project's own kube-apiserver v1.31.3 on etcd (`pipeline.embedded.kube`), built by
scripts/build-kube-apiserver.sh. The `kube_apiserver` fixture (tests/conftest.py) starts it once per
session, and only when a test requests it (~3.5-7 s). Without the binaries the requesting tests fail with
the build command; nothing is skipped.

There is no kubelet, scheduler or controller-manager: give pods a `nodeName` (no Node object is needed)
and play the kubelet by patching `pods/status` (:func:`crashloop_status`). Without the namespace
controller a deleted namespace stays Terminating forever, so every test uses its own namespace
(:func:`create_namespace`). A test that stops or restarts the API server must leave it running.

The `kube_cluster` fixture is a separate, bigger session cluster (`KubeCluster`, its own etcd and
directory, ~8 s to start): the same API server plus kube-controller-manager, kube-scheduler and kwok with
one fake node (`KWOK_NODE`), the ArgoCD Application and sample Memcached CRDs, and the audit log on.
There Deployments roll out for real (:func:`deployment_manifest`, :func:`wait_deployment_available`),
and pods labelled ``crashloop=true`` go to CrashLoopBackOff. Give pods no `nodeName` there: the
scheduler binds them to `KWOK_NODE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.embedded.kube import KubeAPIServer
from pipeline.embedded.kube_cluster import KubeCluster

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient, V1Deployment, V1Pod

T = TypeVar("T")

FAKE_NODE = "node-1"


@contextlib.contextmanager
def session_kube_apiserver(workdir: Path) -> Iterator[KubeAPIServer]:
    """Start etcd + kube-apiserver in `workdir`; stop both (and drop etcd's data) afterwards."""
    kube = KubeAPIServer(workdir)  # ComponentMissingError here fails the requesting tests
    try:
        yield kube.start()
    finally:
        kube.stop()


@contextlib.contextmanager
def session_kube_cluster(workdir: Path) -> Iterator[KubeCluster]:
    """Start the cluster with controllers (audit log on) in `workdir`; stop it (children first) afterwards."""
    cluster = KubeCluster(workdir, audit_log=True)  # ComponentMissingError here fails the requesting tests
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def unique_name(prefix: str = "t") -> str:
    """A DNS-1123 label unique to this call, e.g. ``t-3f9c2a1b0d``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_namespace(api: ApiClient, prefix: str = "t") -> str:
    """Create a fresh namespace (as whoever `api` authenticates) and return its name. Works on both
    `kube_apiserver` and `kube_cluster` (where kube-controller-manager adds its `default` ServiceAccount
    a moment later; pods do not need it, the ServiceAccount admission plugin is off)."""
    from kubernetes_asyncio.client import CoreV1Api, V1Namespace, V1ObjectMeta

    name = unique_name(prefix)
    await CoreV1Api(api).create_namespace(
        V1Namespace(metadata=V1ObjectMeta(name=name, labels={"pipeline-test": "1"}))
    )
    return name


def pod_manifest(
    name: str, *, node: str = FAKE_NODE, image: str = "registry.example/shop/cart:1.4.2"
) -> V1Pod:
    """A one-container pod already bound to `node` (no scheduler needed), labelled ``app=<name>``."""
    from kubernetes_asyncio.client import V1Container, V1ObjectMeta, V1Pod, V1PodSpec

    return V1Pod(
        metadata=V1ObjectMeta(name=name, labels={"app": name}),
        spec=V1PodSpec(
            node_name=node,
            restart_policy="Always",
            containers=[V1Container(name="app", image=image)],
        ),
    )


def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crashloop_status(
    *, container: str = "app", image: str = "registry.example/shop/cart:1.4.2", restarts: int = 5
) -> dict[str, Any]:
    """A `pods/status` strategic-merge patch body: what a kubelet reports for a container in
    CrashLoopBackOff (waiting, last terminated with exit code 1, `restartCount` = `restarts`)."""
    now = datetime.now(UTC)
    return {
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "lastTransitionTime": _rfc3339(now),
                },
            ],
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": restarts,
                    "state": {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off 5m0s restarting failed container={container}",
                        }
                    },
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "startedAt": _rfc3339(now),
                            "finishedAt": _rfc3339(now),
                        }
                    },
                }
            ],
        }
    }


# ---------------------------------------------------------------------------------------------------
# The cluster with controllers (`kube_cluster`): Deployments and waiting for what the controllers do.


def deployment_manifest(
    name: str,
    replicas: int = 2,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    pod_labels: Mapping[str, str] | None = None,
    pod_annotations: Mapping[str, str] | None = None,
    image: str = "registry.example/shop/cart:1.4.2",
    progress_deadline_seconds: int | None = None,
) -> V1Deployment:
    """An apps/v1 Deployment selecting ``app=<name>``, one container ``app``, no `nodeName`: the scheduler
    binds its pods to `KWOK_NODE` and kwok makes them Running and Ready. `labels`/`annotations` go on the
    Deployment, `pod_labels`/`pod_annotations` on the pod template (``pod_labels={"crashloop": "true"}``:
    its pods crash-loop). A zero termination grace period, so deleted pods go at once."""
    from kubernetes_asyncio.client import (
        V1Container,
        V1Deployment,
        V1DeploymentSpec,
        V1LabelSelector,
        V1ObjectMeta,
        V1PodSpec,
        V1PodTemplateSpec,
    )

    return V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=V1ObjectMeta(
            name=name, labels={"app": name, **(labels or {})}, annotations=dict(annotations or {}) or None
        ),
        spec=V1DeploymentSpec(
            replicas=replicas,
            selector=V1LabelSelector(match_labels={"app": name}),
            progress_deadline_seconds=progress_deadline_seconds,
            template=V1PodTemplateSpec(
                metadata=V1ObjectMeta(
                    labels={"app": name, **(pod_labels or {})},
                    annotations=dict(pod_annotations or {}) or None,
                ),
                spec=V1PodSpec(
                    termination_grace_period_seconds=0,
                    containers=[V1Container(name="app", image=image)],
                ),
            ),
        ),
    )


async def wait_for(
    predicate: Callable[[], Awaitable[T | None] | T | None],
    timeout: float = 30,
    *,
    interval: float = 0.1,
    what: str = "the condition",
) -> T:
    """Call `predicate` (sync or async) until it returns something truthy, and return that. On timeout
    an AssertionError naming `what` and the last value seen (so a failing rollout says where it stood)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")
        await asyncio.sleep(interval)


def deployment_complete(deployment: V1Deployment, generation: int | None = None) -> bool:
    """What `kubectl rollout status` waits for: the controller has seen `generation` (default: the current
    one), every replica is updated and available, and no old replica is left."""
    want = deployment.metadata.generation if generation is None else generation
    status = deployment.status
    replicas = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    return bool(
        status is not None
        and (status.observed_generation or 0) >= want
        and (status.updated_replicas or 0) == replicas
        and (status.replicas or 0) == replicas
        and (status.available_replicas or 0) == replicas
        and not status.unavailable_replicas
    )


async def wait_deployment_available(
    api: ApiClient, namespace: str, name: str, *, generation: int | None = None, timeout: float = 30
) -> V1Deployment:
    """Wait until the Deployment's rollout is complete (:func:`deployment_complete`) and return it."""
    from kubernetes_asyncio.client import AppsV1Api

    apps = AppsV1Api(api)
    last: list[Any] = [None]

    async def done() -> V1Deployment | None:
        dep = await apps.read_namespaced_deployment(name, namespace)
        last[0] = dep.status
        return dep if deployment_complete(dep, generation) else None

    try:
        return await wait_for(done, timeout, what=f"deployment {namespace}/{name} to be available")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {last[0]}") from None


def pod_ready(pod: V1Pod) -> bool:
    """The pod's Ready condition is True."""
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def waiting_reason(pod: V1Pod) -> str | None:
    """The first container's `state.waiting.reason` (e.g. ``CrashLoopBackOff``), if any."""
    statuses = pod.status.container_statuses or []
    return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None


async def list_pods(api: ApiClient, namespace: str, selector: str) -> list[V1Pod]:
    """The pods in `namespace` matching the label `selector` (e.g. ``app=cart``), not being deleted."""
    from kubernetes_asyncio.client import CoreV1Api

    pods = await CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]

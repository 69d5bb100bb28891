"""The session's Kubernetes API server for tests, and helpers to put objects in it.

The server is the project's own kube-apiserver v1.31.3 on etcd (`pipeline.embedded.kube`), built by
scripts/build-kube-apiserver.sh. The `kube_apiserver` fixture (tests/conftest.py) starts it once per
session, and only when a test requests it (~3.5-7 s). Without the binaries the requesting tests fail with
the build command; nothing is skipped.

There is no kubelet, scheduler or controller-manager: give pods a `nodeName` (no Node object is needed)
and play the kubelet by patching `pods/status` (:func:`crashloop_status`). Without the namespace
controller a deleted namespace stays Terminating forever, so every test uses its own namespace
(:func:`create_namespace`). A test that stops or restarts the API server must leave it running.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.embedded.kube import KubeAPIServer

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient, V1Pod

FAKE_NODE = "node-1"


@contextlib.contextmanager
def session_kube_apiserver(workdir: Path) -> Iterator[KubeAPIServer]:
    """Start etcd + kube-apiserver in `workdir`; stop both (and drop etcd's data) afterwards."""
    kube = KubeAPIServer(workdir)  # ComponentMissingError here fails the requesting tests
    try:
        yield kube.start()
    finally:
        kube.stop()


def unique_name(prefix: str = "t") -> str:
    """A DNS-1123 label unique to this call, e.g. ``t-3f9c2a1b0d``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_namespace(api: ApiClient, prefix: str = "t") -> str:
    """Create a fresh namespace (as whoever `api` authenticates) and return its name."""
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

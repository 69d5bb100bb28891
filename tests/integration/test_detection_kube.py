"""Deployment-method detection through the REST routes (R9–R13 and ADR-002's Pod route) against the real
kube-apiserver: ArgoCD through an Application, Helm, an operator's custom resource at the top of a
Pod → ReplicaSet → Deployment chain, manual, 404, 403, and the cache routes.

There is no controller-manager here: the ReplicaSet and the Pod are created by hand with their
ownerReferences (uids of the created owners), as the controllers would. The Application and Memcached
CRDs are tiny versions installed by the test (or whatever complete ones another test installed first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kubernetes_asyncio.client import (
    ApiClient,
    ApiException,
    ApiextensionsV1Api,
    AppsV1Api,
    AuthorizationV1Api,
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
)

from pipeline.adapters.detection import Detector
from pipeline.api import contract, errors
from pipeline.domain.detection import DeploymentInfo
from pipeline.embedded.kube import ADMIN_USER, RESTRICTED_USER, KubeAPIServer
from pipeline.gateway.detection import router
from tests.components.kube import FAKE_NODE, create_namespace
from tests.support import schemathesis
from tests.unit.ml_fakes import Served

ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"
CACHE_GROUP, CACHE_VERSION = "cache.example.com", "v1"


def _crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    """A namespaced CRD whose spec and status take anything (no status subresource: status is written
    with the object, as ArgoCD's own Application CRD does)."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [{
                "name": version, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "properties": {"spec": open_object, "status": open_object}}},
            }],
        },
    }


async def _ensure_crd(api: ApiClient, group: str, version: str, kind: str, plural: str) -> None:
    """Install the CRD unless it is there, and wait until it is Established and served."""
    ext = ApiextensionsV1Api(api)
    try:
        await ext.create_custom_resource_definition(_body(_crd(group, version, kind, plural)))
    except ApiException as exc:
        if exc.status != 409:  # 409: installed by an earlier test
            raise
    async with asyncio.timeout(30):
        while True:
            crd = await ext.read_custom_resource_definition(f"{plural}.{group}")
            conditions = {c.type: c.status for c in (crd.status.conditions or [])}
            if conditions.get("Established") == "True":
                try:
                    await CustomObjectsApi(api).list_cluster_custom_object(group, version, plural, limit=1)
                    return
                except ApiException as exc:
                    if exc.status != 404:
                        raise
            await asyncio.sleep(0.1)


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference a controller writes on what it creates."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _pod_spec() -> dict[str, Any]:
    return {"nodeName": FAKE_NODE, "containers": [{"name": "app", "image": "registry.example/shop/cart:1.4.2"}]}


def _template(app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": _pod_spec()}


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra}


def _body(obj: dict[str, Any]) -> Any:
    """A JSON dict as a request body: the client sends dicts as they are (its hints name only models)."""
    return obj


def _json(obj: Any) -> dict[str, Any]:
    """The object as the API server's JSON (apiVersion, kind, metadata.uid, ...)."""
    sanitized: dict[str, Any] = ApiClient().sanitize_for_serialization(obj)
    return sanitized


@contextlib.asynccontextmanager
async def _gateway(kube: KubeAPIServer, user: str = ADMIN_USER, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The detection routes in a FastAPI app (as the gateway mounts them) on a Detector for `user`."""
    async with kube.api_client(user) as api:
        detector = Detector(api, **kwargs)
        app = FastAPI()
        errors.install(app)
        app.include_router(router(lambda: detector))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


async def _grant(kube: KubeAPIServer, admin: ApiClient, ns: str, name: str, rules: list[dict[str, Any]]) -> None:
    """A Role with `rules` bound to the restricted user in `ns`, waited for: the RBAC authorizer reads
    through informers, so a grant applies within milliseconds, not at once."""
    rbac = RbacAuthorizationV1Api(admin)
    await rbac.create_namespaced_role(ns, _body({"metadata": {"name": name}, "rules": rules}))
    await rbac.create_namespaced_role_binding(ns, _body({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER}],
    }))
    first = rules[0]
    review = {"spec": {"resourceAttributes": {"namespace": ns, "verb": first["verbs"][0],
                                              "group": first["apiGroups"][0], "resource": first["resources"][0]}}}
    async with kube.api_client(RESTRICTED_USER) as restricted, asyncio.timeout(10):
        while not (await AuthorizationV1Api(restricted).create_self_subject_access_review(_body(review))).status.allowed:
            await asyncio.sleep(0.05)


@pytest.fixture
async def admin(kube_apiserver: KubeAPIServer) -> AsyncIterator[ApiClient]:
    async with kube_apiserver.api_client() as api:
        await _ensure_crd(api, ARGO_GROUP, ARGO_VERSION, "Application", "applications")
        await _ensure_crd(api, CACHE_GROUP, CACHE_VERSION, "Memcached", "memcacheds")
        yield api


async def test_a_deployment_listed_by_an_argocd_application_is_argocd(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    ns = await create_namespace(admin, "detect")
    await AppsV1Api(admin).create_namespaced_deployment(ns, _body({
        "metadata": _meta("web", labels={"app": "web"}),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")},
    }))
    await CustomObjectsApi(admin).create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "applications", {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}", "kind": "Application",
        "metadata": {"name": "shop"},
        "spec": {"destination": {"namespace": ns}, "source": {"repoURL": "https://git.example/shop", "path": "."}},
        "status": {"resources": [
            {"group": "", "version": "v1", "kind": "Service", "namespace": ns, "name": "web"},
            {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": "web"},
        ]},
    })

    async with _gateway(kube_apiserver) as http:
        resp = await http.get(f"/api/v1/detect/deployment/{ns}/web")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["success"], body["message"]) == (True, "Deployment method detected successfully")
    data = body["data"]
    assert (data["method"], data["confidence"], data["source"]) == ("argocd", 0.95, "argocd-application:shop")
    assert data["details"]["argocd_app"] == "shop"
    assert data["application"] == {"name": "shop", "namespace": ns}
    assert (data["namespace"], data["resource_name"], data["resource_kind"]) == (ns, "web", "Deployment")
    assert data["workload"] == {"api_version": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "web"}
    assert data["detected_at"].endswith("Z")


async def test_a_helm_release_statefulset_is_helm(kube_apiserver: KubeAPIServer, admin: ApiClient) -> None:
    ns = await create_namespace(admin, "detect")
    await AppsV1Api(admin).create_namespaced_stateful_set(ns, _body({
        "metadata": _meta("db", labels={"app": "db", "app.kubernetes.io/managed-by": "Helm",
                                        "helm.sh/chart": "postgresql-15.5.0"},
                          annotations={"meta.helm.sh/release-name": "orders-db",
                                       "meta.helm.sh/release-namespace": ns}),
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": _template("db")},
    }))

    async with _gateway(kube_apiserver) as http:
        resp = await http.get(f"/api/v1/detect/statefulset/{ns}/db")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["message"] == "StatefulSet method detected successfully"
    assert (body["data"]["method"], body["data"]["confidence"]) == ("helm", 0.90)
    assert body["data"]["source"] == "annotation:meta.helm.sh/release-name"
    assert body["data"]["details"] == {"release_name": "orders-db", "release_namespace": ns,
                                       "chart": "postgresql-15.5.0", "managed_by": "Helm"}


async def test_a_pod_of_a_deployment_owned_by_a_custom_resource_is_operator(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    """Pod → ReplicaSet → Deployment → Memcached: the engine, looking up the pod's name as a Deployment,
    answers NotFound; here the chain is followed to the operator's custom resource."""
    ns = await create_namespace(admin, "detect")
    apps = AppsV1Api(admin)
    memcached = await CustomObjectsApi(admin).create_namespaced_custom_object(
        CACHE_GROUP, CACHE_VERSION, ns, "memcacheds",
        {"apiVersion": f"{CACHE_GROUP}/{CACHE_VERSION}", "kind": "Memcached", "metadata": {"name": "sessions"},
         "spec": {"size": 1}},
    )
    deploy = _json(await apps.create_namespaced_deployment(ns, _body({
        "metadata": _meta("sessions", labels={"app": "sessions"}, ownerReferences=[_owner(memcached)]),
        "spec": {"selector": {"matchLabels": {"app": "sessions"}}, "template": _template("sessions")},
    })))
    deploy.update(apiVersion="apps/v1", kind="Deployment")
    rs = _json(await apps.create_namespaced_replica_set(ns, _body({
        "metadata": _meta("sessions-6f7d9", labels={"app": "sessions"}, ownerReferences=[_owner(deploy)]),
        "spec": {"selector": {"matchLabels": {"app": "sessions"}}, "template": _template("sessions")},
    })))
    rs.update(apiVersion="apps/v1", kind="ReplicaSet")
    await CoreV1Api(admin).create_namespaced_pod(ns, _body({
        "metadata": _meta("sessions-6f7d9-q2x4z", labels={"app": "sessions"}, ownerReferences=[_owner(rs)]),
        "spec": _pod_spec(),
    }))

    async with _gateway(kube_apiserver) as http:
        resp = await http.get(f"/api/v1/detect/pod/{ns}/sessions-6f7d9-q2x4z")

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["message"] == "Pod method detected successfully"
    data = body["data"]
    assert (data["method"], data["confidence"]) == ("operator", 0.90)
    assert data["source"] == "ownerReference:Memcached/sessions"
    assert data["owner"] == {"api_version": "cache.example.com/v1", "kind": "Memcached", "name": "sessions",
                             "namespace": ns}
    assert data["workload"] == {"api_version": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "sessions"}
    assert (data["resource_kind"], data["resource_name"]) == ("Pod", "sessions-6f7d9-q2x4z")


async def test_a_plain_daemonset_is_manual_and_stays_cached_until_the_cache_is_cleared(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    ns = await create_namespace(admin, "detect")
    apps = AppsV1Api(admin)
    await apps.create_namespaced_daemon_set(ns, _body({
        "metadata": _meta("node-agent", labels={"app": "node-agent", "version": "2.1.0"}),
        "spec": {"selector": {"matchLabels": {"app": "node-agent"}}, "template": _template("node-agent")},
    }))

    async with _gateway(kube_apiserver) as http:
        first = (await http.get(f"/api/v1/detect/daemonset/{ns}/node-agent")).json()
        assert first["message"] == "DaemonSet method detected successfully"
        assert (first["data"]["method"], first["data"]["confidence"], first["data"]["source"]) == (
            "manual", 0.60, "default")
        assert first["data"]["details"] == {"reason": "no ArgoCD, Helm or operator markers found",
                                            "app": "node-agent", "version": "2.1.0"}

        stats = (await http.get("/api/v1/detect/cache/stats")).json()
        assert stats == {"success": True, "data": {"total_entries": 1, "valid_entries": 1, "expired_entries": 0,
                                                   "ttl_seconds": 300}}

        # Helm takes the DaemonSet over: the cached answer stands until the cache is cleared
        await apps.patch_namespaced_daemon_set("node-agent", ns, {"metadata": {
            "annotations": {"meta.helm.sh/release-name": "agents"}}})
        again = (await http.get(f"/api/v1/detect/daemonset/{ns}/node-agent")).json()
        assert again["data"] == first["data"]

        cleared = await http.post("/api/v1/detect/cache/clear")
        assert (cleared.status_code, cleared.json()) == (200, {"success": True,
                                                                "message": "Cache cleared successfully"})
        assert (await http.get("/api/v1/detect/cache/stats")).json()["data"]["total_entries"] == 0

        fresh = (await http.get(f"/api/v1/detect/daemonset/{ns}/node-agent")).json()
        assert (fresh["data"]["method"], fresh["data"]["details"]["release_name"]) == ("helm", "agents")


async def test_an_expired_entry_is_detected_again(kube_apiserver: KubeAPIServer, admin: ApiClient) -> None:
    from datetime import UTC, datetime, timedelta

    ns = await create_namespace(admin, "detect")
    apps = AppsV1Api(admin)
    await apps.create_namespaced_deployment(ns, _body({
        "metadata": _meta("web"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")},
    }))
    now = [datetime(2026, 5, 20, 12, 0, tzinfo=UTC)]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731

    async with _gateway(kube_apiserver, clock=clock, ttl_s=60) as http:
        assert (await http.get(f"/api/v1/detect/deployment/{ns}/web")).json()["data"]["method"] == "manual"
        await apps.patch_namespaced_deployment("web", ns, {"metadata": {
            "labels": {"argocd.argoproj.io/instance": "web-app"}}})
        now[0] += timedelta(seconds=61)
        stats = (await http.get("/api/v1/detect/cache/stats")).json()["data"]
        assert stats == {"total_entries": 1, "valid_entries": 0, "expired_entries": 1, "ttl_seconds": 60}
        data = (await http.get(f"/api/v1/detect/deployment/{ns}/web")).json()["data"]
        assert (data["method"], data["detected_at"]) == ("argocd", "2026-05-20T12:01:01Z")


async def test_a_missing_object_is_a_404_with_the_api_servers_message(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    ns = await create_namespace(admin, "detect")
    async with _gateway(kube_apiserver) as http:
        resp = await http.get(f"/api/v1/detect/deployment/{ns}/nope")
        assert resp.status_code == 404
        body = resp.json()
        assert (body["success"], body["code"]) == (False, "NOT_FOUND")
        assert body["error"] == f'failed to get deployment {ns}/nope: deployments.apps "nope" not found'
        assert (await http.get("/api/v1/detect/cache/stats")).json()["data"]["total_entries"] == 0


async def test_a_user_without_rbac_gets_the_403_reason(kube_apiserver: KubeAPIServer, admin: ApiClient) -> None:
    ns = await create_namespace(admin, "detect")
    await AppsV1Api(admin).create_namespaced_deployment(ns, _body({
        "metadata": _meta("web"),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")},
    }))
    async with _gateway(kube_apiserver, RESTRICTED_USER) as http:
        resp = await http.get(f"/api/v1/detect/deployment/{ns}/web")

    assert resp.status_code == 403
    body = resp.json()
    assert (body["success"], body["code"]) == (False, "FORBIDDEN")
    assert (f'User "{RESTRICTED_USER}" cannot get resource "deployments" in API group "apps" '
            f'in the namespace "{ns}"') in body["error"]


async def test_a_user_who_may_read_workloads_but_not_applications_still_gets_an_answer(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    """Listing ArgoCD Applications cluster-wide is forbidden to this user: that is "no ArgoCD we can see",
    not an error; the workload's own markers decide."""
    ns = await create_namespace(admin, "detect")
    await AppsV1Api(admin).create_namespaced_deployment(ns, _body({
        "metadata": _meta("web", labels={"argocd.argoproj.io/instance": "web-app"}),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")},
    }))
    await _grant(kube_apiserver, admin, ns, "detect",
                 [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}])

    async with _gateway(kube_apiserver, RESTRICTED_USER) as http:
        resp = await http.get(f"/api/v1/detect/deployment/{ns}/web")

    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert (data["method"], data["source"], data["application"]) == (
        "argocd", "label:argocd.argoproj.io/instance", {"name": "web-app", "namespace": None})


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/v1/detect/deployment/Bad_NS/web", "namespace"), ("/api/v1/detect/pod/shop/Web%20App", "name")],
)
async def test_names_that_are_not_kubernetes_names_are_400(
    kube_apiserver: KubeAPIServer, path: str, field: str
) -> None:
    async with _gateway(kube_apiserver) as http:
        resp = await http.get(path)
    assert resp.status_code == 400
    body = resp.json()
    assert (body["success"], body["code"], body["field"]) == (False, "INVALID_REQUEST", field)
    assert body["error"].startswith(f"invalid {field} ")


@pytest.mark.parametrize("problem", ["none", "raises"])
async def test_without_a_cluster_the_routes_say_so(problem: str) -> None:
    def provider() -> Detector | None:
        if problem == "raises":
            raise RuntimeError("KUBECONFIG is not set and this is not a pod with a service account")
        return None

    app = FastAPI()
    errors.install(app)
    app.include_router(router(provider))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        for method, path in [("GET", "/api/v1/detect/deployment/shop/web"), ("GET", "/api/v1/detect/cache/stats"),
                             ("POST", "/api/v1/detect/cache/clear")]:
            resp = await http.request(method, path)
            assert resp.status_code == 503, path
            body = resp.json()
            assert (body["success"], body["code"]) == (False, "KUBE_NOT_CONFIGURED")
            assert body["error"].startswith("no Kubernetes cluster is configured")


async def test_an_unreachable_api_server_is_the_engines_500() -> None:
    from kubernetes_asyncio.client import Configuration

    config = Configuration(host="https://127.0.0.1:1")  # nothing listens there
    async with ApiClient(config) as api:
        detector = Detector(api, request_timeout_s=5)
        app = FastAPI()
        errors.install(app)
        app.include_router(router(lambda: detector))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            resp = await http.get("/api/v1/detect/statefulset/shop/db")
    assert resp.status_code == 500
    body = resp.json()
    assert (body["success"], body["error"], body["code"]) == (False, "internal server error", "INTERNAL")
    assert body["details"][0]["field"] == "StatefulSet"
    assert "127.0.0.1:1" in body["details"][0]["message"] or "Connect" in body["details"][0]["message"]


async def test_a_user_who_may_read_the_pod_but_not_its_replicaset_gets_the_403_reason(
    kube_apiserver: KubeAPIServer, admin: ApiClient
) -> None:
    """Without the ReplicaSet the answer could be wrong (the Deployment above it is not seen): a 403 that
    names the missing permission, not a guess."""
    ns = await create_namespace(admin, "detect")
    rs = _json(await AppsV1Api(admin).create_namespaced_replica_set(ns, _body({
        "metadata": _meta("web-6f7d9", labels={"app": "web"}),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")},
    })))
    rs.update(apiVersion="apps/v1", kind="ReplicaSet")
    await CoreV1Api(admin).create_namespaced_pod(ns, _body({
        "metadata": _meta("web-6f7d9-abcde", labels={"app": "web"}, ownerReferences=[_owner(rs)]),
        "spec": _pod_spec(),
    }))
    await _grant(kube_apiserver, admin, ns, "pods", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])

    async with _gateway(kube_apiserver, RESTRICTED_USER) as http:
        resp = await http.get(f"/api/v1/detect/pod/{ns}/web-6f7d9-abcde")

    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error.startswith(f"failed to get replicaset {ns}/web-6f7d9 (controller of Pod {ns}/web-6f7d9-abcde): ")
    assert 'cannot get resource "replicasets" in API group "apps"' in error


async def _exists(created: Awaitable[Any]) -> None:
    """Create an object unless an earlier run of this test did."""
    try:
        await created
    except ApiException as exc:
        if exc.status != 409:
            raise


async def test_the_declared_contract_holds_against_a_real_cluster(
    kube_apiserver: KubeAPIServer, admin: ApiClient, tmp_path: Path
) -> None:
    """Schemathesis on the detection routes' OpenAPI document, served by uvicorn on a real kube-apiserver: each
    answer declared and matching its schema, names that are not Kubernetes names 400, unknown objects 404, and
    the documented example (`shop`/`cart`, created here) detected."""
    await _exists(CoreV1Api(admin).create_namespace(_body({"metadata": {"name": "shop"}})))
    await _exists(AppsV1Api(admin).create_namespaced_deployment("shop", _body({
        "metadata": _meta("cart", labels={"app": "cart"}, annotations={"meta.helm.sh/release-name": "shop"}),
        "spec": {"selector": {"matchLabels": {"app": "cart"}}, "template": _template("cart")},
    })))
    detected: list[str] = []

    class Recording(Detector):
        async def detect(self, namespace: str, kind: str, name: str) -> DeploymentInfo:
            info = await super().detect(namespace, kind, name)
            detected.append(f"{kind}/{namespace}/{name}:{info.method}")
            return info

    detector = Recording(admin)
    app = FastAPI()
    errors.install(app)
    contract.install(app)
    app.include_router(router(lambda: detector))
    served = await Served(app).start()
    try:
        code, text = await schemathesis(served.url, tmp_path, "--include-path-regex", "^/api/v1/detect/")
    finally:
        await served.stop()
    assert code == 0, text[-20000:]
    assert "Tested: 6" in text, text[-3000:]
    assert "Deployment/shop/cart:helm" in detected  # the documented example, answered with its schema

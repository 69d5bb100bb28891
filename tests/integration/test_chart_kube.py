"""The chart installed into the tests' real kube-apiserver (every object of `helm template`, created for real):

* two releases in one namespace install side by side, and their watchers, each under its own ServiceAccount
  token with the rendered settings, both lead: each has a Lease of its own;
* with watch.namespaces listing namespaces exactly, the RBAC is namespace-scoped: the watcher, remediate and the
  gateway can read (remediate: delete) pods in a listed namespace and not in another, nor cluster-wide; the
  watcher under its token watches the listed namespace and turns a crash-looping pod there into a signal; and
  remediate's start-up self-check under its token finds nothing denied; the gateway's detection under its token
  finds the ArgoCD Application in the ArgoCD namespace it is given."""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, AppsV1Api, Configuration, CoreV1Api, CustomObjectsApi

from pipeline.adapters.detection import Detector
from pipeline.adapters.remediation import KubeRemediator
from pipeline.bus.producer import EventProducer
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.embedded.kube import KubeAPIServer, service_account_review
from pipeline.ingest.kube import WatchService
from tests.components.kube import crashloop_status, pod_manifest, unique_name
from tests.integration.test_detection_kube import (
    ARGO_GROUP,
    ARGO_VERSION,
    _body,
    _ensure_crd,
    _meta,
    _template,
)
from tests.integration.test_kube_watch import until_signals
from tests.unit.test_chart_names import render


class Cluster:
    """Admin access to the tests' kube-apiserver over plain HTTP: create what a render holds, review access,
    mint ServiceAccount tokens."""

    def __init__(self, kube: KubeAPIServer) -> None:
        self.kube = kube
        self.http = httpx.Client(base_url=kube.url, verify=ssl.create_default_context(cafile=str(kube.ca_path)),
                                 headers={"Authorization": f"Bearer {kube.admin_token}"}, timeout=30, trust_env=False)
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    def ok(self, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code < 400, f"{response.request.method} {response.request.url}: {response.text[:500]}"
        return dict(response.json())

    def namespace(self, name: str) -> str:
        response = self.http.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert response.status_code in (201, 409), response.text
        return name

    def _path(self, doc: dict[str, Any], namespace: str) -> str | None:
        version = doc["apiVersion"]
        if version not in self._resources:
            response = self.http.get("/api/v1" if version == "v1" else f"/apis/{version}")
            self._resources[version] = {r["kind"]: (r["name"], r["namespaced"]) for r in
                                        (response.json().get("resources", []) if response.status_code == 200 else [])
                                        if "/" not in r["name"]}
        found = self._resources[version].get(doc["kind"])
        if found is None:
            return None  # a kind whose CRD this API server does not have (ServiceMonitor, KafkaTopic)
        plural, namespaced = found
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        if namespaced:
            base += f"/namespaces/{self.namespace(doc['metadata'].get('namespace', namespace))}"
        return f"{base}/{plural}"

    def install(self, docs: list[dict[str, Any]], namespace: str) -> Counter[str]:
        """Create every object (hooks too), as `helm install` would; the kinds created."""
        created: Counter[str] = Counter()
        for doc in docs:
            path = self._path(doc, namespace)
            if path is not None:
                self.ok(self.http.post(path, json=doc))
                created[doc["kind"]] += 1
        return created

    def can(self, account: str, namespace: str, verb: str, group: str, resource: str, where: str = "") -> bool:
        review = service_account_review(account, namespace, verb, group, resource, where)
        return bool(self.ok(self.http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                           json=review))["status"].get("allowed"))

    def token(self, account: str, namespace: str) -> str:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}}
        return str(self.ok(self.http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                                          json=body))["status"]["token"])

    def kubeconfig(self, path: Path, account: str, namespace: str) -> Path:
        """A kubeconfig of the ServiceAccount's token, as the pod's in-cluster config would have it."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "c", "cluster": {"server": self.kube.url,
                                                   "certificate-authority": str(self.kube.ca_path)}}],
            "users": [{"name": "sa", "user": {"token": self.token(account, namespace)}}],
            "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]}))
        return path


@pytest.fixture
def cluster(kube_apiserver: KubeAPIServer) -> Iterator[Cluster]:
    c = Cluster(kube_apiserver)
    yield c
    c.http.close()


def component(docs: list[dict[str, Any]], name: str) -> tuple[str, dict[str, str]]:
    """The ServiceAccount and the plain environment of a component's Deployment."""
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"
                     and d["metadata"]["labels"]["app.kubernetes.io/component"] == name]
    pod = deployment["spec"]["template"]["spec"]
    return pod["serviceAccountName"], {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}


def watch_settings(settings: Settings, env: dict[str, str], kubeconfig: Path, namespace: str) -> Settings:
    """The watcher's settings as its pod would read them (the rendered environment), the test's broker."""
    split = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    return settings.model_copy(update={
        "kubeconfig": str(kubeconfig), "watch_namespaces": split(env["WATCH_NAMESPACES"]),
        "watch_exclude_namespaces": split(env["WATCH_EXCLUDE_NAMESPACES"]),
        "watch_event_apis": split(env["WATCH_EVENT_APIS"]), "watch_lease_name": env["WATCH_LEASE_NAME"],
        "watch_lease_namespace": env["WATCH_LEASE_NAMESPACE"], "watch_lease_duration_s": 4.0,
        "watch_lease_renew_s": 1.0, "watch_lease_retry_s": 0.5, "cluster_name": "test",
        "watch_identity": f"{env['WATCH_LEASE_NAME']}-0", "namespace": namespace})


@pytest.fixture
async def watchers() -> AsyncIterator[list[tuple[WatchService, EventProducer]]]:
    running: list[tuple[WatchService, EventProducer]] = []
    yield running
    for service, producer in running:
        await service.stop()
        await producer.stop()


async def start_watcher(s: Settings, running: list[tuple[WatchService, EventProducer]]) -> WatchService:
    producer = EventProducer(s)
    await producer.start()
    service = WatchService(s, producer)
    running.append((service, producer))
    await service.start()
    return service


async def test_two_releases_in_one_namespace_install_side_by_side_and_both_watch(
        cluster: Cluster, settings: Settings, tmp_path: Path,
        watchers: list[tuple[WatchService, EventProducer]]) -> None:
    namespace = cluster.namespace(unique_name("rel"))
    shop = cluster.namespace(unique_name("shop"))
    releases = {"pipeline": render("pipeline", f"watch.namespaces={{{shop}}}", namespace=namespace),
                "canary": render("canary", f"watch.namespaces={{{shop}}}", "gateway.service.name=",
                                 namespace=namespace)}
    for docs in releases.values():
        created = cluster.install(docs, namespace)  # a name taken twice would answer 409 here
        assert created["Deployment"] == 10 and created["Role"] >= 4
    leases = {}
    for release, docs in releases.items():
        account, env = component(docs, "watch")
        leases[release] = env["WATCH_LEASE_NAME"]
        s = watch_settings(settings, env, cluster.kubeconfig(tmp_path / f"{release}.kubeconfig", account, namespace),
                           namespace)
        await apply(s)
        await start_watcher(s, watchers)
    assert leases == {"pipeline": "pipeline-watch", "canary": "canary-pipeline-watch"}
    for service, _ in watchers:
        await service.wait_synced(60)  # synced: it leads, so each release's watcher works
    for lease in leases.values():
        held = cluster.ok(cluster.http.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}"))
        assert held["spec"]["holderIdentity"] == f"{lease}-0"


async def test_namespace_scoped_rbac_allows_the_listed_namespaces_only_and_the_watcher_works_with_it(
        cluster: Cluster, settings: Settings, tmp_path: Path,
        watchers: list[tuple[WatchService, EventProducer]]) -> None:
    namespace = cluster.namespace(unique_name("rel"))
    shop, other = cluster.namespace(unique_name("shop")), cluster.namespace(unique_name("other"))
    argocd = cluster.namespace(unique_name("argocd"))
    docs = render("pipeline", f"watch.namespaces={{{shop}}}", f"rbac.argocdNamespaces={{{argocd}}}",
                  namespace=namespace)
    cluster.install(docs, namespace)
    watch_sa, watch_env = component(docs, "watch")
    remediate_sa, remediate_env = component(docs, "remediate")
    gateway_sa, _ = component(docs, "gateway")

    def can(account: str, verb: str, group: str, resource: str, where: str = "") -> bool:
        return cluster.can(account, namespace, verb, group, resource, where)

    for verb, group, resource in (("list", "", "pods"), ("watch", "", "pods"), ("list", "apps", "deployments"),
                                  ("list", "", "events"), ("list", "events.k8s.io", "events")):
        assert can(watch_sa, verb, group, resource, shop), (verb, resource)
        assert not can(watch_sa, verb, group, resource, other), (verb, resource)
        assert not can(watch_sa, verb, group, resource), (verb, resource, "cluster-wide")
    assert can(watch_sa, "list", "", "nodes") and can(watch_sa, "watch", "", "nodes")
    assert can(remediate_sa, "delete", "", "pods", shop) and not can(remediate_sa, "delete", "", "pods", other)
    assert can(remediate_sa, "patch", "apps", "deployments", shop)
    assert not can(remediate_sa, "patch", "apps", "deployments", other)
    assert not can(remediate_sa, "list", "", "pods")
    assert can(remediate_sa, "patch", "", "nodes")  # cordon: nodes have no namespace
    assert can(remediate_sa, "patch", "argoproj.io", "applications", argocd)
    assert not can(remediate_sa, "patch", "argoproj.io", "applications", shop)
    assert can(gateway_sa, "get", "", "pods", shop) and not can(gateway_sa, "get", "", "pods", other)
    assert can(gateway_sa, "list", "argoproj.io", "applications", argocd)
    assert not can(gateway_sa, "list", "argoproj.io", "applications")
    no_cluster_wide = [(d["metadata"]["name"], r["resources"]) for d in docs if d["kind"] == "ClusterRole"
                       for r in d["rules"] if set(r["resources"]) - {"nodes", "selfsubjectaccessreviews"}]
    assert no_cluster_wide == []

    # remediate's start-up self-check, under its token with the rendered namespaces: nothing denied.
    assert remediate_env["REMEDIATION_NAMESPACES"] == shop and remediate_env["ARGOCD_NAMESPACES"] == argocd
    config = Configuration(host=cluster.kube.url, api_key={"BearerToken": cluster.token(remediate_sa, namespace)},
                           api_key_prefix={"BearerToken": "Bearer"}, ssl_ca_cert=str(cluster.kube.ca_path))
    async with ApiClient(config) as api:
        check = await KubeRemediator(api).self_check([shop], [argocd])
        cluster_wide = await KubeRemediator(api).self_check()
    assert check["denied"] == [] and "delete pods in " + shop in check["permissions"]
    assert "delete pods" in cluster_wide["denied"]  # asked cluster-wide, the same account is refused

    # The gateway's detection under its token sees the ArgoCD Application in the ArgoCD namespace it was given
    # (ARGOCD_NAMESPACES) and calls the workload GitOps-managed; listing Applications of every namespace, it is
    # refused and takes the same workload for a hand-made one.
    async with cluster.kube.api_client() as admin:
        await _ensure_crd(admin, ARGO_GROUP, ARGO_VERSION, "Application", "applications")
        await AppsV1Api(admin).create_namespaced_deployment(shop, _body({
            "metadata": _meta("web", labels={"app": "web"}),
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _template("web")}}))
        await CustomObjectsApi(admin).create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, argocd, "applications", {
            "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}", "kind": "Application", "metadata": {"name": "shop"},
            "spec": {"destination": {"namespace": shop}, "source": {"repoURL": "https://git.example/shop", "path": "."}},
            "status": {"resources": [{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": shop,
                                      "name": "web"}]}})
    gateway = Configuration(host=cluster.kube.url, api_key={"BearerToken": cluster.token(gateway_sa, namespace)},
                            api_key_prefix={"BearerToken": "Bearer"}, ssl_ca_cert=str(cluster.kube.ca_path))
    async with ApiClient(gateway) as api:
        seen = await Detector(api, application_namespaces=[argocd]).detect(shop, "Deployment", "web")
        unseen = await Detector(api).detect(shop, "Deployment", "web")
    assert seen.method == "argocd" and unseen.method != "argocd"

    # The watcher under its own token: it lists and watches the listed namespace (a cluster-wide list would be
    # refused) and a crash-looping pod there becomes a signal.
    s = watch_settings(settings, watch_env, cluster.kubeconfig(tmp_path / "watch.kubeconfig", watch_sa, namespace),
                       namespace)
    await apply(s)
    service = await start_watcher(s, watchers)
    await service.wait_synced(60)
    async with cluster.kube.api_client() as admin:
        core = CoreV1Api(admin)
        await core.create_namespaced_pod(shop, pod_manifest("cart"))
        await core.patch_namespaced_pod_status("cart", shop, crashloop_status())
    await until_signals(s, Counter({("cart", "CrashLoopBackOff", "firing"): 1}))

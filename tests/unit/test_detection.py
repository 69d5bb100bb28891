"""Deployment-method detection (pure): every rule, their precedence, controller chains, ArgoCD
Applications, operator owners, the engine's JSON, and the TTL cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.domain.detection import (
    AppRef,
    DeploymentInfo,
    OwnerRef,
    ResourceRef,
    TTLCache,
    detect,
    rfc3339,
    to_api,
)

NOW = datetime(2026, 5, 20, 12, 30, 0, tzinfo=UTC)
NS = "shop"


def obj(
    kind: str,
    name: str,
    *,
    api_version: str = "apps/v1",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    owner: dict[str, Any] | None = None,
    namespace: str | None = NS,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}"}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def owned_by(o: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"], "controller": controller}


def application(name: str, *resources: dict[str, str], namespace: str = "argocd") -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "status": {"resources": list(resources)}}


def listed(kind: str, name: str, group: str = "apps", namespace: str = NS) -> dict[str, str]:
    return {"group": group, "version": "v1", "kind": kind, "namespace": namespace, "name": name}


TRACKING = {"argocd.argoproj.io/tracking-id": "shop-app:apps/Deployment:shop/web"}
HELM_ANNOTATIONS = {"meta.helm.sh/release-name": "web-release", "meta.helm.sh/release-namespace": "shop"}
MEMCACHED = obj("Memcached", "cache", api_version="cache.example.com/v1")


# ------------------------------------------------------------------ every rule on the object itself
@pytest.mark.parametrize(
    ("labels", "annotations", "method", "confidence", "source", "details"),
    [
        pytest.param({}, TRACKING, "argocd", 0.95, "annotation:argocd.argoproj.io/tracking-id",
                     {"tracking_id": TRACKING["argocd.argoproj.io/tracking-id"], "app_name": "shop-app",
                      "argocd_app": "shop-app"}, id="tracking-id annotation"),
        pytest.param({"argocd.argoproj.io/instance": "shop-app", "app.kubernetes.io/instance": "shop-app"}, {},
                     "argocd", 0.95, "label:argocd.argoproj.io/instance",
                     {"app_name": "shop-app", "argocd_app": "shop-app"}, id="argocd instance label"),
        pytest.param({"helm.sh/chart": "web-1.2.3", "app.kubernetes.io/managed-by": "Helm"}, HELM_ANNOTATIONS,
                     "helm", 0.90, "annotation:meta.helm.sh/release-name",
                     {"release_name": "web-release", "release_namespace": "shop", "chart": "web-1.2.3",
                      "managed_by": "Helm"}, id="helm release annotation"),
        pytest.param({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web-release",
                      "helm.sh/chart": "web-1.2.3"}, {}, "helm", 0.85, "label:app.kubernetes.io/managed-by",
                     {"managed_by": "Helm", "release_name": "web-release", "release_namespace": "shop",
                      "chart": "web-1.2.3"}, id="managed-by Helm label"),
        pytest.param({"app.kubernetes.io/managed-by": "strimzi-cluster-operator",
                      "app.kubernetes.io/name": "kafka"}, {}, "operator", 0.80,
                     "label:app.kubernetes.io/managed-by",
                     {"operator": "strimzi-cluster-operator", "managed_by": "strimzi-cluster-operator",
                      "operator_name": "kafka"}, id="managed-by operator label"),
        pytest.param({"app": "web", "version": "1.4.2"}, {}, "manual", 0.60, "default",
                     {"reason": "no ArgoCD, Helm or operator markers found", "app": "web", "version": "1.4.2"},
                     id="nothing: manual"),
        pytest.param({"app.kubernetes.io/managed-by": "kustomize"}, {}, "manual", 0.60, "default",
                     {"reason": "no ArgoCD, Helm or operator markers found"}, id="managed-by without operator"),
    ],
)
def test_each_rule_on_a_deployment(
    labels: dict[str, str], annotations: dict[str, str], method: str, confidence: float, source: str,
    details: dict[str, str],
) -> None:
    info = detect(obj("Deployment", "web", labels=labels, annotations=annotations), now=NOW)
    assert (info.method, info.confidence, info.source, info.details) == (method, confidence, source, details)
    assert (info.namespace, info.resource_name, info.resource_kind) == (NS, "web", "Deployment")
    assert info.workload == ResourceRef(api_version="apps/v1", kind="Deployment", namespace=NS, name="web")
    assert info.detected_at == NOW


# ------------------------------------------------------------------ precedence (first match wins)
@pytest.mark.parametrize(
    ("labels", "annotations", "method", "source"),
    [
        pytest.param({"argocd.argoproj.io/instance": "a", "app.kubernetes.io/managed-by": "Helm"},
                     {**TRACKING, **HELM_ANNOTATIONS}, "argocd", "annotation:argocd.argoproj.io/tracking-id",
                     id="tracking-id beats everything"),
        pytest.param({"argocd.argoproj.io/instance": "a"}, HELM_ANNOTATIONS, "argocd",
                     "label:argocd.argoproj.io/instance", id="argocd label beats helm annotation"),
        pytest.param({"app.kubernetes.io/managed-by": "my-operator"}, HELM_ANNOTATIONS, "helm",
                     "annotation:meta.helm.sh/release-name", id="helm annotation beats operator label"),
        pytest.param({"app.kubernetes.io/managed-by": "helm"}, {}, "helm",
                     "label:app.kubernetes.io/managed-by", id="managed-by helm in lower case"),
        pytest.param({"app.kubernetes.io/managed-by": "Helm-Operator"}, {}, "operator",
                     "label:app.kubernetes.io/managed-by", id="an operator whose name has helm in it"),
        pytest.param({"argocd.argoproj.io/instance": ""}, {"argocd.argoproj.io/tracking-id": ""}, "manual",
                     "default", id="empty markers do not count"),
    ],
)
def test_precedence(labels: dict[str, str], annotations: dict[str, str], method: str, source: str) -> None:
    info = detect(obj("Deployment", "web", labels=labels, annotations=annotations), now=NOW)
    assert (info.method, info.source) == (method, source)


def test_confidence_bands_are_the_engines() -> None:
    def band(labels: dict[str, str]) -> str:
        return detect(obj("Deployment", "web", labels=labels), now=NOW).confidence_band

    assert band({"argocd.argoproj.io/instance": "a"}) == "high"
    assert band({"app.kubernetes.io/managed-by": "x-operator"}) == "high"  # 0.80 is high
    assert band({}) == "medium"  # manual 0.60


# ------------------------------------------------------------------ chains: the top workload decides
def test_pod_of_a_helm_deployment_is_helm_and_names_the_deployment() -> None:
    deploy = obj("Deployment", "web", annotations=HELM_ANNOTATIONS, labels={"helm.sh/chart": "web-1.2.3"})
    rs = obj("ReplicaSet", "web-5d4f", owner=owned_by(deploy), labels={"app": "web"})
    pod = obj("Pod", "web-5d4f-x2x", api_version="v1", owner=owned_by(rs), labels={"app": "web"})

    info = detect(pod, chain=[rs, deploy], now=NOW)

    assert (info.method, info.confidence, info.details["release_name"]) == ("helm", 0.90, "web-release")
    assert (info.resource_kind, info.resource_name) == ("Pod", "web-5d4f-x2x")  # what was asked
    assert info.workload == ResourceRef(api_version="apps/v1", kind="Deployment", namespace=NS, name="web")


def test_the_workload_is_looked_at_before_the_pod() -> None:
    """The Deployment says ArgoCD; the pod's own template labels say Helm: ArgoCD owns it."""
    deploy = obj("Deployment", "web", labels={"argocd.argoproj.io/instance": "shop-app"})
    rs = obj("ReplicaSet", "web-5d4f", owner=owned_by(deploy))
    pod = obj("Pod", "web-5d4f-x2x", api_version="v1", owner=owned_by(rs),
              labels={"app.kubernetes.io/managed-by": "Helm"})

    info = detect(pod, chain=[rs, deploy], now=NOW)

    assert (info.method, info.source) == ("argocd", "label:argocd.argoproj.io/instance")
    assert info.application == AppRef(name="shop-app")


def test_the_pod_speaks_when_its_workload_says_nothing() -> None:
    sts = obj("StatefulSet", "db", labels={"app": "db"})
    pod = obj("Pod", "db-0", api_version="v1", owner=owned_by(sts),
              labels={"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "db"})

    info = detect(pod, chain=[sts], now=NOW)

    assert (info.method, info.confidence, info.details["release_name"]) == ("helm", 0.85, "db")
    assert info.workload is not None and info.workload.kind == "StatefulSet"


def test_bare_pod_is_its_own_workload_and_manual() -> None:
    pod = obj("Pod", "debug", api_version="v1", labels={"app": "debug"})
    info = detect(pod, now=NOW)
    assert (info.method, info.details["app"]) == ("manual", "debug")
    assert info.workload == ResourceRef(api_version="v1", kind="Pod", namespace=NS, name="debug")
    assert info.owner is None and info.application is None


def test_job_of_a_cronjob_goes_up_to_the_cronjob() -> None:
    cron = obj("CronJob", "nightly", api_version="batch/v1", annotations=HELM_ANNOTATIONS)
    job = obj("Job", "nightly-2901", api_version="batch/v1", owner=owned_by(cron))
    pod = obj("Pod", "nightly-2901-abc", api_version="v1", owner=owned_by(job))
    info = detect(pod, chain=[job, cron], now=NOW)
    assert info.method == "helm"
    assert info.workload is not None and (info.workload.kind, info.workload.name) == ("CronJob", "nightly")


# ------------------------------------------------------------------ operators: controller owner references
def test_pod_of_a_deployment_owned_by_a_custom_resource_is_operator_with_the_owner() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED),
                 labels={"app.kubernetes.io/managed-by": "memcached-operator", "app.kubernetes.io/name": "memcached"})
    rs = obj("ReplicaSet", "cache-7c9", owner=owned_by(deploy))
    pod = obj("Pod", "cache-7c9-abc", api_version="v1", owner=owned_by(rs))

    info = detect(pod, chain=[rs, deploy, MEMCACHED], now=NOW)

    assert (info.method, info.confidence, info.source) == ("operator", 0.90, "ownerReference:Memcached/cache")
    assert info.owner == OwnerRef(api_version="cache.example.com/v1", kind="Memcached", name="cache", namespace=NS)
    assert info.workload is not None and (info.workload.kind, info.workload.name) == ("Deployment", "cache")
    assert info.details == {
        "operator": "memcached-operator", "managed_by": "memcached-operator", "operator_name": "memcached",
        "owner_kind": "Memcached", "owner_name": "cache", "owner_api_version": "cache.example.com/v1",
    }


def test_owner_reference_counts_even_when_the_custom_resource_could_not_be_read() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED))
    info = detect(deploy, chain=[], now=NOW)  # the walk stopped before the CR
    assert info.method == "operator"
    assert info.owner is not None and info.owner.kind == "Memcached"
    assert info.details["operator"] == "memcached.cache.example.com"


def test_a_cluster_scoped_owner_has_no_namespace() -> None:
    cluster_cr = obj("Cluster", "main", api_version="db.example.com/v1", namespace=None)
    sts = obj("StatefulSet", "main-db", owner=owned_by(cluster_cr))
    info = detect(sts, chain=[cluster_cr], now=NOW)
    assert info.owner == OwnerRef(api_version="db.example.com/v1", kind="Cluster", name="main", namespace=None)


def test_operator_owner_beats_helm_annotations_of_a_helm_based_operator() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED), annotations=HELM_ANNOTATIONS)
    assert detect(deploy, chain=[MEMCACHED], now=NOW).method == "operator"


def test_argocd_markers_beat_the_operator_owner() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED), annotations=TRACKING)
    info = detect(deploy, chain=[MEMCACHED], now=NOW)
    assert info.method == "argocd"
    assert info.owner is None  # only reported for the operator method


@pytest.mark.parametrize(
    ("owner", "method"),
    [
        pytest.param({"apiVersion": "cache.example.com/v1", "kind": "Memcached", "name": "c", "controller": False},
                     "manual", id="not the controller"),
        pytest.param({"apiVersion": "cache.example.com/v1", "kind": "Memcached", "name": "c"},
                     "manual", id="controller unset"),
        pytest.param({"apiVersion": "v1", "kind": "Node", "name": "node-1", "controller": True},
                     "manual", id="a static pod's node"),
        pytest.param({"apiVersion": "batch/v1", "kind": "Job", "name": "j", "controller": True},
                     "manual", id="built-in Job"),
        pytest.param({"apiVersion": "example.com/v1", "kind": "Deployment", "name": "d", "controller": True},
                     "operator", id="a custom kind named Deployment"),
    ],
)
def test_which_owner_references_mean_an_operator(owner: dict[str, Any], method: str) -> None:
    pod = obj("Pod", "p", api_version="v1", owner=owner)
    assert detect(pod, now=NOW).method == method


# ------------------------------------------------------------------ ArgoCD Applications
def test_an_application_listing_the_workload_makes_it_argocd() -> None:
    deploy = obj("Deployment", "web", labels={"app": "web"})
    apps = [application("other", listed("Deployment", "web", namespace="elsewhere")),
            application("shop", listed("Service", "web", group=""), listed("Deployment", "web"))]

    info = detect(deploy, applications=apps, now=NOW)

    assert (info.method, info.confidence, info.source) == ("argocd", 0.95, "argocd-application:shop")
    assert info.application == AppRef(name="shop", namespace="argocd")
    assert info.details == {"argocd_app": "shop", "app_name": "shop"}


def test_an_application_found_through_a_pods_chain() -> None:
    deploy = obj("Deployment", "web")
    rs = obj("ReplicaSet", "web-5d4f", owner=owned_by(deploy))
    pod = obj("Pod", "web-5d4f-x2x", api_version="v1", owner=owned_by(rs))
    info = detect(pod, chain=[rs, deploy], applications=[application("shop", listed("Deployment", "web"))], now=NOW)
    assert (info.method, info.application) == ("argocd", AppRef(name="shop", namespace="argocd"))


def test_application_beats_helm_and_enriches_label_detection() -> None:
    deploy = obj("Deployment", "web", annotations=HELM_ANNOTATIONS)
    apps = [application("shop", listed("Deployment", "web"), namespace="team-a")]
    assert detect(deploy, applications=apps, now=NOW).method == "argocd"

    labelled = obj("Deployment", "web", labels={"argocd.argoproj.io/instance": "shop"})
    info = detect(labelled, applications=apps, now=NOW)
    assert info.source == "label:argocd.argoproj.io/instance"  # the engine's source is kept
    assert info.application == AppRef(name="shop", namespace="team-a")  # the namespace comes from the Application


def test_applications_that_do_not_list_the_workload_change_nothing() -> None:
    deploy = obj("Deployment", "web")
    apps = [application("shop", listed("StatefulSet", "web")), application("none"),
            {"metadata": {"name": "broken"}, "status": {"resources": None}}]
    assert detect(deploy, applications=apps, now=NOW).method == "manual"


def test_operator_whose_custom_resource_is_in_an_application() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED))
    apps = [application("caches", listed("Memcached", "cache", group="cache.example.com"))]
    info = detect(deploy, chain=[MEMCACHED], applications=apps, now=NOW)
    assert info.method == "operator"
    assert info.application == AppRef(name="caches", namespace="argocd")


@pytest.mark.parametrize(
    ("instance", "app"),
    [("shop-app", AppRef(name="shop-app")), ("team-a_shop", AppRef(name="shop", namespace="team-a"))],
)
def test_application_named_by_the_instance_label(instance: str, app: AppRef) -> None:
    info = detect(obj("Deployment", "web", labels={"argocd.argoproj.io/instance": instance}), now=NOW)
    assert info.application == app
    assert info.details["argocd_app"] == app.name


def test_application_named_by_the_tracking_id_alone() -> None:
    tracking = {"argocd.argoproj.io/tracking-id": "team-a_shop:apps/Deployment:shop/web"}
    info = detect(obj("Deployment", "web", annotations=tracking), now=NOW)
    assert info.application == AppRef(name="shop", namespace="team-a")
    assert info.details["app_name"] == "team-a_shop"


# ------------------------------------------------------------------ the engine's JSON
def test_to_api_is_the_engines_shape_plus_ours() -> None:
    deploy = obj("Deployment", "cache", owner=owned_by(MEMCACHED))
    body = to_api(detect(deploy, chain=[MEMCACHED], now=NOW))
    assert list(body)[:8] == ["method", "confidence", "source", "details", "detected_at", "namespace",
                              "resource_name", "resource_kind"]
    assert body["detected_at"] == "2026-05-20T12:30:00Z"
    assert body["workload"] == {"api_version": "apps/v1", "kind": "Deployment", "namespace": NS, "name": "cache"}
    assert body["owner"] == {"api_version": "cache.example.com/v1", "kind": "Memcached", "name": "cache",
                             "namespace": NS}
    assert body["application"] is None
    assert DeploymentInfo.model_validate(body).method == "operator"  # and it reads back


def test_rfc3339() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    offset = datetime(2026, 1, 2, 5, 4, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(offset) == "2026-01-02T05:04:05Z"


def test_garbage_does_not_crash() -> None:
    weird: dict[str, Any] = {"kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1, "b": None},
                                                         "ownerReferences": ["x", {"controller": True}]}}
    info = detect(weird, chain=[{}], applications=[{"status": "x"}, "nope"], now=NOW)  # type: ignore[list-item]
    assert info.method == "manual"


# ------------------------------------------------------------------ cache
def test_ttl_cache_expires_and_counts() -> None:
    cache: TTLCache[str, int] = TTLCache(300)
    cache.put("deployment/shop/web", 1, NOW)
    cache.put("pod/shop/p", 2, NOW + timedelta(seconds=200))
    assert cache.get("deployment/shop/web", NOW + timedelta(seconds=299)) == 1
    later = NOW + timedelta(seconds=300)
    assert cache.stats(later) == {"total_entries": 2, "valid_entries": 1, "expired_entries": 1, "ttl_seconds": 300}
    assert cache.get("deployment/shop/web", later) is None  # expired: gone
    assert cache.stats(later)["total_entries"] == 1
    assert cache.clear() == 1
    assert cache.stats(later) == {"total_entries": 0, "valid_entries": 0, "expired_entries": 0, "ttl_seconds": 300}
    with pytest.raises(ValueError):
        TTLCache(0)

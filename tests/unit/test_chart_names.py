"""Names the chart derives from the release (the real `helm template`): with the longest release name helm takes,
or a long fullnameOverride, every object's name and every label value stays a valid Kubernetes name of at most
63 characters and every object keeps a name of its own; two releases in one namespace share no object and no
Lease, so both watchers lead."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_chart_audit import _helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "pipeline"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# Every optional object on, Roles in other namespaces (namespace-scoped RBAC), ArgoCD's namespace.
EVERYTHING = ["audit.enabled=true", "serviceMonitor.enabled=true", "prometheusRule.enabled=true",
              "grafanaDashboard.enabled=true", "watch.namespaces={shop,payments}", "rbac.argocdNamespaces={argocd}",
              "prometheus.url=https://thanos:9091", "prometheus.useServiceAccountToken=true",
              "prometheus.openshiftMonitoringView=true"]


def helm_template(release: str, *sets: str, namespace: str = "alerts") -> subprocess.CompletedProcess[str]:
    args = [_helm(), "template", release, str(CHART), "--namespace", namespace, "--kube-version", "1.31.0",
            "--set", "kafka.bootstrapServers=kafka:9092"]
    for value in sets:
        args += ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def render(release: str, *sets: str, namespace: str = "alerts") -> list[dict[str, Any]]:
    done = helm_template(release, *sets, namespace=namespace)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    """Every label of the object, of its pod template and of its selector."""
    out = dict(doc["metadata"].get("labels") or {})
    spec = doc.get("spec") or {}
    out.update(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    selector = spec.get("selector") or {}
    out.update(selector.get("matchLabels") or (selector if doc["kind"] == "Service" else {}))
    return out


def where(doc: dict[str, Any], namespace: str = "alerts") -> tuple[str, str, str]:
    cluster_scoped = doc["kind"] in ("ClusterRole", "ClusterRoleBinding")
    return doc["kind"], "" if cluster_scoped else doc["metadata"].get("namespace", namespace), doc["metadata"]["name"]


def assert_valid_names(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63, f"{doc['kind']} {name}: {len(name)} characters"
        pattern = DNS_SUBDOMAIN if doc["kind"] == "KafkaTopic" else DNS_LABEL  # topic names keep their dots
        assert pattern.fullmatch(name), f"{doc['kind']} {name} is not a DNS-1123 name"
        for key, value in _labels(doc).items():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"{doc['kind']} {name}: label {key}={value}"
    counts = Counter(where(d) for d in docs)
    assert [k for k, n in counts.items() if n > 1] == []


def test_the_longest_release_name_helm_takes_gives_valid_distinct_names() -> None:
    longest = "r" * 53  # helm's own limit on a release name
    refused = helm_template(longest + "x")
    assert refused.returncode != 0 and "53" in refused.stderr  # 54 characters: helm, not the chart, says no
    docs = render(longest, *EVERYTHING)
    assert len(docs) > 40
    assert_valid_names(docs)
    names = {d["metadata"]["name"] for d in docs}
    # Names past 63 characters (e.g. <fullname>-correlate-metrics) keep their suffix after the fullname cut short
    # and a hash of it; those that fit are kept as they are.
    services = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["metadata"]["name"]
                for d in docs if d["kind"] == "Service"}
    assert re.fullmatch(r"r{36}-[0-9a-f]{8}-correlate-metrics", services["correlate"]), services["correlate"]
    assert len(set(services.values())) == len(services)
    assert f"{longest}-pipeline" in names  # the fullname, 62 characters (ServiceAccount, Role): as it is
    # The Lease the watcher uses is the one its Role grants.
    (watch,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "watch"]
    env = {e["name"]: e.get("value") for e in watch["spec"]["template"]["spec"]["containers"][0]["env"]}
    (lease_role,) = [d for d in docs if d["kind"] == "Role" and any("leases" in r["resources"] for r in d["rules"])]
    assert [env["WATCH_LEASE_NAME"]] in [r.get("resourceNames") for r in lease_role["rules"]]
    assert len(env["WATCH_LEASE_NAME"]) <= 63


def test_a_long_fullname_override_and_two_long_releases_that_differ_past_the_cut() -> None:
    assert_valid_names(render("rel", f"fullnameOverride={'f' * 70}", *EVERYTHING))
    first = render("x" * 52 + "a", *EVERYTHING)
    second = render("x" * 52 + "b", *EVERYTHING, "gateway.service.name=")
    assert {where(d) for d in first} & {where(d) for d in second} == set()


def lease(docs: list[dict[str, Any]]) -> str:
    (watch,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "watch"]
    env = {e["name"]: e.get("value") for e in watch["spec"]["template"]["spec"]["containers"][0]["env"]}
    return str(env["WATCH_LEASE_NAME"])


def test_two_releases_in_one_namespace_have_a_lease_each_and_no_object_in_common() -> None:
    one = render("pipeline")
    two = render("canary", "gateway.service.name=")  # the gateway Service name is one per namespace (docs)
    assert lease(one) == "pipeline-watch"  # a release named pipeline keeps the Lease of earlier charts
    assert lease(two) == "canary-pipeline-watch"
    assert {where(d) for d in one} & {where(d) for d in two} == set()
    assert lease(render("canary", "gateway.service.name=", "watch.lease.name=shared-watch")) == "shared-watch"

"""The demo's scenario: its settings, the test cluster's workloads and the Prometheus history they match."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.domain.quantity import format_quantity
from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    DEFAULT_DURATION_S,
    DEFAULT_STEP_S,
    DEPLOYMENTS,
    PODS,
    History,
    generate_history,
    render_openmetrics,
)

HORIZON_S = 1800  # the history runs this far past the start: ~6 of the crash loop's 12 restarts are still ahead
IMAGE = "registry.example/demo"
CRASHY_PROGRESS_DEADLINE_S = 5  # the bad release is reported stuck (ProgressDeadlineExceeded) this soon
TEMPORARY_MARK = ".pipeline-demo-temporary"  # in a data dir the demo made itself: removed at exit
SCRIPT_TIMEOUT_S = 120.0  # how long the script waits for each part of the story before it says what it has
FINAL = frozenset({"completed", "failed", "skipped", "rejected", "cancelled", "superseded"})
BUILD_HINT = "bash scripts/build-kube-apiserver.sh (~10 min once; scripts/setup runs it)"


# --- settings ------------------------------------------------------------------------------------------------------


def demo_settings(settings: Settings, *, keep_data: bool) -> Settings:
    """The demo's settings: its own embedded broker, Prometheus and cluster (set by `Demo.start`), never the user's
    Kafka, cluster, Alertmanager or ML service, and a fresh temporary data dir unless `keep_data` (`--data-dir`)."""
    update: dict[str, Any] = {
        "kafka_bootstrap_servers": "", "kubeconfig": "", "kube_context": "", "kubernetes_service_host": "",
        "kube_watch": False, "watch_namespaces": [], "watch_exclude_namespaces": [], "remediation_namespaces": [],
        "argocd_namespaces": [], "alertmanager_url": "", "prometheus_url": "", "ml_service_url": "",
        "kserve_entries": {},
    }
    if not keep_data:
        data_dir = Path(tempfile.mkdtemp(prefix="pipeline-demo-"))
        (data_dir / TEMPORARY_MARK).write_text("made by `pipeline run --demo`; removed when it stops\n")
        update["data_dir"] = data_dir
    return settings.model_copy(update=update)


# --- the cluster's workloads ---------------------------------------------------------------------------------------


def _cores(value: float) -> str:
    return f"{round(value * 1000)}m"


def workload_manifests() -> list[dict[str, Any]]:
    """One apps/v1 Deployment per workload of the history (same namespace, name, replicas, container name, requests
    and limits), selecting `app=<name>`; their pods have no `nodeName` (the scheduler binds them to kwok's node)."""
    manifests = []
    for namespace, name, replicas in DEPLOYMENTS:
        spec = next(p for p in PODS if p.deployment == name)
        resources = {
            "requests": {"cpu": _cores(spec.cpu_request_cores), "memory": format_quantity(spec.memory_request_bytes)},
            "limits": {"cpu": _cores(spec.cpu_limit_cores), "memory": format_quantity(spec.memory_limit_bytes)},
        }
        deployment: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {
                "replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                        {"name": spec.container, "image": f"{IMAGE}/{name}:1.0", "resources": resources}]},
                },
            },
        }
        if name == CRASHY_DEPLOYMENT:
            deployment["spec"]["progressDeadlineSeconds"] = CRASHY_PROGRESS_DEADLINE_S
        manifests.append(deployment)
    return manifests


def bad_release() -> dict[str, Any]:
    """The strategic-merge patch that makes `payments/crashy`'s release 1.1: its pods crash-loop (kwok's
    `crashloop=true` stage). Release 1.0 keeps running beside it (a rolling update waits for 1.1 to be ready)."""
    return {"spec": {"template": {
        "metadata": {"labels": {"crashloop": "true"}},
        "spec": {"containers": [{"name": CRASHY_DEPLOYMENT, "image": f"{IMAGE}/{CRASHY_DEPLOYMENT}:1.1"}]},
    }}}


def cast(pods: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Which cluster pod plays which history pod: `pods` lists each deployment's pods (for crashy: the crash-looping
    release's). Pods are taken in name order; a deployment without pods keeps the history's names."""
    names: dict[str, str] = {}
    for deployment, history_pods in ((d, [p.pod for p in PODS if p.deployment == d]) for _, d, _ in DEPLOYMENTS):
        for old, new in zip(history_pods, sorted(pods.get(deployment, ())), strict=False):
            names[old] = new
    return names


# --- the history ---------------------------------------------------------------------------------------------------


def demo_history(now: float) -> History:
    """The scenario cluster from 3 h before `now` to `HORIZON_S` after it (instant queries see it until `end` + 5 min)."""
    start = now - now % DEFAULT_STEP_S
    return generate_history(start + HORIZON_S, duration_s=DEFAULT_DURATION_S + HORIZON_S)


def rename_pods(history: History, names: Mapping[str, str]) -> History:
    """The same history with its pods renamed (`names`: history pod -> new name), their ReplicaSets
    (`created_by_name`) with them; every other label and every sample unchanged."""
    if not names:
        return history
    replicasets = {old.rsplit("-", 1)[0]: new.rsplit("-", 1)[0] for old, new in names.items()}
    renames = {"pod": names, "created_by_name": replicasets}

    def relabel(labels: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        return frozenset((k, renames[k].get(v, v) if k in renames else v) for k, v in labels)

    samples = {(name, relabel(labels)): values for (name, labels), values in history.samples.items()}
    return dataclasses.replace(history, samples=samples, openmetrics=render_openmetrics(samples))



"""The story the demo tells through the real routes: Alertmanager webhooks, their resolution, an anomaly report."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pipeline.domain.quantity import format_quantity
from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    CRASHY_NAMESPACE,
    CRASHY_POD,
    LEAKY_DEPLOYMENT,
    LEAKY_MEMORY_LIMIT_BYTES,
    LEAKY_NAMESPACE,
    LEAKY_POD,
    THROTTLED_DEPLOYMENT,
    THROTTLED_FRACTION,
    THROTTLED_NAMESPACE,
    THROTTLED_POD,
    History,
)

# --- the script ----------------------------------------------------------------------------------------------------


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint is a hash of the label set: the same alert has the same one when it resolves."""
    text = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alert(labels: dict[str, str], summary: str, expr: str, prometheus_url: str, starts_at: datetime
           ) -> dict[str, Any]:
    return {"status": "firing", "labels": labels, "annotations": {"summary": summary},
            "startsAt": iso(starts_at), "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"{prometheus_url}/graph?g0.expr={quote(expr)}&g0.tab=1",
            "fingerprint": _fingerprint(labels)}


def _webhook(alerts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """A version 4 webhook as Alertmanager groups it (by alertname and namespace), shaped like
    tests/data/alertmanager-webhook-*.json."""
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    group = {k: common[k] for k in ("alertname", "namespace") if k in common}
    return {"receiver": "pipeline", "status": status, "alerts": alerts, "groupLabels": group, "commonLabels": common,
            "commonAnnotations": {}, "externalURL": "http://alertmanager.demo:9093", "version": "4",
            "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}", "truncatedAlerts": 0}


def firing_webhooks(history: History, names: Mapping[str, str], prometheus_url: str, now: datetime
                    ) -> list[dict[str, Any]]:
    """What Alertmanager would send about the history's pods (`names`: their names in the cluster), each matching a
    rule of rules/remediation.yaml: payments/crashy crash-looping (KubePodCrashLooping: restart_pod) and shop/leaky
    near its memory limit (ContainerMemoryHigh: scale_resources). `history` is the one before renaming."""
    crashy, leaky = names.get(CRASHY_POD, CRASHY_POD), names.get(LEAKY_POD, LEAKY_POD)
    at = now.timestamp()
    restarts = [t for t in history.crashy_restart_times if t <= at]
    recent = sum(1 for t in restarts if t > at - 900)
    memory = history.instant("container_memory_working_set_bytes", at, pod=LEAKY_POD) or 0.0
    crash = _alert(
        {"alertname": "KubePodCrashLooping", "namespace": CRASHY_NAMESPACE, "pod": crashy,
         "container": CRASHY_DEPLOYMENT, "severity": "warning"},
        f"Pod {CRASHY_NAMESPACE}/{crashy} is crash looping ({recent} restarts in 15m)",
        "increase(kube_pod_container_status_restarts_total[15m]) > 2", prometheus_url,
        datetime.fromtimestamp(restarts[0], UTC) if restarts else now)
    near = _alert(
        {"alertname": "ContainerMemoryHigh", "namespace": LEAKY_NAMESPACE, "pod": leaky,
         "container": LEAKY_DEPLOYMENT, "severity": "critical"},
        f"{LEAKY_NAMESPACE}/{leaky} memory at {memory / LEAKY_MEMORY_LIMIT_BYTES:.0%} of its "
        f"{format_quantity(LEAKY_MEMORY_LIMIT_BYTES)} limit and growing",
        'container_memory_working_set_bytes / on (namespace, pod, container) group_left () '
        'kube_pod_container_resource_limits{resource="memory"} > 0.8', prometheus_url, now - timedelta(minutes=10))
    return [_webhook([crash], "firing"), _webhook([near], "firing")]


def resolved_webhook(webhook: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The same alerts resolved (same fingerprints and start, `endsAt` now), as Alertmanager sends them."""
    alerts = [{**a, "status": "resolved", "endsAt": iso(now)} for a in webhook["alerts"]]
    return {**webhook, "status": "resolved", "alerts": alerts}


def anomaly_report(now: datetime, names: Mapping[str, str]) -> dict[str, Any]:
    """An anomaly report (the Python engine's API) about payments/throttled (`names`: the history's pods in the
    cluster): its rule (cpu-throttling) would raise memory, the report recommends scaling out at confidence 0.75 — an
    AI-driven proposal below the default approval threshold (0.8), so its workflow waits for a human."""
    pod = names.get(THROTTLED_POD, THROTTLED_POD)
    return {"type": "high_cpu", "severity": "medium", "confidence_score": 0.75, "namespace": THROTTLED_NAMESPACE,
            "resource": f"Deployment/{THROTTLED_DEPLOYMENT}", "recommended_action": "scale_replicas",
            "title": f"{THROTTLED_NAMESPACE}/{THROTTLED_DEPLOYMENT} CPU pinned at its limit",
            "description": f"{pod} spends {THROTTLED_FRACTION:.0%} of its CFS periods throttled",
            "metrics": {"cpu_throttled_fraction": THROTTLED_FRACTION}, "source": "demo", "timestamp": iso(now)}



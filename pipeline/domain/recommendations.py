"""Recommendations (the engine's R7): issues seen repeatedly in the incident history, and the model's
verdict on the current feature vector. Pure: the gateway supplies incidents and the model's answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pipeline.domain.features import FeatureVector
from pipeline.domain.scoring import ModelScore
from pipeline.events import Incident

HISTORY_LIMIT = 100
TIMEFRAMES = {"1h": timedelta(minutes=30), "6h": timedelta(hours=3), "24h": timedelta(hours=12)}


_ACTIONS = {
    "pod_crash_loop": ["check_container_logs", "verify_resource_limits", "review_health_probes"],
    "memory_pressure": ["increase_memory_limit", "add_horizontal_scaling", "optimize_memory_usage"],
    "cpu_throttling": ["increase_cpu_limit", "optimize_cpu_usage", "consider_vertical_scaling"],
    "high": ["investigate_root_cause", "increase_resources", "review_deployment_config"],
    "critical": ["immediate_investigation", "scale_resources", "contact_on_call"],
}
_DEFAULT_ACTIONS = ["investigate_issue", "review_logs", "check_metrics"]


def _by_count(count: int) -> tuple[str, float]:
    """The engine's severity and confidence of an issue seen `count` times."""
    for least, severity, confidence in ((10, "critical", 0.95), (5, "high", 0.85), (3, "medium", 0.75)):
        if count >= least:
            return severity, confidence
    return "low", 0.65


def _by_level(value: float) -> str:
    for least, severity in ((0.9, "critical"), (0.8, "high"), (0.7, "medium")):
        if value >= least:
            return severity
    return "low"


def historical_recommendations(incidents: Iterable[Incident], namespace: str) -> list[dict[str, Any]]:
    """Issues seen at least twice among the newest incidents (of `namespace` when given), per namespace."""
    scoped = [i for i in incidents if not namespace or (i.namespace or i.target) == namespace]
    newest = sorted(scoped, key=lambda i: i.created_at, reverse=True)[:HISTORY_LIMIT]
    keys = [((i.issue_type or i.severity.value), (i.namespace or i.target)) for i in newest]
    latest = {key: incident.id for key, incident in reversed(list(zip(keys, newest, strict=True)))}
    recs: list[dict[str, Any]] = []
    for (issue, where), count in sorted(Counter(keys).items(), key=lambda kv: (-kv[1], kv[0])):
        if count < 2 or not issue or not where:
            continue
        severity, confidence = _by_count(count)
        recs.append(
            {
                "id": f"rec-hist-{len(recs) + 1:03d}",
                "type": "proactive",
                "issue_type": issue,
                "target": where,
                "namespace": where,
                "severity": severity,
                "confidence": confidence,
                "recommended_actions": _ACTIONS.get(issue, _DEFAULT_ACTIONS),
                "evidence": [
                    f"Issue occurred {count} times in recent history",
                    f"Pattern detected in namespace: {where}",
                ],
                "source": "historical_analysis",
                "related_incident_id": latest[(issue, where)],
            }
        )
    return recs


def ml_recommendation(
    vector: FeatureVector, score: ModelScore, timeframe: str, namespace: str, now: datetime
) -> dict[str, Any] | None:
    """A recommendation when the anomaly-detector flags the vector (-1); None when it is normal."""
    if score.prediction != -1:
        return None
    cpu = vector.get("node_cpu_utilization_value") or 0.0
    memory = vector.get("node_memory_utilization_value") or 0.0
    issue, level = ("memory_pressure", memory) if memory > cpu else ("cpu_throttling", cpu)
    confidence = score.confidence if score.confidence is not None else min(0.7 + 0.25 * max(cpu, memory), 0.95)
    evidence = [
        f"{score.model} flags the current 45-feature vector as anomalous",
        f"Node CPU utilisation {cpu * 100:.1f}%, node memory utilisation {memory * 100:.1f}%",
    ]
    if score.score is not None:
        evidence.append(f"Anomaly score {score.score:.3f}")
    return {
        "id": "rec-ml-001",
        "type": "proactive",
        "issue_type": issue,
        "target": namespace or "cluster-resources",
        "namespace": namespace,
        "severity": _by_level(level),
        "confidence": round(confidence, 4),
        "predicted_time": (now + TIMEFRAMES[timeframe]).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "recommended_actions": _ACTIONS[issue],
        "evidence": evidence,
        "source": "ml_prediction",
    }

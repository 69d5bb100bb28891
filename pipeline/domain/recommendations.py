"""Recommendations (the engine's R7): issues seen repeatedly in the incident history, and the model's
verdict on the current feature vector. Pure: the gateway supplies incidents, the model's answer and the
per-pod findings of the analysis rules (`pipeline.domain.analysis`).

The model says *that* a namespace's vector is anomalous, not *what* is wrong: when it flags the vector,
the issue type comes from the per-pod findings over the timeframe (memory leak, crash loop, CPU
throttling), one recommendation per issue found, strongest first. The engine typed it `memory_pressure`
or `cpu_throttling` from node CPU vs node memory alone, so a namespace with a leaking pod on a busy node
got "increase the CPU limit". When the model flags the vector and no rule explains it, the issue type is
`ml_anomaly` with investigation actions, and the evidence says what was checked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline.domain.analysis import Finding
from pipeline.domain.features import FeatureVector
from pipeline.domain.scoring import ModelScore
from pipeline.events import IncidentRow

HISTORY_LIMIT = 100
TIMEFRAMES = {"1h": timedelta(minutes=30), "6h": timedelta(hours=3), "24h": timedelta(hours=12)}


_ACTIONS = {
    "pod_crash_loop": ["check_container_logs", "verify_resource_limits", "review_health_probes"],
    "memory_pressure": ["increase_memory_limit", "add_horizontal_scaling", "optimize_memory_usage"],
    "cpu_throttling": ["increase_cpu_limit", "optimize_cpu_usage", "consider_vertical_scaling"],
    "memory_leak": ["investigate_memory_leak", "increase_memory_limit", "schedule_rolling_restart"],
    "high": ["investigate_root_cause", "increase_resources", "review_deployment_config"],
    "critical": ["immediate_investigation", "scale_resources", "contact_on_call"],
}
_DEFAULT_ACTIONS = ["investigate_issue", "review_logs", "check_metrics"]
# The analysis rules' findings that name an issue, by the metric they are about.
ISSUE_OF_FINDING = {
    "pod_memory_usage": "memory_leak",
    "container_restart_count": "pod_crash_loop",
    "cpu_throttle_rate": "cpu_throttling",
}
UNEXPLAINED = "ml_anomaly"


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


def historical_recommendations(incidents: Iterable[IncidentRow], namespace: str) -> list[dict[str, Any]]:
    """Issues seen at least twice among the newest incidents (of `namespace` when given), per namespace."""
    scoped = [i for i in incidents if not namespace or (i.namespace or i.target) == namespace]
    newest = sorted(scoped, key=lambda i: (i.created, i.id), reverse=True)[:HISTORY_LIMIT]
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


def ml_recommendations(
    vector: FeatureVector,
    score: ModelScore,
    timeframe: str,
    namespace: str,
    now: datetime,
    findings: Sequence[Finding] | None,
    findings_error: str = "",
) -> list[dict[str, Any]]:
    """When the anomaly-detector flags the vector (-1): one recommendation per issue the rules found (per
    namespace when the request names none), strongest first; else one `ml_anomaly` recommendation.
    `findings` None means the rules could not be evaluated (`findings_error` says why). Normal: []."""
    if score.prediction != -1:
        return []
    model_evidence = [f"{score.model} flags the current 45-feature vector as anomalous"]
    if score.score is not None:
        model_evidence.append(f"Anomaly score {score.score:.3f}")
    predicted = (now + TIMEFRAMES[timeframe]).strftime("%Y-%m-%dT%H:%M:%SZ")
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in sorted(findings or (), key=lambda f: (-f.anomaly_score, f.namespace, f.pod)):
        issue = ISSUE_OF_FINDING.get(finding.metric)
        if issue and (not namespace or finding.namespace == namespace):
            groups.setdefault((issue, finding.namespace), []).append(finding)
    recs: list[dict[str, Any]] = []
    for (issue, where), found in groups.items():
        top = found[0]
        recs.append(
            {
                "id": f"rec-ml-{len(recs) + 1:03d}",
                "type": "proactive",
                "issue_type": issue,
                "target": where,
                "namespace": where,
                "severity": top.severity,
                "confidence": round(top.confidence, 4),
                "predicted_time": predicted,
                "recommended_actions": _ACTIONS[issue],
                "evidence": [*model_evidence, *(f.message or f.explanation for f in found)],
                "pods": [f.pod for f in found],
                "source": "ml_prediction",
            }
        )
    if recs:
        return recs
    cpu = vector.get("node_cpu_utilization_value")
    memory = vector.get("node_memory_utilization_value")
    scope = f"namespace {namespace}" if namespace else "the cluster"
    if findings is None:
        checked = f"The per-pod rules could not be evaluated ({findings_error or 'no metrics source'})"
    else:
        checked = (
            f"No pod in {scope} shows a memory leak, crash loop or CPU throttling over the last {timeframe}"
        )
    evidence = [*model_evidence, checked]
    if cpu is not None and memory is not None:
        evidence.append(f"Node CPU utilisation {cpu * 100:.1f}%, node memory utilisation {memory * 100:.1f}%")
    # Without the model's own numbers, the engine's: severity and confidence from the busier node resource.
    node = max(cpu or 0.0, memory or 0.0)
    level = score.score if score.score is not None else node
    confidence = score.confidence if score.confidence is not None else min(0.7 + 0.25 * node, 0.95)
    return [
        {
            "id": "rec-ml-001",
            "type": "proactive",
            "issue_type": UNEXPLAINED,
            "target": namespace or "cluster-resources",
            "namespace": namespace,
            "severity": _by_level(level),
            "confidence": round(confidence, 4),
            "predicted_time": predicted,
            "recommended_actions": _DEFAULT_ACTIONS,
            "evidence": evidence,
            "source": "ml_prediction",
        }
    ]

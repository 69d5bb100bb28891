"""What a score means for an incident: verdict, recommended actions, or why we fell back to rules.

The model sees the 45-feature vector only when every value is present (a model never saw invented
defaults); otherwise, or when the ML dependency is unavailable, the result is "degraded: rules only" with
the reason, and the rule-based actions still come from the features that are present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MEMORY_PRESSURE = 0.9  # working set / limit
CPU_SATURATED = 0.9  # node CPU utilisation
RESTARTS_CHANGED = 1.0  # restarts within the last 5 minutes (value - lag_5)


@dataclass(frozen=True, slots=True)
class ModelScore:
    """What a model answered for one vector."""

    model: str
    version: str
    prediction: int  # -1 anomaly, 1 normal (the KServe sklearn convention)
    score: float | None  # 0..1, higher is more anomalous; None when the model gives only -1/1
    confidence: float | None  # 0..1; None when the model does not say


@dataclass(frozen=True, slots=True)
class Action:
    action: str
    confidence: float
    reason: str


@dataclass
class Verdict:
    verdict: str  # anomaly | normal | degraded
    actions: list[Action] = field(default_factory=list)
    degraded_reason: str | None = None


def model_input(values: list[float | None], missing: Mapping[str, str]) -> tuple[list[float] | None, str | None]:
    """The vector to send, or why none can be sent."""
    if missing or any(v is None for v in values):
        return None, f"{len(missing) or sum(v is None for v in values)} of 45 features missing"
    return [float(v) for v in values if v is not None], None


def rule_actions(features: Mapping[str, float | None]) -> list[Action]:
    """Deterministic suggestions from the features that are present (documented thresholds)."""
    actions = []
    memory = features.get("pod_memory_usage_value")
    restarts = features.get("container_restart_count_value")
    restarts_before = features.get("container_restart_count_lag_5")
    node_cpu = features.get("node_cpu_utilization_value")
    if memory is not None and memory >= MEMORY_PRESSURE:
        actions.append(Action("scale_resources", 0.8, f"memory at {memory:.0%} of the limit"))
    if restarts is not None and restarts_before is not None and restarts - restarts_before >= RESTARTS_CHANGED:
        actions.append(Action("restart_pod", 0.75, f"{restarts - restarts_before:.0f} restarts in 5 minutes"))
    if node_cpu is not None and node_cpu >= CPU_SATURATED:
        actions.append(Action("investigate_node", 0.7, f"node CPU at {node_cpu:.0%}"))
    return actions


def decide(score: ModelScore | None, features: Mapping[str, float | None], degraded_reason: str | None) -> Verdict:
    """Combine the model's answer (if any) with the rules."""
    rules = rule_actions(features)
    if score is None:
        return Verdict("degraded", rules, degraded_reason or "no model answer")
    if score.prediction == -1:
        strong = score.score is None or score.score >= 0.8
        said = f"scored {score.score:.2f}" if score.score is not None else "predicted -1"
        ml = Action("immediate_investigation" if strong else "schedule_review",
                    score.confidence if score.confidence is not None else 0.5,
                    f"{score.model} {score.version} {said}")
        return Verdict("anomaly", [ml, *rules])
    return Verdict("normal", rules)

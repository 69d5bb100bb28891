"""Scoring decisions: what is sent to a model, verdicts, rule actions, degraded results."""

from __future__ import annotations

from pipeline.domain.features import FEATURE_NAMES
from pipeline.domain.scoring import ModelScore, decide, model_input, rule_actions

FULL = [0.5] * 45


def test_only_complete_vectors_reach_a_model() -> None:
    assert model_input(FULL, {}) == (FULL, None)
    partial = [*FULL[:-1], None]
    vector, reason = model_input(partial, {FEATURE_NAMES[-1]: "no sample"})
    assert vector is None and reason == "1 of 45 features missing"


def test_anomaly_verdict_carries_the_model_action_first() -> None:
    score = ModelScore("anomaly-detector", "v1", -1, 0.91, 0.8)
    verdict = decide(score, {"pod_memory_usage_value": 0.95}, None)
    assert verdict.verdict == "anomaly"
    assert [a.action for a in verdict.actions] == ["immediate_investigation", "scale_resources"]
    assert verdict.degraded_reason is None


def test_normal_and_degraded() -> None:
    assert decide(ModelScore("m", "v", 1, 0.1, 0.9), {}, None).verdict == "normal"
    degraded = decide(None, {"container_restart_count_value": 12.0, "container_restart_count_lag_5": 11.0},
                      "circuit open")
    assert degraded.verdict == "degraded" and degraded.degraded_reason == "circuit open"
    assert [a.action for a in degraded.actions] == ["restart_pod"]


def test_rule_thresholds() -> None:
    assert rule_actions({}) == []
    assert rule_actions({"pod_memory_usage_value": 0.89}) == []
    assert [a.action for a in rule_actions({"node_cpu_utilization_value": 0.95})] == ["investigate_node"]

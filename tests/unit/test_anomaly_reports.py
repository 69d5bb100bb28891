"""The Python engine's anomaly body: field aliases, the resource it names, its layer and its action."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.adapters.rules import load_rules
from pipeline.events import Severity
from pipeline.gateway.anomaly_reports import (
    AI_DRIVEN,
    DETERMINISTIC,
    AnomalyReport,
    InvalidReport,
    Resource,
    assign,
    new_anomaly_incident,
    proposal_of,
    resolve_resource,
)

RULES = load_rules(Path(__file__).parents[2] / "rules" / "remediation.yaml")

# The Python engine's README examples (tosin2013/openshift-aiops-platform, src/coordination-engine/README.md).
PYTHON_NODE = {"timestamp": "2025-12-10T14:30:00Z", "type": "resource_exhaustion", "severity": "critical",
               "confidence_score": 0.92, "details": {"node": "worker-1", "metric": "memory_usage", "threshold": 90,
                                                      "current_value": 95},
               "recommended_action": "scale_down_pods", "source": "ai_driven"}
PYTHON_POD = {"timestamp": "2025-12-10T14:30:00Z", "type": "memory_leak", "severity": "high",
              "confidence_score": 0.89, "details": {"namespace": "production", "pod": "app-server-abc123"},
              "recommended_action": "restart_pod", "source": "ai_driven"}


def report(**body: Any) -> AnomalyReport:
    return AnomalyReport.model_validate(body)


def test_the_python_engine_bodies_parse() -> None:
    node = report(**PYTHON_NODE)
    assert (node.anomaly_type, node.severity, node.confidence, node.recommended_action) == (
        "resource_exhaustion", Severity.CRITICAL, 0.92, "scale_down_pods")
    assert node.detected_at == datetime(2025, 12, 10, 14, 30, tzinfo=UTC)
    assert resolve_resource(node) == Resource("", "Node", "worker-1")
    assert resolve_resource(report(**PYTHON_POD)) == Resource("production", "Pod", "app-server-abc123")


def test_snake_and_camel_case_and_the_superset() -> None:
    camel = report(anomalyType="oom_kill", confidenceScore=0.5, resourceName="web", resourceType="deployment",
                   namespace="shop", recommendedAction="restart_deployment", detectedAt="2026-01-01T00:00:00Z",
                   dryRun=True)
    assert (camel.anomaly_type, camel.confidence, camel.recommended_action, camel.dry_run) == (
        "oom_kill", 0.5, "restart_deployment", True)
    assert resolve_resource(camel) == Resource("shop", "Deployment", "web")
    assert resolve_resource(report(type="x", target="shop/Pod/web-1")) == Resource("shop", "Pod", "web-1")
    assert resolve_resource(report(type="x", resource={"kind": "StatefulSet", "name": "db", "namespace": "data"})) \
        == Resource("data", "StatefulSet", "db")
    assert resolve_resource(report(type="x", namespace="shop", resource="Pod/a")) == Resource("shop", "Pod", "a")
    assert resolve_resource(report(type="x", namespace="shop", resource="web")) == Resource("shop", "Deployment", "web")
    assert resolve_resource(report(type="x", namespace="shop")) is None
    assert report(type="x", severity="warning").severity == Severity.MEDIUM
    assert report(type="x", severity="INFO").severity == Severity.LOW


@pytest.mark.parametrize(("body", "field"), [
    ({"severity": "low"}, "type"),
    ({"type": ""}, "type"),
    ({"type": "x", "confidence_score": 1.5}, "confidence_score"),
    ({"type": "x", "severity": "apocalyptic"}, "severity"),
    ({"type": "x", "metrics": [1]}, "metrics"),
    ({"type": "x", "timestamp": "yesterday"}, "timestamp"),
])
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        report(**body)
    assert exc.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(("body", "field"), [
    ({"resource": "Pod/Bad_Name", "namespace": "shop"}, "resource"),
    ({"resource": "Pod/web"}, "namespace"),
    ({"resource": "Pod/web", "namespace": "Shop!"}, "namespace"),
    ({"resource": {"kind": "Pod"}, "namespace": "shop"}, "resource.name"),
    ({"resource_name": "web", "resource_type": "not a kind", "namespace": "shop"}, "resource_type"),
    ({"target": "a/b/c/d"}, "target"),
])
def test_bad_resources_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidReport) as exc:
        resolve_resource(report(type="x", **body))
    assert exc.value.field == field


def test_a_rule_and_enough_confidence_is_deterministic() -> None:
    pod = Resource("shop", "Pod", "web-1")
    a = assign(RULES, "pod_crash", pod, None, 0.9, 0.7)
    assert (a.layer, a.action, a.rule_id) == (DETERMINISTIC, "restart_pod", "crashloop-pod")
    assert assign(RULES, "pod_crash", pod, None, None, 0.7).layer == DETERMINISTIC  # absent: 1.0, as the engine
    assert assign(RULES, "pod_crash", pod, "restart_pod", 0.9, 0.7).layer == DETERMINISTIC  # the rule's own action


def test_otherwise_ai_driven_and_why() -> None:
    pod = Resource("shop", "Pod", "web-1")
    low = assign(RULES, "pod_crash", pod, None, 0.5, 0.7)
    assert (low.layer, low.action, low.rule_id) == (AI_DRIVEN, "restart_pod", "crashloop-pod")
    assert "0.50 < 0.70" in low.note
    other = assign(RULES, "pod_crash", pod, "scale_deployment", 0.9, 0.7)  # the engine's name, mapped
    assert (other.layer, other.action, other.rule_id) == (AI_DRIVEN, "scale_replicas", None)
    unknown = assign(RULES, "memory_leak", pod, None, 0.99, 0.7)
    assert (unknown.layer, unknown.action, unknown.rule_id) == (AI_DRIVEN, "manual_intervention", None)
    assert "no rule matches 'memory_leak' on a Pod" in unknown.note


def test_an_unknown_recommended_action_is_not_taken_and_said_so() -> None:
    node = Resource("", "Node", "worker-1")
    a = assign(RULES, "resource_exhaustion", node, "scale_down_pods", 0.92, 0.7)
    assert (a.layer, a.action) == (AI_DRIVEN, "manual_intervention")
    assert "'scale_down_pods' is not in the action catalogue" in a.note
    ruled = assign(RULES, "NodeNotReady", node, "scale_down_pods", 0.92, 0.7)
    assert (ruled.layer, ruled.action, ruled.rule_id) == (DETERMINISTIC, "cordon_node", "node-not-ready")


def test_no_resource_no_action() -> None:
    a = assign(RULES, "oom_kill", None, None, 0.9, 0.7)
    assert (a.layer, a.action) == (DETERMINISTIC, None)  # rule oom-killed has no kinds
    assert "no action proposed" in a.note


def test_the_incident_and_proposal_carry_the_anomaly() -> None:
    r = report(**PYTHON_POD)
    resource = resolve_resource(r)
    assert resource is not None
    a = assign(RULES, r.anomaly_type, resource, r.recommended_action, r.confidence, 0.7)
    incident = new_anomaly_incident(r, resource, a, datetime(2026, 1, 1, tzinfo=UTC))
    assert incident.id.startswith("anom-") and incident.workflow_id and incident.workflow_id.startswith("wf-")
    assert (incident.namespace, incident.resource, incident.issue_type, incident.source) == (
        "production", "", "memory_leak", "ai_driven")  # no `resource`: the propose stage must not propose too
    assert incident.affected_resources == ["Pod/app-server-abc123"]
    assert incident.parameters["assigned_layer"] == AI_DRIVEN
    assert incident.parameters["detected_at"] == "2025-12-10T14:30:00Z"
    p = proposal_of(RULES, incident, resource, a)
    assert (p.source, p.action, p.confidence, p.target, p.incident_id, p.workflow_id) == (
        "ai", "restart_pod", 0.89, "production/Pod/app-server-abc123", incident.id, incident.workflow_id)
    assert proposal_of(RULES, incident, resource, a).id == p.id  # deterministic id
    ruled = assign(RULES, "pod_crash", resource, None, 0.95, 0.7)
    det = proposal_of(RULES, incident, resource, ruled)
    assert (det.source, det.rule_id, det.priority) == ("deterministic", "crashloop-pod", 80)

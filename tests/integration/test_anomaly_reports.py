"""The Python engine's anomaly reports on `POST /api/v1/anomalies` against the real broker: an incident and an
arbitrated action per report, shown by `GET /api/v1/anomalies/{id}`; Alertmanager webhooks on the same route
are still ingested. Without a kubeconfig the remediate stage ends every workflow `skipped`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.compose.process import Plan
from pipeline.config import Settings
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

FIRING = sample("alertmanager-webhook-firing.json")
# The Python engine's README example (src/coordination-engine/README.md of openshift-aiops-platform).
PYTHON_BODY = {"timestamp": "2025-12-10T14:30:00Z", "type": "memory_leak", "severity": "high",
               "confidence_score": 0.89, "details": {"namespace": "production", "pod": "app-server-abc123",
                                                      "memory_usage_mb": 7800, "threshold_mb": 6000},
               "recommended_action": "restart_pod", "source": "ai_driven"}


async def finished(http: httpx.AsyncClient, anomaly_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/api/v1/anomalies/{anomaly_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["resolution"] is not None else None

    return await eventually(check, timeout=30)


async def test_a_python_engine_report_becomes_an_incident_and_an_arbitrated_action(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.post("/api/v1/anomalies", json=PYTHON_BODY)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["anomaly_id"].startswith("anom-") and created["action_id"].startswith("prop-")
    assert created["workflow_id"].startswith("wf-") and created["created_at"].endswith("Z")
    assert (created["status"], created["assigned_layer"], created["action"], created["rule_id"]) == (
        "accepted", "ai_driven", "restart_pod", None)  # no rule for memory_leak: the detector's recommendation
    assert created["priority"] == 2 and created["estimated_resolution_time"] == "5m"
    assert "no rule matches 'memory_leak' on a Pod" in created["message"]
    # read your writes: the incident and the action are visible as soon as the 201 is
    listed = (await incidents(http))["incidents"]
    assert [(i["id"], i["source"], i["issue_type"], i["affected_resources"]) for i in listed] == [
        (created["anomaly_id"], "ai_driven", "memory_leak", ["Pod/app-server-abc123"])]
    workflow = (await http.get(f"/api/v1/workflows/{created['workflow_id']}")).json()
    assert (workflow["incident_id"], workflow["action"], workflow["namespace"]) == (
        created["anomaly_id"], "restart_pod", "production")

    shown = await finished(http, created["anomaly_id"])
    assert (shown["anomaly_id"], shown["anomaly_type"], shown["assigned_layer"], shown["severity"]) == (
        created["anomaly_id"], "memory_leak", "ai_driven", "high")
    assert (shown["confidence"], shown["namespace"], shown["source"]) == (0.89, "production", "ai_driven")
    assert shown["resource"] == {"namespace": "production", "kind": "Pod", "name": "app-server-abc123"}
    assert shown["details"]["memory_usage_mb"] == 7800 and shown["detected_at"] == "2025-12-10T14:30:00Z"
    action = shown["action"]
    assert (action["action_id"], action["type"], action["source"], action["confidence"]) == (
        created["action_id"], "restart_pod", "ai", 0.89)
    assert action["decision"]["outcome"] == "approved"  # 0.89: above the threshold and the ai-below-0.8 rule
    assert action["status"] == "skipped" and "no cluster configured" in action["reason"]
    assert shown["workflow"]["status"] == "skipped" and shown["workflow"]["workflow_id"] == created["workflow_id"]
    assert shown["resolution"]["status"] == "skipped" and "no cluster configured" in shown["resolution"]["reason"]
    assert shown["incident"]["id"] == created["anomaly_id"]
    # one proposal only: the propose stage made none of its own for the anomaly's incident
    proposals = [r for r in await read_topic(settings, "remediation")
                 if dict(r.headers)["ce_type"] == b"pipeline.remediation.proposed.v1"]
    assert len(proposals) == 1


async def test_a_rule_with_enough_confidence_is_deterministic_in_camel_case(http: httpx.AsyncClient) -> None:
    body = {"anomalyType": "pod_crash", "confidenceScore": 0.95, "namespace": "shop", "resourceName": "web-1",
            "resourceType": "pod", "description": "restarts", "metrics": {"restarts": 7}, "detectedAt":
            "2026-02-01T10:00:00Z", "severity": "CRITICAL"}
    response = await http.post("/api/v1/anomalies", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["assigned_layer"], created["action"], created["rule_id"]) == (
        "deterministic", "restart_pod", "crashloop-pod")
    shown = await finished(http, created["anomaly_id"])
    assert shown["action"]["source"] == "deterministic" and shown["action"]["decision"]["rule_id"] == "crashloop-pod"
    assert shown["metrics"] == {"restarts": 7} and shown["description"] == "restarts"
    assert shown["severity"] == "critical" and shown["status"] == "active"  # skipped: the anomaly stays open
    status = (await http.get("/api/v1/status")).json()
    assert status["actions"]["by_source"] == {"deterministic": 1}


async def test_low_confidence_is_ai_driven_and_rejected_by_arbitration(http: httpx.AsyncClient) -> None:
    body = {"type": "pod_crash", "confidence": 0.4, "target": "shop/Pod/web-2"}
    created = (await http.post("/api/v1/anomalies", json=body)).json()
    assert (created["assigned_layer"], created["action"], created["rule_id"]) == (
        "ai_driven", "restart_pod", "crashloop-pod")
    shown = await finished(http, created["anomaly_id"])
    reasons = [r["code"] for r in shown["action"]["decision"]["reasons"]]
    assert shown["action"]["status"] == "rejected" and "below_confidence_threshold" in reasons
    assert shown["resolution"]["status"] == "rejected"


async def test_a_report_without_a_resource_has_no_action(http: httpx.AsyncClient) -> None:
    created = (await http.post("/api/v1/anomalies", json={"type": "latency_spike", "namespace": "shop"})).json()
    assert (created["action_id"], created["workflow_id"], created["action"]) == (None, None, None)
    shown = (await http.get(f"/api/v1/anomalies/{created['anomaly_id']}")).json()
    assert (shown["action"], shown["workflow"], shown["resolution"], shown["status"]) == (None, None, None, "active")


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"severity": "high", "namespace": "shop"}, 400, "type"),
    ({"type": "x", "confidence_score": 1.5}, 400, "confidence_score"),
    ({"type": "x", "severity": "apocalyptic"}, 400, "severity"),
    ({"type": "x", "resource": "Pod/web-1"}, 400, "namespace"),
    ({"type": "x", "namespace": "shop", "resource": "Pod/Not_A_Name"}, 400, "resource"),
    ({"version": "4", "status": "firing", "alerts": "none"}, 422, "alerts"),  # a webhook: validated as one
])
async def test_bad_bodies_name_the_field(http: httpx.AsyncClient, body: dict[str, Any], status: int,
                                         field: str) -> None:
    response = await http.post("/api/v1/anomalies", json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and response.json()["error"]
    assert (await incidents(http))["total"] == 0


async def test_unknown_ids_are_404_json(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v1/alerts", json=FIRING)).status_code == 200
    alert_incident = await eventually(lambda: _first_incident(http))
    for anomaly_id in ("anom-unknown", alert_incident):  # an alert's incident is not an anomaly report
        response = await http.get(f"/api/v1/anomalies/{anomaly_id}")
        assert response.status_code == 404 and response.json()["error"] == "Anomaly not found"


async def _first_incident(http: httpx.AsyncClient) -> str | None:
    listed = (await incidents(http))["incidents"]
    return listed[0]["id"] if listed else None


async def test_an_alertmanager_webhook_on_the_same_route_is_still_ingested(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.post("/api/v1/anomalies", json=FIRING)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["accepted"]) == ("accepted", 2)
    assert len(await read_topic(settings, "signals")) == 2

    async def two() -> bool:
        return (await incidents(http))["total"] == 2

    await eventually(two)


async def test_reports_need_the_bearer_token_when_configured(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    async with PipelineUnderTest(secured) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            denied = await client.post("/api/v1/anomalies", json=PYTHON_BODY)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
            ok = await client.post("/api/v1/anomalies", json=PYTHON_BODY, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 201, ok.text
            assert (await client.get(f"/api/v1/anomalies/{ok.json()['anomaly_id']}")).status_code == 200  # reads open


async def test_ingest_alone_answers_422_naming_alerts_and_the_gateway_alone_takes_reports(settings: Settings) -> None:
    async with PipelineUnderTest(settings, Plan(ingest=True, apply_topics=True)) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            response = await client.post("/api/v1/anomalies", json=PYTHON_BODY)
            assert response.status_code == 422 and response.json()["field"] == "alerts"
            assert (await client.post("/api/v1/anomalies", json=FIRING)).status_code == 200
    async with PipelineUnderTest(settings, Plan(gateway=True, apply_topics=True)) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            response = await client.post("/api/v1/anomalies", json=PYTHON_BODY)
            assert response.status_code == 201, response.text
            assert (await client.get(f"/api/v1/anomalies/{response.json()['anomaly_id']}")).status_code == 200
            webhook = await client.post("/api/v1/anomalies", json=FIRING)
            assert webhook.status_code == 422 and webhook.json()["field"] == "alerts"

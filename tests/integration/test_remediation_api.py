"""Coordination routes against the pipeline in one process, without a remediator (arbitration only, as a
deployment without the remediate component runs): manual commands pass arbitration, `Idempotency-Key` and
`dry_run` are honoured, an alert becomes an arbitrated action, and the status routes count what happened —
an approved action nobody executes is `pending`, never `running`. Execution is tested in test_remediate.py."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.stages import stage_classes
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

ARBITRATION_ONLY = Plan(stages=[s for s in stage_classes() if s != "remediate"], ingest=True, gateway=True,
                        apply_topics=True)


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[PipelineUnderTest]:
    async with PipelineUnderTest(settings, ARBITRATION_ONLY) as running:
        yield running

FIRING = sample("alertmanager-webhook-firing.json")


def trigger_body(name: str = "web-1", kind: str = "Pod", issue: str = "pod_crash", **kw: Any) -> dict[str, Any]:
    """What the MCP server's `trigger-remediation` tool sends."""
    return {"incident_id": kw.pop("incident_id", f"inc-{name}"), "namespace": kw.pop("namespace", "shop"),
            "resource": {"kind": kind, "name": name},
            "issue": {"type": issue, "description": "restarts", "severity": "high"}, **kw}


async def decided(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await http.get(f"/api/v1/workflows/{workflow_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["decision"] else None

    return await eventually(check)


async def test_trigger_passes_arbitration_and_shows_its_decision(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/remediation/trigger", json=trigger_body())
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["workflow_id"].startswith("wf-")
    assert (accepted["status"], accepted["deployment_method"], accepted["dry_run"]) == ("pending", "unknown", False)
    assert accepted["estimated_duration"]
    workflow = await decided(http, accepted["workflow_id"])
    assert (workflow["status"], workflow["action"], workflow["incident_id"]) == ("pending", "restart_pod", "inc-web-1")
    assert workflow["steps"] == [] and workflow["remediator"] is None  # decided; nothing runs it here
    decision = workflow["decision"]
    assert (decision["outcome"], decision["source"], decision["rule_id"]) == ("approved", "manual", "crashloop-pod")
    assert decision["target"] == "shop/Pod/web-1"
    assert decision["reasons"][0]["code"] == "manual"
    assert decision["resolution_seconds"] >= 0
    missing = await http.get("/api/v1/workflows/wf-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "Workflow not found"


async def test_idempotency_key_returns_the_same_workflow_and_proposes_once(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    headers = {"Idempotency-Key": "mcp-call-1"}
    first = await http.post("/api/v1/remediation/trigger", json=trigger_body("web-2"), headers=headers)
    second = await http.post("/api/v1/remediation/trigger", json=trigger_body("web-2"), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["workflow_id"] == second.json()["workflow_id"]
    await decided(http, first.json()["workflow_id"])
    # Once visible, a repeat is answered from the read model and nothing new is proposed.
    third = await http.post("/api/v1/remediation/trigger", json=trigger_body("web-2"), headers=headers)
    assert third.json()["workflow_id"] == first.json()["workflow_id"] and third.json()["status"] == "pending"
    reused = await http.post("/api/v1/remediation/trigger", json=trigger_body("web-3"), headers=headers)
    assert reused.status_code == 422 and reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    # No key: an identical request within the window is the same workflow too.
    plain = [await http.post("/api/v1/remediation/trigger", json=trigger_body("web-4")) for _ in range(2)]
    await decided(http, plain[0].json()["workflow_id"])
    again = await http.post("/api/v1/remediation/trigger", json=trigger_body("web-4"))
    assert again.json()["workflow_id"] == plain[0].json()["workflow_id"]
    records = await read_topic(settings, "remediation")
    ids = {json.loads(r.value)["proposal"]["id"] for r in records}
    decisions = [json.loads(r.value) for r in await read_topic(settings, "decisions")]
    approved = [d for d in decisions if d["decision"]["outcome"] == "approved"]
    assert {d["decision"]["proposal"]["target"] for d in approved} == {"shop/Pod/web-2", "shop/Pod/web-4"}
    assert len(approved) == 2 and len(ids) <= 3  # web-2 once; web-4 at most twice (raced), decided once


async def test_dry_run_is_decided_but_holds_nothing(http: httpx.AsyncClient) -> None:
    dry = await http.post("/api/v1/remediation/trigger", json=trigger_body("api", kind="Deployment", dry_run=True))
    assert dry.status_code == 202 and dry.json()["dry_run"] is True
    workflow = await decided(http, dry.json()["workflow_id"])
    assert (workflow["status"], workflow["dry_run"], workflow["action"]) == ("pending", True, "restart_deployment")
    assert workflow["decision"]["outcome"] == "approved"
    real = await http.post("/api/v1/remediation/trigger", json=trigger_body("api", kind="Deployment"))
    held = await decided(http, real.json()["workflow_id"])
    assert held["decision"]["outcome"] == "approved"  # the dry run held nothing
    other = await http.post("/api/v1/remediation/trigger", json=trigger_body("api", kind="Deployment", issue="oom_kill"))
    blocked = await decided(http, other.json()["workflow_id"])
    assert blocked["status"] == "rejected"
    busy = next(r for r in blocked["decision"]["reasons"] if r["code"] == "target_busy")
    assert busy["other_action"] == "restart_deployment"


async def test_remediate_queues_with_a_position(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/remediate", json={"action_type": "scale_replicas", "namespace": "shop",
                                                          "target": "Deployment/cart", "priority": 70})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["action_id"].startswith("prop-")
    # Where it stands when the answer is made: queued with its 1-based place, or -- when the arbitrate stage was
    # quicker than the answer -- already decided, with place 0 and the decision's status (never a made-up place).
    if body["queued"]:
        assert body["status"] == "queued" and body["position_in_queue"] >= 1, body
    else:
        assert body["position_in_queue"] == 0 and body["status"] in ("pending", "running", "completed"), body
    workflow = await decided(http, body["workflow_id"])
    assert workflow["decision"]["priority"] == 70 and workflow["decision"]["outcome"] == "approved"


async def test_bad_commands_get_a_400_naming_the_field(http: httpx.AsyncClient) -> None:
    cases = [
        ("/api/v1/remediation/trigger", trigger_body(namespace="Shop_1"), "namespace"),
        ("/api/v1/remediation/trigger", trigger_body(kind="pod; rm"), "resource.kind"),
        ("/api/v1/remediation/trigger", trigger_body(name="web/../x"), "resource.name"),
        ("/api/v1/remediation/trigger", {k: v for k, v in trigger_body().items() if k != "issue"}, "issue"),
        ("/api/v1/remediation/trigger", trigger_body(action="reboot_cluster"), "action"),
        ("/api/v1/remediation/trigger", trigger_body(dry_run="maybe"), "dry_run"),
        ("/api/v1/remediate", {"action": "reboot_cluster", "namespace": "shop", "target": "Pod/a"}, "action"),
        ("/api/v1/remediate", {"action": "restart_pod", "namespace": "shop"}, "target"),
    ]
    for route, body, field in cases:
        response = await http.post(route, json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field and response.json()["error"]
    assert (await http.post("/api/v1/remediate", content=b"[1]")).status_code == 400
    status = (await http.get("/api/v1/cluster/status")).json()
    assert status["actions"]["total"] == 0  # nothing invalid was proposed


async def test_commands_need_the_bearer_token_when_configured(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_token": SecretStr("s3cret")})
    async with PipelineUnderTest(secured) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            for route in ("/api/v1/remediation/trigger", "/api/v1/remediate"):
                assert (await client.post(route, json=trigger_body())).status_code == 401
            ok = await client.post("/api/v1/remediation/trigger", json=trigger_body(),
                                   headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 202
            assert (await client.get("/api/v1/status")).status_code == 200  # reads stay open


async def test_an_alert_becomes_an_arbitrated_action_released_when_it_resolves(http: httpx.AsyncClient) -> None:
    firing = copy.deepcopy(FIRING)
    firing["alerts"] = firing["alerts"][:1]  # PodOOMKilled on shop/cart-...
    assert (await http.post("/api/v1/alerts", json=firing)).status_code == 200

    async def approved() -> dict[str, Any] | None:
        # `pending` counts a proposal from the moment it is submitted; wait until arbitration has approved it
        listed = (await incidents(http))["incidents"]
        if not listed or listed[0]["remediation_status"] != "pending":
            return None
        body = (await http.get("/api/v1/cluster/status")).json()
        return body if body["actions"]["pending"] == 1 else None

    status = await eventually(approved)
    assert status["actions"]["total"] == 1 and status["engine"]["running"] is True
    assert status["actions"]["running"] == 0  # nothing executes it in this layout: never "running"
    # no remediate worker consumes the decisions: the MCP's cluster status says so, with a number
    assert status["engine"]["workers_count"] == 0 and status["status"] == "degraded"
    assert status["reasons"] == ["no remediate worker: approved actions wait"]
    (incident,) = (await incidents(http))["incidents"]
    assert (incident["status"], incident["action_type"], incident["remediation_status"]) == (
        "active", "scale_resources", "pending")  # approved: the action the MCP shows, waiting to run
    assert incident["confidence"] == 1.0  # an alert that fired: an observation
    detail = (await http.get("/api/v1/status")).json()
    assert detail["actions"]["by_source"] == {"deterministic": 1} and detail["active_actions"] == 0
    assert detail["layers"]["application"]["pending"] == 1 and detail["queue"]["pending"] == 1
    resolved = copy.deepcopy(firing)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-11-22T00:10:00Z"
    assert (await http.post("/api/v1/alerts", json=resolved)).status_code == 200

    async def cancelled() -> dict[str, Any] | None:
        body = (await http.get("/api/v1/status")).json()
        return body if body["actions"]["cancelled"] == 1 else None

    status = await eventually(cancelled)  # the incident resolved before anything ran: released, cancelled
    assert status["actions"]["pending"] == 0 and status["actions"]["completed"] == 0
    (incident,) = (await incidents(http))["incidents"]
    assert (incident["status"], incident["action_type"], incident["remediation_status"]) == (
        "completed", "none", "cancelled")  # its alerts resolved; no action was carried out
    metrics = (await http.get("/metrics")).text
    assert 'coordination_actions_total{action="scale_resources",outcome="approved",source="deterministic"}' in metrics
    assert "coordination_resolution_time_seconds_count" in metrics and "coordination_active_actions" in metrics


async def test_conflicting_commands_are_counted_as_conflicts(http: httpx.AsyncClient) -> None:
    bodies = [trigger_body("db", kind="Deployment", issue=issue) for issue in ("pod_crash", "oom_kill", "high_cpu")]
    responses = [await http.post("/api/v1/remediation/trigger", json=b) for b in bodies]
    outcomes = [(await decided(http, r.json()["workflow_id"]))["decision"]["outcome"] for r in responses]
    assert outcomes.count("approved") == 1 and len(outcomes) == 3
    status = (await http.get("/api/v1/status")).json()
    assert status["actions"]["total"] == 3
    assert status["actions"]["pending"] == 1 and status["actions"]["running"] == 0
    assert status["actions"]["rejected"] + status["actions"]["superseded"] == 2


async def test_an_incident_shows_its_approved_action_not_a_later_rejected_one(http: httpx.AsyncClient) -> None:
    """Two commands for one incident's target: the approved restart speaks for the incident, not the oom_kill
    rejected after it as target_busy."""
    created = await http.post("/api/v1/incidents", json={"title": "db restarts", "description": "d",
                                                         "severity": "high", "labels": {"namespace": "shop"}})
    incident_id = created.json()["incident_id"]
    listed = (await incidents(http))["incidents"]
    assert [(i["action_type"], i["remediation_status"]) for i in listed] == [("none", "none")]  # nothing proposed
    first = await http.post("/api/v1/remediation/trigger",
                            json=trigger_body("db", kind="Deployment", incident_id=incident_id))
    second = await http.post("/api/v1/remediation/trigger",
                             json=trigger_body("db", kind="Deployment", issue="oom_kill", incident_id=incident_id))
    assert (await decided(http, first.json()["workflow_id"]))["decision"]["outcome"] == "approved"
    assert (await decided(http, second.json()["workflow_id"]))["status"] == "rejected"
    (incident,) = (await incidents(http))["incidents"]
    assert (incident["action_type"], incident["remediation_status"], incident["workflow_id"]) == (
        "restart_deployment", "pending", first.json()["workflow_id"])


async def test_an_action_waiting_for_a_human_says_so(settings: Settings) -> None:
    everything_needs_approval = settings.model_copy(update={"remediation_approval": [{"name": "all"}]})
    async with PipelineUnderTest(everything_needs_approval, ARBITRATION_ONLY) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            assert (await client.post("/api/v1/alerts", json=FIRING)).status_code == 200

            async def waiting() -> list[dict[str, Any]] | None:
                found = (await incidents(client))["incidents"]
                ok = len(found) == 2 and all(i["remediation_status"] == "awaiting_approval" for i in found)
                return found if ok else None

            found = await eventually(waiting)
    assert {(i["status"], i["action_type"]) for i in found} == {("active", "awaiting_approval")}


async def test_an_action_not_decided_yet_says_so(settings: Settings) -> None:
    """Without the arbitrate stage, a proposal is never decided: `pending_decision`, not an action."""
    no_arbitration = Plan(stages=["correlate", "propose"], ingest=True, gateway=True, apply_topics=True)
    async with PipelineUnderTest(settings, no_arbitration) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=15) as client:
            assert (await client.post("/api/v1/alerts", json=FIRING)).status_code == 200

            async def proposed() -> list[dict[str, Any]] | None:
                found = (await incidents(client))["incidents"]
                ok = len(found) == 2 and all(i["remediation_status"] == "pending_decision" for i in found)
                return found if ok else None

            found = await eventually(proposed)
    assert {(i["status"], i["action_type"]) for i in found} == {("active", "pending_decision")}


async def test_cluster_status_answers_503_when_kafka_cannot_count_the_workers(tmp_path: Path) -> None:
    """The route asks Kafka for the remediate consumer group; a broker that does not answer (a closed port here)
    is a 503 that says why, never a made-up workers_count."""
    from fastapi import FastAPI

    from pipeline.api import errors
    from pipeline.bus.producer import EventProducer
    from pipeline.compose.health import KafkaProbe
    from pipeline.embedded.process import free_port
    from pipeline.gateway.remediation import router
    from pipeline.gateway.remediation_view import RemediationView

    nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", data_dir=tmp_path)
    probe, producer = KafkaProbe(nowhere), EventProducer(nowhere)  # the producer is never started: no POSTs here
    app = FastAPI()
    errors.install(app)
    app.include_router(router(nowhere, RemediationView(), producer, 0.0,
                              workers=lambda: probe.group_members("pipeline.remediate")))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as client:
            response = await client.get("/api/v1/cluster/status")
    finally:
        await probe.close()
        await producer.stop()
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    body = response.json()
    assert body["code"] == "KAFKA_UNAVAILABLE" and body["error"].startswith("cannot count the remediate workers")

"""`GET/POST /api/v1/incidents` as the MCP server uses them, and the read model rebuilt from the log."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from pipeline.compose.process import Plan
from pipeline.config import Settings
from tests.support import PipelineUnderTest, eventually, incidents, sample

MCP_CREATE = {
    "title": "Checkout latency regression",
    "description": "p99 above 2s since the 14:05 rollout",
    "severity": "high",
    "source": "manual",
    "labels": {"namespace": "shop", "team": "payments"},
    "affectedResources": ["Deployment/checkout"],
    "correlationId": "corr-42",
    "createdBy": "mcp-server",
    "confidence": 0.8,
}


async def test_post_returns_201_with_top_level_fields_and_is_readable_at_once(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/v1/incidents", json=MCP_CREATE)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["incident_id"].startswith("inc-")
    assert (created["title"], created["severity"], created["priority"]) == (MCP_CREATE["title"], "high", 2)
    assert created["status"] == "active" and created["created_at"] and created["message"]
    # Read your own write: no polling.
    listed = await incidents(http)
    (item,) = listed["incidents"]
    assert item["id"] == created["incident_id"]
    assert item["target"] == "shop"  # derived: the MCP server may omit target
    assert item["affected_resources"] == ["Deployment/checkout"]
    assert item["correlation_id"] == "corr-42" and item["confidence"] == 0.8 and item["source"] == "manual"
    assert (item["action_type"], item["remediation_status"]) == ("none", "none")  # a string the MCP shows; no action
    unstated = await http.post("/api/v1/incidents", json={k: v for k, v in MCP_CREATE.items() if k != "confidence"})
    assert unstated.json()["incident"]["confidence"] == 1.0  # taken as stated, never a null the MCP shows as 0


async def test_post_validation_uses_the_engine_limits_and_names_the_field(http: httpx.AsyncClient) -> None:
    cases = [
        ({**MCP_CREATE, "title": ""}, "title"),
        ({**MCP_CREATE, "title": "é" * 101}, "title"),  # 202 bytes: the limit is in bytes, as in the engine
        ({**MCP_CREATE, "description": "d" * 2001}, "description"),
        ({**MCP_CREATE, "severity": "urgent"}, "severity"),
        ({**MCP_CREATE, "target": "t" * 101}, "target"),
        ({k: v for k, v in MCP_CREATE.items() if k != "description"}, "description"),
        ({**MCP_CREATE, "confidence": 3}, "confidence"),
    ]
    for body, field in cases:
        response = await http.post("/api/v1/incidents", json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
        assert response.json()["status"] == "error" and response.json()["error"]
    assert (await incidents(http))["summary"]["total"] == 0


async def test_mcp_query_filters_pages_and_summarises(http: httpx.AsyncClient) -> None:
    for severity in ("critical", "high", "high", "low"):
        body = {**MCP_CREATE, "severity": severity, "title": f"{severity} thing"}
        assert (await http.post("/api/v1/incidents", json=body)).status_code == 201
    assert (await http.post("/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"))).status_code == 200

    async def six() -> dict | None:
        body = await incidents(http, limit=100, offset=0)
        return body if body["summary"]["total"] == 6 else None

    everything = await eventually(six)
    assert everything["summary"] == {
        "total": 6, "active": 6, "running": 0, "completed": 0, "failed": 0, "cancelled": 0,
        "by_severity": {"critical": 3, "high": 2, "medium": 0, "low": 1},
    }
    assert everything["total"] == 6 and len(everything["incidents"]) == 6
    created = [i["created_at"] for i in everything["incidents"]]
    assert created == sorted(created, reverse=True)

    high = await incidents(http, severity="high")
    assert {i["severity"] for i in high["incidents"]} == {"high"} and high["summary"]["total"] == 2
    page = await incidents(http, limit=2, offset=1)
    assert [i["id"] for i in page["incidents"]] == [i["id"] for i in everything["incidents"][1:3]]
    assert page["summary"]["total"] == 6
    shop_pods = await incidents(http, namespace="shop", severity="critical")
    assert shop_pods["summary"]["total"] == 3
    assert (await incidents(http, status="completed"))["incidents"] == []
    bad = await http.get("/api/v1/incidents", params={"limit": "lots"})
    assert bad.status_code == 400 and bad.json()["field"] == "limit"
    bad = await http.get("/api/v1/incidents", params={"status": "sleeping"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


async def test_gateway_restart_rebuilds_the_same_incidents_from_the_log(settings: Settings) -> None:
    async with PipelineUnderTest(settings) as first:
        async with httpx.AsyncClient(base_url=first.url, trust_env=False) as client:
            assert (await client.post("/api/v1/incidents", json=MCP_CREATE)).status_code == 201
            assert (await client.post("/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"))).status_code == 200
            before = await eventually(lambda: _when_settled(client, 3))
    gateway_only = Plan(gateway=True)
    async with PipelineUnderTest(settings, gateway_only) as second:
        async with httpx.AsyncClient(base_url=second.url, trust_env=False) as client:
            after = await incidents(client)  # ready only once the log is replayed: no polling
    assert after["incidents"] == before["incidents"]
    assert after["summary"] == before["summary"]


async def _when_settled(client: httpx.AsyncClient, n: int) -> dict | None:
    """n incidents, each alert's remediation decided and finished (the remediator, without a cluster, skips it)."""
    body = await _when_total(client, n)
    if body is None or any(i["source"] == "alertmanager" and not i["workflow_id"] for i in body["incidents"]):
        return None
    actions = (await client.get("/api/v1/cluster/status")).json()["actions"]
    return body if actions["pending"] == actions["running"] == 0 else None


async def _when_total(client: httpx.AsyncClient, n: int) -> dict | None:
    body = await incidents(client)
    return body if body["summary"]["total"] == n else None


async def test_writes_need_the_token_when_one_is_configured(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_token": SecretStr("gw-token")})
    async with PipelineUnderTest(secured) as running:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:
            denied = await client.post("/api/v1/incidents", json=MCP_CREATE)
            allowed = await client.post(
                "/api/v1/incidents", json=MCP_CREATE, headers={"Authorization": "Bearer gw-token"}
            )
    assert denied.status_code == 401 and denied.json()["code"] == "UNAUTHORIZED"
    assert allowed.status_code == 201


async def test_health_routes(http: httpx.AsyncClient, settings: Settings) -> None:
    assert (await http.get("/health")).json() == {"status": "ok", "version": settings.version}
    deep = await http.get("/api/v1/health")
    assert deep.status_code == 200
    body = deep.json()
    assert body["status"] == "healthy"
    assert body["dependencies"]["kafka"]["status"] == "ok"
    assert body["components"]["projection"]["ready"] is True
    metrics = await http.get("/metrics")
    assert "pipeline_ingest_requests_total" in metrics.text

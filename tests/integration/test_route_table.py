"""Every route of the Go engine (its 25 and `/metrics`), the MCP server's extras and the Python engine's routes
answers on the embedded default — with JSON, and never the router's own 404 or 405."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.asyncio

ROUTES: list[tuple[str, str, str, Any]] = [
    # the Go engine (anchor §1.2)
    ("GET", "/health", "/health", None),
    ("GET", "/api/v1/health", "/api/v1/health", None),
    ("POST", "/api/v1/remediation/trigger", "/api/v1/remediation/trigger",
     {"incident_id": "inc-1", "namespace": "shop", "resource": {"kind": "Deployment", "name": "web"},
      "issue": {"type": "pod_crash"}}),
    ("GET", "/api/v1/workflows/{workflow_id}", "/api/v1/workflows/wf-000000000000", None),
    ("GET", "/api/v1/incidents", "/api/v1/incidents", None),
    ("POST", "/api/v1/incidents", "/api/v1/incidents", {"title": "t", "description": "d", "severity": "low"}),
    ("POST", "/api/v1/recommendations", "/api/v1/recommendations", {"namespace": "shop"}),
    ("POST", "/api/v1/predict", "/api/v1/predict", {"hour": 3, "day_of_week": 1, "cpu_rolling_mean": 0.5,
                                                     "memory_rolling_mean": 0.5}),
    ("GET", "/api/v1/detect/deployment/{namespace}/{name}", "/api/v1/detect/deployment/shop/web", None),
    ("GET", "/api/v1/detect/statefulset/{namespace}/{name}", "/api/v1/detect/statefulset/shop/db", None),
    ("GET", "/api/v1/detect/daemonset/{namespace}/{name}", "/api/v1/detect/daemonset/shop/agent", None),
    ("POST", "/api/v1/detect/cache/clear", "/api/v1/detect/cache/clear", None),
    ("GET", "/api/v1/detect/cache/stats", "/api/v1/detect/cache/stats", None),
    ("POST", "/api/v1/coordination/trigger", "/api/v1/coordination/trigger",
     {"incident_id": "inc-2", "description": "d", "resources": [{"kind": "Node", "name": "n1"}]}),
    ("GET", "/api/v1/coordination/workflows/{workflow_id}", "/api/v1/coordination/workflows/wf-000000000000", None),
    ("GET", "/api/v1/coordination/workflows", "/api/v1/coordination/workflows", None),
    ("GET", "/api/v1/capacity/namespace/{namespace}", "/api/v1/capacity/namespace/shop", None),
    ("GET", "/api/v1/capacity/cluster", "/api/v1/capacity/cluster", None),
    ("POST", "/api/v1/anomalies/analyze", "/api/v1/anomalies/analyze", {"namespace": "shop"}),
    ("GET", "/api/v1/predict/disk-exhaustion", "/api/v1/predict/disk-exhaustion", None),
    ("GET", "/api/v1/predict/memory-leak", "/api/v1/predict/memory-leak", None),
    ("GET", "/api/v1/recommendations/rightsizing", "/api/v1/recommendations/rightsizing?namespace=shop", None),
    ("POST", "/api/v1/detect", "/api/v1/detect", {"model": "anomaly-detector", "instances": [[0.0] * 45]}),
    ("GET", "/api/v1/models", "/api/v1/models", None),
    ("GET", "/api/v1/models/{model}/health", "/api/v1/models/anomaly-detector/health", None),
    ("GET", "/metrics", "/metrics", None),
    # what the MCP server calls that the engine never had
    ("GET", "/api/v1/capacity/trends", "/api/v1/capacity/trends?namespace=shop", None),
    ("GET", "/api/v1/cluster/status", "/api/v1/cluster/status", None),
    # the Python engine
    ("POST", "/api/v1/anomalies", "/api/v1/anomalies", {"version": "4", "status": "firing", "alerts": []}),
    ("GET", "/api/v1/anomalies/{anomaly_id}", "/api/v1/anomalies/inc-unknown", None),
    ("POST", "/api/v1/remediate", "/api/v1/remediate", {"action": "restart_pod", "namespace": "shop",
                                                         "target": "Pod/web-1"}),
    ("GET", "/api/v1/status", "/api/v1/status", None),
    # ADR-002's pod detection
    ("GET", "/api/v1/detect/pod/{namespace}/{name}", "/api/v1/detect/pod/shop/web-1", None),
]


async def test_every_engine_mcp_and_legacy_route_answers(http: httpx.AsyncClient) -> None:
    assert len(ROUTES) == 33
    schema = (await http.get("/openapi.json")).json()["paths"]
    missing = [(m, p) for m, p, _, _ in ROUTES if p != "/metrics" and m.lower() not in schema.get(p, {})]
    assert missing == []
    for method, template, url, body in ROUTES:
        response = await http.request(method, url, json=body)
        what = f"{method} {template} -> {response.status_code} {response.text[:300]}"
        assert response.status_code != 405, what
        assert not (response.status_code == 404 and response.json().get("error") == "Not Found"), what
        assert response.status_code < 500 or response.status_code == 503, what  # 503: a dependency not configured
        if template != "/metrics":
            assert response.headers["content-type"].startswith("application/json"), what
        if response.status_code >= 400:
            assert response.json()["error"], what

    # A wrong method names the methods of the route the path is, not of a template that also matches it
    # (`/api/v1/anomalies/{anomaly_id}` matches /api/v1/anomalies/analyze).
    wrong = await http.request("OPTIONS", "/api/v1/anomalies/analyze")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    # Every method of the path, each a route of its own (FastAPI's own 405 names the first route's only).
    for path, allow in (("/api/v1/incidents", "GET, POST"), ("/api/v1/remediation/pause", "GET, POST, PUT"),
                        ("/api/v1/anomalies/inc-1", "GET"), ("/api/v1/alerts", "POST")):
        wrong = await http.request("DELETE", path)
        assert (wrong.status_code, wrong.headers["allow"], wrong.json()["code"]) == (405, allow, "METHOD_NOT_ALLOWED")

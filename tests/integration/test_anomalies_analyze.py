"""`POST /api/v1/anomalies/analyze` against a real Prometheus holding generated scenarios."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.embedded.history import CRASHY_POD, LEAKY_POD, THROTTLED_POD, generate_history
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.gateway.anomalies import router
from pipeline.web import errors


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    # The history ends now: the analysis evaluates at the current time, like a live cluster.
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), generate_history()) as server:
        yield server


@pytest.fixture
async def api(prometheus: PrometheusServer) -> AsyncIterator[httpx.AsyncClient]:
    client = PrometheusClient(Settings(prometheus_url=prometheus.url))
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), client))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        yield http
    await client.aclose()


async def analyze(api: httpx.AsyncClient, **body: object) -> dict:
    response = await api.post("/api/v1/anomalies/analyze", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def found(body: dict) -> set[tuple[str, str]]:
    return {(a["pod"], a["metric"]) for a in body["anomalies"]}


async def test_each_scenario_is_found_and_only_it(api: httpx.AsyncClient) -> None:
    shop = await analyze(api, namespace="shop")
    assert found(shop) == {(LEAKY_POD, "pod_memory_usage")}
    (leak,) = shop["anomalies"]
    assert leak["type"] == "trend_anomaly" and leak["value"] > 0.9
    assert leak["metrics"]["hours_to_limit"] < 24

    payments = await analyze(api, namespace="payments")
    assert found(payments) == {(CRASHY_POD, "container_restart_count"), (THROTTLED_POD, "cpu_throttle_rate")}
    by_metric = {a["metric"]: a for a in payments["anomalies"]}
    assert by_metric["container_restart_count"]["value"] == pytest.approx(12, abs=0.5)
    throttle = by_metric["cpu_throttle_rate"]
    assert throttle["metrics"]["throttle_rate_pct"] == pytest.approx(60, abs=3)
    assert throttle["explanation"] == f"payments/{THROTTLED_POD}"  # what the MCP's get-throttled-pods parses
    assert payments["enriched_signals"]["throttling_detected"] is True
    assert 0 < payments["enriched_signals"]["cpu_throttle_rate"] < 1  # a true fraction

    cart = await analyze(api, namespace="shop", deployment="cart")
    assert cart["anomalies"] == [] and cart["anomalies_detected"] == 0
    assert cart["recommendation"] == "No anomalies detected. System operating normally."
    assert cart["enriched_signals"]["throttling_detected"] is False


async def test_response_carries_the_mcp_fields_and_the_vector(api: httpx.AsyncClient) -> None:
    body = await analyze(api, namespace="shop", pod=LEAKY_POD, timeRange="6h", threshold=0.5)
    for key in ("status", "anomalies_detected", "time_range", "threshold", "anomalies", "recommendations",
                "alerts", "summary", "analyzed_at", "enriched_signals", "features", "model"):
        assert key in body
    assert body["time_range"] == "6h" and body["threshold"] == 0.5
    assert body["model"]["status"] == "unavailable"
    assert body["features"]["feature_names"] == list(FEATURE_NAMES)
    values = dict(zip(body["features"]["feature_names"], body["features"]["values"], strict=True))
    assert values["pod_memory_usage_value"] > 0.9
    assert values["pod_memory_usage_value"] > values["pod_memory_usage_lag_5"]  # real lags, not copies
    assert body["summary"]["models_used"] == ["statistical-baseline"]
    assert body["query_count"] <= 14
    item = body["anomalies"][0]
    for key in ("metric", "type", "severity", "anomaly_score", "confidence", "timestamp", "value",
                "expected_min", "expected_max", "model", "metrics", "explanation", "recommended_action"):
        assert key in item
    assert body["alerts"][0]["type"] == "memory_issue"


async def test_time_range_and_label_selector_change_the_result(api: httpx.AsyncClient) -> None:
    # Crashy restarted every 5 minutes during the last hour: "1h" sees 12 restarts.
    hour = await analyze(api, namespace="payments", timeRange="1h")
    six = await analyze(api, namespace="payments", time_range="6h")
    restarts = {b["time_range"]: a["value"] for b in (hour, six) for a in b["anomalies"]
                if a["metric"] == "container_restart_count"}
    assert restarts["1h"] == pytest.approx(12, abs=0.5)
    # The leak's trend is fitted over the requested range: 6h reaches back to where the leak began.
    leak_1h = (await analyze(api, namespace="shop", timeRange="1h"))["anomalies"][0]
    leak_6h = (await analyze(api, namespace="shop", timeRange="6h"))["anomalies"][0]
    assert leak_6h["expected_min"] < 0.25 < 0.6 < leak_1h["expected_min"]

    selected = await analyze(api, namespace="payments", labelSelector="app=throttled")
    assert found(selected) == {(THROTTLED_POD, "cpu_throttle_rate")}
    assert selected["scope"]["pods"] == THROTTLED_POD
    none = await api.post("/api/v1/anomalies/analyze", json={"namespace": "payments", "labelSelector": "app=ghost"})
    assert none.status_code == 404 and none.json()["field"] == "label_selector"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_range": "2h"}, "time_range"),
        ({"threshold": 1.5}, "threshold"),
        ({"namespace": 'shop"} or vector(1)'}, "namespace"),
        ({"namespace": "shop", "pod": "Bad_Pod"}, "pod"),
        ({"pod": "p"}, "namespace"),
        ({"labelSelector": "app in (a,b)"}, "label_selector"),
        ({"labelSelector": 'app="x"}'}, "label_selector"),
        ({"modelName": "predictive-analytics"}, "model_name"),
    ],
)
async def test_bad_input_is_400_naming_the_field(api: httpx.AsyncClient, body: dict, field: str) -> None:
    response = await api.post("/api/v1/anomalies/analyze", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_REQUEST" and response.json()["field"] == field


async def test_prometheus_down_is_503_with_retry_after(api: httpx.AsyncClient, prometheus: PrometheusServer) -> None:
    prometheus.stop()
    try:
        response = await api.post("/api/v1/anomalies/analyze", json={"namespace": "shop"})
    finally:
        prometheus.start()
    assert response.status_code == 503
    assert response.json()["code"] == "PROMETHEUS_UNAVAILABLE" and response.headers["retry-after"]


async def test_not_configured_is_503() -> None:
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        response = await http.post("/api/v1/anomalies/analyze", json={})
    assert response.status_code == 503 and response.json()["code"] == "PROMETHEUS_UNAVAILABLE"


async def test_analysis_scores_the_vector_through_the_ml_path(prometheus: PrometheusServer, tmp_path: Path) -> None:
    """With the reference model registered (real HTTP), the analysis reports its verdict on the vector."""
    from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
    from pipeline.adapters.scorer import KServeScorer
    from pipeline.embedded.ml import ReferenceMLServer

    service = ReferenceMLServer(tmp_path).start()
    client = PrometheusClient(Settings(prometheus_url=prometheus.url))
    registry = ModelRegistry([ModelEndpoint("anomaly-detector", "reference", "", "anomaly-detector", service.url)])
    kserve = KServeClient(Settings(), registry)
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), client, KServeScorer(kserve)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
            leak = (await http.post("/api/v1/anomalies/analyze", json={"namespace": "shop", "pod": LEAKY_POD})).json()
            service.stop()
            down = (await http.post("/api/v1/anomalies/analyze", json={"namespace": "shop", "pod": LEAKY_POD})).json()
    finally:
        service.stop()
        await kserve.aclose()
        await client.aclose()
    assert leak["model"]["status"] == "available" and leak["model"]["version"]
    assert leak["model"]["prediction"] in (-1, 1) and 0 <= leak["model"]["score"] <= 1
    if leak["model"]["prediction"] == -1:
        assert "feature_vector" in {a["metric"] for a in leak["anomalies"]}
    assert down["model"]["status"] == "unavailable" and down["model"]["reason"]
    assert found(down) == {(LEAKY_POD, "pod_memory_usage")}  # the rules still find the leak

"""`POST /api/v1/anomalies/analyze` against a real Prometheus holding generated scenarios."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api import errors
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.embedded.history import CRASHY_POD, LEAKY_POD, THROTTLED_POD
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.gateway.anomalies import router


@pytest.fixture
async def api(prom: PrometheusServer) -> AsyncIterator[httpx.AsyncClient]:
    client = PrometheusClient(Settings(prometheus_url=prom.url))
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
    assert throttle["metrics"]["throttle_rate_pct"] == pytest.approx(0.60, abs=0.03)  # a fraction: the MCP x100
    assert throttle["metrics"]["throttle_rate_percent"] == pytest.approx(60, abs=3)
    assert throttle["explanation"] == f"payments/{THROTTLED_POD}"  # what the MCP's get-throttled-pods parses
    # the throttled pod is listed in the anomalies, so the scope-wide signal does not list it again
    assert payments["enriched_signals"]["throttling_detected"] is False
    assert payments["enriched_signals"]["throttled_pods"] == 1
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
    assert body["query_count"] == 2  # the vector with the instant values, the per-pod series over the range
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
        ({"threshold": False}, "threshold"),  # not 0 (and then the default): not a number
        ({"threshold": "0.5"}, "threshold"),
        ({"namespace": 'shop"} or vector(1)'}, "namespace"),
        ({"namespace": "shop", "pod": "Bad_Pod"}, "pod"),
        ({"pod": "Bad_Pod"}, "pod"),
        ({"labelSelector": "app in (a,b)"}, "label_selector"),
        ({"labelSelector": 'app="x"}'}, "label_selector"),
    ],
)
async def test_bad_input_is_400_naming_the_field(api: httpx.AsyncClient, body: dict, field: str) -> None:
    response = await api.post("/api/v1/anomalies/analyze", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_REQUEST" and response.json()["field"] == field


async def test_prometheus_down_is_503_with_retry_after(api: httpx.AsyncClient, prom: PrometheusServer) -> None:
    prom.stop()
    try:
        response = await api.post("/api/v1/anomalies/analyze", json={"namespace": "shop"})
    finally:
        prom.start()
    assert response.status_code == 503
    assert response.json()["code"] == "PROMETHEUS_UNAVAILABLE" and response.headers["retry-after"]


async def test_not_configured_is_503() -> None:
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
        response = await http.post("/api/v1/anomalies/analyze", json={})
    assert response.status_code == 503 and response.json()["code"] == "PROMETHEUS_UNAVAILABLE"


async def test_analysis_scores_the_vector_through_the_ml_path(prom: PrometheusServer, tmp_path: Path) -> None:
    """With the reference model registered (real HTTP), the analysis reports its verdict on the vector."""
    from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
    from pipeline.adapters.scorer import KServeScorer
    from pipeline.embedded.ml import ReferenceMLServer

    service = ReferenceMLServer(tmp_path).start()
    client = PrometheusClient(Settings(prometheus_url=prom.url))
    registry = ModelRegistry([ModelEndpoint("anomaly-detector", "reference", "", "anomaly-detector", service.url)])
    kserve = KServeClient(Settings(), registry)
    app = FastAPI()
    errors.install(app)
    app.include_router(router(Settings(), client, KServeScorer(kserve)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http:
            leak = (await http.post("/api/v1/anomalies/analyze", json={"namespace": "shop", "pod": LEAKY_POD})).json()
            cluster = (await http.post("/api/v1/anomalies/analyze", json={"threshold": 0.3})).json()
            cart = (await http.post("/api/v1/anomalies/analyze",
                                    json={"namespace": "shop", "deployment": "cart"})).json()
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
    # The cluster holds a leaking, a crash-looping and a throttled pod: the model flags its vector, and the
    # item and its recommendation say which model and which scope (the MCP shows both verbatim).
    (ml,) = [a for a in cluster["anomalies"] if a["type"] == "ml_anomaly"]
    assert ml["model"] == "anomaly-detector" and "cluster" in ml["explanation"]
    (text,) = [t for t in cluster["recommendations"] if "anomaly model" in t]
    assert text.startswith(("Investigate cluster now", "Review cluster:")), text
    # A healthy two-replica deployment: the rules find nothing. The model scores it too; at some moments of the
    # generated history its score comes past the threshold (a false positive: tests/integration/test_ml_scopes.py
    # measures how often, ~6 % for deployments), and then, only then, the answer lists it as the model's finding.
    assert cart["model"]["status"] == "available"
    assert [a for a in cart["anomalies"] if a["type"] != "ml_anomaly"] == []
    flagged = [a for a in cart["anomalies"] if a["type"] == "ml_anomaly"]
    assert len(flagged) == (cart["model"]["prediction"] == -1 and cart["model"]["score"] >= 0.7), cart


# ---------------------------------------------------------------- what the MCP server's tools show


def mcp_throttled_pods(request: dict, response: dict, threshold_pct: float = 25.0) -> list[tuple[str, str, float]]:
    """The entries the MCP's get-throttled-pods tool builds from one analyze answer (its
    internal/tools/get_throttled_pods.go at c710d4a, re-stated): one for the scope from
    `enriched_signals` when `throttling_detected` (rate x100), then one per anomaly carrying
    `metrics.throttle_rate_pct` (x100), its namespace and pod split from `explanation` "ns/pod"."""
    entries = []
    signals = response.get("enriched_signals") or {}
    if signals.get("throttling_detected"):
        rate = (signals.get("cpu_throttle_rate") or 0.0) * 100
        if rate >= threshold_pct:
            entries.append((request.get("namespace", ""), request.get("pod", ""), rate))
    for anomaly in response.get("anomalies") or []:
        raw = (anomaly.get("metrics") or {}).get("throttle_rate_pct")
        if raw is None or raw * 100 < threshold_pct:
            continue
        ns, _, pod = anomaly["explanation"].partition("/")
        entries.append((ns, pod, raw * 100))
    return entries


@pytest.mark.parametrize(
    "scope",
    [{}, {"namespace": "payments"}, {"namespace": "payments", "deployment": "throttled"},
     {"namespace": "payments", "pod": THROTTLED_POD}, {"deployment": "throttled"}, {"pod": THROTTLED_POD}],
    ids=["cluster", "namespace", "deployment", "pod", "deployment-without-namespace", "pod-without-namespace"],
)
async def test_get_throttled_pods_shows_the_throttled_pod_once_with_its_true_rate(
    api: httpx.AsyncClient, scope: dict
) -> None:
    request = {"timeRange": "1h", "metrics": ["cpu_usage"], "threshold": 0.25, **scope}  # what the tool sends
    entries = mcp_throttled_pods(request, await analyze(api, **request))
    assert len(entries) == 1, entries
    (_, pod, rate) = entries[0]
    assert pod in (THROTTLED_POD, "") and 55 < rate < 65  # the generated pod is throttled ~60 % of periods
    if "pod" not in scope:
        assert pod == THROTTLED_POD  # named, not the scope


async def test_the_mcp_default_model_name_is_analysed_with_the_anomaly_model(api: httpx.AsyncClient) -> None:
    # The MCP's SDK fills the tool schema's default into every call.
    body = await analyze(api, timeRange="1h", metrics=["memory_usage"], threshold=0.3,
                         modelName="predictive-analytics", namespace="shop")
    assert found(body) == {(LEAKY_POD, "pod_memory_usage")}
    assert body["model"]["requested"] == "predictive-analytics"
    assert body["model"]["name"] == "anomaly-detector"
    assert "not an anomaly model" in body["model"]["note"]
    plain = await analyze(api, namespace="shop", model_name="anomaly-detector")
    assert plain["model"]["requested"] == "anomaly-detector" and "note" not in plain["model"]


async def test_a_deployment_or_pod_without_namespace_is_found_in_its_namespace(api: httpx.AsyncClient) -> None:
    by_deployment = await analyze(api, timeRange="1h", metrics=["memory_usage"], modelName="anomaly-detector",
                                  deployment="leaky")
    assert by_deployment["scope"]["namespace"] == "shop" and by_deployment["scope"]["deployment"] == "leaky"
    assert found(by_deployment) == {(LEAKY_POD, "pod_memory_usage")}
    assert by_deployment["query_count"] == 3  # the namespace lookup, then the usual two
    by_pod = await analyze(api, pod=CRASHY_POD)
    assert by_pod["scope"]["namespace"] == "payments"
    assert found(by_pod) == {(CRASHY_POD, "container_restart_count")}
    ghost = await api.post("/api/v1/anomalies/analyze", json={"deployment": "ghost"})
    assert ghost.status_code == 404 and ghost.json()["field"] == "namespace"
    assert "deployment 'ghost'" in ghost.json()["error"]


async def test_texts_the_mcp_shows_name_their_subject(api: httpx.AsyncClient) -> None:
    body = await analyze(api, threshold=0.3)
    for text in body["recommendations"]:
        assert "  " not in text and " /" not in text, text
    (throttling,) = [a for a in body["alerts"] if a["type"] == "resource_exhaustion"]
    assert throttling["message"].startswith(f"payments/{THROTTLED_POD}: CPU throttled in 6")
    assert "CFS periods" in throttling["message"]
    for item in body["anomalies"]:
        assert item["model"] == ("statistical-baseline" if item["type"] != "ml_anomaly" else "anomaly-detector")

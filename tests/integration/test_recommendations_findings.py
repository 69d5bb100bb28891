"""`POST /api/v1/recommendations`: the ML recommendation says what is wrong in the namespace.

A real Prometheus serves the generated history ending now (shop: a leaking pod beside two healthy cart
pods; payments: a crash-looping pod and a CPU-throttled one); the project's reference model service runs
under uvicorn; the routes are wired as `pipeline gateway` wires them (`pipeline.compose.app._models_router`:
the namespace's 45-feature vector for the model, the analysis rules' per-pod findings for the type).

Before, the type came from node CPU vs node memory alone: shop, whose problem is a memory leak, got
`cpu_throttling` / `increase_cpu_limit` because node CPU (38 %) was above node memory (34 %).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from pipeline.adapters.features import FeatureCollector
from pipeline.adapters.findings import NamespaceFindings
from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
from pipeline.adapters.prometheus import PrometheusClient
from pipeline.api import errors
from pipeline.compose.app import Parts, _models_router
from pipeline.config import Settings
from pipeline.domain.features import FeatureVector, Scope
from pipeline.embedded.history import CRASHY_POD, LEAKY_POD, THROTTLED_POD
from pipeline.embedded.process import free_port
from pipeline.gateway.model_routes import router
from pipeline.ml.api import create_app
from pipeline.ml.model import train_or_load
from tests.unit.ml_fakes import MODEL, Served, ml_settings

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def kserve() -> AsyncIterator[KServeClient]:
    model = await asyncio.to_thread(train_or_load)
    served = await Served(create_app(model)).start()
    registry = ModelRegistry([ModelEndpoint(MODEL, "embedded-reference", "", MODEL, served.url)])
    client = KServeClient(ml_settings(), registry)
    yield client
    await client.aclose()
    await served.stop()


def app_of(router_: Any) -> httpx.AsyncClient:
    app = FastAPI()
    errors.install(app)
    app.include_router(router_)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway")


@pytest.fixture(scope="module")
async def api(prometheus: PrometheusClient, kserve: KServeClient) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's models routes, wired as the gateway wires them."""
    parts = Parts(settings=Settings(), probe=cast(Any, None), prometheus=prometheus, kserve=kserve)
    async with app_of(_models_router(parts)) as client:
        yield client


async def ml_recommendations(api: httpx.AsyncClient, **request: Any) -> list[dict[str, Any]]:
    response = await api.post("/api/v1/recommendations", json={"confidence_threshold": 0.1, **request})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ml_enabled"] is True and body["ml"]["status"] == "ok", body["ml"]
    return [r for r in body["recommendations"] if r["source"] == "ml_prediction"]


async def test_shop_is_recommended_for_its_memory_leak(api: httpx.AsyncClient) -> None:
    (rec,) = await ml_recommendations(api, timeframe="24h", namespace="shop")
    assert (rec["issue_type"], rec["namespace"], rec["target"], rec["pods"]) == (
        "memory_leak",
        "shop",
        "shop",
        [LEAKY_POD],
    )
    assert rec["recommended_actions"][0] == "investigate_memory_leak"
    assert "increase_cpu_limit" not in rec["recommended_actions"]
    assert rec["severity"] in ("high", "critical") and 0.8 <= rec["confidence"] <= 1.0
    assert rec["evidence"][0] == "anomaly-detector flags the current 45-feature vector as anomalous"
    leak = [e for e in rec["evidence"] if e.startswith(f"shop/{LEAKY_POD}: memory at")]
    assert len(leak) == 1 and "growing steadily" in leak[0]


async def test_payments_is_recommended_for_its_crash_loop_and_its_throttling(api: httpx.AsyncClient) -> None:
    recs = await ml_recommendations(api, timeframe="1h", namespace="payments")
    assert [(r["id"], r["issue_type"], r["pods"]) for r in recs] == [
        ("rec-ml-001", "pod_crash_loop", [CRASHY_POD]),  # 12 restarts: the stronger finding first
        ("rec-ml-002", "cpu_throttling", [THROTTLED_POD]),
    ]
    crash, throttled = recs
    assert crash["recommended_actions"][0] == "check_container_logs" and crash["severity"] == "critical"
    assert any("container restarts in the last 1h (crash loop)" in e for e in crash["evidence"])
    assert throttled["recommended_actions"][0] == "increase_cpu_limit"
    (rate,) = [m for e in throttled["evidence"] for m in re.findall(r"CPU throttled in (\d+)% of its CFS", e)]
    assert 55 <= int(rate) <= 65  # the history throttles it 60 % of the time, with noise
    assert {r["namespace"] for r in recs} == {"payments"}


async def test_cluster_wide_each_namespace_gets_its_own_issue(api: httpx.AsyncClient) -> None:
    recs = await ml_recommendations(api, timeframe="24h")
    assert sorted((r["namespace"], r["issue_type"]) for r in recs) == [
        ("payments", "cpu_throttling"),
        ("payments", "pod_crash_loop"),
        ("shop", "memory_leak"),
    ]


async def test_without_the_rules_a_flagged_vector_is_an_unexplained_anomaly_and_says_why(
    prometheus: PrometheusClient, kserve: KServeClient
) -> None:
    """The vector from the real Prometheus, the findings from one that is down."""
    collector = FeatureCollector(prometheus)

    async def vector(namespace: str | None) -> FeatureVector:
        return (await collector.collect(Scope(namespace=namespace), time.time())).vector

    dead = PrometheusClient(
        Settings(prometheus_url=f"http://127.0.0.1:{free_port()}", prometheus_timeout_s=2)
    )
    findings = NamespaceFindings(dead).collect
    routes = router(Settings(), kserve.registry, kserve, features_provider=vector, findings_provider=findings)
    async with app_of(routes) as client:
        (rec,) = await ml_recommendations(client, timeframe="6h", namespace="shop")
    await dead.aclose()
    assert (rec["issue_type"], rec["recommended_actions"]) == (
        "ml_anomaly",
        ["investigate_issue", "review_logs", "check_metrics"],
    )
    reason = "The per-pod rules could not be evaluated (PrometheusUnavailable"
    assert any(e.startswith(reason) for e in rec["evidence"]), rec["evidence"]

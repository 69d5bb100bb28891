"""`API_TOKEN` protects the compute routes too (POST detect, predict, anomalies/analyze, recommendations),
unless `API_OPEN_ROUTES` opens them: the gateway with the reference ML model and a real Prometheus holding the
generated history, so each route does its real work once it lets a request in."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from pipeline.compose.process import Plan
from pipeline.config import COMPUTE_ROUTES, Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.embedded.process import free_port
from pipeline.embedded.prometheus import PrometheusServer
from tests.support import PipelineUnderTest

pytestmark = pytest.mark.timeout(300)

TOKEN = "s3cret"
BODIES: dict[str, Any] = {
    "/api/v1/detect": {"model": "anomaly-detector", "instances": [[0.0] * len(FEATURE_NAMES)]},
    "/api/v1/predict": {"hour": 3, "day_of_week": 1, "cpu_rolling_mean": 0.5, "memory_rolling_mean": 0.5,
                        "namespace": "shop"},
    "/api/v1/anomalies/analyze": {"namespace": "shop", "model_name": "anomaly-detector"},
    "/api/v1/recommendations": {"namespace": "shop"},
}
MCP_ROUTES = ["/api/v1/anomalies/analyze", "/api/v1/predict"]  # what the MCP server POSTs of these


@pytest.fixture(scope="module")
def base(kafka_bootstrap: str, prom: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", host="127.0.0.1",
        port=free_port(), data_dir=Path(tmp_path_factory.mktemp("token")) / "data", prometheus_url=prom.url,
        kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=500, gateway_write_timeout_s=10.0,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def gateway(settings: Settings, **update: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"port": free_port(), **update})
    plan = Plan(gateway=True, apply_topics=True, embedded_ml=True)
    async with PipelineUnderTest(settings, plan) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=30.0, trust_env=False) as http:
            yield http


async def post(http: httpx.AsyncClient, route: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.post(route, json=BODIES[route], headers=headers)


async def test_with_a_token_every_compute_route_needs_it(base: Settings) -> None:
    async with gateway(base, api_token=SecretStr(TOKEN)) as http:
        assert sorted(BODIES) == sorted(COMPUTE_ROUTES)
        for route in COMPUTE_ROUTES:
            for token in (None, "wrong"):
                refused = await post(http, route, token)
                assert refused.status_code == 401, (route, refused.text)
                assert refused.json()["code"] == "UNAUTHORIZED"
                assert refused.headers["www-authenticate"] == "Bearer"
            allowed = await post(http, route, TOKEN)
            assert allowed.status_code == 200, (route, allowed.text)
        # the MCP chart's doubled prefix reaches the same route, and the same guard
        doubled = await http.post("/api/v1/api/v1/detect", json=BODIES["/api/v1/detect"])
        assert doubled.status_code == 401
        # reads stay open
        assert (await http.get("/api/v1/capacity/cluster")).status_code == 200


async def test_routes_opened_by_api_open_routes_answer_without_the_token(base: Settings) -> None:
    async with gateway(base, api_token=SecretStr(TOKEN), api_open_routes=MCP_ROUTES) as http:
        for route in COMPUTE_ROUTES:
            answer = await post(http, route)
            assert answer.status_code == (200 if route in MCP_ROUTES else 401), (route, answer.text)
        # opening compute routes opens no write route
        manual = {"title": "t", "description": "d", "severity": "low"}
        assert (await http.post("/api/v1/incidents", json=manual)).status_code == 401


async def test_without_a_token_every_compute_route_is_open(base: Settings) -> None:
    async with gateway(base) as http:
        for route in COMPUTE_ROUTES:
            answer = await post(http, route)
            assert answer.status_code == 200, (route, answer.text)


def test_api_open_routes_names_only_compute_routes() -> None:
    opened = Settings(api_open_routes=" /api/v1/predict/ ,/api/v1/anomalies/analyze")  # as the env gives it
    assert opened.api_open_routes == ["/api/v1/predict", "/api/v1/anomalies/analyze"]
    with pytest.raises(ValidationError, match="API_OPEN_ROUTES may only name"):
        Settings(api_open_routes="/api/v1/incidents")

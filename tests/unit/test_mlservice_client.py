"""The legacy ML service client against a FAKE ML service over real HTTP (tests/unit/ml_fakes.py), both
response variants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.adapters.breaker import BreakerState
from pipeline.adapters.ml import (
    InvalidModelResponse,
    MetricSample,
    MLServiceClient,
    ModelUnavailable,
)
from pipeline.config import Settings
from tests.support import Clock
from tests.unit.ml_fakes import FakeMLService, Served, ml_settings


# ------------------------------------------------------------------------------------------ ML service
@pytest.fixture(scope="module")
async def ml_server() -> AsyncIterator[tuple[FakeMLService, Served]]:
    fake = FakeMLService()
    served = await Served(fake.app).start()
    yield fake, served
    await served.stop()


@pytest.fixture
async def ml(
    ml_server: tuple[FakeMLService, Served], clock: Clock
) -> AsyncIterator[tuple[FakeMLService, MLServiceClient]]:
    ml_server[0].reset()
    client = MLServiceClient(ml_settings(ml_service_url=ml_server[1].url + "/"), clock=clock)
    yield ml_server[0], client
    await client.aclose()


NOW = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
SAMPLES = [
    MetricSample("pod_cpu_usage", 0.42, NOW - timedelta(minutes=1), {"namespace": "shop", "pod": "cart-1"}),
    MetricSample("pod_cpu_usage", 0.97, NOW, {"namespace": "shop", "pod": "cart-1"}),
    MetricSample("pod_memory_usage", 0.5, NOW),
]


@pytest.mark.parametrize("variant", ["structs", "contract"])
async def test_ml_service_detect_reads_both_variants(
    ml: tuple[FakeMLService, MLServiceClient], variant: str
) -> None:
    fake, client = ml
    fake.variant = variant
    report = await client.detect(SAMPLES, threshold=0.7)
    path, body = fake.requests[-1]
    assert path == "/api/v1/anomaly/detect" and body["threshold"] == 0.7
    assert body["metrics"][1] == {
        "name": "pod_cpu_usage",
        "metric_name": "pod_cpu_usage",
        "value": 0.97,
        "timestamp": "2026-01-01T10:00:00Z",
        "labels": {"namespace": "shop", "pod": "cart-1"},
    }
    assert [a.metric_name for a in report.found] == ["pod_cpu_usage"]
    assert report.found[0].severity == "high"
    if variant == "structs":
        assert (report.confidence, report.total, report.found[0].value, report.found[0].expected) == (
            0.91,
            2,
            0.97,
            0.4,
        )
    else:
        assert (report.confidence, report.overall_score, report.found[0].score) == (0.88, 0.92, 0.92)
        assert len(report.anomalies) == 2


@pytest.mark.parametrize("variant", ["structs", "contract"])
async def test_ml_service_predict_reads_both_variants(
    ml: tuple[FakeMLService, MLServiceClient], variant: str
) -> None:
    fake, client = ml
    fake.variant = variant
    report = await client.predict(SAMPLES, "1h", namespace="shop")
    path, body = fake.requests[-1]
    assert path == "/api/v1/prediction/predict"
    assert (body["predict_ahead"], body["prediction_horizon"], body["namespace"]) == ("1h", "1h", "shop")
    assert body["current_state"] == {"pod_cpu_usage": 0.97, "pod_memory_usage": 0.5}
    assert len(body["historical_metrics"]) == 3
    (prediction,) = report.predictions
    if variant == "structs":
        assert (prediction.metric_name, prediction.predicted_value, prediction.severity) == (
            "pod_memory_usage",
            0.93,
            "high",
        )
        assert (report.confidence, report.time_range) == (0.8, "1h")
    else:
        assert (prediction.issue_type, prediction.probability, prediction.expected_time) == (
            "memory_pressure",
            0.85,
            "45m",
        )
        assert prediction.recommended_actions == ["increase_memory_limit", "add_horizontal_scaling"]
        assert report.confidence == 0.82


async def test_ml_service_wrong_shapes_failures_and_health(
    ml: tuple[FakeMLService, MLServiceClient], clock: Clock
) -> None:
    fake, client = ml
    assert (await client.health()).ok
    fake.mode = "garbage"
    with pytest.raises(
        InvalidModelResponse, match="ml-service answered an invalid response: anomalies: Field required"
    ):
        await client.detect(SAMPLES)
    with pytest.raises(InvalidModelResponse, match="predictions: Field required"):
        await client.predict(SAMPLES)
    fake.mode, fake.status = "status", 503
    health = await client.health()
    assert (health.ok, health.message) == (False, "Health check returned status 503")
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match="model unavailable: ml-service: HTTP 503"):
            await client.predict(SAMPLES)
    assert client.breaker.state is BreakerState.OPEN
    assert (await client.health()).circuit_breaker == "open"
    fake.mode = "ok"
    clock.advance(30)
    assert (await client.detect(SAMPLES)).found
    assert client.breaker.state is BreakerState.CLOSED


def test_ml_service_needs_a_url() -> None:
    with pytest.raises(ValueError, match="ML_SERVICE_URL is not set"):
        MLServiceClient(Settings(ml_service_url=""))

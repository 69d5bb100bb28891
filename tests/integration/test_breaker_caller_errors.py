"""One bad caller does not open the circuit for everyone: against the project's reference ML service over HTTP.

The reference service answers a wrong feature count with 400 (v1) and declares its input width in its v2
metadata; a KServe runtime's 500 for the same mistake is covered with a fake in tests/unit/ml_fakes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.adapters.breaker import BreakerState
from pipeline.adapters.ml import (
    KServeClient,
    ModelEndpoint,
    ModelRegistry,
    ModelUnavailable,
    PredictionRejected,
)
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.embedded.ml import ReferenceMLServer

MODEL = "anomaly-detector"
WIDTH = len(FEATURE_NAMES)
ROW = [0.3] * WIDTH


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceMLServer]:
    with ReferenceMLServer(tmp_path_factory.mktemp("ml")) as ref:
        yield ref


@pytest.fixture
async def client(service: ReferenceMLServer) -> AsyncIterator[KServeClient]:
    settings = Settings(ml_circuit_breaker_threshold=3, ml_retry_attempts=1, kserve_timeout_s=5.0)
    registry = ModelRegistry(
        [
            ModelEndpoint("v1-model", "reference", "", MODEL, service.url, "v1"),
            ModelEndpoint("v2-model", "reference", "", MODEL, service.url, "v2"),
        ]
    )
    kserve = KServeClient(settings, registry)
    yield kserve
    await kserve.aclose()


async def test_wrong_width_requests_never_open_the_circuit_and_the_next_good_caller_is_served(
    client: KServeClient,
) -> None:
    for _ in range(5):  # more than the threshold of 3
        with pytest.raises(PredictionRejected, match=r"HTTP 400"):
            await client.predict("v1-model", [[0.3, 0.3, 0.3]])
        with pytest.raises(
            PredictionRejected, match=rf"before sending: .*has 3 values, .*metadata declares {WIDTH}"
        ):
            await client.predict("v2-model", [[0.3, 0.3, 0.3]])  # the width comes from the model's metadata
    for model in ("v1-model", "v2-model"):
        assert client.breaker(model).state is BreakerState.CLOSED
        assert client.breaker(model).consecutive_failures == 0
        prediction = await client.predict(model, [ROW])
        assert prediction.predictions[0] in (-1, 1) and prediction.model_version


async def test_a_bad_caller_between_real_failures_does_not_hide_them(
    client: KServeClient, service: ReferenceMLServer
) -> None:
    breaker = client.breaker("v1-model")
    await asyncio.to_thread(service.stop)
    try:
        for _ in range(2):
            with pytest.raises(ModelUnavailable):
                await client.predict("v1-model", [ROW])
        await asyncio.to_thread(service.start)
        with pytest.raises(PredictionRejected):
            await client.predict("v1-model", [[0.3]])  # the bad caller's answer resets nothing...
        assert breaker.consecutive_failures == 2
        await asyncio.to_thread(service.stop)
        with pytest.raises(ModelUnavailable):
            await client.predict("v1-model", [ROW])  # ...so the third real failure opens the circuit
        assert breaker.state is BreakerState.OPEN
    finally:
        await asyncio.to_thread(service.start)

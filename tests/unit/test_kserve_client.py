"""The KServe client (v1 and v2 protocols) against a FAKE KServe over real HTTP (tests/unit/ml_fakes.py):
retries, timeouts, the circuit breaker, malformed answers, health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.adapters.breaker import BreakerState
from pipeline.adapters.ml import (
    InvalidModelResponse,
    KServeClient,
    KServeProtocol,
    ModelNotFound,
    ModelUnavailable,
    PredictionRejected,
)
from pipeline.embedded.process import free_port
from tests.support import Clock
from tests.unit.ml_fakes import MODEL, FakeKServe, Served, ml_settings, registry_for


@pytest.fixture(scope="module")
async def kserve_server() -> AsyncIterator[tuple[FakeKServe, Served]]:
    fake = FakeKServe()
    served = await Served(fake.app).start()
    yield fake, served
    fake.release.set()
    await served.stop()


@pytest.fixture
async def fake(kserve_server: tuple[FakeKServe, Served]) -> AsyncIterator[FakeKServe]:
    kserve_server[0].reset()
    yield kserve_server[0]
    kserve_server[0].release.set()


@pytest.fixture
async def kserve(kserve_server: tuple[FakeKServe, Served], clock: Clock) -> AsyncIterator[KServeClient]:
    client = KServeClient(ml_settings(), registry_for(kserve_server[1].url), clock=clock)
    yield client
    await client.aclose()



async def test_predict_sends_kserve_v1_instances_and_reads_int_predictions(
    fake: FakeKServe, kserve: KServeClient
) -> None:
    result = await kserve.predict(MODEL, [[0.1, 0.2], [0.95, 0.1]])
    assert fake.bodies == [{"instances": [[0.1, 0.2], [0.95, 0.1]]}]
    assert (result.model, result.predictions, result.model_version) == (MODEL, [1, -1], "v1")
    assert result.scores is None and result.confidences is None


async def test_predict_accepts_float_predictions_and_reference_extras(
    fake: FakeKServe, kserve: KServeClient
) -> None:
    fake.mode = "floats"
    result = await kserve.predict(MODEL, [[0.1], [0.99]])
    assert result.predictions == [1, -1] and all(type(p) is int for p in result.predictions)
    assert result.scores == [0.1, 0.99] and result.confidences == [0.9, 0.9]
    assert result.as_dict() == {
        "predictions": [1, -1],
        "model_name": MODEL,
        "model_version": "v1",
        "scores": [0.1, 0.99],
        "confidences": [0.9, 0.9],
    }


async def test_transient_503s_are_retried_then_succeed(fake: FakeKServe, kserve: KServeClient) -> None:
    fake.fail_next = 2
    assert (await kserve.predict(MODEL, [[0.1]])).predictions == [1]
    assert fake.predict_calls == 3
    assert kserve.breaker(MODEL).consecutive_failures == 0


@pytest.mark.parametrize("status", [500, 501])
async def test_other_5xx_are_unavailable_without_retries(
    fake: FakeKServe, kserve: KServeClient, status: int
) -> None:
    fake.mode, fake.status = "status", status
    with pytest.raises(
        ModelUnavailable, match=f"model unavailable: anomaly-detector: HTTP {status}: fake failure"
    ):
        await kserve.predict(MODEL, [[0.1]])
    assert fake.predict_calls == 1


async def test_4xx_is_a_rejection_not_retried_and_not_held_against_the_model(
    fake: FakeKServe, kserve: KServeClient
) -> None:
    fake.mode, fake.status = "status", 400
    for _ in range(4):
        with pytest.raises(PredictionRejected, match=r"rejected the request \(HTTP 400\): fake failure 400"):
            await kserve.predict(MODEL, [[0.1]])
    assert fake.predict_calls == 4
    assert kserve.breaker(MODEL).state is BreakerState.CLOSED


@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_a_500_naming_a_wrong_feature_count_is_the_callers_error_not_held_against_the_model(
    kserve_server: tuple[FakeKServe, Served], fake: FakeKServe, clock: Clock, protocol: KServeProtocol
) -> None:
    client = KServeClient(ml_settings(), registry_for(kserve_server[1].url, protocol=protocol), clock=clock)
    try:
        fake.mode, fake.status = "status", 500
        for _ in range(2):  # the model really fails twice
            with pytest.raises(ModelUnavailable, match="HTTP 500: .*fake failure 500"):
                await client.predict(MODEL, [[0.1, 0.2, 0.3]])
        fake.mode = "caller_500"
        for _ in range(5):  # one bad caller, again and again: more than the threshold
            with pytest.raises(
                PredictionRejected, match=r"\(HTTP 500\): .*X has 3 features, but StandardScaler"
            ):
                await client.predict(MODEL, [[0.1, 0.2, 0.3]])
        breaker = client.breaker(MODEL)
        assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 2
        assert client.snapshot()[MODEL]["state"] == "closed"
        fake.mode = "status"  # a third real failure still opens it: the bad caller hid nothing
        with pytest.raises(ModelUnavailable):
            await client.predict(MODEL, [[0.1, 0.2, 0.3]])
        assert breaker.state is BreakerState.OPEN
        assert fake.predict_calls == 8  # the caller's 500s were not retried either
    finally:
        await client.aclose()


async def test_a_500_with_any_other_body_is_still_the_models_failure(
    fake: FakeKServe, kserve: KServeClient
) -> None:
    fake.mode, fake.status = "status", 500  # a text body, not KServe's {"error": ...}
    for _ in range(3):
        with pytest.raises(ModelUnavailable):
            await kserve.predict(MODEL, [[0.1]])
    assert kserve.breaker(MODEL).state is BreakerState.OPEN


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("not_json", "answered an invalid response: body: Invalid JSON"),
        ("wrong_shape", "answered an invalid response: predictions: Field required"),
        ("short", "answered an invalid response: predictions: 1 values for 2 instances"),
        ("strings", "answered an invalid response: predictions.0: Input should be a valid number"),
    ],
)
async def test_malformed_answers_are_clear_errors(
    fake: FakeKServe, kserve: KServeClient, mode: str, message: str
) -> None:
    fake.mode = mode
    with pytest.raises(InvalidModelResponse, match=message):
        await kserve.predict(MODEL, [[0.1], [0.2]])
    assert kserve.breaker(MODEL).state is BreakerState.CLOSED


async def test_a_slow_model_times_out_instead_of_hanging(
    kserve_server: tuple[FakeKServe, Served], fake: FakeKServe, clock: Clock
) -> None:
    fake.mode = "slow"
    client = KServeClient(ml_settings(kserve_timeout_s=0.5), registry_for(kserve_server[1].url), clock=clock)
    async with asyncio.timeout(20):  # the guard: the client's own 0.5 s deadline must fire first
        with pytest.raises(ModelUnavailable, match="timed out after 0.5s"):
            await client.predict(MODEL, [[0.1]])
    assert fake.predict_calls == 1  # a read timeout is not retried
    await client.aclose()


async def test_a_refused_connection_is_unavailable(clock: Clock) -> None:
    client = KServeClient(ml_settings(), registry_for(f"http://127.0.0.1:{free_port()}"), clock=clock)
    with pytest.raises(ModelUnavailable, match="model unavailable: anomaly-detector: ConnectError"):
        await client.predict(MODEL, [[0.1]])
    health = await client.model_health(MODEL)
    assert health.status == "unavailable" and health.message.startswith("Connection failed: ConnectError")
    await client.aclose()


async def test_breaker_opens_after_three_failures_fails_fast_and_recovers_half_open(
    fake: FakeKServe, kserve: KServeClient, clock: Clock
) -> None:
    fake.mode, fake.status = "status", 500
    for _ in range(3):
        with pytest.raises(ModelUnavailable, match="HTTP 500"):
            await kserve.predict(MODEL, [[0.1]])
    assert kserve.breaker(MODEL).state is BreakerState.OPEN
    calls = fake.predict_calls
    with pytest.raises(ModelUnavailable, match="circuit breaker open after 3 consecutive failures") as info:
        await kserve.predict(MODEL, [[0.1]])
    assert info.value.retry_after_s == 30.0 and fake.predict_calls == calls

    clock.advance(30)  # half-open: one trial, which fails and reopens
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        await kserve.predict(MODEL, [[0.1]])
    assert kserve.breaker(MODEL).state is BreakerState.OPEN and fake.predict_calls == calls + 1

    fake.mode = "ok"  # the model is back; the next trial closes the circuit
    clock.advance(30)
    assert (await kserve.predict(MODEL, [[0.1]])).predictions == [1]
    assert kserve.breaker(MODEL).state is BreakerState.CLOSED
    assert kserve.snapshot()[MODEL]["state"] == "closed"


async def test_model_health_ready_unknown_and_circuit_open(
    kserve_server: tuple[FakeKServe, Served], fake: FakeKServe, clock: Clock
) -> None:
    registry = registry_for(kserve_server[1].url, MODEL, "missing")
    client = KServeClient(ml_settings(), registry, clock=clock)
    ready = await client.model_health(MODEL)
    assert ready.as_dict() == {
        "model": MODEL,
        "status": "ready",
        "service": f"{MODEL}-predictor",
        "namespace": "test",
        "circuit_breaker": "closed",
    }
    missing = await client.model_health("missing")
    assert (missing.status, missing.message) == ("unavailable", "Health check returned status 404")
    with pytest.raises(ModelNotFound):
        await client.model_health("unregistered")

    fake.mode, fake.status = "status", 503
    for _ in range(3):
        with pytest.raises(ModelUnavailable):
            await client.predict(MODEL, [[0.1]])
    fake.mode, probes = "ok", fake.health_calls
    health = await client.model_health(MODEL)
    assert (health.status, health.circuit_breaker) == ("unavailable", "open")
    assert health.message.startswith("circuit breaker open; next trial in")
    assert fake.health_calls == probes  # an open circuit is answered without asking the model
    clock.advance(30)
    assert (await client.model_health(MODEL)).status == "ready"
    await client.aclose()


async def test_non_finite_instances_are_refused_before_sending(
    fake: FakeKServe, kserve: KServeClient
) -> None:
    with pytest.raises(ValueError, match="finite"):
        await kserve.predict(MODEL, [[float("nan")]])
    assert fake.predict_calls == 0


# ------------------------------------------------------------------------------------------ KServe v2
@pytest.fixture
async def kserve_v2(kserve_server: tuple[FakeKServe, Served], clock: Clock) -> AsyncIterator[KServeClient]:
    client = KServeClient(ml_settings(), registry_for(kserve_server[1].url, protocol="v2"), clock=clock)
    yield client
    await client.aclose()


async def test_v2_predict_sends_one_fp64_tensor_and_reads_kserves_single_output(
    fake: FakeKServe, kserve_v2: KServeClient
) -> None:
    result = await kserve_v2.predict(MODEL, [[0.1, 0.2], [0.95, 0.1]])
    assert fake.bodies == [
        {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [0.1, 0.2, 0.95, 0.1]}]}
    ]
    assert (result.model, result.predictions, result.model_version) == (MODEL, [1, -1], "v2")
    assert all(type(p) is int for p in result.predictions)
    assert result.scores is None and result.confidences is None


@pytest.mark.parametrize("mode", ["floats", "nested"])
async def test_v2_reads_named_outputs_and_nested_data(
    fake: FakeKServe, kserve_v2: KServeClient, mode: str
) -> None:
    fake.mode = mode
    result = await kserve_v2.predict(MODEL, [[0.1], [0.99]])
    assert result.predictions == [1, -1]
    if mode == "floats":
        assert (result.scores, result.confidences) == ([0.1, 0.99], [0.9, 0.9])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("two_outputs", "outputs: no 'predictions' output among labels, probabilities"),
        ("short", r"outputs\[output-0\]: 1 values for 2 instances"),
        ("strings", r"outputs\[output-0\].data.0: Input should be a valid number"),
        ("v1_body", "outputs: Field required"),
    ],
)
async def test_v2_malformed_answers_are_clear_errors(
    fake: FakeKServe, kserve_v2: KServeClient, mode: str, message: str
) -> None:
    fake.mode = mode
    with pytest.raises(InvalidModelResponse, match=message):
        await kserve_v2.predict(MODEL, [[0.1], [0.2]])
    assert kserve_v2.breaker(MODEL).state is BreakerState.CLOSED


async def test_v2_rows_of_different_lengths_are_refused_before_sending(
    fake: FakeKServe, kserve_v2: KServeClient
) -> None:
    with pytest.raises(ValueError, match=r"instances\[1\] has 3 values, instances\[0\] 2"):
        await kserve_v2.predict(MODEL, [[0.1, 0.2], [0.1, 0.2, 0.3]])
    assert fake.predict_calls == 0


async def test_v2_errors_health_and_a_model_the_server_does_not_serve(
    kserve_server: tuple[FakeKServe, Served], fake: FakeKServe, clock: Clock
) -> None:
    client = KServeClient(
        ml_settings(), registry_for(kserve_server[1].url, MODEL, "missing", protocol="v2"), clock=clock
    )
    assert (await client.model_health(MODEL)).status == "ready"
    missing = await client.model_health("missing")
    assert (missing.status, missing.message) == ("unavailable", "Health check returned status 404")
    with pytest.raises(ModelUnavailable, match=r"/v2/models/missing/infer answered 404 .*does not exist"):
        await client.predict("missing", [[0.1]])
    fake.mode, fake.status = "status", 400
    with pytest.raises(PredictionRejected, match=r"HTTP 400\): \{\"error\":\"fake failure 400\"\}"):
        await client.predict(MODEL, [[0.1]])
    assert fake.health_calls == 2
    await client.aclose()

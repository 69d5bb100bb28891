"""The KServe proxy routes and recommendations, with the models behind real HTTP servers.

Each route test runs against three backends:
* `reference`: the project's reference ML service (`pipeline.ml.api.create_app` over the cached
  reference model, trained on first use with a real Prometheus) under uvicorn, called over KServe v1;
* `reference-v2`: the same service called over KServe v2, the Open Inference Protocol
  (`KSERVE_PROTOCOL=v2`);
* `fake`: the FAKE KServe of tests/unit/ml_fakes.py, which can also be made to fail, stall or
  answer garbage (a real KServe cannot run here).

Errors are checked the way the notebook client reads them: JSON with `error` on 400/404/503.
Breakers run on a test clock: time is moved, never slept.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pipeline.adapters.breaker import BreakerState
from pipeline.adapters.ml import KServeClient, KServeProtocol, ModelEndpoint, ModelRegistry
from pipeline.adapters.scorer import KServeScorer, model_registry, scorer_from_settings
from pipeline.api import errors
from pipeline.config import Settings
from pipeline.domain import analysis
from pipeline.domain.features import FEATURE_NAMES, FeatureVector
from pipeline.embedded.process import free_port
from pipeline.events import Incident, IncidentRow, Severity
from pipeline.gateway.model_routes import FeaturesProvider, FindingsProvider, IncidentsProvider, router
from pipeline.ml.api import create_app
from pipeline.ml.model import train_or_load
from tests.support import Clock
from tests.unit.ml_fakes import MODEL, FakeKServe, Served, ml_settings

pytestmark = pytest.mark.timeout(300)


@dataclass
class Backend:
    """A KServe server with a vector it calls normal (1) and one it calls anomalous (-1), and the protocol
    the gateway calls it with."""

    name: str
    served: Served
    normal: list[float]
    anomalous: list[float]
    fake: FakeKServe | None = None
    protocol: KServeProtocol = "v1"

    def endpoint(self, name: str, service: str, model: str, url: str | None = None) -> ModelEndpoint:
        return ModelEndpoint(name, service, "models", model, url or self.served.url, self.protocol)

    def registry(self, *extra: ModelEndpoint) -> ModelRegistry:
        return ModelRegistry([self.endpoint(MODEL, f"{MODEL}-predictor", MODEL), *extra])


@pytest.fixture(scope="module")
async def reference_kserve() -> AsyncIterator[Backend]:
    model = await asyncio.to_thread(train_or_load)
    served = await Served(create_app(model)).start()
    yield Backend("reference", served, [float(v) for v in model.medians], [1000.0] * len(FEATURE_NAMES))
    await served.stop()


@pytest.fixture(scope="module")
def reference_v2_kserve(reference_kserve: Backend) -> Backend:
    return replace(reference_kserve, name="reference-v2", protocol="v2")


@pytest.fixture(scope="module")
async def fake_kserve() -> AsyncIterator[Backend]:
    fake = FakeKServe()
    served = await Served(fake.app).start()
    yield Backend("fake", served, [0.1] * len(FEATURE_NAMES), [0.95] * len(FEATURE_NAMES), fake)
    fake.release.set()
    await served.stop()


@pytest.fixture(params=["reference", "reference-v2", "fake"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn, the fake reset to behave."""
    chosen: Backend = request.getfixturevalue(f"{request.param.replace('-', '_')}_kserve")
    if chosen.fake is not None:
        chosen.fake.reset()
    return chosen


@pytest.fixture
def fake_backend(fake_kserve: Backend) -> Backend:
    """The fake alone: the tests that make the model misbehave (the reference cannot be told to)."""
    assert fake_kserve.fake is not None
    fake_kserve.fake.reset()
    return fake_kserve


@pytest.fixture
def clock() -> Clock:
    return Clock()


@dataclass
class Gateway:
    http: httpx.AsyncClient
    kserve: KServeClient


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(clock: Clock) -> AsyncIterator[MakeGateway]:
    """`await make_gateway(registry, incidents=..., features=..., findings=..., **settings)`: the routes."""
    made: list[Gateway] = []

    async def make(
        registry: ModelRegistry,
        *,
        incidents: IncidentsProvider | None = None,
        features: FeaturesProvider | None = None,
        findings: FindingsProvider | None = None,
        **settings: Any,
    ) -> Gateway:
        kserve = KServeClient(ml_settings(**settings), registry, clock=clock)
        app = FastAPI()
        errors.install(app)
        app.include_router(
            router(
                Settings(),
                registry,
                kserve,
                incidents_provider=incidents,
                features_provider=features,
                findings_provider=findings,
            )
        )
        made.append(
            Gateway(httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway"), kserve)
        )
        return made[-1]

    yield make
    for g in made:
        await g.http.aclose()
        await g.kserve.aclose()


@pytest.fixture
async def gw(backend: Backend, make_gateway: MakeGateway) -> Gateway:
    return await make_gateway(backend.registry())


def notebook_error(response: httpx.Response, status: int) -> str:
    """What the notebook client does on 400/404/503: `response.json()["error"]`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["code"]
    return str(body["error"])


# ------------------------------------------------------------------------------------------ models / health
async def test_models_lists_the_registered_models(backend: Backend, make_gateway: MakeGateway) -> None:
    other = backend.endpoint("predictive-analytics", "pa", "predictive-analytics")
    g = await make_gateway(backend.registry(other))
    response = await g.http.get("/api/v1/models")
    assert response.status_code == 200
    assert response.json() == {"models": ["anomaly-detector", "predictive-analytics"], "count": 2}
    empty = await make_gateway(ModelRegistry())
    assert (await empty.http.get("/api/v1/models")).json() == {"models": [], "count": 0}


async def test_model_health_ready_unavailable_and_unknown(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    down = backend.endpoint("down", "down-predictor", "down", f"http://127.0.0.1:{free_port()}")
    missing = backend.endpoint("missing", "missing-predictor", "no-such-model")
    g = await make_gateway(backend.registry(down, missing))
    ready = await g.http.get(f"/api/v1/models/{MODEL}/health")
    assert ready.status_code == 200
    assert ready.json() == {
        "model": MODEL,
        "status": "ready",
        "service": f"{MODEL}-predictor",
        "namespace": "models",
        "circuit_breaker": "closed",
    }
    unreachable = (await g.http.get("/api/v1/models/down/health")).json()
    assert unreachable["status"] == "unavailable" and unreachable["message"].startswith("Connection failed")
    not_served = (await g.http.get("/api/v1/models/missing/health")).json()
    assert (not_served["status"], not_served["message"]) == (
        "unavailable",
        "Health check returned status 404",
    )
    error = notebook_error(await g.http.get("/api/v1/models/nope/health"), 404)
    assert error == "model not found: nope"


# ------------------------------------------------------------------------------------------ detect
async def test_detect_forwards_instances_and_answers_int_predictions(backend: Backend, gw: Gateway) -> None:
    response = await gw.http.post(
        "/api/v1/detect", json={"model": MODEL, "instances": [backend.normal, backend.anomalous]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"] == [1, -1] and all(type(p) is int for p in body["predictions"])
    assert body["model_name"] == MODEL
    if backend.fake is None:  # the reference service, over either protocol
        assert body["model_version"] and len(body["scores"]) == len(body["confidences"]) == 2
        assert body["scores"][1] > 0.5 > body["scores"][0]


async def test_detect_answers_with_the_logical_name_of_an_aliased_model(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    alias = backend.endpoint("detector", "ad-stable", MODEL)
    g = await make_gateway(ModelRegistry([alias]))
    response = await g.http.post("/api/v1/detect", json={"model": "detector", "instances": [backend.normal]})
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "detector"


@pytest.mark.parametrize(
    ("send", "message"),
    [
        ({"content": b"model=x", "headers": {"content-type": "application/x-www-form-urlencoded"}},
         "Content-Type must be application/json"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "Invalid request format"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, "Invalid request format"),
        ({"json": [1, 2]}, "Invalid request format"),
        ({"json": {"instances": [[0.1]]}}, "Missing 'model' field"),
        ({"json": {"model": "", "instances": [[0.1]]}}, "Missing 'model' field"),
        ({"json": {"model": 7, "instances": [[0.1]]}}, "Invalid request format"),
        ({"json": {"model": MODEL}}, "Missing 'instances' field"),
        ({"json": {"model": MODEL, "instances": []}}, "Missing 'instances' field"),
        ({"json": {"model": MODEL, "instances": [0.1, 0.2]}}, "Invalid request format: instances[0] must be a list"),
        ({"json": {"model": MODEL, "instances": [["x"]]}}, "Invalid request format: instances[0][0] must be a finite number"),
        ({"json": {"model": MODEL, "instances": [[True]]}}, "Invalid request format: instances[0][0] must be a finite number"),
        ({"content": b'{"model":"anomaly-detector","instances":[[NaN]]}'}, "Invalid request format: instances[0][0] must be a finite number"),
    ],
)  # fmt: skip
async def test_detect_bad_requests_are_400_with_a_json_error(
    backend: Backend, gw: Gateway, send: dict[str, Any], message: str
) -> None:
    calls = backend.fake.predict_calls if backend.fake else 0
    error = notebook_error(await gw.http.post("/api/v1/detect", **send), 400)
    assert error.startswith(message)
    assert (backend.fake.predict_calls if backend.fake else 0) == calls


async def test_detect_unknown_model_is_404(gw: Gateway, backend: Backend) -> None:
    response = await gw.http.post("/api/v1/detect", json={"model": "nope", "instances": [backend.normal]})
    assert notebook_error(response, 404) == "model not found: nope"


async def test_detect_unreachable_model_is_503(make_gateway: MakeGateway, backend: Backend) -> None:
    down = backend.endpoint(MODEL, "ad", MODEL, f"http://127.0.0.1:{free_port()}")
    g = await make_gateway(ModelRegistry([down]))
    response = await g.http.post("/api/v1/detect", json={"model": MODEL, "instances": [backend.normal]})
    assert notebook_error(response, 503).startswith("model unavailable: anomaly-detector: ConnectError")


async def test_detect_a_model_its_server_does_not_serve_is_503(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    misnamed = backend.endpoint(MODEL, "ad", "no-such-model")
    g = await make_gateway(ModelRegistry([misnamed]))
    response = await g.http.post("/api/v1/detect", json={"model": MODEL, "instances": [backend.normal]})
    error = notebook_error(response, 503)
    path = (
        "/v2/models/no-such-model/infer" if backend.protocol == "v2" else "/v1/models/no-such-model:predict"
    )
    assert error.startswith(f"model unavailable: anomaly-detector: {backend.served.url}{path}")
    assert "answered 404" in error and error.endswith("is the model deployed under that name?")


async def test_input_the_model_refuses_is_400(backend: Backend, gw: Gateway) -> None:
    if backend.fake is not None:
        backend.fake.mode, backend.fake.status = "status", 400
        instances = [backend.normal]
    else:
        instances = [[0.1, 0.2, 0.3]]  # the reference model wants 45 features
    response = await gw.http.post("/api/v1/detect", json={"model": MODEL, "instances": instances})
    error = notebook_error(response, 400)
    assert error.startswith("Prediction failed: model anomaly-detector rejected the request (HTTP 400)")
    assert gw.kserve.breaker(MODEL).state is BreakerState.CLOSED


async def test_rows_a_v2_tensor_cannot_hold_are_400_before_calling_the_model(
    reference_v2_kserve: Backend, make_gateway: MakeGateway
) -> None:
    g = await make_gateway(reference_v2_kserve.registry())
    ragged = {"model": MODEL, "instances": [reference_v2_kserve.normal, [0.1, 0.2]]}
    error = notebook_error(await g.http.post("/api/v1/detect", json=ragged), 400)
    assert error == (
        "Invalid request format: a v2 tensor needs rows of one length: instances[1] has 2 values, instances[0] 45"
    )


async def test_breaker_opens_when_the_model_goes_away_and_half_opens_when_it_returns(
    backend: Backend, gw: Gateway, clock: Clock
) -> None:
    detect = {"model": MODEL, "instances": [backend.normal]}
    await backend.served.stop()
    try:
        for _ in range(3):
            error = notebook_error(await gw.http.post("/api/v1/detect", json=detect), 503)
            assert error.startswith("model unavailable: anomaly-detector: ConnectError")
        fast = await gw.http.post("/api/v1/detect", json=detect)
        assert notebook_error(fast, 503) == (
            "model unavailable: anomaly-detector: circuit breaker open after 3 consecutive failures; "
            "next trial in 30.0s"
        )
        # No Retry-After: clients that honour it (the notebook's urllib3 Retry) would block on it per retry.
        assert "retry-after" not in fast.headers and fast.json()["retry_after_s"] == 30.0
        health = (await gw.http.get(f"/api/v1/models/{MODEL}/health")).json()
        assert (health["status"], health["circuit_breaker"]) == ("unavailable", "open")
    finally:
        await backend.served.start()  # the same port: the model is back
    clock.advance(30)
    response = await gw.http.post("/api/v1/detect", json=detect)
    assert response.status_code == 200, response.text
    assert gw.kserve.breaker(MODEL).state is BreakerState.CLOSED
    assert (await gw.http.get(f"/api/v1/models/{MODEL}/health")).json()["status"] == "ready"


async def test_breaker_opens_after_three_5xx_and_requests_then_fail_fast(
    fake_backend: Backend, make_gateway: MakeGateway, clock: Clock
) -> None:
    fake = fake_backend.fake
    assert fake is not None
    gw = await make_gateway(fake_backend.registry())
    fake.mode, fake.status = "status", 500
    detect = {"model": MODEL, "instances": [fake_backend.normal]}
    for _ in range(3):
        error = notebook_error(await gw.http.post("/api/v1/detect", json=detect), 503)
        assert error == "model unavailable: anomaly-detector: HTTP 500: fake failure 500"
    calls = fake.predict_calls
    for _ in range(5):
        assert "circuit breaker open" in notebook_error(
            await gw.http.post("/api/v1/detect", json=detect), 503
        )
    assert fake.predict_calls == calls  # failing fast: the model was not asked

    clock.advance(30)
    fake.mode = "ok"
    assert (await gw.http.post("/api/v1/detect", json=detect)).json()["predictions"] == [1]
    assert fake.predict_calls == calls + 1


async def test_a_slow_model_is_a_503_timeout_not_a_hang(
    fake_backend: Backend, make_gateway: MakeGateway
) -> None:
    assert fake_backend.fake is not None
    fake_backend.fake.mode = "slow"
    g = await make_gateway(fake_backend.registry(), kserve_timeout_s=0.5)
    async with asyncio.timeout(20):
        response = await g.http.post(
            "/api/v1/detect", json={"model": MODEL, "instances": [fake_backend.normal]}
        )
    assert notebook_error(response, 503) == "model unavailable: anomaly-detector: timed out after 0.5s"
    fake_backend.fake.release.set()


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("not_json", "body: Invalid JSON"),
        ("wrong_shape", "predictions: Field required"),
        ("short", "predictions: 1 values for 2 instances"),
        ("strings", "predictions.0: Input should be a valid number"),
    ],
)
async def test_malformed_model_answers_are_clear_500s(
    fake_backend: Backend, make_gateway: MakeGateway, mode: str, detail: str
) -> None:
    assert fake_backend.fake is not None
    fake_backend.fake.mode = mode
    gw = await make_gateway(fake_backend.registry())
    response = await gw.http.post(
        "/api/v1/detect", json={"model": MODEL, "instances": [fake_backend.normal, fake_backend.anomalous]}
    )
    assert response.status_code == 502  # the model answered nonsense (pipeline/gateway/dependencies.py)
    body = response.json()
    assert body["success"] is False and body["code"] == "PREDICTION_FAILED"
    assert body["error"].startswith(
        f"Prediction failed: model anomaly-detector answered an invalid response: {detail}"
    )


async def test_the_score_stages_scorer_speaks_v2_to_the_embedded_reference_model(
    reference_v2_kserve: Backend,
) -> None:
    settings = ml_settings(kserve_protocol="v2", embedded_ml_url=reference_v2_kserve.served.url)
    registry = model_registry(settings, environ={})
    assert registry.get(MODEL).protocol == "v2"
    scorer = scorer_from_settings(settings, environ={})
    assert isinstance(scorer, KServeScorer)
    try:
        normal, anomalous = await scorer.score_many(
            [reference_v2_kserve.normal, reference_v2_kserve.anomalous]
        )
    finally:
        await scorer.aclose()
    assert (normal.prediction, anomalous.prediction) == (1, -1)
    assert normal.score is not None and anomalous.score is not None and anomalous.score > 0.5 > normal.score
    assert normal.version == anomalous.version != "unknown"


# ------------------------------------------------------------------------------------------ recommendations
def incident(n: int, issue: str, namespace: str, severity: Severity = Severity.HIGH) -> IncidentRow:
    """What the recommendations read of an incident (its row)."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    return IncidentRow.of(Incident(
        id=f"inc-{n:04d}",
        title=issue or "manual",
        severity=severity,
        source="test",
        namespace=namespace,
        issue_type=issue,
        created_at=at,
        updated_at=at,
    ))


HISTORY = [
    incident(1, "pod_crash_loop", "payments"),
    incident(2, "pod_crash_loop", "payments"),
    incident(3, "pod_crash_loop", "payments"),
    incident(4, "memory_pressure", "shop"),
    incident(5, "", "shop", Severity.CRITICAL),
    incident(6, "", "shop", Severity.CRITICAL),
]


def features(values: list[float] | None) -> FeaturesProvider:
    async def provide(namespace: str | None) -> FeatureVector:
        if values is None:
            return FeatureVector(1.7e9, missing=dict.fromkeys(FEATURE_NAMES, "prometheus not configured"))
        return FeatureVector(1.7e9, values=[*values])

    return provide


def history(incidents: Iterable[IncidentRow]) -> IncidentsProvider:
    return lambda: list(incidents)


async def test_recommendations_defaults_and_shape_without_sources(make_gateway: MakeGateway) -> None:
    g = await make_gateway(ModelRegistry())
    response = await g.http.post("/api/v1/recommendations")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["timeframe"] == "6h"
    assert body["recommendations"] == [] and body["total_recommendations"] == 0
    assert body["ml_enabled"] is False
    assert body["ml"] == {
        "model": MODEL,
        "status": "off",
        "message": "model anomaly-detector is not registered",
    }
    assert body["message"] == "No recommendations above the confidence threshold"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


async def test_recommendations_from_recurring_incidents(make_gateway: MakeGateway) -> None:
    g = await make_gateway(ModelRegistry(), incidents=history(HISTORY))
    body = (await g.http.post("/api/v1/recommendations", json={"confidence_threshold": 0.6})).json()
    recs = {r["issue_type"]: r for r in body["recommendations"]}
    assert set(recs) == {"pod_crash_loop", "critical"}  # memory_pressure happened once: not recurring
    crash = recs["pod_crash_loop"]
    assert (crash["namespace"], crash["target"], crash["severity"], crash["confidence"]) == (
        "payments",
        "payments",
        "medium",
        0.75,
    )
    assert crash["recommended_actions"] == [
        "check_container_logs",
        "verify_resource_limits",
        "review_health_probes",
    ]
    assert (crash["source"], crash["type"], crash["related_incident_id"]) == (
        "historical_analysis",
        "proactive",
        "inc-0003",
    )
    assert crash["evidence"][0] == "Issue occurred 3 times in recent history"
    assert recs["critical"]["confidence"] == 0.65 and recs["critical"]["namespace"] == "shop"
    assert [r["id"] for r in body["recommendations"]] == ["rec-hist-001", "rec-hist-002"]

    default = (await g.http.post("/api/v1/recommendations", json={})).json()  # threshold 0.7
    assert [r["issue_type"] for r in default["recommendations"]] == ["pod_crash_loop"]
    scoped = (
        await g.http.post("/api/v1/recommendations", json={"namespace": "shop", "confidence_threshold": 0.5})
    ).json()
    assert [r["issue_type"] for r in scoped["recommendations"]] == ["critical"]


async def test_recommendations_ml_flags_an_anomalous_vector(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    g = await make_gateway(backend.registry(), features=features(backend.anomalous))
    body = (
        await g.http.post("/api/v1/recommendations", json={"timeframe": "1h", "namespace": "shop"})
    ).json()
    assert body["ml_enabled"] is True and body["ml"]["status"] == "ok"
    (rec,) = body["recommendations"]
    assert (rec["id"], rec["source"], rec["namespace"], rec["target"]) == (
        "rec-ml-001",
        "ml_prediction",
        "shop",
        "shop",
    )
    # No per-pod rules here (tests/integration/test_recommendations_findings.py has them): the model says
    # something is wrong, nothing says what, and the recommendation says so instead of guessing.
    assert rec["issue_type"] == "ml_anomaly" and rec["severity"] == "critical"
    assert rec["recommended_actions"] == ["investigate_issue", "review_logs", "check_metrics"]
    assert "The per-pod rules could not be evaluated (no metrics source configured)" in rec["evidence"]
    assert 0.7 <= rec["confidence"] <= 1.0
    predicted = datetime.fromisoformat(rec["predicted_time"])
    stamped = datetime.fromisoformat(body["timestamp"])
    assert timedelta(minutes=29) <= predicted - stamped <= timedelta(minutes=31)

    normal = await make_gateway(backend.registry(), features=features(backend.normal))
    calm = (await normal.http.post("/api/v1/recommendations")).json()
    assert calm["ml_enabled"] is True and calm["recommendations"] == []


async def test_recommendations_ml_takes_its_type_from_the_findings_of_the_namespace_asked(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    asked: list[tuple[str | None, str]] = []

    async def findings(namespace: str | None, timeframe: str, now: float) -> list[analysis.Finding]:
        asked.append((namespace, timeframe))
        found = [
            analysis.crash_loop("payments", "crashy-1", 12, timeframe),
            analysis.throttling("shop", "cart-1", 0.6),
            analysis.cpu_outlier("shop", "cart-2", [(float(t), 0.1) for t in range(20)]),  # none: steady
        ]
        return [f for f in found if f is not None]

    g = await make_gateway(backend.registry(), features=features(backend.anomalous), findings=findings)
    body = (
        await g.http.post("/api/v1/recommendations", json={"timeframe": "6h", "namespace": "shop"})
    ).json()
    (rec,) = body["recommendations"]
    assert (rec["issue_type"], rec["pods"], rec["recommended_actions"][0]) == (
        "cpu_throttling",
        ["cart-1"],
        "increase_cpu_limit",
    )
    assert asked == [("shop", "6h")]
    calm = await make_gateway(backend.registry(), features=features(backend.normal), findings=findings)
    assert (await calm.http.post("/api/v1/recommendations", json={"namespace": "shop"})).json()[
        "recommendations"
    ] == []
    assert asked == [("shop", "6h")]  # a normal vector needs no explanation: the rules are not run


async def test_recommendations_ml_is_honest_about_why_it_is_off(
    backend: Backend, make_gateway: MakeGateway
) -> None:
    no_features = await make_gateway(backend.registry())
    body = (await no_features.http.post("/api/v1/recommendations")).json()
    assert (body["ml_enabled"], body["ml"]["status"], body["ml"]["message"]) == (
        False,
        "off",
        "no feature source configured",
    )

    incomplete = await make_gateway(backend.registry(), features=features(None))
    body = (await incomplete.http.post("/api/v1/recommendations")).json()
    assert (body["ml_enabled"], body["ml"]["status"]) == (False, "features_incomplete")
    assert body["ml"]["message"].startswith(
        "45 of 45 features missing (node_cpu_utilization_value: prometheus"
    )

    declined = await make_gateway(backend.registry(), features=features(backend.anomalous))
    body = (await declined.http.post("/api/v1/recommendations", json={"include_predictions": False})).json()
    assert (body["ml_enabled"], body["ml"]["message"]) == (False, "predictions not requested")

    down = backend.endpoint(MODEL, "ad", MODEL, f"http://127.0.0.1:{free_port()}")
    unreachable = await make_gateway(
        ModelRegistry([down]), features=features(backend.anomalous), incidents=history(HISTORY)
    )
    body = (await unreachable.http.post("/api/v1/recommendations")).json()
    assert (body["ml_enabled"], body["ml"]["status"]) == (False, "unavailable")
    assert [r["source"] for r in body["recommendations"]] == ["historical_analysis"]  # history still answers


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "invalid request body: body: Invalid JSON"),
        (b'{"timeframe": 6}', "invalid request body: timeframe: Input should be a valid string"),
        (b'{"include_predictions": "yes"}', "invalid request body: include_predictions: Input should be a valid boolean"),
        (b'{"timeframe": "2h"}', "invalid timeframe: must be '1h', '6h', or '24h'"),
        (b'{"confidence_threshold": 1.5}', "invalid confidence_threshold: must be between 0.0 and 1.0"),
        (b'{"confidence_threshold": -0.1}', "invalid confidence_threshold: must be between 0.0 and 1.0"),
    ],
)  # fmt: skip
async def test_recommendations_bad_requests_are_400(
    make_gateway: MakeGateway, body: bytes, message: str
) -> None:
    g = await make_gateway(ModelRegistry())
    response = await g.http.post("/api/v1/recommendations", content=body)
    assert response.status_code == 400
    error = response.json()
    assert (
        error["status"] == "error"
        and error["error"].startswith(message)
        and error["code"] == "INVALID_REQUEST"
    )


def test_history_limit_and_threshold_helpers_agree_with_the_engine() -> None:
    from pipeline.domain.recommendations import _by_count, _by_level, historical_recommendations

    assert [_by_count(n) for n in (2, 3, 5, 10)] == [
        ("low", 0.65),
        ("medium", 0.75),
        ("high", 0.85),
        ("critical", 0.95),
    ]
    assert [_by_level(v) for v in (0.5, 0.7, 0.8, 0.9)] == ["low", "medium", "high", "critical"]
    many = [incident(n, "oom", "shop") for n in range(150)]
    (rec,) = historical_recommendations(many, "")
    assert rec["evidence"][0] == "Issue occurred 100 times in recent history"  # the newest 100 only
    assert rec["related_incident_id"] == "inc-0149"
    assert math.isclose(rec["confidence"], 0.95)

"""The model registry (env discovery) and the ML clients against real HTTP servers.

The servers here are FAKES: `FakeKServe` speaks the KServe v1 and v2 protocols and `FakeMLService` the
legacy ML service's routes in both response variants. A real KServe needs a Kubernetes cluster with its controller
and runtimes, which cannot run here; the fakes can also be told to fail, stall or answer garbage on demand,
which no real server does. They run under uvicorn on a loopback port, so the clients' real HTTP stack,
timeouts and retries are exercised. tests/integration/test_model_routes.py also runs the proxy routes
against the project's reference ML service, over both protocols.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from pipeline.adapters.breaker import BreakerState
from pipeline.adapters.ml import (
    InvalidModelResponse,
    KServeClient,
    KServeProtocol,
    MetricSample,
    MLServiceClient,
    ModelEndpoint,
    ModelNotFound,
    ModelRegistry,
    ModelUnavailable,
    PredictionRejected,
)
from pipeline.config import Settings
from pipeline.embedded.process import free_port
from pipeline.web.server import Server
from tests.support import Clock

MODEL = "anomaly-detector"


# ------------------------------------------------------------------------------------------ fakes
class Served:
    """An ASGI app under uvicorn on a loopback port, in the test's event loop; restartable on its port."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app, self.port = app, port or free_port()
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Served:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError(f"uvicorn did not start on {self.url}")
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


class FakeKServe:
    """A FAKE KServe v1 and v2 predictor serving `models` (a real KServe cannot run here).

    `POST /v1/models/{m}:predict` answers `-1` for an instance whose largest value exceeds 0.9, else `1`;
    `GET /v1/models/{m}` is the readiness check. `mode` makes it misbehave: `floats` answers like our
    reference service (float predictions plus scores/confidences), `status` answers `status` with a text
    body, `slow` stalls until `release` is set, and `not_json`, `wrong_shape`, `short`, `strings` send
    bodies no client should accept. `fail_next` makes only the next N predict calls answer `status`.

    v2: `POST /v2/models/{m}/infer` answers like KServe's sklearn server, one output `output-0` (INT64,
    shape [n]) computed the same way from the FP64 tensor; `floats` answers like our reference service
    (outputs `predictions`, `scores`, `confidences`), `nested` sends the predictions nested as [n, 1],
    `two_outputs` two outputs of which neither is `predictions`, `short` and `strings` bad data, `v1_body`
    a v1 answer;
    `GET /v2/models/{m}/ready` is its readiness check.

    `caller_500` (v1 and v2) answers a wrong feature count the way KServe's sklearn server does: 500 with
    `{"error": "X has N features, but StandardScaler is expecting 45 features as input."}` (its
    InferenceError handler wraps scikit-learn's ValueError), the case a real runtime gives for a bad caller.
    """

    def __init__(self, models: tuple[str, ...] = (MODEL,)) -> None:
        self.models = set(models)
        self.app = FastAPI()
        self.reset()
        self.app.add_api_route("/v1/models/{model}:predict", self._predict, methods=["POST"])
        self.app.add_api_route("/v1/models/{model}", self._ready, methods=["GET"])
        self.app.add_api_route("/v2/models/{model}/infer", self._infer, methods=["POST"])
        self.app.add_api_route("/v2/models/{model}/ready", self._ready, methods=["GET"])

    def reset(self) -> None:
        self.mode, self.status, self.fail_next = "ok", 503, 0
        self.predict_calls, self.health_calls = 0, 0
        self.bodies: list[Any] = []
        self.release = asyncio.Event()

    async def _predict(self, model: str, request: Request) -> Response:
        self.predict_calls += 1
        body = await request.json()
        self.bodies.append(body)
        if model not in self.models:
            return PlainTextResponse(f"Model with name {model} does not exist.", status_code=404)
        if self.fail_next > 0:
            self.fail_next -= 1
            return PlainTextResponse("upstream connect error", status_code=self.status)
        if self.mode == "caller_500":
            return self._sklearn_width_error(len(body["instances"][0]))
        if self.mode == "status":
            return PlainTextResponse(f"fake failure {self.status}", status_code=self.status)
        if self.mode == "slow":
            async with asyncio.timeout(30):
                await self.release.wait()
        rows = body["instances"]
        predictions = [-1 if max(row) > 0.9 else 1 for row in rows]
        answer: dict[str, Any] = {"predictions": predictions, "model_name": model, "model_version": "v1"}
        if self.mode == "floats":
            answer["predictions"] = [float(p) for p in predictions]
            answer["scores"] = [round(max(row), 3) for row in rows]
            answer["confidences"] = [0.9 for _ in rows]
        elif self.mode == "not_json":
            return PlainTextResponse("<html>gateway says hello</html>")
        elif self.mode == "wrong_shape":
            answer = {"outputs": [{"name": "predict", "data": predictions}]}
        elif self.mode == "short":
            answer["predictions"] = predictions[:-1]
        elif self.mode == "strings":
            answer["predictions"] = [str(p) for p in predictions]
        return JSONResponse(answer)

    async def _infer(self, model: str, request: Request) -> Response:
        self.predict_calls += 1
        body = await request.json()
        self.bodies.append(body)
        if model not in self.models:
            return JSONResponse({"error": f"Model with name {model} does not exist."}, status_code=404)
        if self.mode == "status":
            return JSONResponse({"error": f"fake failure {self.status}"}, status_code=self.status)
        if self.mode == "caller_500":
            return self._sklearn_width_error(body["inputs"][0]["shape"][1])
        (tensor,) = body["inputs"]
        count, width = tensor["shape"]
        rows = [tensor["data"][i * width : (i + 1) * width] for i in range(count)]
        predictions = [-1 if max(row) > 0.9 else 1 for row in rows]

        def output(name: str, data: list[Any], datatype: str = "INT64") -> dict[str, Any]:
            return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}

        outputs = [output("output-0", predictions)]
        if self.mode == "floats":
            outputs = [
                output("predictions", predictions),
                output("scores", [round(max(row), 3) for row in rows], "FP64"),
                output("confidences", [0.9 for _ in rows], "FP64"),
            ]
        elif self.mode == "nested":
            outputs = [{**outputs[0], "shape": [count, 1], "data": [[p] for p in predictions]}]
        elif self.mode == "two_outputs":
            outputs = [output("labels", predictions), output("probabilities", [0.5] * count, "FP64")]
        elif self.mode == "short":
            outputs = [output("output-0", predictions[:-1])]
        elif self.mode == "strings":
            outputs = [output("output-0", [str(p) for p in predictions])]
        elif self.mode == "v1_body":
            return JSONResponse({"predictions": predictions})
        return JSONResponse({"model_name": model, "model_version": "v2", "outputs": outputs})

    @staticmethod
    def _sklearn_width_error(width: int) -> Response:
        message = f"X has {width} features, but StandardScaler is expecting 45 features as input."
        return JSONResponse({"error": message}, status_code=500)

    async def _ready(self, model: str) -> Response:
        self.health_calls += 1
        if model not in self.models:
            return PlainTextResponse("not found", status_code=404)
        if self.mode == "status":
            return PlainTextResponse("not ready", status_code=self.status)
        return JSONResponse({"name": model, "ready": True})


class FakeMLService:
    """A FAKE legacy ML service (the Python service the engine's ML_SERVICE_URL pointed at).

    `variant` picks the response shapes: `structs` (the engine's Go structs) or `contract` (its
    API-CONTRACT.md). `mode` `status` answers `status`, `garbage` answers JSON of neither shape.
    """

    def __init__(self) -> None:
        self.app = FastAPI()
        self.reset()
        for path in ("/api/v1/anomaly/detect", "/api/v1/prediction/predict"):
            self.app.add_api_route(path, self._handle, methods=["POST"])
        self.app.add_api_route("/health", self._health, methods=["GET"])

    def reset(self) -> None:
        self.variant, self.mode, self.status = "structs", "ok", 503
        self.requests: list[tuple[str, Any]] = []

    async def _health(self) -> Response:
        if self.mode == "status":
            return PlainTextResponse("down", status_code=self.status)
        return JSONResponse({"status": "healthy"})

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((request.url.path, body))
        if self.mode == "status":
            return PlainTextResponse("fake failure", status_code=self.status)
        if self.mode == "garbage":
            return JSONResponse({"result": "fine"})
        route = request.url.path.split("/")[3]
        return JSONResponse(RESPONSES[route][self.variant])


RESPONSES: dict[str, dict[str, Any]] = {
    "anomaly": {
        "structs": {
            "anomalies": [
                {
                    "metric_name": "pod_cpu_usage",
                    "value": 0.97,
                    "expected": 0.4,
                    "deviation": 3.2,
                    "severity": "high",
                    "confidence": 0.91,
                    "timestamp": "2026-01-01T10:00:00Z",
                    "reason": "3.2 sigma above the mean",
                }
            ],
            "summary": {"total": 2, "anomalies_found": 1, "high_severity": 1, "confidence": 0.91},
        },
        "contract": {
            "anomalies": [
                {
                    "timestamp": "2026-01-01T10:00:00Z",
                    "metric_name": "pod_cpu_usage",
                    "score": 0.92,
                    "is_anomaly": True,
                    "severity": "high",
                },
                {"metric_name": "pod_memory_usage", "score": 0.1, "is_anomaly": False, "severity": "low"},
            ],
            "overall_score": 0.92,
            "confidence": 0.88,
        },
    },
    "prediction": {
        "structs": {
            "predictions": [
                {
                    "metric_name": "pod_memory_usage",
                    "predicted_value": 0.93,
                    "confidence": 0.8,
                    "timestamp": "2026-01-01T11:00:00Z",
                    "trend": "increasing",
                    "risk": "high",
                }
            ],
            "summary": {"time_range": "1h", "metrics_count": 2, "overall_confidence": 0.8},
        },
        "contract": {
            "predictions": [
                {
                    "issue_type": "memory_pressure",
                    "probability": 0.85,
                    "expected_time": "45m",
                    "severity": "high",
                    "recommended_actions": ["increase_memory_limit", "add_horizontal_scaling"],
                }
            ],
            "confidence": 0.82,
        },
    },
}


def ml_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "kserve_timeout_s": 2.0,
        "ml_timeout_s": 2.0,
        "ml_retry_attempts": 3,
        "ml_circuit_breaker_threshold": 3,
        "ml_circuit_breaker_timeout_s": 30.0,
    }
    return Settings(**{**base, **overrides})


def registry_for(url: str, *models: str, protocol: KServeProtocol = "v1") -> ModelRegistry:
    return ModelRegistry(
        ModelEndpoint(m, f"{m}-predictor", "test", m, url, protocol) for m in (models or (MODEL,))
    )


# ------------------------------------------------------------------------------------------ registry
def test_registry_discovers_services_and_model_names_with_the_port_honoured() -> None:
    env = {
        "KSERVE_ANOMALY_DETECTOR_SERVICE": "anomaly-detector-stable",
        "KSERVE_ANOMALY_DETECTOR_MODEL": "model",
        "KSERVE_PREDICTIVE_ANALYTICS_SERVICE": "predictive-analytics-stable",
        "PATH": "/usr/bin",
    }
    registry = ModelRegistry.from_env(env, Settings(kserve_namespace="shp", kserve_predictor_port=8443))
    assert registry.names() == ["anomaly-detector", "predictive-analytics"] and len(registry) == 2
    assert registry.get("anomaly-detector") == ModelEndpoint(
        name="anomaly-detector",
        service="anomaly-detector-stable",
        namespace="shp",
        model="model",
        url="http://anomaly-detector-stable.shp.svc.cluster.local:8443",
    )
    assert registry.get("predictive-analytics").model == "predictive-analytics"  # default: the logical name


def test_registry_port_defaults_to_8080_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KSERVE_PREDICTOR_PORT", raising=False)
    monkeypatch.delenv("KSERVE_NAMESPACE", raising=False)
    env = {"KSERVE_ANOMALY_DETECTOR_SERVICE": "ad"}
    assert ModelRegistry.from_env(env, Settings()).get(MODEL).url == (
        "http://ad.self-healing-platform.svc.cluster.local:8080"
    )
    monkeypatch.setenv("KSERVE_PREDICTOR_PORT", "9000")
    monkeypatch.setenv("KSERVE_NAMESPACE", "models")
    assert ModelRegistry.from_env(env, Settings()).get(MODEL).url == "http://ad.models.svc.cluster.local:9000"


def test_registry_models_come_from_the_settings_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The KSERVE_<NAME>_* variables are read with the other settings: from the environment, and from
    `.env` for what the environment does not set."""
    for name in [k for k in os.environ if k.upper().startswith("KSERVE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "KSERVE_PREDICTIVE_ANALYTICS_URL=http://127.0.0.1:9001\nKSERVE_ANOMALY_DETECTOR_SERVICE=from-dotenv\n"
    )
    monkeypatch.setenv("KSERVE_ANOMALY_DETECTOR_SERVICE", "ad-predictor")
    monkeypatch.setenv("KSERVE_ANOMALY_DETECTOR_MODEL", "isolation-forest")
    registry = ModelRegistry.from_settings(Settings(kserve_namespace="shp"))
    assert registry.names() == [MODEL, "predictive-analytics"]
    detector = registry.get(MODEL)
    assert (detector.url, detector.model) == ("http://ad-predictor.shp.svc.cluster.local:8080", "isolation-forest")
    assert registry.get("predictive-analytics").url == "http://127.0.0.1:9001"
    assert ModelRegistry.from_settings(Settings(kserve_entries={})).names() == []


def test_registry_skips_configuration_variables_and_empty_services() -> None:
    env = {
        "KSERVE_NAMESPACE": "shp",
        "KSERVE_TIMEOUT": "10s",
        "KSERVE_PREDICTOR_PORT": "8080",
        "KSERVE_NAMESPACE_SERVICE": "not-a-model",
        "KSERVE_TIMEOUT_SERVICE": "not-a-model",
        "KSERVE_PREDICTOR_PORT_SERVICE": "not-a-model",
        "KSERVE_EMPTY_SERVICE": "",
        "KSERVE_BLANK_SERVICE": "   ",
        "KSERVE_ONLY_MODEL": "model",
        "KSERVE__SERVICE": "nameless",
        "MY_KSERVE_X_SERVICE": "not-ours",
    }
    assert ModelRegistry.from_env(env, Settings()).names() == []


def test_registry_names_are_lower_case_with_dashes() -> None:
    env = {"KSERVE_DISK_FILL_FORECASTER_V2_SERVICE": "dff"}
    assert ModelRegistry.from_env(env, Settings()).names() == ["disk-fill-forecaster-v2"]


def test_registry_url_override_and_fully_qualified_services() -> None:
    env = {
        "KSERVE_LOCAL_URL": "http://127.0.0.1:9999/",
        "KSERVE_BOTH_SERVICE": "both-predictor",
        "KSERVE_BOTH_URL": "https://models.example.test",
        "KSERVE_ELSEWHERE_SERVICE": "ad.other-ns.svc",
    }
    registry = ModelRegistry.from_env(env, Settings(kserve_predictor_port=8081))
    local = registry.get("local")
    assert (local.url, local.service, local.model) == ("http://127.0.0.1:9999", "127.0.0.1", "local")
    both = registry.get("both")
    assert (both.url, both.service) == ("https://models.example.test", "both-predictor")
    assert registry.get("elsewhere").url == "http://ad.other-ns.svc:8081"
    with pytest.raises(ValueError, match="KSERVE_BAD_URL must be an http"):
        ModelRegistry.from_env({"KSERVE_BAD_URL": "ftp://x"}, Settings())


def test_registry_protocol_is_v1_by_default_set_by_kserve_protocol_or_per_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"KSERVE_ANOMALY_DETECTOR_SERVICE": "ad", "KSERVE_PREDICTIVE_ANALYTICS_SERVICE": "pa"}
    monkeypatch.delenv("KSERVE_PROTOCOL", raising=False)
    assert {e.protocol for e in ModelRegistry.from_env(env, Settings())} == {"v1"}
    monkeypatch.setenv("KSERVE_PROTOCOL", "v2")
    assert {e.protocol for e in ModelRegistry.from_env(env, Settings())} == {"v2"}
    mixed = ModelRegistry.from_env({**env, "KSERVE_PREDICTIVE_ANALYTICS_PROTOCOL": "V1"}, Settings())
    assert (mixed.get(MODEL).protocol, mixed.get("predictive-analytics").protocol) == ("v2", "v1")
    with pytest.raises(ValueError, match="KSERVE_ANOMALY_DETECTOR_PROTOCOL must be v1 or v2, got 'grpc'"):
        ModelRegistry.from_env({**env, "KSERVE_ANOMALY_DETECTOR_PROTOCOL": "grpc"}, Settings())
    monkeypatch.setenv("KSERVE_PROTOCOL", "v3")
    with pytest.raises(ValueError, match="kserve_protocol"):
        Settings()


def test_unregistered_models_are_not_found() -> None:
    with pytest.raises(ModelNotFound, match="model not found: nope"):
        ModelRegistry().get("nope")
    assert "nope" not in ModelRegistry()


def test_go_durations_are_accepted_under_the_engines_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSERVE_TIMEOUT", "2m")
    monkeypatch.setenv("ML_CIRCUIT_BREAKER_TIMEOUT", "1m30s")
    monkeypatch.setenv("ML_SERVICE_TIMEOUT", "500ms")
    monkeypatch.setenv("ML_CIRCUIT_BREAKER_THRESHOLD", "5")
    s = Settings()
    assert (s.kserve_timeout_s, s.ml_circuit_breaker_timeout_s, s.ml_timeout_s) == (120.0, 90.0, 0.5)
    assert s.ml_circuit_breaker_threshold == 5
    defaults = Settings.model_construct()
    assert (defaults.ml_circuit_breaker_threshold, defaults.ml_circuit_breaker_timeout_s) == (3, 30.0)
    assert (defaults.kserve_predictor_port, defaults.kserve_timeout_s) == (8080, 10.0)


# ------------------------------------------------------------------------------------------ KServe client
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
def clock() -> Clock:
    return Clock()


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

"""FAKE servers for the ML client tests: `FakeKServe` speaks the KServe v1 and v2 protocols and `FakeMLService`
the legacy ML service's routes in both response variants. A real KServe needs a Kubernetes cluster with its
controller and runtimes, which cannot run here; the fakes can also be told to fail, stall or answer garbage on
demand, which no real server does. They run under uvicorn on a loopback port, so the clients' real HTTP stack,
timeouts and retries are exercised. tests/integration/test_model_routes.py also runs the proxy routes against
the project's reference ML service, over both protocols.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from pipeline.adapters.ml import (
    KServeProtocol,
    ModelEndpoint,
    ModelRegistry,
)
from pipeline.config import Settings
from pipeline.embedded.process import free_port
from pipeline.web.server import Server

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

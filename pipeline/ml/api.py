"""The reference ML service's HTTP app (served by `pipeline ml serve`, pipeline.compose.ml): one
``ReferenceModel`` behind three protocols. The algorithms are pure modules: ``detect``, ``forecast``,
``patterns`` and ``v2``; this module only reads requests and calls them.

The model answers to its name, ``anomaly-detector``, and to ``model``: the name a KServe model server
gives a model when its runtime is not told one, which the MCP server's ``get-model-status`` asks for
(``GET /v2/models/model`` on the ``anomaly-detector-predictor`` Service). Answers always carry the
model's own name.

KServe v1 (what the engine's proxy and our scorer call by default)::

    GET  /v1/models                      -> {"models": ["anomaly-detector"]}
    GET  /v1/models/anomaly-detector     -> {"name": "anomaly-detector", "ready": true, "version": "..."}
    POST /v1/models/anomaly-detector:predict   {"instances": [[45 numbers or null], ...]}
      -> {"predictions": [-1|1, ...], "scores": [...], "confidences": [...], "imputed": [[names], ...],
          "model_name": "anomaly-detector", "model_version": "..."}

KServe v2, the Open Inference Protocol (the MCP server; our clients with ``KSERVE_PROTOCOL=v2``)::

    GET  /v2                                  -> {"name", "version", "extensions": []}
    GET  /v2/health/live | /v2/health/ready   -> 200 {"live": true} | {"ready": true}
    GET  /v2/models/{m}[/versions/{v}]        -> {"name", "versions": [v], "platform": "sklearn",
                                                  "inputs": [{"name", "datatype", "shape": [-1, 45]}], "outputs": [...]}
    GET  /v2/models/{m}[/versions/{v}]/ready  -> {"name", "ready": true}
    POST /v2/models/{m}[/versions/{v}]/infer  {"id"?, "inputs": [{"name", "shape": [n, 45], "datatype": "FP32"|"FP64",
                                                "data": [n*45 numbers] | [[45 numbers], ...]}], "outputs"?: [{"name"}]}
      -> {"model_name", "model_version", "id"?, "outputs": [{"name": "predictions", "datatype": "INT64",
          "shape": [n], "data": [-1|1, ...]}, {"name": "scores", "datatype": "FP64", ...}, {"name": "confidences", ...}]}

    One input tensor, any name; ``outputs`` narrows the answer to the named outputs. v2 tensors hold
    numbers only: a missing value is a 400 here (the v1 route imputes ``null``). Errors are the
    protocol's ``{"error": "..."}``: 404 for an unknown model or version, 400 naming what is wrong with the
    tensor.

The legacy Python ML-service routes (anchor §4.3), with the richer requests accepted:

* ``POST /api/v1/anomaly/detect`` — ``{"features": [45] | {"name": value}, "timestamp"?}`` or
  ``{"metrics": [{"name", "value", "timestamp", "labels"?}], "threshold"?}``. Metrics named like a base
  metric (``pod_memory_usage``) are a series on the 1-minute grid from which the nine features are
  computed as the pipeline does (``pipeline.domain.features.metric_features``), at the latest timestamp;
  metrics named like a feature (``pod_memory_usage_value``) set it; any other metric is checked on its
  own (robust z-score of its last value against its earlier ones). ``features``, when given, is the
  model's input and base-metric series are then not used. ``threshold`` (default 3) is the robust
  deviation from which a metric is listed in ``anomalies``; the model's verdict is its own.
* ``POST /api/v1/prediction/predict`` — a least-squares line per series, extrapolated ``predict_ahead``.
* ``POST /api/v1/pattern/analyze`` — trends, spikes, level shifts and correlations (thresholds in
  ``pipeline.ml.patterns``);
  ``analysis_type`` naming one of them narrows the analysis, any other value runs all (and says so).
* ``GET /health`` -> ``{"status": "healthy", "model": "anomaly-detector", "model_version": "..."}``.

Malformed requests get 400 with the JSON error of ``pipeline.api.errors`` naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from pipeline import __version__
from pipeline.api import errors
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.ml.detect import DetectRequest, detect
from pipeline.ml.forecast import PredictRequest, forecast
from pipeline.ml.model import InvalidVector, ReferenceModel, as_vector
from pipeline.ml.patterns import PatternRequest, analyze
from pipeline.ml.v2 import MAX_INSTANCES, SERVED_ALIASES, V2Error, v2_metadata, v2_request, v2_response

M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 32 << 20  # a scoring batch or a detect request with its series: generous, still bounded


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; 400 (never 422) naming the field when it is not."""
    raw = await _json(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise errors.from_pydantic(exc, status=400) from None



async def _json(request: Request) -> Any:
    """The body as JSON: 413 past MAX_BODY_BYTES, 400 when not JSON or nested deeper than 64 levels (the
    gateway's own reader, so a hostile body cannot exhaust the parser here either)."""
    return await read_json(request, MAX_BODY_BYTES)



def _model_or_404(model: ReferenceModel, name: str) -> None:
    if name != model.name and name not in SERVED_ALIASES:
        raise ApiError(404, "MODEL_NOT_FOUND", f"model not found: {name}", model=name)


def _v2_model(model: ReferenceModel, name: str, version: str | None = None) -> None:
    if name != model.name and name not in SERVED_ALIASES:
        raise V2Error(404, f"model not found: {name}")
    if version is not None and version != model.version:
        raise V2Error(404, f"model {model.name} has no version {version}; it serves {model.version}")


def _instances(body: Any) -> list[list[float | None]]:
    if not isinstance(body, dict) or "instances" not in body:
        raise ApiError(400, "MISSING_INSTANCES", "Missing 'instances' field", field="instances")
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise ApiError(
            400,
            "MISSING_INSTANCES",
            "'instances' must be a non-empty list of 45-value lists",
            field="instances",
        )
    if len(instances) > MAX_INSTANCES:
        raise ApiError(
            400, "TOO_MANY_INSTANCES", f"at most {MAX_INSTANCES} instances per request", field="instances"
        )
    try:
        return [as_vector(row, f"instances[{i}]") for i, row in enumerate(instances)]
    except InvalidVector as exc:
        raise ApiError(400, "INVALID_INSTANCE", str(exc), field=exc.field) from None


def create_app(model: ReferenceModel) -> FastAPI:
    """The service's routes over ``model`` (loaded or trained by the caller)."""
    app = FastAPI(
        title="pipeline reference ML service", version=model.version, docs_url="/docs", redoc_url=None
    )
    errors.install(app)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "model": model.name, "model_version": model.version}

    @app.exception_handler(V2Error)
    async def v2_error(_: Request, exc: V2Error) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    app.include_router(_kserve_v1(model))
    app.include_router(_kserve_v2(model))
    app.include_router(_ml_service(model))
    return app


def _kserve_v1(model: ReferenceModel) -> APIRouter:
    """KServe v1: the model list, readiness, and ``:predict`` (``null`` values imputed)."""
    router = APIRouter(tags=["kserve"])

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"models": [model.name]}

    @router.get("/v1/models/{name}")
    async def model_ready(name: str) -> dict[str, Any]:
        _model_or_404(model, name)
        return {"name": model.name, "ready": True, "version": model.version}

    @router.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request) -> dict[str, Any]:
        _model_or_404(model, name)
        instances = _instances(await _json(request))
        answers = await run_in_threadpool(model.predict, instances)
        return {
            "predictions": [a.prediction for a in answers],
            "scores": [a.score for a in answers],
            "confidences": [a.confidence for a in answers],
            "imputed": [list(a.imputed) for a in answers],
            "model_name": model.name,
            "model_version": model.version,
        }

    return router


def _kserve_v2(model: ReferenceModel) -> APIRouter:
    """The Open Inference Protocol: server and model metadata, health, readiness and ``/infer``."""
    router = APIRouter(tags=["kserve-v2"])

    @router.get("/v2")
    async def v2_server() -> dict[str, Any]:
        return {"name": "pipeline-reference-ml", "version": __version__, "extensions": []}

    @router.get("/v2/health/live")
    async def v2_live() -> dict[str, Any]:
        return {"live": True}

    @router.get("/v2/health/ready")
    async def v2_ready() -> dict[str, Any]:
        return {"ready": True}  # the model is loaded before the server listens

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def v2_model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        return v2_metadata(model)

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        return {"name": model.name, "ready": True}

    @router.post("/v2/models/{name}/infer")
    @router.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(name: str, request: Request, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        try:
            body = await _json(request)
        except ApiError as exc:
            raise V2Error(exc.status, exc.message) from None
        inference = v2_request(body)
        answers = await run_in_threadpool(model.predict, inference.rows)
        return v2_response(model, inference, answers)

    return router


def _ml_service(model: ReferenceModel) -> APIRouter:
    """The legacy Python ML service's routes: detect, forecast, patterns."""
    router = APIRouter(tags=["ml-service"])

    @router.post("/api/v1/anomaly/detect")
    async def anomaly_detect(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(detect, model, await _body(request, DetectRequest))

    @router.post("/api/v1/prediction/predict")
    async def prediction_predict(request: Request) -> dict[str, Any]:
        return forecast(await _body(request, PredictRequest))

    @router.post("/api/v1/pattern/analyze")
    async def pattern_analyze(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(analyze, await _body(request, PatternRequest))

    return router

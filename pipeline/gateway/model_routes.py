"""The KServe proxy routes and ML recommendations, with the engine's semantics and JSON error bodies.

* `POST /api/v1/detect` forwards `{"model","instances"}` to the model's KServe predictor (v1 or v2).
* `GET /api/v1/models`, `GET /api/v1/models/{model}/health`.
* `POST /api/v1/recommendations`: recurring incidents (the engine's historical analysis) plus the
  anomaly-detector's verdict on the current 45-feature vector, typed by the per-pod findings of the
  analysis rules over the timeframe (`pipeline.domain.recommendations`); `ml_enabled` is true only when
  the model really answered, and `ml` says why not otherwise.

Errors on the proxy routes carry `error` and `success: false` (the notebook client reads `error` on
400/404/503); an unavailable model, its circuit breaker open included, is a 503 at once. It carries no
`Retry-After`: the notebook client's urllib3 `Retry` honours that header on each of its 3 retries, so the
breaker's remaining open time (up to 30 s) became 30-60 s of blocking per call, while without it the
client backs off 0 + 1 + 2 s and gives up, as it did with the Go engine. When the breaker is open the
body says when the next trial is (`retry_after_s`), for clients that want to wait for it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from pipeline.adapters.ml import (
    KServeClient,
    MLError,
    ModelNotFound,
    ModelRegistry,
)
from pipeline.adapters.prometheus import PrometheusError
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.config import Settings
from pipeline.domain.analysis import Finding
from pipeline.domain.features import FeatureVector
from pipeline.domain.names import DNS_LABEL_MAX, is_dns_label
from pipeline.domain.recommendations import TIMEFRAMES, historical_recommendations, ml_recommendations
from pipeline.domain.scoring import ModelScore
from pipeline.events import IncidentRow
from pipeline.gateway.dependencies import model_error

MAX_DETECT_BODY = 4 << 20
MAX_RECOMMENDATIONS_BODY = 64 << 10
ANOMALY_MODEL = "anomaly-detector"

IncidentsProvider = Callable[[], Iterable[IncidentRow]]  # what the history recommendations read
FeaturesProvider = Callable[[str | None], Awaitable[FeatureVector]]
# (namespace or None for the cluster, timeframe "1h"/"6h"/"24h", now) -> the analysis rules' findings.
FindingsProvider = Callable[[str | None, str, float], Awaitable[list[Finding]]]


def _proxy_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, code, message, headers=headers, success=False)


def _instances(body: dict[str, Any]) -> list[list[float]]:
    raw = body.get("instances")
    if not raw:
        raise _proxy_error(400, "INVALID_REQUEST", "Missing 'instances' field")
    if not isinstance(raw, list):
        raise _proxy_error(
            400, "INVALID_REQUEST", "Invalid request format: 'instances' must be a list of lists"
        )
    rows = []
    for i, row in enumerate(raw):
        if not isinstance(row, list) or not row:
            raise _proxy_error(
                400, "INVALID_REQUEST", f"Invalid request format: instances[{i}] must be a list"
            )
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                message = f"Invalid request format: instances[{i}][{j}] must be a finite number"
                raise _proxy_error(400, "INVALID_REQUEST", message)
        rows.append([float(v) for v in row])
    return rows


async def _detect_request(request: Request) -> tuple[str, list[list[float]]]:
    """The engine's checks in its order: content type, JSON, `model`, `instances`."""
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.startswith("application/json"):
        raise _proxy_error(400, "INVALID_REQUEST", "Content-Type must be application/json")
    try:
        body = await read_json(request, MAX_DETECT_BODY)
    except ApiError as exc:
        message = f"Invalid request format: {exc.message}"
        raise ApiError(exc.status, "INVALID_REQUEST", message, field=exc.field, success=False) from None
    if not isinstance(body, dict):
        raise _proxy_error(400, "INVALID_REQUEST", "Invalid request format: a JSON object is required")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _proxy_error(400, "INVALID_REQUEST", "Invalid request format: 'model' must be a string")
    if not model:
        raise _proxy_error(400, "INVALID_REQUEST", "Missing 'model' field")
    return model, _instances(body)


class RecommendationsRequest(BaseModel):
    """`POST /api/v1/recommendations`; every field optional, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore")
    timeframe: StrictStr = ""
    include_predictions: StrictBool = True
    confidence_threshold: StrictFloat | StrictInt = 0.0
    namespace: StrictStr = ""


async def _recommendations_request(request: Request) -> RecommendationsRequest:
    try:
        body = await read_json(request, MAX_RECOMMENDATIONS_BODY, empty={})
    except ApiError as exc:
        if exc.status != 400:
            raise
        message = f"invalid request body: body: Invalid JSON: {exc.message}"
        raise ApiError(400, "INVALID_REQUEST", message, field="body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "invalid request body: must be a JSON object", field="body")
    try:
        req = RecommendationsRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        raise ApiError(
            400, "INVALID_REQUEST", f"invalid request body: {where}: {error['msg']}", field=where
        ) from None
    if req.namespace and not is_dns_label(req.namespace):
        message = f"invalid namespace: must be a Kubernetes namespace name (DNS label, at most {DNS_LABEL_MAX})"
        raise ApiError(400, "INVALID_REQUEST", message, field="namespace")
    req.timeframe = req.timeframe or "6h"
    req.confidence_threshold = req.confidence_threshold or 0.7
    if req.timeframe not in TIMEFRAMES:
        raise ApiError(
            400, "INVALID_REQUEST", "invalid timeframe: must be '1h', '6h', or '24h'", field="timeframe"
        )
    if not 0.0 <= req.confidence_threshold <= 1.0:
        message = "invalid confidence_threshold: must be between 0.0 and 1.0"
        raise ApiError(400, "INVALID_REQUEST", message, field="confidence_threshold")
    return req


# ------------------------------------------------------------------------------------------ routes
def router(
    settings: Settings,
    registry: ModelRegistry,
    kserve: KServeClient,
    *,
    incidents_provider: IncidentsProvider | None = None,
    features_provider: FeaturesProvider | None = None,
    findings_provider: FindingsProvider | None = None,
) -> APIRouter:
    """The KServe proxy trio and recommendations. `features_provider(namespace)` returns the current
    45-feature vector of a namespace (None: the cluster); without it the ML part reports itself off.
    `findings_provider` gives the per-pod findings that type an ML recommendation; without it, or when it
    fails, a flagged vector is recommended as `ml_anomaly` and the evidence says the rules were not run."""
    api = APIRouter(tags=["models"])

    @api.post("/api/v1/detect", summary="Call a KServe model with instances (KServe v1 or v2 proxy)")
    async def detect(request: Request) -> JSONResponse:
        model, instances = await _detect_request(request)
        try:
            prediction = await kserve.predict(model, instances)
        except (ValueError, MLError) as exc:  # ValueError: nothing was sent, rows a v2 tensor cannot hold
            raise model_error(exc, success=False) from None
        return JSONResponse(prediction.as_dict())

    @api.get("/api/v1/models", summary="Registered KServe models")
    async def list_models() -> JSONResponse:
        return JSONResponse({"models": registry.names(), "count": len(registry)})

    @api.get("/api/v1/models/{model}/health", summary="Readiness of one KServe model")
    async def model_health(model: str) -> JSONResponse:
        try:
            health = await kserve.model_health(model)
        except ModelNotFound as exc:
            raise model_error(exc, success=False) from None
        return JSONResponse(health.as_dict())

    async def ml_part(
        req: RecommendationsRequest, now: datetime
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        status = {"model": ANOMALY_MODEL, "status": "ok", "message": "the model answered"}
        if not req.include_predictions:
            return {**status, "status": "off", "message": "predictions not requested"}, []
        if ANOMALY_MODEL not in registry:
            return {**status, "status": "off", "message": f"model {ANOMALY_MODEL} is not registered"}, []
        if features_provider is None:
            return {**status, "status": "off", "message": "no feature source configured"}, []
        vector = await features_provider(req.namespace or None)
        if not vector.complete:
            first = next(iter(vector.missing.items()))
            message = (
                f"{len(vector.missing)} of {len(vector.values)} features missing ({first[0]}: {first[1]})"
            )
            return {**status, "status": "features_incomplete", "message": message}, []
        try:
            prediction = await kserve.predict(ANOMALY_MODEL, [[v for v in vector.values if v is not None]])
        except MLError as exc:
            return {**status, "status": exc.outcome, "message": str(exc)}, []
        score = ModelScore(
            model=prediction.model,
            version=prediction.model_version or "unknown",
            prediction=int(prediction.predictions[0]),
            score=prediction.scores[0] if prediction.scores else None,
            confidence=prediction.confidences[0] if prediction.confidences else None,
        )
        findings: list[Finding] | None = None
        error = "no metrics source configured"
        if score.prediction == -1 and findings_provider is not None:
            try:
                findings = await findings_provider(req.namespace or None, req.timeframe, now.timestamp())
            except PrometheusError as exc:  # the model's verdict stands; the evidence says why it is untyped
                error = f"{type(exc).__name__}: {exc}"
        recs = ml_recommendations(vector, score, req.timeframe, req.namespace, now, findings, error)
        return status, recs

    @api.post("/api/v1/recommendations", summary="Remediation recommendations: history and ML")
    async def recommendations(request: Request) -> JSONResponse:
        req = await _recommendations_request(request)
        now = datetime.now(UTC)
        incidents = list(incidents_provider()) if incidents_provider is not None else []
        ml, ml_recs = await ml_part(req, now)
        candidates = historical_recommendations(incidents, req.namespace) + ml_recs
        chosen = [
            r
            for r in candidates
            if r["confidence"] >= req.confidence_threshold
            and (not req.namespace or r["namespace"] == req.namespace)
        ]
        body: dict[str, Any] = {
            "status": "success",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "timeframe": req.timeframe,
            "recommendations": chosen,
            "total_recommendations": len(chosen),
            "ml_enabled": ml["status"] == "ok",
            "ml": ml,
        }
        if not chosen:
            body["message"] = "No recommendations above the confidence threshold"
        return JSONResponse(body)

    return api

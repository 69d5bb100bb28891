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
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from pipeline.adapters.ml import (
    KServeClient,
    MLError,
    ModelNotFound,
    ModelRegistry,
)
from pipeline.adapters.prometheus import PrometheusError
from pipeline.api.contract import ENGINE_BODY_ERRORS, Body, dns_label, maybe_absent, op
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.config import Settings
from pipeline.domain.analysis import Finding
from pipeline.domain.features import FeatureVector
from pipeline.domain.names import DNS_LABEL_MAX, is_dns_label
from pipeline.domain.recommendations import TIMEFRAMES, historical_recommendations, ml_recommendations
from pipeline.domain.scoring import ModelScore
from pipeline.events import IncidentRow
from pipeline.gateway.dependencies import MODEL_ERRORS, model_error

MAX_DETECT_BODY = 4 << 20
MAX_RECOMMENDATIONS_BODY = 64 << 10
ANOMALY_MODEL = "anomaly-detector"

IncidentsProvider = Callable[[], Iterable[IncidentRow]]  # what the history recommendations read
FeaturesProvider = Callable[[str | None], Awaitable[FeatureVector]]
# (namespace or None for the cluster, timeframe "1h"/"6h"/"24h", now) -> the analysis rules' findings.
FindingsProvider = Callable[[str | None, str, float], Awaitable[list[Finding]]]


# ------------------------------------------------------------------------------------------ the contract
class DetectRequest(BaseModel):
    """`POST /api/v1/detect`: the instances the model is called with, checked by `_detect_request` in the
    engine's order and with its messages (other fields are ignored). How many values an instance needs is the
    model's to say: the anomaly-detector takes the 45 `features.values` of `POST /api/v1/anomalies/analyze`."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": "anomaly-detector", "instances": [[0.5] * 45]}]})
    model: str = Field(min_length=1, description="a registered model (`GET /api/v1/models`)")
    instances: list[Annotated[list[float], Field(min_length=1)]] = Field(
        min_length=1, description="rows of finite numbers, none empty")


class ModelPrediction(Body):
    """The model's answer, one prediction per instance (KServe v1 or v2 behind it)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "predictions": [-1], "model_name": "anomaly-detector", "model_version": "ad646d330f7fff36",
        "scores": [0.9541313003378908], "confidences": [0.9082626006757817]}]})
    predictions: list[int | float] = Field(description="-1 anomalous, 1 normal for the anomaly-detector; integral "
                                                       "values are integers whatever the model sent")
    model_name: str = Field(description="the logical name asked for")
    model_version: str = maybe_absent("when the model says it")
    scores: list[float] = maybe_absent("when the model gives them (the reference model does)")
    confidences: list[float] = maybe_absent("when the model gives them")


class ModelList(Body):
    """The registered KServe models (`KSERVE_<NAME>_SERVICE`, `KSERVE_<NAME>_URL`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"models": ["anomaly-detector"], "count": 1}]})
    models: list[str]
    count: int


class ModelReadiness(Body):
    """Whether the model would be called and answers (its readiness endpoint); 200 either way."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "anomaly-detector", "status": "ready", "service": "anomaly-detector-predictor",
        "namespace": "self-healing-platform", "circuit_breaker": "closed"}]})
    model: str
    status: Literal["ready", "unavailable"]
    service: str = Field(description="the KServe predictor service")
    namespace: str = Field(description="its namespace (`KSERVE_NAMESPACE`)")
    message: str = maybe_absent("why it is unavailable (the transport error, the status it answered, the open "
                                "circuit and its next trial)")
    circuit_breaker: Literal["closed", "half-open", "open"]


class RecommendationsRequest(BaseModel):
    """`POST /api/v1/recommendations`; every field optional (an empty body too), unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"timeframe": "6h", "include_predictions": True, "confidence_threshold": 0.7, "namespace": "shop"}]})
    timeframe: StrictStr = Field("", description="empty: 6h", json_schema_extra={"enum": ["", *TIMEFRAMES]})
    include_predictions: StrictBool = Field(True, description="score the current 45-feature vector with the "
                                                              "anomaly-detector")
    confidence_threshold: StrictFloat | StrictInt = Field(
        0.0, description="keep recommendations at least this confident; 0: 0.7", json_schema_extra={
            "minimum": 0, "maximum": 1})
    namespace: StrictStr = Field("", description="only this namespace; empty: every namespace",
                                 json_schema_extra=dns_label(empty=True))


class Recommendation(Body):
    """An issue seen repeatedly in the incident history, or what the model's verdict and the analysis rules
    say is wrong now."""

    id: str = Field(description="`rec-hist-NNN` (history) or `rec-ml-NNN` (the model)")
    type: Literal["proactive"]
    issue_type: str = Field(description="the history: the incidents' issue type (or severity); the model: "
                                        "`memory_leak`, `pod_crash_loop`, `cpu_throttling`, or `ml_anomaly` when no "
                                        "rule explains its verdict")
    target: str
    namespace: str
    severity: Literal["critical", "high", "medium", "low"]
    confidence: float = Field(ge=0, le=1)
    predicted_time: datetime = maybe_absent("the model's: when the issue is expected (now + half the timeframe)")
    recommended_actions: list[str]
    evidence: list[str]
    pods: list[str] = maybe_absent("the model's, typed by the rules: the pods they found")
    source: Literal["historical_analysis", "ml_prediction"]
    related_incident_id: str = maybe_absent("the history's: the newest incident of the issue")


MLStatus = Literal["ok", "off", "features_incomplete", "error", "not_found", "unavailable", "rejected",
                   "invalid_response"]


class MLPart(Body):
    """Whether the anomaly-detector's verdict is in the recommendations, and why not."""

    model: str
    status: MLStatus = Field(description="`ok` when the model answered; `off`: not requested, not registered or "
                                         "no feature source; else what went wrong")
    message: str


class Recommendations(Body):
    """Remediation recommendations from the incident history and the anomaly model (R7)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "timestamp": "2026-12-06T17:53:23Z", "timeframe": "6h",
        "recommendations": [{
            "id": "rec-ml-001", "type": "proactive", "issue_type": "memory_leak", "target": "shop",
            "namespace": "shop", "severity": "critical", "confidence": 1.0, "predicted_time": "2026-12-06T20:53:23Z",
            "recommended_actions": ["investigate_memory_leak", "increase_memory_limit", "schedule_rolling_restart"],
            "evidence": ["anomaly-detector flags the current 45-feature vector as anomalous", "Anomaly score 0.921",
                         "shop/leaky-6c9d8-abcde: memory at 93% of its limit and growing steadily (24.4% of the "
                         "limit per hour, R²=1.00); limit reached in about 0.3 h"],
            "pods": ["leaky-6c9d8-abcde"], "source": "ml_prediction"}],
        "total_recommendations": 1, "ml_enabled": True,
        "ml": {"model": "anomaly-detector", "status": "ok", "message": "the model answered"}}]})
    status: Literal["success"]
    timestamp: datetime
    timeframe: Literal["1h", "6h", "24h"]
    recommendations: list[Recommendation]
    total_recommendations: int
    ml_enabled: bool = Field(description="true only when the model answered")
    ml: MLPart
    message: str = maybe_absent("when no recommendation is above the confidence threshold")


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

    @api.post("/api/v1/detect", summary="Call a KServe model with instances (KServe v1 or v2 proxy)",
              **op(ModelPrediction, body=DetectRequest, body_errors=ENGINE_BODY_ERRORS, token=True, errors={
                  **MODEL_ERRORS,
                  400: f"{MODEL_ERRORS[400]}; a `Content-Type` other than `application/json` is the engine's 400",
              }))
    async def detect(request: Request) -> JSONResponse:
        model, instances = await _detect_request(request)
        try:
            prediction = await kserve.predict(model, instances)
        except (ValueError, MLError) as exc:  # ValueError: nothing was sent, rows a v2 tensor cannot hold
            raise model_error(exc, success=False) from None
        return JSONResponse(prediction.as_dict())

    @api.get("/api/v1/models", summary="Registered KServe models", **op(ModelList))
    async def list_models() -> JSONResponse:
        return JSONResponse({"models": registry.names(), "count": len(registry)})

    @api.get("/api/v1/models/{model}/health", summary="Readiness of one KServe model",
             **op(ModelReadiness, errors={404: MODEL_ERRORS[404]}))
    async def model_health(
        model: Annotated[str, Path(description="a registered model's logical name", examples=[ANOMALY_MODEL])],
    ) -> JSONResponse:
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

    @api.post("/api/v1/recommendations", summary="Remediation recommendations: history and ML",
              **op(Recommendations, body=RecommendationsRequest, body_required=False, body_errors=(400, 413),
                   token=True))
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

"""`POST /api/v1/anomalies/analyze`: the 45-feature vector, per-pod anomaly rules and enriched signals.

Two concurrent queries answer an analysis (each a `combined` query carrying several expressions): the
scope's vector with the instant values the rules need, and the per-pod series over `time_range`. `label_selector` narrows the
pods (kube-state-metrics' `kube_pod_labels`, one more query); a deployment or pod given without its namespace
is looked up in `kube_pod_info` (one more). Anomalies come from the rules in `domain/analysis.py` and from the
anomaly model's verdict on the vector when a model is configured and the vector is complete.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, ValidationError, field_validator

from pipeline.adapters.features import Collected, FeatureCollector
from pipeline.adapters.prometheus import (
    PrometheusClient,
    PrometheusError,
    PrometheusUnavailable,
    Series,
    split_combined,
)
from pipeline.adapters.scorer import ANOMALY_MODEL, Scorer, ScoringUnavailable
from pipeline.api.contract import ENGINE_BODY_ERRORS, Body, dns_label, dns_subdomain, maybe_absent, op
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.config import Settings
from pipeline.domain import analysis
from pipeline.domain.features import (
    BASE_METRICS,
    FEATURE_NAMES,
    FEATURES,
    FeatureVector,
    InvalidScope,
    Scope,
    combined,
)
from pipeline.domain.scoring import model_input
from pipeline.events import iso_z
from pipeline.gateway.bodies import SNAKE_OR_CAMEL
from pipeline.gateway.dependencies import PROMETHEUS_ERRORS, prometheus_error, prometheus_not_configured

ANOMALY_MODELS = {ANOMALY_MODEL}
_SERVER_ERRORS = 'status=~"5.."'
RULES_MODEL = analysis.RULES_MODEL


class AnalyzeRequest(BaseModel):
    """The engine's snake_case fields and the MCP server's camelCase ones (`timeRange`, `labelSelector`,
    `modelName`); others are ignored. An empty string is absent. A deployment or pod without its namespace is
    looked up in Prometheus."""

    model_config = ConfigDict(**SNAKE_OR_CAMEL, json_schema_extra={"examples": [
        {"timeRange": "1h", "namespace": "payments", "threshold": 0.3, "modelName": "predictive-analytics"}]})
    # The validators below say what is wrong in the engine's words; the schema says the same for the contract.
    time_range: str = Field("1h", json_schema_extra={"enum": list(analysis.TIME_RANGES)})
    namespace: str | None = Field(None, json_schema_extra=dns_label(empty=True))
    deployment: str | None = Field(None, json_schema_extra=dns_subdomain(empty=True))
    pod: str | None = Field(None, json_schema_extra=dns_subdomain(empty=True))
    label_selector: str | None = Field(
        None, description="equality-based (`app=web,tier!=db`), matched through kube-state-metrics' "
                          "`kube_pod_labels`", json_schema_extra={"pattern": f"^(?:{analysis.LABEL_SELECTOR})?$"})
    # Strict: `false` or `"0.5"` is not a threshold (the engine's Go decoding refused them too).
    threshold: StrictFloat | None = Field(None, description=f"keep anomalies scoring at least this; default "
                                                      f"{analysis.DEFAULT_THRESHOLD}",
                                    json_schema_extra={"minimum": 0, "maximum": 1})
    model_name: str | None = Field(None, description="echoed as `model.requested`: the anomaly model scores "
                                                     "whatever is named")

    @field_validator("time_range")
    @classmethod
    def _known_range(cls, value: str) -> str:
        if value not in analysis.TIME_RANGES:
            raise ValueError(f"time_range must be one of: {', '.join(analysis.TIME_RANGES)}")
        return value

    @field_validator("threshold")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("threshold must be between 0.0 and 1.0")
        return value

    @field_validator("namespace", "deployment", "pod", "label_selector", "model_name", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


# ------------------------------------------------------------------------------------------ the answer
Severity = Literal["critical", "high", "medium"]


class Anomaly(Body):
    """One finding: a rule's (`model: statistical-baseline`) or the anomaly model's verdict on the vector."""

    metric: str = Field(description="`pod_memory_usage`, `container_restart_count`, `cpu_throttle_rate`, "
                                    "`pod_cpu_usage`, or `feature_vector` (the model)")
    type: str = Field(description="`threshold_exceeded`, `trend`, `statistical_outlier`, `ml_anomaly`")
    severity: Severity = Field(description="by `anomaly_score`: ≥ 0.9 critical, ≥ 0.8 high, else medium")
    anomaly_score: float = Field(ge=0, le=1)
    confidence: float = Field(ge=0, le=1)
    timestamp: datetime
    value: float
    expected_min: float
    expected_max: float
    model: str
    metrics: dict[str, float] = Field(description="the figures behind it; for throttling `throttle_rate_pct` "
                                                  "is the throttled fraction (0..1, as the MCP reads it)")
    explanation: str = Field(description="for throttling exactly `namespace/pod` (the MCP splits it)")
    recommended_action: str
    namespace: str
    pod: str = Field(description="empty for the model's verdict on a scope")


class AnalysisAlert(Body):
    type: Literal["memory_issue", "availability_issue", "resource_exhaustion", "ml_anomaly"]
    message: str
    severity: Severity
    action_required: bool = Field(description="critical or high")


class AnalysisScope(Body):
    """The scope analysed: the names given (or found), the pods a label selector matched."""

    namespace: str = maybe_absent("absent for the cluster")
    deployment: str = maybe_absent("absent unless given")
    pod: str = maybe_absent("absent unless given")
    pods: str = maybe_absent("the pods the label selector matched, comma-separated")
    label_selector: str | None
    target_description: str


class AnalysisModel(Body):
    """What the anomaly model said about the scope's 45-feature vector, or why it was not asked."""

    name: str = Field(description="the model used")
    requested: str = maybe_absent("`model_name` as asked")
    note: str = maybe_absent("when `model_name` named another model than the one used")
    status: Literal["available", "unavailable"]
    reason: str = maybe_absent("why the model was not asked or did not answer (`unavailable`)")
    version: str = maybe_absent("when it answered")
    source: Literal["kserve", "ml-service"] = maybe_absent("when it answered")
    prediction: int = maybe_absent("when it answered: -1 anomalous, 1 normal")
    score: float | None = maybe_absent("when it answered; null when the model gives none")
    confidence: float | None = maybe_absent("when it answered; null when the model gives none")


class AnalysisSummary(Body):
    total_metrics_analyzed: int
    anomalies_found: int
    models_used: list[str]
    by_severity: dict[str, int]
    max_score: float
    average_score: float
    metrics_analyzed: int
    features_generated: int = Field(description="features of the vector that could be computed")


class AnalysisFeatures(Body):
    """The scope's 45-feature vector (the anomaly model's input), a missing value null with its reason."""

    total_features: int
    base_metrics: list[str]
    features_per_metric: int
    feature_names: list[str]
    values: list[float | None]
    missing: dict[str, str] = Field(description="feature name → why it is missing")
    evaluated_at: datetime


class EnrichedSignals(Body):
    """ADR-017's signals of the whole scope (what the MCP's get-throttled-pods reads)."""

    throttling_detected: bool = Field(description="throttling the anomalies do not already list pod by pod")
    throttled_pods: int = Field(description="pods throttled in more than 25 % of CFS periods")
    http_degraded: bool
    cpu_throttle_rate: float = maybe_absent("throttled CFS periods / periods (a fraction); absent without CFS "
                                            "metrics")
    http_error_rate: float = maybe_absent("the 5xx share; absent without HTTP metrics")
    http_response_time_p99_ms: float = maybe_absent("absent without Istio metrics")


class AnomalyAnalysis(Body):
    """The anomalies of a scope over a time range: rules per pod, and the anomaly model on the whole scope.

    The engine's R19 answer plus what the MCP server reads (`threshold`, `analyzed_at`, `recommendations`,
    `alerts`, each anomaly's `metric` and `value`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "success", "time_range": "1h", "threshold": 0.3, "analyzed_at": "2026-12-06T17:53:23.603943Z",
        "scope": {"namespace": "payments", "label_selector": None, "target_description": "namespace payments"},
        "model_used": "anomaly-detector",
        "model": {"name": "anomaly-detector", "requested": "predictive-analytics",
                  "note": "'predictive-analytics' is not an anomaly model; the analysis used anomaly-detector",
                  "status": "available", "version": "ad646d330f7fff36", "source": "kserve", "prediction": -1,
                  "score": 0.8982, "confidence": 0.7965},
        "anomalies_detected": 1,
        "anomalies": [{"metric": "cpu_throttle_rate", "type": "threshold_exceeded", "severity": "high",
                       "anomaly_score": 0.88, "confidence": 0.95, "timestamp": "2026-12-06T17:53:23.603943Z",
                       "value": 0.6102, "expected_min": 0.0, "expected_max": 0.25, "model": "statistical-baseline",
                       "metrics": {"throttle_rate_pct": 0.6102, "throttle_rate_percent": 61.02},
                       "explanation": "payments/throttled-84c5d7f96-p2r5s", "recommended_action": "increase_cpu_limit",
                       "namespace": "payments", "pod": "throttled-84c5d7f96-p2r5s"}],
        "recommendations": ["Raise the CPU limit of payments/throttled-84c5d7f96-p2r5s or remove it; it is throttled"],
        "recommendation": "Raise the CPU limit of payments/throttled-84c5d7f96-p2r5s or remove it; it is throttled",
        "alerts": [{"type": "resource_exhaustion",
                    "message": "payments/throttled-84c5d7f96-p2r5s: CPU throttled in 61% of its CFS periods over "
                               "the last 5 minutes (more than 25%); its CPU limit is too low for its load",
                    "severity": "high", "action_required": True}],
        "summary": {"total_metrics_analyzed": 5, "anomalies_found": 1,
                    "models_used": ["statistical-baseline", "anomaly-detector"], "by_severity": {"high": 1},
                    "max_score": 0.88, "average_score": 0.88, "metrics_analyzed": 5, "features_generated": 45},
        "features": {"total_features": 45, "base_metrics": list(BASE_METRICS), "features_per_metric": 9,
                     "feature_names": list(FEATURE_NAMES), "values": [0.5] * 45, "missing": {},
                     "evaluated_at": "2026-12-06T17:53:23.603943Z"},
        "enriched_signals": {"throttling_detected": False, "throttled_pods": 1, "http_degraded": False,
                             "cpu_throttle_rate": 0.436372},
        "query_count": 2, "query_seconds": 0.0728}]})
    status: Literal["success"]
    time_range: str = Field(description="1h, 6h, 24h or 7d")
    threshold: float
    analyzed_at: datetime
    scope: AnalysisScope
    model_used: str = Field(description="the anomaly model when it answered, else `statistical-baseline`")
    model: AnalysisModel
    anomalies_detected: int
    anomalies: list[Anomaly] = Field(description="those scoring at least `threshold`, strongest first")
    recommendations: list[str] = Field(description="one per anomaly, or one saying there is none")
    recommendation: str = Field(description="the first of `recommendations` (the engine's field)")
    alerts: list[AnalysisAlert]
    summary: AnalysisSummary
    features: AnalysisFeatures
    enriched_signals: EnrichedSignals
    query_count: int = Field(description="Prometheus queries this analysis made")
    query_seconds: float


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message, field=field)


def router(settings: Settings, prometheus: PrometheusClient | None, scorer: Scorer | None = None) -> APIRouter:
    """`scorer` (KServe or the ML service) scores the vector when it is complete; rules apply either way."""
    api = APIRouter(tags=["analysis"])
    collector = FeatureCollector(prometheus)

    @api.post("/api/v1/anomalies/analyze", summary="Analyse a scope for anomalies over a time range",
              **op(AnomalyAnalysis, body=AnalyzeRequest, body_errors=ENGINE_BODY_ERRORS, token=True, errors={
                  400: "The body is invalid (`INVALID_REQUEST`, `field` names what), a deployment or pod is in "
                       "several namespaces (`AMBIGUOUS_NAMESPACE`, with `namespaces`), or a `Content-Type` other "
                       "than `application/json` (the engine's 400, not 415)",
                  404: "The deployment or pod given without its namespace is in no namespace (`NOT_FOUND`), or "
                       "the label selector matches no pod (`NO_MATCHING_PODS`)",
                  **PROMETHEUS_ERRORS}))
    async def analyze(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if content_type and not content_type.startswith("application/json"):
            raise _invalid("Content-Type must be application/json", "content-type")
        body = await read_json(request, 64 * 1024)
        if not isinstance(body, dict):
            raise _invalid("Invalid request format: a JSON object is required", "body")
        try:
            req = AnalyzeRequest.model_validate(body)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0]) if error["loc"] else "body"
            raise _invalid(str(error["msg"]).removeprefix("Value error, "), field) from None
        try:
            selector = analysis.label_selector_matchers(req.label_selector) if req.label_selector else None
            if req.namespace or not (req.deployment or req.pod):
                scope: Scope | None = Scope(namespace=req.namespace, deployment=req.deployment, pod=req.pod)
            else:  # a deployment or pod without its namespace: found in Prometheus below
                scope = None
                Scope(namespace="x", deployment=req.deployment, pod=req.pod)  # the names are valid
        except InvalidScope as exc:
            raise _invalid(str(exc), exc.field) from None
        except analysis.InvalidSelector as exc:
            raise _invalid(str(exc), "label_selector") from None
        if prometheus is None:
            raise prometheus_not_configured()
        try:
            return JSONResponse(await _analyze(prometheus, collector, req, scope, selector, scorer))
        except PrometheusError as exc:
            raise prometheus_error(exc) from None

    return api


async def _resolve_namespace(prometheus: PrometheusClient, req: AnalyzeRequest, now: float) -> Scope:
    """The namespace of a deployment or pod named without one: the only namespace that has it, or a 4xx."""
    probe = Scope(namespace="x", deployment=req.deployment, pod=req.pod)
    matchers = [m for m in probe.pod_matchers() if not m.startswith("namespace=")]
    found = await prometheus.query(f"count by (namespace) (kube_pod_info{{{','.join(matchers)}}})", now)
    namespaces = sorted({s.labels["namespace"] for s in found if s.labels.get("namespace")})
    what = f"pod {req.pod!r}" if req.pod else f"deployment {req.deployment!r}"
    if not namespaces:
        raise ApiError(404, "NOT_FOUND", f"no {what} in any namespace; give its namespace", field="namespace")
    if len(namespaces) > 1:
        error = ApiError(400, "AMBIGUOUS_NAMESPACE",
                         f"{what} exists in namespaces {', '.join(namespaces)}: give namespace", field="namespace")
        error.extra["namespaces"] = namespaces
        raise error
    return Scope(namespace=namespaces[0], deployment=req.deployment, pod=req.pod)


async def _analyze(
    prometheus: PrometheusClient,
    collector: FeatureCollector,
    req: AnalyzeRequest,
    scope: Scope | None,
    selector: list[str] | None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Two queries (plus one to find a missing namespace, one for a label selector), each a `combined`
    query: the vector with every instant value, and the per-pod series over the range."""
    started = time.perf_counter()
    now = time.time()
    queries = 0
    if scope is None:
        scope = await _resolve_namespace(prometheus, req, now)
        queries += 1
    if selector is not None:
        scope = await _selected_pods(prometheus, scope, selector, req.label_selector, now)
        queries += 1
    range_label = req.time_range
    range_s = analysis.TIME_RANGES[range_label]
    pods = tuple(scope.pod_matchers())
    over_range, at_end = analysis.rule_queries(pods, range_label)
    containers = analysis.braces('container!=""', *pods)
    # ADR-017's signals of the whole scope: throttled CFS periods / periods, 5xx share, p99 latency.
    at_end["throttle_total"] = (f"sum(rate(container_cpu_cfs_throttled_periods_total{containers}[5m])) / "
                                f"sum(rate(container_cpu_cfs_periods_total{containers}[5m]))")
    at_end["http_errors"] = (f"sum(rate(container_http_requests_total{analysis.braces(_SERVER_ERRORS, *pods)}[5m])) / "
                             f"sum(rate(container_http_requests_total{analysis.braces(*pods)}[5m]))")
    at_end["http_p99"] = ("histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket"
                          f"{analysis.braces(*_istio_matchers(scope))}[5m])))")
    # The instant values ride along with the vector (they are its query's values at `now`).
    collected, ranged = await asyncio.gather(
        collector.collect(scope, now, at_end),
        _tolerant(prometheus.query_range(combined(over_range), now - range_s, now,
                                         analysis.baseline_step(range_s))),
    )
    if isinstance(collected.error, PrometheusUnavailable):
        raise collected.error
    queries += collected.queries + 1
    ranges = split_combined(list(over_range), ranged)
    points = collected.extra

    findings: list[analysis.Finding | None] = list(analysis.rule_findings(
        {key: [(s.labels, s.samples) for s in found] for key, found in ranges.items()},
        {key: [(s.labels, s.samples) for s in found] for key, found in points.items()},
        range_label,
    ))
    threshold = req.threshold or analysis.DEFAULT_THRESHOLD
    model, ml_finding = await _score(scorer, collected, req, scope)
    findings.append(ml_finding)
    kept = sorted((f for f in findings if f is not None and f.anomaly_score >= threshold),
                  key=lambda f: (-f.anomaly_score, f.namespace, f.pod, f.metric))
    report = _report(req, scope, threshold, now, kept, model, collected.vector, points)
    return {**report, "query_count": queries, "query_seconds": round(time.perf_counter() - started, 4)}


def _report(
    req: AnalyzeRequest,
    scope: Scope,
    threshold: float,
    now: float,
    kept: list[analysis.Finding],
    model: dict[str, Any],
    vector: FeatureVector,
    points: dict[str, list[Series]],
) -> dict[str, Any]:
    """The engine's answer (what the MCP's analyze-anomalies reads) for the findings kept."""
    analyzed_at = iso_z(datetime.fromtimestamp(now, UTC))
    by_severity: dict[str, int] = {}
    for finding in kept:
        by_severity[finding.severity] = by_severity.get(finding.severity, 0) + 1
    scores = [f.anomaly_score for f in kept]
    texts = analysis.recommendations(kept)
    scored = model["status"] == "available"
    return {
        "status": "success",
        "time_range": req.time_range,
        "threshold": threshold,
        "analyzed_at": analyzed_at,
        "scope": {**scope.as_dict(), "label_selector": req.label_selector,
                  "target_description": _describe(scope)},
        "model_used": model["name"] if scored else RULES_MODEL,
        "model": model,
        "anomalies_detected": len(kept),
        "anomalies": [_item(f, analyzed_at) for f in kept],
        "recommendations": texts,
        "recommendation": texts[0],
        "alerts": analysis.alerts(kept),
        "summary": {
            "total_metrics_analyzed": len(BASE_METRICS),
            "anomalies_found": len(kept),
            "models_used": [RULES_MODEL, *([model["name"]] if scored else [])],
            "by_severity": by_severity,
            "max_score": max(scores, default=0.0),
            "average_score": round(statistics.fmean(scores), 4) if scores else 0.0,
            "metrics_analyzed": len(BASE_METRICS),
            "features_generated": len(FEATURE_NAMES) - len(vector.missing),
        },
        "features": {
            "total_features": len(FEATURE_NAMES),
            "base_metrics": list(BASE_METRICS),
            "features_per_metric": len(FEATURES),
            "feature_names": list(FEATURE_NAMES),
            "values": vector.values,
            "missing": vector.missing,
            "evaluated_at": analyzed_at,
        },
        "enriched_signals": _enriched(points, kept),
    }


async def _selected_pods(
    prometheus: PrometheusClient, scope: Scope, selector: list[str], label_selector: str | None, now: float
) -> Scope:
    """The scope narrowed to the pods whose labels match the selector (one query); 404 when none does."""
    matchers = ",".join([*scope.pod_matchers(), *selector])
    found = await prometheus.query(f"kube_pod_labels{{{matchers}}}", now)
    matched = tuple(sorted({s.labels["pod"] for s in found if s.labels.get("pod")}))
    if not matched:
        raise ApiError(404, "NO_MATCHING_PODS", f"no pod matches label_selector {label_selector!r}",
                       field="label_selector")
    return Scope(namespace=scope.namespace, deployment=scope.deployment, pod=scope.pod, pods=matched)



async def _tolerant(call: Awaitable[list[Series]]) -> list[Series]:
    """A query whose rejection (bad data, not bad luck) leaves its rules without input; unavailability raises."""
    try:
        return await call
    except PrometheusUnavailable:
        raise
    except PrometheusError:
        return []


async def _score(
    scorer: Scorer | None, collected: Collected, req: AnalyzeRequest, scope: Scope
) -> tuple[dict[str, Any], analysis.Finding | None]:
    """The anomaly model's verdict on the scope's vector, when there is a model and a complete vector.

    The anomaly model scores whatever model the request names: the MCP's tool schema fills in
    `modelName: "predictive-analytics"` on every call, and an analysis must not fail for it. `requested`
    says what was asked for and `name` what was used.
    """
    requested = req.model_name
    model: dict[str, Any] = {"name": ANOMALY_MODEL}
    if requested is not None:
        model["requested"] = requested
        if requested not in ANOMALY_MODELS:
            model["note"] = f"'{requested}' is not an anomaly model; the analysis used {ANOMALY_MODEL}"
    if scorer is None:
        return {**model, "status": "unavailable", "reason": "no ML service is configured"}, None
    vector, missing = model_input(collected.vector.values, collected.vector.missing)
    if vector is None:
        return {**model, "status": "unavailable", "reason": f"not scored: {missing}"}, None
    try:
        score = await scorer.score(vector)
    except ScoringUnavailable as exc:
        return {**model, "status": "unavailable", "reason": str(exc)}, None
    model.update({"name": score.model, "status": "available", "version": score.version, "source": scorer.source,
                  "prediction": score.prediction, "score": score.score, "confidence": score.confidence})
    if score.prediction != -1:
        return model, None
    value = score.score if score.score is not None else 1.0
    return model, analysis.Finding(
        metric="feature_vector", type="ml_anomaly", anomaly_score=round(value, 4), value=round(value, 4),
        expected_min=0.0, expected_max=0.5, namespace=scope.namespace or "", pod=scope.pod or "",
        explanation=f"{score.model} {score.version} classifies the 45-feature vector of {_describe(scope)} as anomalous",
        recommended_action="immediate_investigation" if value >= 0.8 else "review_anomaly",
        metrics={"ml_score": round(value, 4)},
        confidence=score.confidence if score.confidence is not None else 0.5,
        model=score.model, target=_describe(scope),
    )


def _istio_matchers(scope: Scope) -> list[str]:
    out = []
    if scope.namespace:
        out.append(f'destination_workload_namespace="{scope.namespace}"')
    if scope.deployment:
        out.append(f'destination_workload="{scope.deployment}"')
    return out


def _describe(scope: Scope) -> str:
    if scope.pod:
        return f"pod {scope.namespace}/{scope.pod}"
    if scope.deployment:
        return f"deployment {scope.namespace}/{scope.deployment}"
    if scope.pods:
        return f"{len(scope.pods)} pod(s) matching the label selector"
    return f"namespace {scope.namespace}" if scope.namespace else "cluster"


def _item(f: analysis.Finding, timestamp: str) -> dict[str, Any]:
    confidence = f.confidence
    return {
        "metric": f.metric, "type": f.type, "severity": f.severity, "anomaly_score": f.anomaly_score,
        "confidence": round(confidence, 4), "timestamp": timestamp, "value": f.value,
        "expected_min": f.expected_min, "expected_max": f.expected_max, "model": f.model,
        "metrics": f.metrics, "explanation": f.explanation, "recommended_action": f.recommended_action,
        "namespace": f.namespace, "pod": f.pod,
    }


def _scalar(series: list[Series]) -> float | None:
    if len(series) != 1:
        return None
    value = series[0].last
    return value if value == value and abs(value) != float("inf") else None


def _enriched(points: dict[str, list[Series]], kept: list[analysis.Finding]) -> dict[str, Any]:
    """ADR-017's signals of the scope, with a true throttle fraction (throttled periods / periods).

    `throttling_detected` is what the MCP's get-throttled-pods turns into one entry for the whole scope,
    beside one entry per throttled pod listed in `anomalies` (`metrics.throttle_rate_pct`). So it is true
    only for throttling the anomalies do not already list pod by pod: one pod, one entry. `throttled_pods`
    counts the pods above the throttling threshold whatever the request's `threshold`.
    """
    throttle = _scalar(points["throttle_total"])
    errors = _scalar(points["http_errors"])
    p99 = _scalar(points["http_p99"])
    itemized = any(f.metric == "cpu_throttle_rate" for f in kept)
    per_pod = [s.last for s in points["throttle"] if s.samples and s.last > analysis.THROTTLED_FRACTION]
    out: dict[str, Any] = {
        "throttling_detected": throttle is not None and throttle > analysis.THROTTLED_FRACTION and not itemized,
        "throttled_pods": len(per_pod),
        "http_degraded": (errors is not None and errors > analysis.HTTP_ERROR_RATE_DEGRADED)
        or (p99 is not None and p99 > analysis.HTTP_P99_DEGRADED_MS),
    }
    for name, value in (("cpu_throttle_rate", throttle), ("http_error_rate", errors),
                        ("http_response_time_p99_ms", p99)):
        if value is not None:
            out[name] = round(value, 6)
    return out

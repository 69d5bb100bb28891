"""The reference ML service (`pipeline ml serve`): one ``ReferenceModel`` behind three protocols.

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
* ``POST /api/v1/pattern/analyze`` — trends, spikes, level shifts and correlations (thresholds below);
  ``analysis_type`` naming one of them narrows the analysis, any other value runs all (and says so).
* ``GET /health`` -> ``{"status": "healthy", "model": "anomaly-detector", "model_version": "..."}``.

Malformed requests get 400 with the JSON error of ``pipeline.api.errors`` naming the field.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from pipeline import __version__
from pipeline.api import errors
from pipeline.api.errors import ApiError
from pipeline.api.requests import read_json
from pipeline.domain.capacity import fit_line
from pipeline.domain.features import BASE_METRICS, FEATURE_NAMES, metric_features
from pipeline.ml.model import (
    InvalidVector,
    Prediction,
    ReferenceModel,
    as_vector,
    train_or_load,
    vector_from_mapping,
)
from pipeline.observability import configure_logging, get_logger

log = get_logger("pipeline.ml")

MAX_INSTANCES = 10_000
MAX_DEVIATION = 1000.0  # a change from a constant series has no finite robust deviation: report this
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533
MIN_REFERENCE_POINTS = 5  # a metric's own check needs this many earlier points
TREND_R2 = 0.8  # a line explains the series
TREND_MIN_CHANGE = 0.05  # ... and moves it by at least 5 % of its mean over the range
SPIKE_Z = 3.5
LEVEL_SHIFT_Z = 3.0
CORRELATION_R = 0.9
RISK_HIGH, RISK_MEDIUM = 0.9, 0.75  # for ratio series (every value in 0..1)
PATTERN_TYPES = ("trend", "spike", "level_shift", "correlation")

Point = tuple[float, float]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
M = TypeVar("M", bound=BaseModel)


# ----------------------------------------------------------------------------- requests
class MetricSample(BaseModel):
    name: str = Field(min_length=1)
    value: float = Field(strict=True, allow_inf_nan=False)
    timestamp: datetime  # RFC 3339 or unix seconds; naive means UTC
    labels: dict[str, str] = Field(default_factory=dict)


class DetectRequest(BaseModel):
    features: Any = None  # a list of 45 or a name -> value object, checked by pipeline.ml.model
    timestamp: datetime | None = None  # when `features` were evaluated (echoed back)
    metrics: list[MetricSample] = Field(default_factory=list)
    threshold: float = Field(default=3.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _something(self) -> DetectRequest:
        if self.features is None and not self.metrics:
            raise ValueError("give `features` (45 values or a name -> value object) or `metrics`")
        return self


class PredictRequest(BaseModel):
    historical_metrics: list[MetricSample] = Field(min_length=1)
    predict_ahead: str = Field(default="1h", pattern=r"^[1-9][0-9]{0,5}[smhd]$")
    include_confidence: bool = True  # accepted; confidence is always returned


class TimeRange(BaseModel):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if _seconds(self.end) < _seconds(self.start):
            raise ValueError("end is before start")
        return self


class PatternRequest(BaseModel):
    metrics: list[MetricSample] = Field(min_length=1)
    time_range: TimeRange | None = None
    analysis_type: str = "all"  # one of PATTERN_TYPES narrows the analysis; any other value runs them all


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; 400 (never 422) naming the field when it is not."""
    raw = await _json(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise errors.from_pydantic(exc, status=400) from None


MAX_BODY_BYTES = 32 << 20  # a scoring batch or a detect request with its series: generous, still bounded


async def _json(request: Request) -> Any:
    """The body as JSON: 413 past MAX_BODY_BYTES, 400 when not JSON or nested deeper than 64 levels (the
    gateway's own reader, so a hostile body cannot exhaust the parser here either)."""
    return await read_json(request, MAX_BODY_BYTES)


# ----------------------------------------------------------------------------- series helpers (pure)
def _seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        raise ApiError(400, "OUT_OF_RANGE", f"a timestamp is out of range: {seconds:.0f}") from None


def group(metrics: Sequence[MetricSample]) -> dict[SeriesKey, list[Point]]:
    """Samples by (name, labels), ascending in time; a repeated timestamp keeps the last value sent."""
    by_key: dict[SeriesKey, dict[float, float]] = {}
    for m in metrics:
        key = (m.name, tuple(sorted(m.labels.items())))
        by_key.setdefault(key, {})[_seconds(m.timestamp)] = m.value
    return {key: sorted(points.items()) for key, points in by_key.items()}


def series_name(key: SeriesKey) -> str:
    name, labels = key
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else "")


def robust_scale(deviations: Sequence[float]) -> float:
    """A robust standard deviation from absolute deviations: 1.4826 x their median, or, when more than
    half are 0, 1.2533 x their mean (the modified z-score's fallback); 0 only for a constant series."""
    mad = statistics.median(deviations)
    return MAD_TO_SIGMA * mad if mad else MEAN_AD_TO_SIGMA * statistics.fmean(deviations)


def robust_z(value: float, reference: Sequence[float]) -> float:
    """(value - median) / robust_scale, capped at ±MAX_DEVIATION (also for a constant reference)."""
    centre = statistics.median(reference)
    return _capped(value - centre, robust_scale([abs(x - centre) for x in reference]))


def _capped(difference: float, scale: float) -> float:
    if scale == 0:
        return 0.0 if difference == 0 else math.copysign(MAX_DEVIATION, difference)
    return max(-MAX_DEVIATION, min(MAX_DEVIATION, difference / scale))


@dataclass(frozen=True, slots=True)
class Line:
    slope: float  # per second
    intercept: float  # the fitted value at the last timestamp
    r2: float  # 1.0 for a constant series (the line explains it fully)


def linear_fit(points: Sequence[Point]) -> Line | None:
    """The project's least-squares fit (`capacity.fit_line`), expressed at the last timestamp."""
    fit = fit_line(points)
    if fit is None:
        return None
    return Line(fit.slope, fit.value_at(points[-1][0]), fit.r_squared)


def severity(deviation: float, threshold: float) -> str:
    size = abs(deviation)
    return "high" if size >= 3 * threshold else "medium" if size >= 2 * threshold else "low"


def duration_s(text: str) -> int:
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]


# ----------------------------------------------------------------------------- anomaly/detect
def vector_from_metrics(series: dict[SeriesKey, list[Point]]) -> tuple[list[float | None], float] | None:
    """The model's vector from base-metric series and feature-named metrics, at their latest timestamp."""
    inputs = {k: s for k, s in series.items() if k[0] in BASE_METRICS or k[0] in FEATURE_NAMES}
    if not inputs:
        return None
    names = [k[0] for k in inputs]
    for name in names:
        if names.count(name) > 1:
            raise ApiError(
                400,
                "SEVERAL_SCOPES",
                f"metrics hold {names.count(name)} series of {name} "
                "(labels differ): send one scope per request",
                field="metrics",
            )
    at = max(points[-1][0] for points in inputs.values())
    values: dict[str, float | None] = {}
    for (name, _), points in inputs.items():
        if name in BASE_METRICS:
            features, _ = metric_features(at, points)
            values.update({f"{name}_{f}": v for f, v in features.items()})
    for (name, _), points in inputs.items():
        if name in FEATURE_NAMES:  # an explicit feature wins over the computed one
            values[name] = points[-1][1]
    return [values.get(name) for name in FEATURE_NAMES], at


def detect(model: ReferenceModel, request: DetectRequest) -> dict[str, Any]:
    series = group(request.metrics)
    vector: list[float | None] | None = None
    at = _seconds(request.timestamp) if request.timestamp else datetime.now(UTC).timestamp()
    try:
        if isinstance(request.features, dict):
            vector = vector_from_mapping(request.features, "features")
        elif request.features is not None:
            vector = as_vector(request.features, "features")  # rejects what is not a list too
    except InvalidVector as exc:
        raise ApiError(400, "INVALID_FEATURES", str(exc), field=exc.field) from None
    if vector is None:
        built = vector_from_metrics(series)
        if built is not None:
            vector, at = built
    anomalies: list[dict[str, Any]] = []
    checked = 0
    body: dict[str, Any] = {"prediction": None, "score": None, "confidence": None, "imputed": []}
    if vector is not None:
        prediction = model.predict([vector])[0]
        checked += len(FEATURE_NAMES)
        body.update(
            prediction=prediction.prediction,
            score=prediction.score,
            confidence=prediction.confidence,
            imputed=list(prediction.imputed),
            evaluated_at=_iso(at),
        )
        if prediction.prediction == -1:
            anomalies += _explain(
                model, vector, prediction.score, prediction.confidence, at, request.threshold
            )
    for key, points in series.items():
        if key[0] in BASE_METRICS or key[0] in FEATURE_NAMES or len(points) <= MIN_REFERENCE_POINTS:
            continue
        checked += 1
        (ts, value), reference = points[-1], [v for _, v in points[:-1]]
        z = robust_z(value, reference)
        if abs(z) >= request.threshold:
            anomalies.append(
                {
                    "metric_name": series_name(key),
                    "value": value,
                    "expected": statistics.median(reference),
                    "deviation": z,
                    "severity": severity(z, request.threshold),
                    "confidence": abs(z) / (abs(z) + request.threshold),
                    "timestamp": _iso(ts),
                    "reason": f"last value is {z:+.1f} robust deviations from its {len(reference)} earlier values",
                }
            )
    confidences = [a["confidence"] for a in anomalies]
    summary_confidence = (
        body["confidence"] if vector is not None else (statistics.fmean(confidences) if confidences else 0.0)
    )
    summary = {
        "total": checked,
        "anomalies_found": len(anomalies),
        "high_severity": sum(a["severity"] == "high" for a in anomalies),
        "confidence": summary_confidence,
    }
    return {
        "anomalies": anomalies,
        "summary": summary,
        **body,
        "model_name": model.name,
        "model_version": model.version,
    }


def _explain(
    model: ReferenceModel,
    vector: list[float | None],
    score: float,
    confidence: float,
    at: float,
    threshold: float,
) -> list[dict[str, Any]]:
    """The features furthest from normal (at least the furthest one) as legacy anomaly entries."""
    deviations = sorted(model.deviations(vector), key=lambda d: -abs(d.deviation))
    picked = [d for d in deviations if abs(d.deviation) >= threshold] or deviations[:1]
    return [
        {
            "metric_name": d.name,
            "value": d.value,
            "expected": d.expected,
            "deviation": max(-MAX_DEVIATION, min(MAX_DEVIATION, d.deviation)),
            "severity": severity(d.deviation, threshold),
            "confidence": confidence,
            "timestamp": _iso(at),
            "reason": f"{model.name} {model.version} scored the vector {score:.2f}; {d.name} is "
            f"{d.deviation:+.1f} robust units from its normal {d.expected:.4g}",
        }
        for d in picked
    ]


# ----------------------------------------------------------------------------- prediction/predict
def forecast(request: PredictRequest) -> dict[str, Any]:
    """Per series: the least-squares line, ``predict_ahead`` past the last point.

    confidence = R² x min(1, points / 10) (0 for one point); trend = stable when R² < 0.3 or the line moves
    less than 1 % of the mean over the horizon; risk (ratio series only) from the predicted value.
    """
    ahead = duration_s(request.predict_ahead)
    predictions = []
    for key, points in group(request.historical_metrics).items():
        last_ts, last_value = points[-1]
        line = linear_fit(points)
        values = [v for _, v in points]
        if line is None:
            predicted, confidence_, trend = last_value, 0.0, "insufficient_data"
        else:
            predicted = line.intercept + line.slope * ahead
            confidence_ = line.r2 * min(1.0, len(points) / 10)
            change = line.slope * ahead
            moving = line.r2 >= 0.3 and abs(change) >= 0.01 * max(abs(statistics.fmean(values)), 1e-12)
            trend = ("increasing" if change > 0 else "decreasing") if moving else "stable"
        entry: dict[str, Any] = {
            "metric_name": series_name(key),
            "predicted_value": predicted,
            "confidence": confidence_,
            "timestamp": _iso(last_ts + ahead),
            "trend": trend,
        }
        if all(0.0 <= v <= 1.0 for v in values):
            entry["risk"] = (
                "high" if predicted >= RISK_HIGH else "medium" if predicted >= RISK_MEDIUM else "low"
            )
        predictions.append(entry)
    overall = statistics.fmean(p["confidence"] for p in predictions)
    return {
        "predictions": predictions,
        "summary": {
            "time_range": request.predict_ahead,
            "metrics_count": len(predictions),
            "overall_confidence": overall,
        },
    }


# ----------------------------------------------------------------------------- pattern/analyze
def analyze(request: PatternRequest) -> dict[str, Any]:
    """Trends (R² >= 0.8 and >= 5 % change), spikes (robust z >= 3.5), level shifts (second half's median
    >= 3 robust deviations from the first's, no trend), correlations (Pearson |r| >= 0.9, >= 5 shared
    timestamps). Only samples inside ``time_range`` count."""
    series = group(request.metrics)
    if request.time_range is not None:
        start, end = _seconds(request.time_range.start), _seconds(request.time_range.end)
        series = {k: [p for p in s if start <= p[0] <= end] for k, s in series.items()}
        series = {k: s for k, s in series.items() if s}
    wanted = {request.analysis_type} if request.analysis_type in PATTERN_TYPES else set(PATTERN_TYPES)
    patterns: list[dict[str, Any]] = []
    insights: list[str] = []
    if request.analysis_type not in (*PATTERN_TYPES, "all"):
        insights.append(
            f"analysis_type {request.analysis_type!r} is not one of {', '.join(PATTERN_TYPES)}: ran all"
        )
    for key, points in series.items():
        line = linear_fit(points) if len(points) >= 5 else None
        trending = line is not None and _is_trend(points, line)
        if "trend" in wanted and line is not None and trending:
            patterns.append(_trend(key, points, line))
            values = [v for _, v in points]
            if line.slope > 0 and all(0.0 <= v <= 1.0 for v in values) and line.intercept < 1.0:
                minutes = (1.0 - line.intercept) / line.slope / 60
                insights.append(
                    f"{series_name(key)} reaches 1.0 in about {minutes:.0f} min at its current rate"
                )
        if "spike" in wanted and len(points) >= 5:
            patterns += _spikes(key, points)
        if "level_shift" in wanted and len(points) >= 8 and not trending:
            patterns += _level_shift(key, points)
    if "correlation" in wanted:
        patterns += _correlations(series)
    insights.insert(
        0,
        f"{len(patterns)} pattern(s) in {len(series)} series"
        if patterns
        else f"no trend, spike, level shift or correlation in {len(series)} series",
    )
    confidence_ = statistics.fmean(p["confidence"] for p in patterns) if patterns else 0.0
    return {
        "patterns": patterns,
        "insights": insights,
        "summary": {"patterns_found": len(patterns), "confidence": confidence_},
    }


def _is_trend(points: Sequence[Point], line: Line) -> bool:
    span = points[-1][0] - points[0][0]
    mean = statistics.fmean(v for _, v in points)
    return line.r2 >= TREND_R2 and abs(line.slope * span) >= TREND_MIN_CHANGE * max(abs(mean), 1e-12)


def _pattern(
    kind: str, description: str, keys: Sequence[SeriesKey], confidence_: float, start: float, end: float
) -> dict[str, Any]:
    return {
        "type": kind,
        "description": description,
        "metrics": [series_name(k) for k in keys],
        "confidence": confidence_,
        "start_time": _iso(start),
        "end_time": _iso(end),
    }


def _trend(key: SeriesKey, points: Sequence[Point], line: Line) -> dict[str, Any]:
    span = points[-1][0] - points[0][0]
    first = line.intercept - line.slope * span
    verb = "rises" if line.slope > 0 else "falls"
    return _pattern(
        "trend",
        f"{series_name(key)} {verb} steadily: {first:.4g} -> {line.intercept:.4g} "
        f"({line.slope * 3600:+.4g}/h, R² {line.r2:.2f})",
        [key],
        line.r2,
        points[0][0],
        points[-1][0],
    )


def _spikes(key: SeriesKey, points: Sequence[Point]) -> list[dict[str, Any]]:
    values = [v for _, v in points]
    hits = [(t, robust_z(v, values)) for t, v in points]
    hits = [(t, z) for t, z in hits if abs(z) >= SPIKE_Z]
    if not hits:
        return []
    top = max(abs(z) for _, z in hits)
    return [
        _pattern(
            "spike",
            f"{series_name(key)} has {len(hits)} point(s) up to {top:.1f} robust deviations from its median",
            [key],
            top / (top + SPIKE_Z),
            hits[0][0],
            hits[-1][0],
        )
    ]


def _level_shift(key: SeriesKey, points: Sequence[Point]) -> list[dict[str, Any]]:
    half = len(points) // 2
    before, after = [v for _, v in points[:half]], [v for _, v in points[half:]]
    m1, m2 = statistics.median(before), statistics.median(after)
    spread = [abs(v - m1) for v in before] + [abs(v - m2) for v in after]
    size = abs(_capped(m2 - m1, robust_scale(spread)))
    if size < LEVEL_SHIFT_Z:
        return []
    return [
        _pattern(
            "level_shift",
            f"{series_name(key)} moved from about {m1:.4g} to about {m2:.4g} at {_iso(points[half][0])}",
            [key],
            size / (size + LEVEL_SHIFT_Z),
            points[0][0],
            points[-1][0],
        )
    ]


def _correlations(series: dict[SeriesKey, list[Point]]) -> list[dict[str, Any]]:
    keys = sorted(series)
    found = []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            first, second = dict(series[a]), dict(series[b])
            shared = sorted(set(first) & set(second))
            if len(shared) < 5:
                continue
            xs, ys = [first[t] for t in shared], [second[t] for t in shared]
            if statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
                continue
            r = statistics.correlation(xs, ys)
            if abs(r) >= CORRELATION_R:
                how = "together" if r > 0 else "in opposition"
                found.append(
                    _pattern(
                        "correlation",
                        f"{series_name(a)} and {series_name(b)} move {how} (r = {r:.2f})",
                        [a, b],
                        abs(r),
                        shared[0],
                        shared[-1],
                    )
                )
    return found


# ----------------------------------------------------------------------------- KServe v2 (pure)
SERVED_ALIASES = ("model",)  # a KServe model server's default model name, which the MCP server asks for
V2_DATATYPES = ("FP32", "FP64")
V2_INPUT = "input-0"
V2_OUTPUTS = {"predictions": "INT64", "scores": "FP64", "confidences": "FP64"}


class V2Error(Exception):
    """An Open Inference Protocol error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class V2Request:
    rows: list[list[float | None]]
    outputs: tuple[str, ...]  # the outputs to answer, in the protocol's order of the request
    id: str | None


def v2_metadata(model: ReferenceModel) -> dict[str, Any]:
    width = len(FEATURE_NAMES)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "sklearn",
        "inputs": [{"name": V2_INPUT, "datatype": "FP64", "shape": [-1, width]}],
        "outputs": [{"name": name, "datatype": kind, "shape": [-1]} for name, kind in V2_OUTPUTS.items()],
    }


def v2_request(body: Any) -> V2Request:
    """The rows of an inference request: one FP32/FP64 tensor of shape [n, 45], data flat or nested."""
    if not isinstance(body, dict):
        raise V2Error(400, "the request body must be a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        got = f"{len(inputs)} tensors" if isinstance(inputs, list) else repr(inputs)
        raise V2Error(
            400, f"'inputs' must hold exactly one tensor of shape [n, {len(FEATURE_NAMES)}], got {got}"
        )
    rows = _v2_rows(inputs[0])
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error(400, "'id' must be a string")
    return V2Request(rows, _v2_outputs(body.get("outputs")), request_id)


def _v2_rows(tensor: Any) -> list[list[float | None]]:
    width = len(FEATURE_NAMES)
    if not isinstance(tensor, dict):
        raise V2Error(400, "inputs[0] must be a tensor object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(400, "inputs[0].name is required")
    where = f"input {name!r}"
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if datatype not in V2_DATATYPES:
        raise V2Error(400, f"{where}: datatype must be FP32 or FP64, got {datatype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1] != width
        or not 1 <= shape[0] <= MAX_INSTANCES
    ):
        raise V2Error(
            400, f"{where}: shape must be [n, {width}] with 1 <= n <= {MAX_INSTANCES}, got {shape!r}"
        )
    count = shape[0]
    if not isinstance(data, list):
        raise V2Error(400, f"{where}: data must be a list of numbers, flat or nested as the shape")
    if data and all(isinstance(row, list) for row in data):
        if len(data) != count or any(len(row) != width for row in data):
            sizes = sorted({len(row) for row in data})
            raise V2Error(
                400,
                f"{where}: nested data has {len(data)} rows of {sizes} values; the shape says {count} x {width}",
            )
        rows = data
    elif any(isinstance(v, list) for v in data):
        raise V2Error(400, f"{where}: data mixes numbers and lists; send it flat or nested as [n][{width}]")
    elif len(data) != count * width:
        raise V2Error(400, f"{where}: data has {len(data)} values; shape {shape} needs {count * width}")
    else:
        rows = [data[i * width : (i + 1) * width] for i in range(count)]
    vectors = []
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is None:
                raise V2Error(
                    400,
                    f"{where}: data[{i}][{j}] ({FEATURE_NAMES[j]}) is null; a {datatype} tensor holds numbers "
                    "(the v1 route imputes null)",
                )
        try:
            vectors.append(as_vector(row, f"{where}: data[{i}]"))
        except InvalidVector as exc:
            raise V2Error(400, str(exc)) from None
    return vectors


def _v2_outputs(requested: Any) -> tuple[str, ...]:
    if requested is None:
        return tuple(V2_OUTPUTS)
    if not isinstance(requested, list) or not requested:
        raise V2Error(400, "'outputs' must be a non-empty list of {\"name\": ...} objects")
    names = []
    for i, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in V2_OUTPUTS:
            raise V2Error(400, f"outputs[{i}].name: unknown output {name!r} (known: {', '.join(V2_OUTPUTS)})")
        names.append(name)
    return tuple(dict.fromkeys(names))


def v2_response(model: ReferenceModel, request: V2Request, answers: Sequence[Prediction]) -> dict[str, Any]:
    columns = {
        "predictions": [a.prediction for a in answers],
        "scores": [a.score for a in answers],
        "confidences": [a.confidence for a in answers],
    }
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = [
        {"name": name, "datatype": V2_OUTPUTS[name], "shape": [len(answers)], "data": columns[name]}
        for name in request.outputs
    ]
    return body


# ----------------------------------------------------------------------------- the app
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

    @app.get("/v1/models", tags=["kserve"])
    async def models() -> dict[str, Any]:
        return {"models": [model.name]}

    @app.get("/v1/models/{name}", tags=["kserve"])
    async def model_ready(name: str) -> dict[str, Any]:
        _model_or_404(model, name)
        return {"name": model.name, "ready": True, "version": model.version}

    @app.post("/v1/models/{name}:predict", tags=["kserve"])
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

    @app.exception_handler(V2Error)
    async def v2_error(_: Request, exc: V2Error) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.get("/v2", tags=["kserve-v2"])
    async def v2_server() -> dict[str, Any]:
        return {"name": "pipeline-reference-ml", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", tags=["kserve-v2"])
    async def v2_live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["kserve-v2"])
    async def v2_ready() -> dict[str, Any]:
        return {"ready": True}  # the model is loaded before the server listens

    @app.get("/v2/models/{name}", tags=["kserve-v2"])
    @app.get("/v2/models/{name}/versions/{version}", tags=["kserve-v2"])
    async def v2_model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        return v2_metadata(model)

    @app.get("/v2/models/{name}/ready", tags=["kserve-v2"])
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["kserve-v2"])
    async def v2_model_ready(name: str, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        return {"name": model.name, "ready": True}

    @app.post("/v2/models/{name}/infer", tags=["kserve-v2"])
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=["kserve-v2"])
    async def v2_infer(name: str, request: Request, version: str | None = None) -> dict[str, Any]:
        _v2_model(model, name, version)
        try:
            body = await _json(request)
        except ApiError as exc:
            raise V2Error(exc.status, exc.message) from None
        inference = v2_request(body)
        answers = await run_in_threadpool(model.predict, inference.rows)
        return v2_response(model, inference, answers)

    @app.post("/api/v1/anomaly/detect", tags=["ml-service"])
    async def anomaly_detect(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(detect, model, await _body(request, DetectRequest))

    @app.post("/api/v1/prediction/predict", tags=["ml-service"])
    async def prediction_predict(request: Request) -> dict[str, Any]:
        return forecast(await _body(request, PredictRequest))

    @app.post("/api/v1/pattern/analyze", tags=["ml-service"])
    async def pattern_analyze(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(analyze, await _body(request, PatternRequest))

    return app


async def serve(model: ReferenceModel, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; prints one JSON line (url, model, version) once listening."""
    from pipeline.web.server import server

    srv = server(create_app(model), host, port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, setattr, srv, "should_exit", True)
    task = asyncio.create_task(srv.serve())
    while not srv.started and not task.done():
        await asyncio.sleep(0.02)
    if srv.started:
        bound = srv.servers[0].sockets[0].getsockname()
        url = f"http://{bound[0]}:{bound[1]}"
        print(json.dumps({"url": url, "model": model.name, "model_version": model.version}), flush=True)
        log.info(
            "ml service listening", url=url, model_version=model.version, load_seconds=model.load_seconds
        )
    await task


def run(host: str, port: int, model_dir: Path | None) -> int:
    """`pipeline ml serve`: load the cached model (training it the first time), then serve."""
    configure_logging()
    model = train_or_load(model_dir)
    asyncio.run(serve(model, host, port))
    return 0

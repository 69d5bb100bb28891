"""``POST /api/v1/anomaly/detect``: the model's verdict on a vector (given, or computed from base-metric
series as the pipeline does), and each other metric checked on its own (robust z-score of its last value
against its earlier ones). Pure: no HTTP."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from pipeline.api.errors import ApiError
from pipeline.domain.features import BASE_METRICS, FEATURE_NAMES, metric_features
from pipeline.ml.model import InvalidVector, ReferenceModel, as_vector, vector_from_mapping
from pipeline.ml.series import (
    MAX_DEVIATION,
    MetricSample,
    Point,
    SeriesKey,
    group,
    iso,
    robust_z,
    seconds,
    series_name,
    severity,
)

MIN_REFERENCE_POINTS = 5  # a metric's own check needs this many earlier points


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
    """The model's verdict on the request's vector (with the features furthest from normal when it is an
    anomaly), then every other metric's own check; the summary's confidence is the model's when it ran."""
    series = group(request.metrics)
    vector, at = _input_vector(request, series)
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
            evaluated_at=iso(at),
        )
        if prediction.prediction == -1:
            anomalies += _explain(
                model, vector, prediction.score, prediction.confidence, at, request.threshold
            )
    own_checked, own_anomalies = _own_checks(series, request.threshold)
    checked += own_checked
    anomalies += own_anomalies
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


def _input_vector(
    request: DetectRequest, series: dict[SeriesKey, list[Point]]
) -> tuple[list[float | None] | None, float]:
    """The model's input and when it was evaluated: ``features`` when given, else the vector computed from
    the metrics (None when they hold no base metric or feature)."""
    at = seconds(request.timestamp) if request.timestamp else datetime.now(UTC).timestamp()
    try:
        if isinstance(request.features, dict):
            return vector_from_mapping(request.features, "features"), at
        if request.features is not None:
            return as_vector(request.features, "features"), at  # rejects what is not a list too
    except InvalidVector as exc:
        raise ApiError(400, "INVALID_FEATURES", str(exc), field=exc.field) from None
    built = vector_from_metrics(series)
    return built if built is not None else (None, at)


def _own_checks(series: dict[SeriesKey, list[Point]], threshold: float) -> tuple[int, list[dict[str, Any]]]:
    """Each metric that is not a model input, with more than MIN_REFERENCE_POINTS points: its last value
    against its earlier ones. (metrics checked, the anomalies among them)"""
    checked, anomalies = 0, []
    for key, points in series.items():
        if key[0] in BASE_METRICS or key[0] in FEATURE_NAMES or len(points) <= MIN_REFERENCE_POINTS:
            continue
        checked += 1
        (ts, value), reference = points[-1], [v for _, v in points[:-1]]
        z = robust_z(value, reference)
        if abs(z) >= threshold:
            anomalies.append(
                {
                    "metric_name": series_name(key),
                    "value": value,
                    "expected": statistics.median(reference),
                    "deviation": z,
                    "severity": severity(z, threshold),
                    "confidence": abs(z) / (abs(z) + threshold),
                    "timestamp": iso(ts),
                    "reason": f"last value is {z:+.1f} robust deviations from its {len(reference)} earlier values",
                }
            )
    return checked, anomalies


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
            "timestamp": iso(at),
            "reason": f"{model.name} {model.version} scored the vector {score:.2f}; {d.name} is "
            f"{d.deviation:+.1f} robust units from its normal {d.expected:.4g}",
        }
        for d in picked
    ]

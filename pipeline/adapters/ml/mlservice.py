"""The legacy Python ML service (`ML_SERVICE_URL`): anomaly detection and forecasts over named metric values.

Its responses come in two variants (the engine's Go structs and its API contract); the lenient response
models below read both. Calls go through the shared transport (deadline, retries, circuit breaker).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from pipeline.adapters.breaker import CircuitBreaker
from pipeline.adapters.ml.errors import ModelUnavailable, PredictionRejected
from pipeline.adapters.ml.transport import Dependency, M, http_client, parse_response
from pipeline.config import Settings
from pipeline.events import iso_z


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One metric value sent to the ML service (real values with names and timestamps)."""

    name: str
    value: float
    timestamp: datetime
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        # Both field names: the engine's structs say `name`, the engine's API contract `metric_name`.
        body: dict[str, Any] = {
            "name": self.name,
            "metric_name": self.name,
            "value": self.value,
            "timestamp": iso_z(self.timestamp.astimezone(UTC)),
        }
        if self.labels:
            body["labels"] = dict(self.labels)
        return body


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _summary_into(data: Any, mapping: Mapping[str, str], listed: str) -> Any:
    """Flatten the Go variant's `summary` object into top-level fields; a JSON null list is empty."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if listed in data and data[listed] is None:
        data[listed] = []
    summary = data.get("summary")
    if isinstance(summary, dict):
        for source, target in mapping.items():
            if target not in data and source in summary:
                data[target] = summary[source]
    return data


class DetectedAnomaly(_Lenient):
    """An anomaly item of either variant: the engine structs' (value/expected/deviation/reason) or the
    contract's (score/is_anomaly)."""

    metric_name: str = Field(validation_alias=AliasChoices("metric_name", "name", "metric"))
    timestamp: str | None = None
    severity: str | None = None
    confidence: float | None = None
    score: float | None = None
    is_anomaly: bool = True
    value: float | None = None
    expected: float | None = None
    deviation: float | None = None
    reason: str | None = None


class AnomalyReport(_Lenient):
    """`POST /api/v1/anomaly/detect`: `{anomalies, summary{total,anomalies_found,high_severity,confidence}}`
    or `{anomalies, overall_score, confidence}`."""

    anomalies: list[DetectedAnomaly]
    confidence: float | None = None
    overall_score: float | None = None
    total: int | None = None
    high_severity: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        return _summary_into(
            data,
            {"confidence": "confidence", "total": "total", "high_severity": "high_severity"},
            "anomalies",
        )

    @property
    def found(self) -> list[DetectedAnomaly]:
        return [a for a in self.anomalies if a.is_anomaly]


class PredictedValue(_Lenient):
    """A prediction of either variant: a metric forecast (metric_name, predicted_value, trend) or a
    predicted issue (issue_type, probability, expected_time, recommended_actions)."""

    metric_name: str | None = None
    predicted_value: float | None = None
    issue_type: str | None = None
    probability: float | None = None
    confidence: float | None = None
    timestamp: str | None = None
    expected_time: str | None = None
    trend: str | None = None
    severity: str | None = Field(None, validation_alias=AliasChoices("severity", "risk"))
    recommended_actions: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_something(self) -> PredictedValue:
        if self.metric_name is None and self.issue_type is None:
            raise ValueError("a prediction needs metric_name or issue_type")
        return self


class ForecastReport(_Lenient):
    """`POST /api/v1/prediction/predict`: `{predictions, summary{time_range,metrics_count,overall_confidence}}`
    or `{predictions, confidence}`."""

    predictions: list[PredictedValue]
    confidence: float | None = None
    time_range: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _variants(cls, data: Any) -> Any:
        return _summary_into(
            data, {"overall_confidence": "confidence", "time_range": "time_range"}, "predictions"
        )


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """`GET {ML_SERVICE_URL}/health`: ok iff it answered 200 (an open circuit is not ok, without asking)."""

    ok: bool
    message: str
    circuit_breaker: str


class MLServiceClient:
    """The legacy Python ML service (`ML_SERVICE_URL`); accepts both response variants of each route."""

    NAME = "ml-service"

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.ml_service_url:
            raise ValueError("ML_SERVICE_URL is not set")
        self.url = settings.ml_service_url.rstrip("/")
        self._http = http_client(settings, settings.ml_timeout_s, transport)
        self.breaker = CircuitBreaker(
            self.NAME,
            settings.ml_circuit_breaker_threshold,
            settings.ml_circuit_breaker_timeout_s,
            clock,
            failures=(ModelUnavailable,),
            neutral=(PredictionRejected,),
        )
        self._dep = Dependency(
            self.NAME, self.NAME, self._http, settings.ml_timeout_s, settings.ml_retry_attempts, self.breaker
        )

    async def detect(
        self, metrics: Sequence[MetricSample], threshold: float | None = None, model: str | None = None
    ) -> AnomalyReport:
        body: dict[str, Any] = {"metrics": [m.as_json() for m in metrics]}
        if threshold is not None:
            body["threshold"] = threshold
        if model is not None:
            body["model"] = model
        return await self._post("detect", "/api/v1/anomaly/detect", body, AnomalyReport)

    async def predict(
        self,
        metrics: Sequence[MetricSample],
        predict_ahead: str = "1h",
        *,
        namespace: str | None = None,
        resource: str | None = None,
    ) -> ForecastReport:
        latest: dict[str, MetricSample] = {}
        for sample in metrics:
            if sample.name not in latest or sample.timestamp >= latest[sample.name].timestamp:
                latest[sample.name] = sample
        body: dict[str, Any] = {
            "historical_metrics": [m.as_json() for m in metrics],
            "predict_ahead": predict_ahead,
            "prediction_horizon": predict_ahead,
            "include_confidence": True,
            "current_state": {name: s.value for name, s in latest.items()},
        }
        body.update({k: v for k, v in (("namespace", namespace), ("resource", resource)) if v})
        return await self._post("predict", "/api/v1/prediction/predict", body, ForecastReport)

    async def health(self) -> ServiceHealth:
        state = self.breaker.state.label
        if state == "open":
            message = f"circuit breaker open; next trial in {self.breaker.retry_after_s():.1f}s"
            return ServiceHealth(False, message, state)
        ok, message = await self._dep.probe(f"{self.url}/health")
        return ServiceHealth(ok, message or "ok", state)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _post(self, operation: str, path: str, body: dict[str, Any], shape: type[M]) -> Awaitable[M]:
        def parse(response: httpx.Response) -> M:
            return parse_response(self.NAME, response, shape)

        return self._dep.call(operation, f"{self.url}{path}", body, parse)

"""Which model scores a feature vector, and how: KServe (v1 or v2, `KSERVE_PROTOCOL`) when an
`anomaly-detector` model is registered (`KSERVE_ANOMALY_DETECTOR_SERVICE` / `_URL`), else the Python ML
service (`ML_SERVICE_URL`), else none.
Every failure, the circuit breaker's included, becomes `ScoringUnavailable` with a reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from pipeline.adapters.ml import (
    KServeClient,
    MetricSample,
    MLError,
    MLServiceClient,
    ModelEndpoint,
    ModelRegistry,
)
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.domain.scoring import ModelScore

ANOMALY_MODEL = "anomaly-detector"


class ScoringUnavailable(Exception):
    """The model did not answer usefully; the reason goes into the degraded score."""


class Scorer(Protocol):
    source: str

    async def score(self, vector: Sequence[float]) -> ModelScore: ...

    async def score_many(self, vectors: Sequence[Sequence[float]]) -> list[ModelScore]: ...

    async def aclose(self) -> None: ...


class KServeScorer:
    """`POST /v1/models/anomaly-detector:predict` (v2: `/v2/models/anomaly-detector/infer`) with the vectors."""

    source = "kserve"

    def __init__(self, client: KServeClient, model: str = ANOMALY_MODEL) -> None:
        self.client = client
        self.model = model

    async def score(self, vector: Sequence[float]) -> ModelScore:
        return (await self.score_many([vector]))[0]

    async def score_many(self, vectors: Sequence[Sequence[float]]) -> list[ModelScore]:
        """One request for many instances: the model's cost is mostly per call, not per vector."""
        try:
            answer = await self.client.predict(self.model, [list(v) for v in vectors])
        except MLError as exc:
            raise ScoringUnavailable(str(exc)) from None
        if len(answer.predictions) != len(vectors) or any(p not in (-1, 1) for p in answer.predictions):
            raise ScoringUnavailable(
                f"{self.model} answered {answer.predictions!r}: expected one -1/1 per vector"
            )
        return [
            ModelScore(
                model=self.model,
                version=answer.model_version or "unknown",
                prediction=int(prediction),
                score=answer.scores[i] if answer.scores else None,
                confidence=answer.confidences[i] if answer.confidences else None,
            )
            for i, prediction in enumerate(answer.predictions)
        ]

    async def aclose(self) -> None:
        await self.client.aclose()


class MLServiceScorer:
    """`POST /api/v1/anomaly/detect` with the 45 features as named metric values."""

    source = "ml-service"

    def __init__(self, client: MLServiceClient) -> None:
        self.client = client

    async def score(self, vector: Sequence[float]) -> ModelScore:
        now = datetime.now(UTC)
        metrics = [MetricSample(name, value, now) for name, value in zip(FEATURE_NAMES, vector, strict=True)]
        try:
            report = await self.client.detect(metrics, model=ANOMALY_MODEL)
        except MLError as exc:
            raise ScoringUnavailable(str(exc)) from None
        return ModelScore(
            model=ANOMALY_MODEL,
            version="unknown",
            prediction=-1 if report.found else 1,
            score=report.overall_score,
            confidence=report.confidence,
        )

    async def score_many(self, vectors: Sequence[Sequence[float]]) -> list[ModelScore]:
        """The ML service scores one vector per call."""
        return [await self.score(v) for v in vectors]

    async def aclose(self) -> None:
        await self.client.aclose()


def model_registry(settings: Settings, environ: Mapping[str, str] | None = None) -> ModelRegistry:
    """The KServe models of the settings' KSERVE_* entries (or of `environ`'s, when given), plus the embedded
    reference model when one is served."""
    registry = ModelRegistry.from_env(settings.kserve_entries if environ is None else environ, settings)
    if settings.embedded_ml_url and ANOMALY_MODEL not in registry:
        embedded = ModelEndpoint(
            ANOMALY_MODEL,
            "embedded-reference",
            "",
            ANOMALY_MODEL,
            settings.embedded_ml_url,
            settings.kserve_protocol,  # the reference service speaks both
        )
        registry = ModelRegistry([*registry, embedded])
    return registry


def scorer_from_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> Scorer | None:
    registry = model_registry(settings, environ)
    if ANOMALY_MODEL in registry:
        return KServeScorer(KServeClient(settings, registry))
    if settings.ml_service_url:
        return MLServiceScorer(MLServiceClient(settings))
    return None

"""Score stage: features -> scores. The model is called in `prepare`, concurrently per batch, behind a
circuit breaker; when it cannot answer, the score is "degraded: rules only" with the reason and events
keep flowing — nothing waits for the ML service."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipeline.adapters.scorer import Scorer, ScoringUnavailable
from pipeline.bus.producer import Output
from pipeline.bus.stage import Origin, Stage
from pipeline.config import Settings
from pipeline.domain.scoring import ModelScore, decide, model_input
from pipeline.events import Event, FeaturesComputed, RecommendedAction, ScoreComputed


@dataclass(frozen=True, slots=True)
class _Answer:
    score: ModelScore | None
    reason: str | None
    seconds: float


class ScoreStage(Stage):
    """Consumes `features`, produces `scores` (keyed by incident id)."""

    name = "score"
    inputs = ("features",)

    def __init__(self, settings: Settings, scorer: Scorer | None) -> None:
        """`scorer` None: no ML service configured, every score is rules only. It is closed with the stage."""
        super().__init__(settings)
        self.topic = settings.topic("scores")
        self.scorer = scorer
        self._answers: dict[str, _Answer] = {}

    async def prepare(self, events: list[Event]) -> None:
        """Every complete vector of the batch goes to the model in one request; the rest are rules only."""
        complete: dict[str, list[float]] = {}
        for event in events:
            features = event.payload
            if not isinstance(features, FeaturesComputed) or event.envelope.id in self._answers:
                continue
            vector, reason = model_input(features.values, features.missing)
            if vector is None:
                self._answers[event.envelope.id] = _Answer(None, f"rules only: {reason}", 0.0)
            elif self.scorer is None:
                self._answers[event.envelope.id] = _Answer(None, "rules only: no ML service configured", 0.0)
            else:
                complete[event.envelope.id] = vector
        if not complete or self.scorer is None:
            return
        started = time.perf_counter()
        try:
            scores = await self.scorer.score_many(list(complete.values()))
        except ScoringUnavailable as exc:
            seconds = time.perf_counter() - started
            self._answers.update({eid: _Answer(None, f"rules only: {exc}", seconds) for eid in complete})
            return
        seconds = time.perf_counter() - started
        self._answers.update({eid: _Answer(s, None, seconds) for eid, s in zip(complete, scores, strict=True)})

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        answer = self._answers.pop(event.envelope.id, None)
        features = event.payload
        if answer is None or not isinstance(features, FeaturesComputed):
            return []
        named = dict(zip(features.feature_names, features.values, strict=False))
        verdict = decide(answer.score, named, answer.reason)
        score = answer.score
        payload = ScoreComputed(
            incident_id=features.incident_id,
            verdict=verdict.verdict,
            model=score.model if score else None,
            model_version=score.version if score else None,
            score=score.score if score else None,
            confidence=score.confidence if score else None,
            prediction=score.prediction if score else None,
            recommended_actions=[RecommendedAction(action=a.action, confidence=a.confidence, reason=a.reason)
                                 for a in verdict.actions],
            degraded_reason=verdict.degraded_reason,
            source=self.scorer.source if score and self.scorer else "rules",
            latency_seconds=round(answer.seconds, 6),
            features_event_id=event.envelope.id,
            target=features.target,
            namespace=features.scope.get("namespace", ""),
            severity=features.severity,
        )
        out = event.caused(payload, source="pipeline/score", incidentid=features.incident_id)
        if payload.verdict == "degraded" and self.journal.enabled:
            # may come once per alert: one line per reason and LOG_REPEAT_WINDOW_S, with the count of the others
            self.journal.note("score fallback", limit=payload.degraded_reason, incident_id=features.incident_id,
                              reason=payload.degraded_reason)
        return [Output.event(self.topic, out)]

    async def close(self) -> None:
        if self.scorer is not None:
            await self.scorer.aclose()

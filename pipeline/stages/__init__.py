"""Stream stages: thin adapters that wire a domain function to topics. `STAGES` names them for the CLI."""

from __future__ import annotations

from pipeline.bus.stage import Stage


def stage_classes() -> dict[str, type[Stage]]:
    from pipeline.stages.correlate import CorrelateStage
    from pipeline.stages.enrich import EnrichStage
    from pipeline.stages.score import ScoreStage

    return {CorrelateStage.name: CorrelateStage, EnrichStage.name: EnrichStage, ScoreStage.name: ScoreStage}

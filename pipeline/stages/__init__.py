"""Stream stages: thin adapters that wire a domain function to topics. `STAGES` names them for the CLI."""

from __future__ import annotations

from pipeline.bus.stage import Stage


def stage_classes() -> dict[str, type[Stage]]:
    from pipeline.stages.arbitrate import ArbitrateStage
    from pipeline.stages.correlate import CorrelateStage
    from pipeline.stages.enrich import EnrichStage
    from pipeline.stages.propose import ProposeStage
    from pipeline.stages.remediate import RemediateStage
    from pipeline.stages.score import ScoreStage
    from pipeline.stages.snapshot import SnapshotStage

    return {stage.name: stage for stage in (CorrelateStage, EnrichStage, ScoreStage, ProposeStage, ArbitrateStage,
                                                  RemediateStage, SnapshotStage)}

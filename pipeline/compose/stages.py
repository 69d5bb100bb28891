"""Building stages with their dependencies: the stage modules take clients and rules, this module makes them.

`stage_classes()` (pipeline/stages) names the stages for the CLI; `build_stage` is how a process gets one."""

from __future__ import annotations

from typing import Protocol

from pipeline.bus.stage import Stage
from pipeline.config import Settings

# Parts of a process started by name beside the stream stages: not a `Stage` (they produce no events).
SINKS = ("audit",)


class Part(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def build_sink(settings: Settings, name: str) -> Part:
    """The sink called `name` (one of SINKS): the audit trail's writer."""
    from pipeline.forensics.audit import AuditStage

    if name != "audit":
        raise KeyError(name)
    return AuditStage(settings)


def build_stage(settings: Settings, name: str) -> Stage:
    """The stage called `name`, with its Prometheus client, ML scorer or rules built from the settings."""
    from pipeline.stages import stage_classes

    if name == "enrich":
        from pipeline.adapters.features import FeatureCollector
        from pipeline.adapters.prometheus import PrometheusClient
        from pipeline.stages.enrich import EnrichStage

        client = PrometheusClient(settings) if settings.prometheus_url else None
        return EnrichStage(settings, FeatureCollector(client))
    if name == "score":
        from pipeline.adapters.scorer import scorer_from_settings
        from pipeline.stages.score import ScoreStage

        return ScoreStage(settings, scorer_from_settings(settings))
    if name in ("propose", "remediate"):
        from pipeline.adapters.rules import load_rules
        from pipeline.stages.propose import ProposeStage
        from pipeline.stages.remediate import RemediateStage

        rules = load_rules(settings.remediation_rules_path)
        return ProposeStage(settings, rules) if name == "propose" else RemediateStage(settings, rules)
    return stage_classes()[name](settings)

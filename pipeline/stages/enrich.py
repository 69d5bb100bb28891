"""Enrich stage: incidents -> features. Prometheus is queried in `prepare`, concurrently per batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pipeline.adapters.features import Collected, FeatureCollector
from pipeline.bus.producer import Output
from pipeline.bus.stage import Origin, Stage
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES, scope_for
from pipeline.events import Event, FeaturesComputed, IncidentChange, IncidentOpened, IncidentUpdated


def wants_features(change: IncidentChange) -> bool:
    """A new incident, or a firing signal newly attached to one; not resolutions."""
    if isinstance(change, IncidentOpened):
        return True
    if isinstance(change, IncidentUpdated):
        return any(
            s.last_signal_id == change.signal_id and s.status == "firing" for s in change.incident.signals.values()
        )
    return False


class EnrichStage(Stage):
    """Consumes `incidents`, produces `features` (keyed by incident id)."""

    name = "enrich"
    inputs = ("incidents",)

    def __init__(self, settings: Settings, collector: FeatureCollector) -> None:
        """`collector` queries Prometheus (its client, if any, is closed with the stage)."""
        super().__init__(settings)
        self.topic = settings.topic("features")
        self.collector = collector
        self._prepared: dict[str, Collected] = {}

    async def prepare(self, events: list[Event]) -> None:
        todo = [
            e for e in events
            if isinstance(e.payload, IncidentChange) and wants_features(e.payload) and e.envelope.id not in self._prepared
        ]
        results = await asyncio.gather(*(self._collect(e.payload) for e in todo))  # type: ignore[arg-type]
        self._prepared.update({e.envelope.id: r for e, r in zip(todo, results, strict=True)})

    async def _collect(self, change: IncidentChange) -> Collected:
        incident = change.incident
        scope = scope_for(incident.namespace, incident.resource, incident.target)
        return await self.collector.collect(scope, incident.updated_at.timestamp())

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        collected = self._prepared.pop(event.envelope.id, None)
        if collected is None or not isinstance(event.payload, IncidentChange):
            return []
        vector = collected.vector
        payload = FeaturesComputed(
            incident_id=event.payload.incident.id,
            scope=collected.scope.as_dict(),
            evaluated_at=datetime.fromtimestamp(vector.evaluated_at, UTC),
            feature_names=list(FEATURE_NAMES),
            values=vector.values,
            missing=vector.missing,
            query_count=collected.queries,
            query_seconds=round(collected.seconds, 6),
            source=self.settings.prometheus_url,
            target=event.payload.incident.resource_key,
            severity=event.payload.incident.severity,
        )
        out = event.caused(payload, source="pipeline/enrich", incidentid=payload.incident_id)
        return [Output.event(self.topic, out)]

    async def close(self) -> None:
        if self.collector.client is not None:
            await self.collector.client.aclose()

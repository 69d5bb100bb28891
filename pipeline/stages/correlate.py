"""Correlate stage: signals -> incidents, state per resource in a compacted, co-partitioned changelog."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from pipeline.bus.producer import Output, derived_id
from pipeline.bus.stage import ChangelogReader, Stage
from pipeline.config import Settings
from pipeline.domain.correlation import correlate
from pipeline.events import CorrelationState, Event, Signal
from pipeline.observability import INCIDENTS_TRUNCATED, get_logger

log = get_logger("pipeline.correlate")


class CorrelateStage(Stage):
    """Consumes `signals`, produces `incidents`; keeps the open incident of each resource."""

    name = "correlate"
    inputs = ("signals",)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.incidents_topic = settings.topic("incidents")
        self.changelog_topic = settings.topic("correlate.state")
        self._state: dict[int, dict[str, CorrelationState]] = {}
        self._pending: dict[tuple[int, str], CorrelationState] = {}

    def _current(self, partition: int, key: str) -> CorrelationState | None:
        pending = self._pending.get((partition, key))
        return pending if pending is not None else self._state.get(partition, {}).get(key)

    def handle(self, event: Event, record: ConsumerRecord) -> list[Output]:
        signal = event.payload
        if not isinstance(signal, Signal):
            return []
        before = self._current(record.partition, signal.resource_key)
        outcome = correlate(before, signal)
        self._pending[(record.partition, signal.resource_key)] = outcome.state
        if outcome.change is None:
            return []
        incident = outcome.change.incident
        was = before.incident.truncated_alerts if before is not None and before.incident is not None else 0
        if incident.truncated_alerts > was:
            INCIDENTS_TRUNCATED.inc()
            log.warning("alertmanager truncated a webhook: alerts of this incident's group are missing",
                        incident_id=incident.id, truncated_alerts=incident.truncated_alerts, origin=signal.origin)
        out = Event.of(
            outcome.change,
            source="pipeline/correlate",
            id=derived_id(event.envelope.id),
            subject=signal.resource_key,
            incidentid=outcome.change.incident.id,
            causationid=event.envelope.id,
            traceparent=event.envelope.traceparent,
        )
        return [Output.event(self.incidents_topic, out)]

    def changelog(self) -> list[Output]:
        return [
            Output.event(self.changelog_topic, Event.of(state, source="pipeline/correlate"), partition=partition)
            for (partition, _), state in self._pending.items()
        ]

    def commit(self) -> None:
        for (partition, key), state in self._pending.items():
            self._state.setdefault(partition, {})[key] = state
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        for partition in partitions:
            self._state[partition] = {}
        for record, event in await reader.read(self.changelog_topic, partitions):
            if event is not None and isinstance(event.payload, CorrelationState):
                self._state[record.partition][event.payload.resource_key] = event.payload

    def release(self, partitions: list[int]) -> None:
        for partition in partitions:
            self._state.pop(partition, None)

    @property
    def open_incidents(self) -> int:
        return sum(1 for states in self._state.values() for s in states.values() if s.incident is not None)

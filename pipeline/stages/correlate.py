"""Correlate stage: signals -> incidents, state per resource in a compacted, co-partitioned changelog.

The changelog holds a header record per resource and a record per alert of its open incident (deleted by a
tombstone when the incident resolves), so what a batch writes does not grow with the incident."""

from __future__ import annotations

from pipeline.adapters.correlation_states import read_states
from pipeline.bus.producer import Output
from pipeline.bus.stage import ChangelogReader, Origin, Stage
from pipeline.config import Settings
from pipeline.domain.correlation import changelog_records, correlate
from pipeline.events import (
    AttachedSignal,
    CorrelationState,
    Event,
    Incident,
    IncidentChange,
    IncidentOpened,
    IncidentResolved,
    Signal,
)
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
        # per resource of the batch: its open incident's alerts that changed, and the fingerprints of the alerts of
        # an incident that resolved (their changelog records are deleted)
        self._changed: dict[tuple[int, str], dict[str, AttachedSignal]] = {}
        self._closed: dict[tuple[int, str], set[str]] = {}

    def _current(self, partition: int, key: str) -> CorrelationState | None:
        pending = self._pending.get((partition, key))
        return pending if pending is not None else self._state.get(partition, {}).get(key)

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        signal = event.payload
        if not isinstance(signal, Signal):
            return []
        before = self._current(origin.partition, signal.resource_key)
        outcome = correlate(before, signal)
        where = (origin.partition, signal.resource_key)
        self._pending[where] = outcome.state
        if outcome.change is None:
            return []
        if before is not None and before.incident is not None and outcome.state.incident is None:
            self._closed.setdefault(where, set()).update(before.incident.signals)
            self._changed.pop(where, None)
        elif outcome.state.incident is not None:
            self._changed.setdefault(where, {}).update((a.fingerprint, a) for a in outcome.alerts)
        incident = outcome.change.incident
        was = before.incident.truncated_alerts if before is not None and before.incident is not None else 0
        if incident.truncated_alerts > was:
            INCIDENTS_TRUNCATED.inc()
            log.warning("alertmanager truncated a webhook: alerts of this incident's group are missing",
                        incident_id=incident.id, truncated_alerts=incident.truncated_alerts, origin=signal.origin)
        out = event.caused(outcome.change, source="pipeline/correlate", subject=signal.resource_key,
                           incidentid=outcome.change.incident.id)
        if self.journal.enabled:
            self._note(outcome.change, incident)
        return [Output.event(self.incidents_topic, out)]

    def _note(self, change: IncidentChange, incident: Incident) -> None:
        """One INFO line per incident opened and per incident resolved (not per alert: updates are not logged)."""
        if isinstance(change, IncidentOpened):
            self.journal.note("incident opened", incident_id=incident.id, severity=incident.severity.value,
                              title=incident.title, resource=incident.resource_key, source=incident.source)
        elif isinstance(change, IncidentResolved):
            lasted = (incident.resolved_at - incident.created_at).total_seconds() if incident.resolved_at else None
            self.journal.note("incident resolved", incident_id=incident.id, severity=incident.severity.value,
                              resource=incident.resource_key, alerts=incident.alerts_total, lasted_s=lasted)

    def changelog(self) -> list[Output]:
        out: list[Output] = []
        for where, state in self._pending.items():
            partition = where[0]
            header, alerts, gone = changelog_records(
                state, self._changed.get(where, {}).values(), self._closed.get(where, ()))
            out.extend(Output(self.changelog_topic, key.encode(), None, partition=partition) for key in gone)
            out.extend(Output.event(self.changelog_topic, Event.of(alert, source="pipeline/correlate"),
                                    partition=partition) for alert in alerts)
            out.append(Output.event(self.changelog_topic, Event.of(header, source="pipeline/correlate"),
                                    partition=partition))
        return out

    def commit(self) -> None:
        for (partition, key), state in self._pending.items():
            self._state.setdefault(partition, {})[key] = state
        self.rollback()

    def rollback(self) -> None:
        self._pending.clear()
        self._changed.clear()
        self._closed.clear()

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        self._state.update(await read_states(reader, self.changelog_topic, partitions))

    def release(self, partitions: list[int]) -> None:
        for partition in partitions:
            self._state.pop(partition, None)

    @property
    def open_incidents(self) -> int:
        return sum(1 for states in self._state.values() for s in states.values() if s.incident is not None)

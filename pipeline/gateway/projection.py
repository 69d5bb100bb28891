"""The read models: incidents rebuilt from the `incidents` topic, remediation (proposals, decisions, released
actions, workflows) from `remediation`, `decisions` and `workflows`, and the runtime controls from `control`,
kept current by tailing them.

Every gateway replica reads all partitions from the beginning (no consumer group): the read model is a
pure function of the log. `ready` is set once the backlog present at start has been applied, and
`publish_visible` lets a write answer only after its own event is visible (read your writes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.api.errors import ApiError
from pipeline.bus import kafka
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.incidents import fold
from pipeline.events import (
    ControlChanged,
    Event,
    Incident,
    IncidentChange,
    IncidentStatus,
    InvalidEvent,
    decode,
)
from pipeline.gateway.remediation_view import AppliedIds, RemediationView
from pipeline.observability import PROJECTION_EVENTS, PROJECTION_INCIDENTS, get_logger

log = get_logger("pipeline.gateway.projection")


async def publish_visible(producer: EventProducer, topic: str, event: Event, applied: AppliedIds, timeout: float,
                          what: str, **ids: str | None) -> None:
    """A write route's publish: 503 (with Retry-After) when the broker does not take it, 504 when it is stored
    but this gateway's read model does not show it within `timeout` (read your writes)."""
    try:
        await producer.publish([Output.event(topic, event)])
    except Exception as exc:  # noqa: BLE001 - any broker failure is a 503 for the client
        raise ApiError(503, "BROKER_UNAVAILABLE", f"{what} not stored: {type(exc).__name__}",
                       headers={"Retry-After": "5"}) from None
    if not await applied.wait_for(event.envelope.id, timeout):
        extra: dict[str, Any] = dict(ids)
        raise ApiError(504, "PROJECTION_LAGGING", f"{what} stored but not yet visible", **extra)


class IncidentProjection:
    """Incidents by id, folded from IncidentChange events (each carries the incident and the alerts its change
    touched; `domain.incidents.fold`), listing at most `alerts_listed` alerts per incident."""

    def __init__(self, alerts_listed: int = 100) -> None:
        self.incidents: dict[str, Incident] = {}
        self.applied = AppliedIds()
        self.alerts_listed = alerts_listed

    def apply(self, event_id: str, change: IncidentChange) -> bool:
        """Apply one change; False when the event id was already applied (at-least-once delivery)."""
        if not self.applied.add(event_id):
            return False
        incident = change.incident
        self.incidents[incident.id] = fold(self.incidents.get(incident.id), incident, self.alerts_listed)
        self.applied.notify(event_id)
        return True

    def values(self) -> Iterable[Incident]:
        return self.incidents.values()

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in IncidentStatus}
        for incident in self.incidents.values():
            out[incident.status.value] += 1
        return out


class ProjectionRunner:
    """Tails the incidents topic into an IncidentProjection, and `remediation` + `decisions` into a
    RemediationView."""

    def __init__(self, settings: Settings, projection: IncidentProjection | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic("incidents")
        self.topics = [self.topic, settings.topic("remediation"), settings.topic("decisions"),
                       settings.topic("workflows"), settings.topic("control")]
        self.control = ControlState()
        self.projection = projection or IncidentProjection(settings.incident_alerts_listed)
        self.remediation = RemediationView(action_timeout=timedelta(seconds=settings.remediation_action_timeout_s))
        self.ready = asyncio.Event()
        self.caught_up_at: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        found = await kafka.partitions(self.settings, *self.topics)
        missing = [t for t in self.topics if not found.get(t)]
        if missing:
            raise RuntimeError(f"topic(s) {', '.join(missing)} do not exist: run `pipeline topics apply`")
        self._consumer = kafka.consumer(self.settings, group_id=None)
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in found[t]]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self.caught_up_at = await self._consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(), name="incident-projection")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            except Exception as exc:  # noqa: BLE001 - keep tailing: the read model must not die silently
                log.warning("projection fetch failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.value, record.headers)
            if not self.ready.is_set() and await self._caught_up(consumer):
                self.ready.set()
                log.info("projection ready", incidents=len(self.projection.incidents))
            if batches:
                for status, count in self.projection.counts().items():
                    PROJECTION_INCIDENTS.labels(status).set(count)

    def _apply(self, value: bytes | None, headers: object) -> None:
        try:
            event = decode(value, headers)
        except InvalidEvent as exc:
            log.warning("skipping record that is not one of our events", error=str(exc))
            return
        if isinstance(event.payload, IncidentChange):
            applied = self.projection.apply(event.envelope.id, event.payload)
        elif isinstance(event.payload, ControlChanged):
            self.control.apply(event.payload)
            applied = self.remediation.applied.add(event.envelope.id)
            self.remediation.applied.notify(event.envelope.id)
        else:
            applied = self.remediation.apply(event.envelope.id, event.payload, event.envelope.time)
        if applied:
            PROJECTION_EVENTS.labels(event.envelope.type).inc()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self.caught_up_at.items():
            if await consumer.position(tp) < end:
                return False
        return True

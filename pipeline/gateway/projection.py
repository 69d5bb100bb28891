"""The read models: incidents rebuilt from the `incidents` topic, remediation (proposals, decisions, released
actions, workflows) from `remediation`, `decisions` and `workflows`, and the runtime controls from `control`,
kept current by tailing them.

Every gateway replica reads all partitions itself (no consumer group): the read model is a pure function of the
log. With GATEWAY_SNAPSHOTS (the default) it first reads the snapshot topics whole (the latest state per object,
written by the snapshot stage; pipeline/domain/snapshots.py), then seeks each source partition to its watermark
and folds on from there, skipping what an object's snapshot already holds; without, it folds every source
partition from its beginning. `ready` is set once the backlog present at start has been applied, and
`publish_visible` lets a write answer only after its own event is visible (read your writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pipeline.api.errors import ApiError
from pipeline.bus import kafka
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.incidents import fold
from pipeline.domain.snapshots import SOURCES, Coverage, Snapshot, restore_entries, where
from pipeline.events import (
    ControlChanged,
    Event,
    Incident,
    IncidentChange,
    IncidentSnapshot,
    IncidentStatus,
    InvalidEvent,
    decode,
    decode_payload,
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

    def apply(self, event_id: str, change: IncidentChange, held: bool = False) -> bool:
        """Apply one change; False when the event id was already applied (at-least-once delivery). `held`: the
        incident's snapshot holds it already."""
        if not self.applied.add(event_id):
            return False
        incident = change.incident
        if not held:
            self.incidents[incident.id] = fold(self.incidents.get(incident.id), incident, self.alerts_listed)
        self.applied.notify(event_id)
        return True

    def load(self, records: Iterable[IncidentSnapshot], coverage: Coverage) -> None:
        """Incidents from their snapshots (pipeline/domain/snapshots.py)."""
        for record in records:
            self.incidents[record.incident.id] = record.incident
            coverage.load(record.incident.id, record, self.applied)

    def values(self) -> Iterable[Incident]:
        return self.incidents.values()

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in IncidentStatus}
        for incident in self.incidents.values():
            out[incident.status.value] += 1
        return out


class ProjectionRunner:
    """Tails the incidents topic into an IncidentProjection, `remediation` + `decisions` + `workflows` into a
    RemediationView and `control` into a ControlState, starting from the snapshots when GATEWAY_SNAPSHOTS."""

    def __init__(self, settings: Settings, projection: IncidentProjection | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic("incidents")
        self.topics = [*(settings.topic(t) for t in SOURCES), settings.topic("control")]
        self.snapshot_topics = ([settings.topic("incidents.snapshot"), settings.topic("remediation.snapshot")]
                                if settings.gateway_snapshots else [])
        self.control = ControlState()
        self.projection = projection or IncidentProjection(settings.incident_alerts_listed)
        self.remediation = RemediationView(action_timeout=timedelta(seconds=settings.remediation_action_timeout_s))
        self.incident_coverage = Coverage()
        self.entry_coverage = Coverage()
        self.ready = asyncio.Event()
        self.caught_up_at: dict[TopicPartition, int] = {}
        # how the read models were rebuilt: snapshot records read, log records read until ready, seconds
        self.rebuild: dict[str, float] = {"snapshot_records": 0, "log_records": 0, "seconds": 0.0}
        self._started = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._started = time.perf_counter()
        found = await kafka.partitions(self.settings, *self.topics, *self.snapshot_topics)
        missing = [t for t in [*self.topics, *self.snapshot_topics] if not found.get(t)]
        if missing:
            raise RuntimeError(f"topic(s) {', '.join(missing)} do not exist: run `pipeline topics apply`")
        self._consumer = kafka.consumer(self.settings, group_id=None, **kafka.BULK_READ)
        await self._consumer.start()
        # Loading makes O(live objects) long-lived objects at once: the cyclic collector, run every few hundred
        # allocations, would walk the growing heap again and again (start-up grew faster than the snapshot).
        gc.disable()
        try:
            snapshot = await self._read_snapshot(
                self._consumer, [TopicPartition(t, p) for t in self.snapshot_topics for p in found[t]])
            self.projection.load(snapshot.incidents.values(), self.incident_coverage)
            restore_entries(self.remediation, snapshot.entries.values(), self.entry_coverage)
        finally:
            gc.enable()
            gc.freeze()  # the read model lives as long as the process: later collections need not walk it
        self.rebuild["snapshot_records"] = snapshot.records
        tps = [TopicPartition(t, p) for t in self.topics for p in found[t]]
        self._consumer.assign(tps)
        marks = {tp: snapshot.watermarks[(tp.topic, tp.partition)] for tp in tps
                 if (tp.topic, tp.partition) in snapshot.watermarks}
        if unmarked := [tp for tp in tps if tp not in marks]:
            await self._consumer.seek_to_beginning(*unmarked)
        for tp, watermark in marks.items():  # below the log's start (retention): the consumer resets to the earliest
            self._consumer.seek(tp, watermark)
        self.caught_up_at = await self._consumer.end_offsets(tps)
        self._task = asyncio.create_task(self._run(), name="incident-projection")

    @staticmethod
    async def _read_snapshot(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Snapshot:
        """The snapshot topics read whole, to their end as it was when the read began."""
        snapshot = Snapshot()
        if not tps:
            return snapshot
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        pending = [tp for tp in tps if end[tp] > 0]
        # The latest record per key is the state (what compaction keeps): older versions not yet compacted away
        # are never decoded, and a tombstone deletes.
        latest: dict[tuple[str, bytes | None], ConsumerRecord] = {}
        read = 0
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < end[tp]:
                        latest[(tp.topic, record.key)] = record
                        read += 1
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        for record in latest.values():
            if record.value is not None:
                with contextlib.suppress(InvalidEvent):  # not one of ours: nothing to restore from it
                    snapshot.add(decode_payload(record.value, record.headers))
        snapshot.records = read  # records read, superseded ones included
        return snapshot

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
                    self._apply(record)
            if not self.ready.is_set():
                self.rebuild["log_records"] += sum(len(records) for records in batches.values())
                if await self._caught_up(consumer):
                    self.rebuild["seconds"] = time.perf_counter() - self._started
                    self.ready.set()
                    log.info("projection ready", incidents=len(self.projection.incidents), **self.rebuild)
            if batches:
                for status, count in self.projection.counts().items():
                    PROJECTION_INCIDENTS.labels(status).set(count)

    def _apply(self, record: ConsumerRecord) -> None:
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as exc:
            log.warning("skipping record that is not one of our events", error=str(exc))
            return
        at, offset = where(record.topic, record.partition), record.offset
        if isinstance(event.payload, IncidentChange):
            held = self.incident_coverage.covers(event.payload.incident.id, at, offset)
            applied = self.projection.apply(event.envelope.id, event.payload, held)
        elif isinstance(event.payload, ControlChanged):
            self.control.apply(event.payload)
            applied = self.remediation.applied.add(event.envelope.id)
            self.remediation.applied.notify(event.envelope.id)
        else:
            coverage = self.entry_coverage
            applied = self.remediation.apply(event.envelope.id, event.payload, event.envelope.time,
                                             lambda pid: coverage.covers(pid, at, offset))
        if applied:
            PROJECTION_EVENTS.labels(event.envelope.type).inc()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self.caught_up_at.items():
            if await consumer.position(tp) < end:
                return False
        return True

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
import ctypes
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from operator import itemgetter
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pipeline.api.errors import ApiError
from pipeline.bus import kafka
from pipeline.bus.control import ControlState
from pipeline.bus.producer import EventProducer, Output
from pipeline.config import Settings
from pipeline.domain.incident_index import IncidentIndex
from pipeline.domain.incidents import IncidentQuery, fold, shown_status
from pipeline.domain.record_store import RecordStore
from pipeline.domain.snapshots import SOURCES, Coverage, Snapshot, restore_entries, where
from pipeline.events import (
    INDEX_HEADER,
    ControlChanged,
    Event,
    Incident,
    IncidentChange,
    IncidentRow,
    IncidentSnapshot,
    IncidentStatus,
    InvalidEvent,
    decode,
    decode_payload,
    held,
)
from pipeline.gateway.remediation_view import AppliedIds, RemediationView
from pipeline.observability import PROJECTION_EVENTS, PROJECTION_INCIDENTS, get_logger

log = get_logger("pipeline.gateway.projection")
_STATUS = itemgetter(2)  # IncidentRow.status


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


def _release_free_heap() -> None:
    """Give the C heap's free pages back to the system after a load (glibc keeps what the start-up's fetch buffers
    and decoding freed: ~20 MB at 100,000 incidents); nothing elsewhere."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class IncidentProjection:
    """Incidents by id, folded from IncidentChange events (each carries the incident and the alerts its change
    touched; `domain.incidents.fold`), listing at most `alerts_listed` alerts per incident.

    Every incident has its IncidentRow (`rows`: what lists, filters and counts read). An incident loaded from a
    snapshot record that carries its row stays as the record's bytes until it is asked for (`get` decodes it and
    keeps nothing) or a later event changes it (then it is decoded once, with the offsets and event ids its
    snapshot covers), so a start-up on 100,000 incidents decodes none of them. Records are held compressed in
    blocks (`RecordStore`), and a resolved incident goes back to being a record (`settle`): what is held decoded
    is the open incidents."""

    def __init__(self, alerts_listed: int = 100) -> None:
        self.index = IncidentIndex()
        self.rows = self.index.rows
        # the status an action shows for an active incident (None: none does), and the incidents whose actions
        # changed since the index last asked (the runner says which; asked at the next query)
        self.acting_of: Callable[[str], IncidentStatus | None] = lambda incident_id: None
        self._acts_changed: set[str] = set()
        self.applied = AppliedIds()
        self.coverage = Coverage()
        self.alerts_listed = alerts_listed
        self._incidents: dict[str, Incident] = {}
        self._stored = RecordStore()  # snapshot records not decoded (yet, or again once resolved)
        self._settling: set[str] = set()  # resolved incidents held decoded until `settle`

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def decoded(self) -> int:
        """Incidents held decoded (the rest are compressed records): the open ones, once settled."""
        return len(self._incidents)

    def get(self, incident_id: str) -> Incident | None:
        found = self._incidents.get(incident_id)
        if found is None and (stored := self._stored.get(incident_id)) is not None:
            return IncidentSnapshot.model_validate_json(stored).incident
        return found

    def apply(self, event_id: str, change: IncidentChange, at: str | None = None, offset: int = -1) -> bool:
        """Apply one change, read at `offset` of source partition `at` (None: not from the log); False when the
        event id was already applied (at-least-once delivery). A change the incident's snapshot holds already
        (`Coverage`) counts as applied and changes nothing."""
        incident_id = change.incident.id
        if (stored := self._stored.pop(incident_id, None)) is not None:
            self.restore(IncidentSnapshot.model_validate_json(stored))
        covered = at is not None and self.coverage.covers(incident_id, at, offset)
        if not self.applied.add(event_id):
            return False
        if not covered:
            incident = fold(self._incidents.get(incident_id), change.incident, self.alerts_listed)
            self._incidents[incident_id] = held(incident)
            self.index.put(IncidentRow.of(incident))
            if incident.status == IncidentStatus.ACTIVE:
                self._settling.discard(incident_id)
            else:
                self._settling.add(incident_id)
        self.applied.notify(event_id)
        return True

    def load(self, incident_id: str, value: bytes, row: IncidentRow) -> None:
        """An incident from its snapshot record, kept as `value` (the record's row says what lists need)."""
        self.index.load(row)
        self._stored[incident_id] = value
        self._incidents.pop(incident_id, None)

    def restore(self, record: IncidentSnapshot) -> None:
        """An incident from its decoded snapshot record, with the offsets and event ids it covers."""
        incident = held(record.incident)
        self._stored.discard(incident.id)  # nothing to decompress: the record is decoded already
        self._incidents[incident.id] = incident
        self.index.put(IncidentRow.of(incident))
        self.coverage.load(incident.id, record, self.applied)
        if incident.status != IncidentStatus.ACTIVE:
            self._settling.add(incident.id)  # decoded for a change, which may be a duplicate that changes nothing

    def settle(self, limit: int | None = None) -> bool:
        """Hold resolved incidents as compressed records again, with what their coverage says (at most `limit` of
        them; ~40 µs each): a gateway's memory grows with its open incidents, not with every incident it has
        seen. Done outside a start-up's load, which it would slow down; True when none is left."""
        settling = self._settling
        for _ in range(len(settling) if limit is None else min(limit, len(settling))):
            incident_id = settling.pop()
            incident = self._incidents.pop(incident_id, None)
            if incident is not None:
                record = IncidentSnapshot(incident=incident, **self.coverage.of(incident_id))
                self._stored[incident_id] = record.model_dump_json().encode()
                self.coverage.drop(incident_id)  # in the record: restored with it
        return not settling

    def actions_changed(self, incident_ids: Iterable[str]) -> None:
        """What an action shows for these incidents may have changed (the remediation view moved)."""
        self._acts_changed.update(incident_ids)

    def query(self, query: IncidentQuery) -> tuple[int, list[IncidentRow], dict[str, Any]]:
        """`GET /api/v1/incidents`: (how many match, the page, the summary) from the index."""
        self.prepare()
        return self.index.query(query.namespace, query.severity, query.status, query.offset, query.limit)

    def prepare(self) -> None:
        """Bring the index up to date: what actions show, and a bulk load listed."""
        for _ in self.listing():
            pass

    def listing(self) -> Iterator[None]:
        """`prepare` in steps (`IncidentIndex.listing`): a bulk load of 100,000 incidents takes ~0.5 s to list,
        which the runner does after ready between other work rather than in the first list request."""
        if self._acts_changed:
            changed, self._acts_changed = self._acts_changed, set()
            for incident_id in changed:
                self.index.act(incident_id, self.acting_of(incident_id))
        return self.index.listing(chunk=2000)

    def forget(self, incident_id: str) -> None:
        """A snapshot tombstone: the incident is gone."""
        self.index.remove(incident_id)
        self._incidents.pop(incident_id, None)
        self._stored.discard(incident_id)
        self._settling.discard(incident_id)

    def counts(self) -> dict[str, int]:
        """Incidents per status (their own, as the log says), counted at C level: it runs after every batch."""
        found = Counter(map(_STATUS, self.rows.values()))
        return {s.value: found.get(s, 0) for s in IncidentStatus}


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
        self.remediation = RemediationView(action_timeout=timedelta(seconds=settings.remediation_action_timeout_s),
                                           changed=set())
        self.projection.acting_of = self._acting_of
        self.entry_coverage = Coverage()
        self.ready = asyncio.Event()
        self.caught_up_at: dict[TopicPartition, int] = {}
        # how the read models were rebuilt: snapshot records read, log records read until ready, seconds
        self.rebuild: dict[str, float] = {"snapshot_records": 0, "log_records": 0, "seconds": 0.0}
        self._started = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._listing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._started = time.perf_counter()
        found = await kafka.partitions(self.settings, *self.topics, *self.snapshot_topics)
        missing = [t for t in [*self.topics, *self.snapshot_topics] if not found.get(t)]
        if missing:
            raise RuntimeError(f"topic(s) {', '.join(missing)} do not exist: run `pipeline topics apply`")
        # fetch_max_wait_ms: a fetch in flight when the assignment's use changes (the snapshot read, then the log)
        # delays the next by up to its wait; new records still arrive at once (fetch_min_bytes 1).
        self._consumer = consumer = kafka.consumer(self.settings, group_id=None, fetch_max_wait_ms=100,
                                                   **kafka.BULK_READ)
        await consumer.start()
        snapshot_tps = [TopicPartition(t, p) for t in self.snapshot_topics for p in found[t]]
        tps = [TopicPartition(t, p) for t in self.topics for p in found[t]]
        # One assignment and one reset for the whole start, before any fetch is in flight (a new assignment costs
        # a metadata round and a reset waits for the fetch in flight): the source partitions wait, paused, while
        # the snapshot is read, then move to the watermarks.
        consumer.assign([*snapshot_tps, *tps])
        consumer.pause(*tps)
        ends = await consumer.end_offsets([*snapshot_tps, *tps])
        self.caught_up_at = {tp: ends[tp] for tp in tps}  # the backlog present at start
        await consumer.seek_to_beginning(*snapshot_tps, *tps)
        # Loading makes O(live objects) long-lived objects at once: the cyclic collector, run every few hundred
        # allocations, would walk the growing heap again and again (start-up grew faster than the snapshot).
        gc.disable()
        try:
            snapshot = await self._read_snapshot(consumer, {tp: ends[tp] for tp in snapshot_tps})
            for record in snapshot.incidents.values():  # written before snapshot records carried rows
                self.projection.restore(record)
            restore_entries(self.remediation, snapshot.entries.values(), self.entry_coverage)
            self.projection.actions_changed(self.remediation.by_incident)
        finally:
            gc.enable()
            gc.freeze()  # the read model lives as long as the process: later collections need not walk it
        self.rebuild["snapshot_records"] = snapshot.records
        for tp in snapshot_tps:  # drops the consumer's last fetch of each (it holds a whole response, ~15 MB)
            consumer.seek(tp, ends[tp])
        consumer.pause(*snapshot_tps)
        _release_free_heap()
        for tp in tps:  # below the log's start (retention): the consumer resets to the earliest
            if (watermark := snapshot.watermarks.get((tp.topic, tp.partition))) is not None:
                consumer.seek(tp, watermark)
        consumer.resume(*tps)
        self._task = asyncio.create_task(self._run(), name="incident-projection")

    async def _read_snapshot(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> Snapshot:
        """The snapshot topics read whole from their beginning to `end`. An incident record that
        carries its row (`INDEX_HEADER`) goes to the projection undecoded; the rest are decoded."""
        snapshot = Snapshot()
        pending = [tp for tp, offset in end.items() if offset > 0]
        # The latest record per key is the state (what compaction keeps). An incident record carrying its row goes
        # to the projection as it comes (a later one replaces it); the others wait in `latest`, so older versions
        # not yet compacted away are never decoded, and a tombstone deletes.
        latest: dict[tuple[str, bytes | None], ConsumerRecord] = {}
        load, forget = self.projection.load, self.projection.forget
        read = 0
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                last, topic = end[tp], tp.topic
                for record in records:
                    if record.offset >= last:
                        continue
                    read += 1
                    key, value, headers = record.key, record.value, record.headers
                    if value is not None and headers and headers[0][0] == INDEX_HEADER and key is not None:
                        latest.pop((topic, key), None)
                        with contextlib.suppress(InvalidEvent, ValueError):  # not one of ours: nothing to restore
                            incident_id = key.decode()
                            load(incident_id, value, IncidentRow.from_header(incident_id, headers[0][1]))
                        continue
                    if value is None and key is not None:
                        with contextlib.suppress(ValueError):
                            forget(key.decode())
                    latest[(topic, key)] = record
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        for record in latest.values():
            if record.value is not None:
                with contextlib.suppress(InvalidEvent, ValueError):  # not one of ours: nothing to restore
                    snapshot.add(held(decode_payload(record.value, record.headers)))
        snapshot.records = read  # records read, superseded ones included
        return snapshot

    async def stop(self) -> None:
        for task in (self._listing, self._task):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        await self._check_ready(consumer)  # nothing to fold after the snapshot: ready without waiting on a fetch
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
                await self._check_ready(consumer)
            if batches:
                self._count()
                if self._listing is not None and self._listing.done():  # after the start's own steps
                    self.projection.settle()

    def _acting_of(self, incident_id: str) -> IncidentStatus | None:
        """The status an action shows for the incident while it is active (`shown_status`), None when none does."""
        found = self.remediation.remediation(incident_id)
        status = shown_status(IncidentStatus.ACTIVE, found)
        return None if status == IncidentStatus.ACTIVE else status

    async def _check_ready(self, consumer: AIOKafkaConsumer) -> None:
        if self.ready.is_set() or not await self._caught_up(consumer):
            return
        self.rebuild["seconds"] = time.perf_counter() - self._started
        self.ready.set()
        log.info("projection ready", incidents=len(self.projection), **self.rebuild)
        self._count()

    def _count(self) -> None:
        for status, count in self.projection.counts().items():
            PROJECTION_INCIDENTS.labels(status).set(count)

    def list_incidents(self) -> None:
        """List what the start loaded (~0.5 s at 100,000 incidents) in steps of ~10 ms with requests served
        between them, rather than in the first list request: called once the gateway serves."""
        async def steps() -> None:
            for _ in self.projection.listing():
                await asyncio.sleep(0)
            while not self.projection.settle(250):  # a whole-log replay decoded every resolved incident
                await asyncio.sleep(0)
            _release_free_heap()  # what sorting and decoding freed

        self._listing = asyncio.create_task(steps(), name="incident-listing")

    def _apply(self, record: ConsumerRecord) -> None:
        try:
            event = decode(record.value, record.headers)
        except InvalidEvent as exc:
            log.warning("skipping record that is not one of our events", error=str(exc))
            return
        at, offset = where(record.topic, record.partition), record.offset
        if isinstance(event.payload, IncidentChange):
            applied = self.projection.apply(event.envelope.id, event.payload, at, offset)
        elif isinstance(event.payload, ControlChanged):
            self.control.apply(event.payload)
            applied = self.remediation.applied.add(event.envelope.id)
            self.remediation.applied.notify(event.envelope.id)
        else:
            coverage = self.entry_coverage
            applied = self.remediation.apply(event.envelope.id, held(event.payload), event.envelope.time,
                                             lambda pid: coverage.covers(pid, at, offset))
            changed = self.remediation.changed
            if changed:
                entries = self.remediation.entries
                self.projection.actions_changed(i for pid in changed for i in entries[pid].incidents)
                changed.clear()
        if applied:
            PROJECTION_EVENTS.labels(event.envelope.type).inc()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self.caught_up_at.items():
            if await consumer.position(tp) < end:
                return False
        return True

"""Reading the log as it is, for forensics and audit tools: any topics, from a time, an offset or the
beginning, to a time, an offset or the end as it was when the read began.

A `LogReader` assigns partitions itself (no consumer group): it commits nothing, joins no group and so
disturbs no stage, and can run against a live cluster while the pipeline works. Each record comes back as a
`LoggedRecord`: where it is (topic, partition, offset, broker timestamp) and the event decoded from it, or
the reason it is not one of ours (the raw bytes are kept: a forensic read shows everything).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.domain.timeline import Node
from pipeline.events import CONTENT_TYPE, SPECVERSION, Event, InvalidEvent, decode, iso_z


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record is in the log."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime

    def as_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "timestamp": iso_z(self.timestamp)}


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One record of the log: its position, its key, value and headers, and the event they hold (None, with
    `invalid` saying why, for a record that is not one of our events: a dead letter's foreign payload, a
    tombstone, another producer's record)."""

    position: Position
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    event: Event | None
    invalid: str | None = None

    @property
    def node(self) -> Node:
        """Its links and place, for `domain.timeline` (belonging to an incident, causal order)."""
        p, env = self.position, self.event.envelope if self.event is not None else None
        if env is None:
            return Node(None, None, None, None, p.timestamp, p.timestamp, p.topic, p.partition, p.offset)
        return Node(env.id, env.causationid, env.incidentid, env.workflowid, env.time, p.timestamp, p.topic,
                    p.partition, p.offset)

    def as_dict(self) -> dict[str, object]:
        """The record as JSON: its position, its key and the event in CloudEvents' structured JSON form
        (attributes, then `data`: the payload); a record that is not an event has `invalid` (why) and `value`."""
        out: dict[str, object] = {"position": self.position.as_dict(),
                                  "key": self.key.decode(errors="replace") if self.key is not None else None}
        if self.event is None:
            out["invalid"] = self.invalid
            out["value"] = self.value.decode(errors="replace") if self.value is not None else None
            return out
        env = self.event.envelope
        attributes = {"specversion": SPECVERSION, "id": env.id, "type": env.type, "source": env.source,
                      "time": iso_z(env.time), "datacontenttype": CONTENT_TYPE, "subject": env.subject,
                      "incidentid": env.incidentid, "workflowid": env.workflowid, "causationid": env.causationid,
                      "traceparent": env.traceparent}
        out["event"] = {**{k: v for k, v in attributes.items() if v is not None},
                        "data": self.event.payload.model_dump(mode="json")}
        return out


@dataclass(frozen=True, slots=True)
class Window:
    """Which part of each partition to read. `start`/`end` are broker timestamps (`end` exclusive);
    `from_offsets`/`to_offsets` (exclusive) per partition override them; unset bounds mean the beginning and
    the end offset as it was when the read began (a read always ends)."""

    start: datetime | None = None
    end: datetime | None = None
    from_offsets: Mapping[TopicPartition, int] | None = None
    to_offsets: Mapping[TopicPartition, int] | None = None


class LogReader:
    """`async with LogReader(settings) as reader: async for record in reader.read(topics, window): ...`"""

    def __init__(self, settings: Settings, *, max_records: int = 2000) -> None:
        self.settings = settings
        self.max_records = max_records
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> LogReader:
        # No group: nothing is committed and no stage's assignment is touched.
        self._consumer = kafka.consumer(self.settings, group_id=None, enable_auto_commit=False, **kafka.BULK_READ)
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def partitions(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Every partition of the topics; a topic that does not exist is an error naming it."""
        found = await kafka.partitions(self.settings, *topics)
        missing = [t for t in topics if not found.get(t)]
        if missing:
            raise LookupError(f"topic(s) {', '.join(missing)} do not exist")
        return [TopicPartition(t, p) for t in topics for p in found[t]]

    async def bounds(self, tps: Sequence[TopicPartition], window: Window) -> dict[TopicPartition, tuple[int, int]]:
        """The [first, end) offsets the window covers in each partition (empty ranges left out)."""
        consumer = self._require()
        earliest = await consumer.beginning_offsets(list(tps))
        latest = await consumer.end_offsets(list(tps))
        starts = await self._offsets_at(tps, window.start, latest) if window.start else dict(earliest)
        ends = await self._offsets_at(tps, window.end, latest) if window.end else dict(latest)
        out: dict[TopicPartition, tuple[int, int]] = {}
        for tp in tps:
            first = max(earliest[tp], (window.from_offsets or {}).get(tp, starts[tp]))
            end = min(latest[tp], (window.to_offsets or {}).get(tp, ends[tp]))
            if first < end:
                out[tp] = (first, end)
        return out

    async def _offsets_at(self, tps: Sequence[TopicPartition], at: datetime,
                          latest: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The first offset whose timestamp is at or after `at` in each partition (the end when none is)."""
        found = await self._require().offsets_for_times({tp: int(at.timestamp() * 1000) for tp in tps})
        return {tp: found[tp].offset if found.get(tp) is not None else latest[tp] for tp in tps}

    async def read(self, topics: Sequence[str], window: Window | None = None) -> AsyncGenerator[LoggedRecord, None]:
        """The window's records, partition by partition in offset order (partitions interleaved as fetched;
        sort by `position.timestamp` or causation for one order across them)."""
        consumer = self._require()
        ranges = await self.bounds(await self.partitions(topics), window or Window())
        if not ranges:
            return
        consumer.assign(list(ranges))
        for tp, (first, _) in ranges.items():
            consumer.seek(tp, first)
        remaining = dict(ranges)
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=self.max_records)
            for tp, records in batches.items():
                end = remaining.get(tp, (0, 0))[1]
                for record in records:
                    if record.offset >= end:
                        break
                    yield logged(record)
            for tp in list(remaining):
                if await consumer.position(tp) >= remaining[tp][1]:
                    del remaining[tp]
                    consumer.pause(tp)

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("LogReader used outside `async with`")
        return self._consumer


def logged(record: ConsumerRecord[bytes, bytes], *, decode_event: bool = True) -> LoggedRecord:
    """A consumed record as the project sees it; `decode_event=False` leaves `event` None and `invalid` "not
    decoded" (for readers that keep records as they are, such as the audit trail)."""
    headers = tuple(record.headers or ())
    position = Position(record.topic, record.partition, record.offset,
                        datetime.fromtimestamp(record.timestamp / 1000, UTC))
    if not decode_event:
        return LoggedRecord(position, record.key, record.value, headers, None, "not decoded")
    try:
        return LoggedRecord(position, record.key, record.value, headers, decode(record.value, headers))
    except InvalidEvent as exc:
        return LoggedRecord(position, record.key, record.value, headers, None, str(exc))

"""The forensic log reader on a real broker: exactly the records of a time window or an offset range, each
with its position and decoded event (a foreign record kept, with the reason it is not ours), and nothing
committed: every consumer group's offsets are as they were."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from pipeline.bus import kafka
from pipeline.bus.log import LoggedRecord, LogReader, Window
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.events import ControlChanged, Event

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _fill(settings: Settings) -> str:
    """30 records on `control` (one partition) one second apart from T0: every third one is not an event."""
    await apply(settings)
    topic = settings.topic("control")
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for i in range(30):
            at = T0 + timedelta(seconds=i)
            if i % 3 == 2:
                await producer.send_and_wait(topic, b"not ours", key=b"x", timestamp_ms=int(at.timestamp() * 1000))
                continue
            event = Event.of(ControlChanged(key="pause", kind="pause", enabled=i % 2 == 0, at=at),
                             source="test", id=f"e{i}")
            key, value, headers = event.encode()
            await producer.send_and_wait(topic, value, key=key, headers=headers,
                                         timestamp_ms=int(at.timestamp() * 1000))
    finally:
        await producer.stop()
    return topic


async def _read(settings: Settings, topic: str, window: Window | None = None) -> list[LoggedRecord]:
    async with LogReader(settings) as reader:
        return [r async for r in reader.read([topic], window)]


async def test_the_whole_log_each_record_with_its_position_and_event(settings: Settings) -> None:
    topic = await _fill(settings)
    records = await _read(settings, topic)
    assert [r.position.offset for r in records] == list(range(30))
    assert [r.position.timestamp for r in records] == [T0 + timedelta(seconds=i) for i in range(30)]
    assert [r.event.envelope.id for r in records if r.event] == [f"e{i}" for i in range(30) if i % 3 != 2]
    foreign = [r for r in records if r.event is None]
    assert len(foreign) == 10 and all(r.value == b"not ours" and "CloudEvents" in (r.invalid or "") for r in foreign)


async def test_a_time_window_holds_exactly_the_records_inside_it(settings: Settings) -> None:
    topic = await _fill(settings)
    window = Window(start=T0 + timedelta(seconds=10), end=T0 + timedelta(seconds=20))
    records = await _read(settings, topic, window)
    assert [r.position.offset for r in records] == list(range(10, 20))
    # A window after the last record, and one before the first, are empty.
    assert await _read(settings, topic, Window(start=T0 + timedelta(hours=1))) == []
    assert await _read(settings, topic, Window(end=T0 - timedelta(hours=1))) == []


async def test_an_offset_range(settings: Settings) -> None:
    topic = await _fill(settings)
    tp = TopicPartition(topic, 0)
    records = await _read(settings, topic, Window(from_offsets={tp: 5}, to_offsets={tp: 8}))
    assert [r.position.offset for r in records] == [5, 6, 7]


async def test_reading_commits_nothing_and_moves_no_group(settings: Settings) -> None:
    topic = await _fill(settings)
    tp = TopicPartition(topic, 0)
    group = f"{settings.topic_prefix}stage"
    consumer = kafka.consumer(settings, group_id=group)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(7, "")})
    finally:
        await consumer.stop()
    admin = kafka.admin(settings)
    await admin.start()
    try:
        groups_before = {g[0] for g in await admin.list_consumer_groups()}
        assert len(await _read(settings, topic)) == 30
        assert {g[0] for g in await admin.list_consumer_groups()} == groups_before
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert offsets[tp].offset == 7


async def test_a_missing_topic_is_named(settings: Settings) -> None:
    await apply(settings)
    with pytest.raises(LookupError, match="nope"):
        await _read(settings, settings.topic("nope"))

"""The embedded LocalKafka is a real Kafka broker: durable acks, transactions, restarts, compaction.

One broker per module (starting a JVM costs seconds); every test uses its own topic names.
A broker that cannot start is a test FAILURE carrying the log tail, never a skip.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from pipeline.embedded.kafka import LocalKafka

WAIT = 30.0  # generous ceiling for a consume on a loaded 2-core box; not a timing assertion


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka") / "data")
    try:
        broker.start()
    except RuntimeError as exc:
        pytest.fail(f"embedded Kafka broker failed to start:\n{exc}", pytrace=False)
    yield broker
    broker.stop()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def _admin(kafka: LocalKafka) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _create(kafka: LocalKafka, *topics: str, configs: dict[str, str] | None = None) -> None:
    async with _admin(kafka) as admin:
        await admin.create_topics([NewTopic(t, 1, 1, topic_configs=configs or {}) for t in topics])


async def _read_all(kafka: LocalKafka, topic: str, expected: int, **kw: object) -> list[ConsumerRecord]:
    """Read ``expected`` records from the beginning of a one-partition topic."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, **kw)
    await consumer.start()
    try:
        out: list[ConsumerRecord] = []
        while len(out) < expected:
            out.append(await asyncio.wait_for(consumer.getone(), WAIT))
        return out
    finally:
        await consumer.stop()


async def _snapshot(kafka: LocalKafka, topic: str) -> list[ConsumerRecord]:
    """Everything currently in partition 0, up to the high watermark (offsets may have gaps)."""
    tp = TopicPartition(topic, 0)
    # auto_offset_reset="earliest" instead of seek_to_beginning(): right after assign() aiokafka's
    # default "latest" reset can finish after the seek and silently move the position to the end.
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[ConsumerRecord] = []
        while await consumer.position(tp) < end:
            batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), WAIT)
            out += batch.get(tp, [])
        return out
    finally:
        await consumer.stop()


async def test_acks_all_roundtrip_keeps_key_value_and_headers(kafka: LocalKafka) -> None:
    topic = _name("acks")
    await _create(kafka, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"payload", key=b"alert-1",
                                            headers=[("trace-id", b"abc"), ("schema", b"v1")])
    finally:
        await producer.stop()
    assert meta.offset == 0

    [record] = await _read_all(kafka, topic, 1)
    assert (record.key, record.value) == (b"alert-1", b"payload")
    assert list(record.headers) == [("trace-id", b"abc"), ("schema", b"v1")]


async def test_transactional_consume_transform_produce(kafka: LocalKafka) -> None:
    src, dst, group = _name("txn-in"), _name("txn-out"), _name("txn-group")
    await _create(kafka, src, dst)
    plain = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(src, f"m{i}".encode(), key=f"k{i}".encode())
    finally:
        await plain.stop()

    consumer = AIOKafkaConsumer(src, bootstrap_servers=kafka.bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=_name("txn-id"))
    await consumer.start()
    await producer.start()
    try:
        got: list[ConsumerRecord] = []
        while len(got) < 3:
            got.append(await asyncio.wait_for(consumer.getone(), WAIT))
        tp = TopicPartition(src, 0)
        async with producer.transaction():
            for rec in got:
                await producer.send(dst, rec.value.upper(), key=rec.key)
            await producer.send_offsets_to_transaction({tp: got[-1].offset + 1}, group)
        # an aborted transaction must stay invisible to read_committed readers
        await producer.begin_transaction()
        await producer.send(dst, b"ABORTED", key=b"x")
        await producer.abort_transaction()
    finally:
        await producer.stop()
        await consumer.stop()

    out = await _read_all(kafka, dst, 3, isolation_level="read_committed")
    assert [(r.key, r.value) for r in out] == [(b"k0", b"M0"), (b"k1", b"M1"), (b"k2", b"M2")]
    async with _admin(kafka) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    assert offsets[TopicPartition(src, 0)].offset == 3


async def test_restart_keeps_records_offsets_and_address(kafka: LocalKafka) -> None:
    topic, group = _name("durable"), _name("durable-group")
    await _create(kafka, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        for _ in range(2):
            await asyncio.wait_for(consumer.getone(), WAIT)
        await consumer.commit({TopicPartition(topic, 0): 2})
    finally:
        await consumer.stop()

    before, old_pid = kafka.bootstrap, kafka.pid
    await asyncio.to_thread(kafka.stop)
    assert not kafka.running
    after = await asyncio.to_thread(kafka.start)
    assert kafka.running and kafka.pid != old_pid
    assert after == before == kafka.bootstrap

    assert [r.value for r in await _read_all(kafka, topic, 5)] == [f"v{i}".encode() for i in range(5)]
    resumed = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, group_id=group,
                               auto_offset_reset="earliest", enable_auto_commit=False)
    await resumed.start()
    try:
        assert (await asyncio.wait_for(resumed.getone(), WAIT)).value == b"v2"
    finally:
        await resumed.stop()


async def test_compacted_topic_is_created_and_compacted(kafka: LocalKafka) -> None:
    topic = _name("compact")
    await _create(kafka, topic, configs={"cleanup.policy": "compact", "segment.ms": "100",
                                         "min.cleanable.dirty.ratio": "0.01"})
    async with _admin(kafka) as admin:
        [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entries = {e["config_names"]: e["config_value"]
               for e in resp.to_object()["resources"][0]["config_entries"]}
    assert entries["cleanup.policy"] == "compact"

    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        for v in (b"1", b"2", b"3"):
            await producer.send_and_wait(topic, v, key=b"a")
        await asyncio.sleep(0.5)  # let segment.ms pass so the next append rolls the segment
        await producer.send_and_wait(topic, b"x", key=b"b")
    finally:
        await producer.stop()

    # The cleaner runs in the background: poll (bounded) until key "a" keeps only its latest value.
    values: list[bytes | None] = []
    for _ in range(60):
        records = await _snapshot(kafka, topic)
        values = [r.value for r in records if r.key == b"a"]
        if values == [b"3"]:
            break
        await asyncio.sleep(1)
    assert values == [b"3"]
    assert [r.value for r in records if r.key == b"b"] == [b"x"]

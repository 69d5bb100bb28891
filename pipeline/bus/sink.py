"""A consumer group that hands every record, as it is, to a sink and commits only what the sink has kept.

For consumers whose output is not the log: the audit trail (files on disk). `Stage` (pipeline/bus/stage.py) is
the runtime for stages that turn events into events; it decodes each record and dead-letters what is not one
of ours, which a sink must not do (the audit keeps dead letters, tombstones and foreign records as they are).

Per fetched batch (at most STAGE_BATCH_SIZE records, STAGE_BATCH_TIMEOUT_MS): `write(records)` is awaited;
when it returns, the batch's offsets are committed. A failing write is retried under the stage runtime's
BATCH_RETRY (stamina: backoff with jitter), then the partitions are rewound and the next fetch delivers the
batch again: nothing is committed that the sink did not keep, and nothing is skipped. A sink must therefore
keep a redelivered record once (the audit log knows what it wrote). A stop waits for the batch in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import stamina
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from pipeline.bus import kafka
from pipeline.bus.log import LoggedRecord, logged
from pipeline.config import Settings
from pipeline.observability import get_logger

Write = Callable[[list[LoggedRecord]], Awaitable[None]]
_RUNNING: weakref.WeakSet[GroupSink] = weakref.WeakSet()


def running_sinks() -> list[str]:
    """Names of the sinks running in this process (shown with the stages in /api/v1/health)."""
    return sorted({sink.name for sink in list(_RUNNING)})


class GroupSink:
    """`topics` consumed in the consumer group `group`, every batch handed to `write`, then committed."""

    def __init__(self, settings: Settings, name: str, topics: Sequence[str], write: Write,
                 retry: dict[str, Any]) -> None:
        self.settings, self.name, self.topics, self.write, self.retry = settings, name, list(topics), write, retry
        self.group = f"{settings.topic_prefix}{name}"
        self.log = get_logger("pipeline.sink", sink=name)
        self.assigned = asyncio.Event()  # set once the group gave this member its partitions
        self.batches = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch: asyncio.Future[None] | None = None

    async def start(self) -> None:
        consumer = kafka.consumer(self.settings, group_id=self.group, max_poll_records=self.settings.stage_batch_size)
        await consumer.start()
        consumer.subscribe(self.topics, listener=_Assigned(self))
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name=f"sink-{self.name}")
        _RUNNING.add(self)
        self.log.info("sink started", group=self.group, topics=self.topics)

    async def stop(self) -> None:
        _RUNNING.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        self.log.info("sink stopped")

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            records = await self._fetch(consumer)
            if not records:
                continue
            # Shielded: a stop waits for the batch in hand (written and committed, or rewound).
            self._batch = asyncio.ensure_future(self._handle(consumer, records))
            try:
                await asyncio.shield(self._batch)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self._batch
                raise

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
        """The next batch; a fetch that fails (the client gives up on a broker error) is retried, never fatal."""
        async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None, wait_max=5.0):
            with attempt:
                try:
                    batches = await consumer.getmany(timeout_ms=self.settings.stage_batch_timeout_ms,
                                                     max_records=self.settings.stage_batch_size)
                except Exception as exc:
                    self.log.warning("fetch failed, will retry", error=repr(exc), attempt=attempt.num)
                    raise
        return [r for part in batches.values() for r in part]

    async def _handle(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        batch = [logged(r, decode_event=False) for r in records]
        try:
            async for attempt in stamina.retry_context(on=Exception, **self.retry):
                with attempt:
                    try:
                        await self.write(batch)
                    except Exception as exc:
                        self.log.warning("sink write failed, will retry", error=repr(exc), attempt=attempt.num)
                        raise
        except Exception:  # noqa: BLE001 - retries spent: the next fetch delivers the batch again
            rewind(consumer, records)
            return
        try:
            await consumer.commit(next_offsets(records))
        except CommitFailedError as exc:  # a rebalance: the new owner re-reads them and the sink keeps them once
            self.log.warning("offset commit refused after a rebalance", error=repr(exc))
        self.batches += 1


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: GroupSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing held: each batch is committed before the next fetch."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.sink.log.info("partitions assigned", partitions=len(assigned))
        self.sink.assigned.set()


def spans(records: Sequence[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, the first and the last offset among `records` (in the order fetched: ascending per
    partition); one TopicPartition per partition, not per record."""
    found: dict[tuple[str, int], list[int]] = {}
    for r in records:
        span = found.get((r.topic, r.partition))
        if span is None:
            found[r.topic, r.partition] = [r.offset, r.offset]
        else:
            span[1] = r.offset
    return {TopicPartition(topic, partition): (first, last) for (topic, partition), (first, last) in found.items()}


def next_offsets(records: Sequence[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    """The offsets to commit once `records` are done: one past the last of each partition."""
    return {tp: last + 1 for tp, (_, last) in spans(records).items()}


def rewind(consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
    """Give up on these records for now: seek back so that the next fetch delivers them again (a partition
    revoked meanwhile is re-read by its new owner)."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        first.setdefault(TopicPartition(record.topic, record.partition), record.offset)
    for tp, offset in first.items():
        if tp in consumer.assignment():
            consumer.seek(tp, offset)

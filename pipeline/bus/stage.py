"""The one way to run a stream stage.

A FastStream batch subscriber hands us what one `getmany` returned. For each record we decode the
event, skip ids already handled, and call the stage's (pure) handler with the record's `Origin`. Errors are
classified as kopf does: `TransientError` (a dependency is away) retries the batch with backoff; anything
else a handler raises is permanent (a pure handler does not get better by retrying), so the record is
dead-lettered at once with its origin and the partition moves on. Then, in this order:
the outputs are produced and acknowledged, the stage's changelog is produced and acknowledged, the
stage's in-memory state is committed, and only then the consumer offsets. If producing fails, the
batch's state changes are rolled back and the partitions are rewound, so nothing is lost (at least
once; handlers are idempotent and output ids are derived from input ids, so duplicates are harmless).

A record the broker refuses for good (too large, malformed: `producer.RecordRejected`) is not retried: the
batch is handled again one record at a time, and the input record whose outputs were refused is dead-lettered
with its origin and the reason (its payload cut to DEADLETTER_MAX_PAYLOAD_BYTES if the dead letter itself is
refused), so the partition moves on. Transient failures (broker away, `TransientError` from a stage) are
retried through stamina (BATCH_RETRY: backoff with jitter), then the partitions are rewound and the batch is
fetched again, so they keep retrying without leaving the consumer group; a partition held on one offset is measured (`pipeline_stage_stuck_seconds`) and, past
STAGE_STUCK_AFTER_S, reported stuck in `/api/v1/health` (`stuck_partitions`).

Logs: every line written while a record is handled carries the stage and the event's ids (`bind_message`: one
context variable set per record, the ids read only when a line is written), and a batch's other lines the stage.
What a stage notes in its `journal` ("incident opened", "decision made") is written after the batch's commit, and
dropped with a rollback.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from abc import ABC, abstractmethod
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import stamina
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from faststream import AckPolicy, Context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output, RecordRejected
from pipeline.bus.sink import next_offsets, rewind, running_sinks, spans
from pipeline.config import Settings
from pipeline.events import Event, InvalidEvent, decode
from pipeline.observability import (
    STAGE_CONSUMED,
    STAGE_DEAD_LETTERED,
    STAGE_DUPLICATES,
    STAGE_FAILED,
    STAGE_HANDLER_SECONDS,
    STAGE_LAG,
    STAGE_PRODUCED,
    STAGE_STUCK_SECONDS,
    Journal,
    bind_message,
    get_logger,
    unbind_message,
)

SEEN_IDS = 100_000
# A batch that failed transiently (broker away, `TransientError`): retried in place with exponential backoff
# and jitter (stamina), then the partitions are rewound and the next fetch starts the policy again.
BATCH_RETRY: dict[str, Any] = {"attempts": 6, "timeout": None, "wait_initial": 0.2, "wait_max": 5.0,
                               "wait_jitter": 0.5}

_RUNNING: weakref.WeakSet[StageRuntime] = weakref.WeakSet()


class TransientError(Exception):
    """Raised by a stage's `prepare` or `handle` when a later retry can succeed (a dependency is away): the batch
    is retried and the partition waits; the record is never dead-lettered for it."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the runtime read an input event: topic, partition, offset, and the record's timestamp (ms since
    the epoch). Stages see this, never the Kafka client's record type."""

    topic: str
    partition: int
    offset: int
    timestamp: int

    @classmethod
    def of(cls, record: ConsumerRecord) -> Origin:
        return cls(record.topic, record.partition, record.offset, record.timestamp)


def running_stages() -> list[str]:
    """Names of the stages (and sinks, such as the audit) running in this process."""
    return sorted({runtime.stage.name for runtime in list(_RUNNING)} | set(running_sinks()))


def waiting_stages() -> list[str]:
    """Stages of this process not yet assigned partitions with their state restored (a member with no
    partition of its own counts as assigned)."""
    return sorted({runtime.stage.name for runtime in list(_RUNNING) if not runtime.assigned.is_set()})


def stuck_partitions() -> list[dict[str, Any]]:
    """Partitions of the stages running in this process held on one offset for longer than STAGE_STUCK_AFTER_S."""
    stuck: list[dict[str, Any]] = []
    for runtime in list(_RUNNING):
        stuck.extend(runtime.stuck())
    return sorted(stuck, key=lambda s: (s["stage"], s["topic"], s["partition"]))


class Stage(ABC):
    """A stream stage: what it consumes and how it turns one event into output records.

    Stateful stages keep state per input partition, write it to a co-partitioned changelog topic
    (`changelog()` returns the pending writes of the current batch), and rebuild it in `restore`.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # INFO lines about what the stage did, written by the runtime once the batch's outputs are acknowledged
        self.journal = Journal(f"pipeline.{self.name}")

    async def prepare(self, events: list[Event]) -> None:
        """Before a batch is handled: do its I/O, concurrently, so that `handle` stays pure and quick.

        Called again if the batch is retried. Must not raise for a dependency being down: record that
        in what `handle` will publish instead.
        """

    @abstractmethod
    def handle(self, event: Event, origin: Origin) -> list[Output]:
        """Outputs for one input event, read at `origin`. Must not publish anything itself. Raise TransientError
        when a later retry can succeed; any other exception dead-letters the record."""

    def changelog(self) -> list[Output]:
        return []

    async def start(self) -> None:
        """Before consuming: start the stage's own clients and background work."""

    def commit(self) -> None:
        """The batch's outputs and changelog are acknowledged: make its state changes permanent."""

    def rollback(self) -> None:
        """Producing failed: forget the batch's state changes (the batch will be consumed again)."""

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        """Partitions were assigned to us: rebuild their state."""

    def release(self, partitions: list[int]) -> None:
        """Partitions were taken away: drop their state."""

    async def close(self) -> None:
        """The stage stops: release its clients."""


class ChangelogReader:
    """Reads partitions of a topic from the beginning to the current end, outside any consumer group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def read(self, topic: str, partitions: Iterable[int]) -> list[tuple[ConsumerRecord, Event | None]]:
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer = kafka.consumer(self.settings, group_id=None)
        await consumer.start()
        try:
            consumer.assign(tps)
            end = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[tuple[ConsumerRecord, Event | None]] = []
            pending = {tp for tp in tps if end[tp] > 0}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < end[tp]:
                            out.append((record, _decode_or_none(record)))
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
            return out
        finally:
            await consumer.stop()


def _retryable(exc: Exception) -> bool:
    """Everything that fails a batch is transient except a record the broker refuses for good."""
    return not isinstance(exc, RecordRejected)


def _decode_or_none(record: ConsumerRecord) -> Event | None:
    if record.value is None:
        return None
    try:
        return decode(record.value, record.headers)
    except InvalidEvent:
        return None


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """The same authentication as `kafka.client_args`, in FastStream's terms."""
    context = kafka.ssl_context(settings)
    if not settings.kafka_security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context else None
    kinds = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kinds[settings.kafka_sasl_mechanism](
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=context is not None,
    )


async def _parse_batch(records: tuple[ConsumerRecord, ...], original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser turns every record's headers into a dict (~4 µs a record) for message features
    the runtime does not use: it parses the first record only, and the message carries the whole batch as its
    raw message (what `_on_batch` reads)."""
    message = await original(records[:1])
    message.raw_message = records
    return message


async def _no_decode(msg: Any) -> None:
    """We decode records ourselves (headers + payload model); skip FastStream's json.loads of each one."""
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: StageRuntime) -> None:
        self.runtime = runtime

    # aiokafka calls these from its coordinator task, concurrently with a batch being handled: the lock keeps a
    # restore from interleaving with a batch's state changes (an older changelog record overwriting newer state).
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.runtime.state_lock:
            self.runtime.stage.release(sorted({tp.partition for tp in revoked}))
        for tp in revoked:
            self.runtime._held.pop(tp, None)  # no longer ours to wait on

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = sorted({tp.partition for tp in assigned})
        async with self.runtime.state_lock:
            await self.runtime.stage.restore(self.runtime.reader, partitions)
        self.runtime.log.info("partitions assigned", partitions=partitions)
        self.runtime.assigned.set()


class StageRuntime:
    """Runs one Stage: a FastStream batch subscriber in its own consumer group, plus a producer."""

    def __init__(self, settings: Settings, stage: Stage) -> None:
        self.settings = settings
        self.stage = stage
        self.log = get_logger("pipeline.stage", stage=stage.name)
        self.producer = EventProducer(settings)
        self.reader = ChangelogReader(settings)
        self.deadletter_topic = settings.topic("deadletter")
        self.assigned = asyncio.Event()
        self.state_lock = asyncio.Lock()  # a batch's state changes vs a rebalance's release/restore
        self._seen: OrderedDict[str, None] = OrderedDict()
        # partition -> (the offset where input waits, since when: monotonic)
        self._held: dict[TopicPartition, tuple[int, float]] = {}
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=f"{settings.kafka_client_id}-{stage.name}",
            security=faststream_security(settings),
            request_timeout_ms=settings.kafka_request_timeout_ms,
            logger=None,
        )
        subscriber = self.broker.subscriber(
            *(settings.topic(t) for t in stage.inputs),
            group_id=f"{settings.topic_prefix}{stage.name}",
            batch=True,
            max_records=settings.stage_batch_size,
            batch_timeout_ms=settings.stage_batch_timeout_ms,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            listener=_Rebalance(self),
            parser=_parse_batch,
            decoder=_no_decode,
        )
        subscriber(self._on_batch)

    async def start(self) -> None:
        await self.producer.start()
        await self.stage.start()
        await self.broker.start()
        _RUNNING.add(self)
        self.log.info("stage started", inputs=[self.settings.topic(t) for t in self.stage.inputs])

    async def stop(self) -> None:
        _RUNNING.discard(self)
        await self.broker.stop()
        self._held.clear()
        await self.producer.stop()
        await self.stage.close()
        self.log.info("stage stopped")

    async def _on_batch(self, body: Any, msg: Any = Context("message")) -> None:
        records: Sequence[ConsumerRecord] = msg.raw_message
        consumer: AIOKafkaConsumer = msg.consumer
        if not records:
            return
        started = time.perf_counter()
        batch = spans(records)
        self._hold(batch)
        bound = bind_message(self.stage.name)  # lines of the batch as a whole (prepare, retries) name the stage
        try:
            if not await self._with_retries(records, consumer):
                return
        finally:
            unbind_message(bound)
            # FastStream keeps the message in a context that only the cyclic collector frees: without its
            # records (its first stays for FastStream's log context) a batch leaves memory when handled, not at
            # the next full collection (which then walked thousands of records: ~10 % of arbitrate's CPU).
            msg.raw_message = records[:1]
        STAGE_HANDLER_SECONDS.labels(self.stage.name).observe(time.perf_counter() - started)
        self._record_lag(batch, consumer)

    async def _with_retries(self, records: Sequence[ConsumerRecord], consumer: AIOKafkaConsumer) -> bool:
        """Process the records, retrying transient failures; False when it gave up for now (rewound)."""
        return await self._retrying(records, consumer, lambda: self._process(records, consumer))

    async def _retrying(
        self, records: Sequence[ConsumerRecord], consumer: AIOKafkaConsumer, step: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run `step` under BATCH_RETRY, rolling the stage's state back after each failure. A record refused
        for good is not retried (`_refused`); when the policy is exhausted, rewind and return False."""
        try:
            async for attempt in stamina.retry_context(on=_retryable, **BATCH_RETRY):
                with attempt:
                    try:
                        await step()
                    except Exception as exc:
                        self.stage.rollback()
                        self.stage.journal.clear()
                        if _retryable(exc):
                            self.log.warning("batch failed, will retry", error=repr(exc), attempt=attempt.num)
                        raise
        except RecordRejected as exc:
            return await self._refused(records, consumer, exc)
        except Exception:  # noqa: BLE001 - retries exhausted: the next fetch delivers the batch again
            self._rewind(records, consumer)
            return False
        return True

    async def _refused(
        self, records: Sequence[ConsumerRecord], consumer: AIOKafkaConsumer, rejected: RecordRejected
    ) -> bool:
        """The broker refused an output for good. Which input caused it? Handle the batch one record at a time,
        so only that one is dead-lettered."""
        if len(records) == 1:
            return await self._retrying(
                records, consumer, lambda: self._dead_letter_rejected(records[0], rejected, consumer)
            )
        self.log.warning("a record was refused for good; handling the batch record by record", error=rejected.reason)
        for record in records:
            if not await self._with_retries([record], consumer):
                return False
        return True

    async def _dead_letter_rejected(
        self, record: ConsumerRecord, rejected: RecordRejected, consumer: AIOKafkaConsumer
    ) -> None:
        """Dead-letter the input whose output the broker refused for good, then move past it. A dead letter the
        broker refuses too (too large for the dead-letter topic) goes again with its payload cut, then empty."""
        dead = self._dead_letter(record, f"output refused for good: {rejected.reason}", attempts=1)
        candidates = [dead, dead.truncated(self.settings.deadletter_max_payload_bytes), dead.truncated(0)]
        for candidate in candidates:
            try:
                await self.producer.publish([candidate])
                break
            except RecordRejected as exc:
                self.log.warning("dead letter refused, cutting its payload", error=exc.reason)
        else:
            self.log.error(
                "dead letter refused even without payload; record skipped",
                origin_topic=record.topic,
                origin_partition=record.partition,
                origin_offset=record.offset,
            )
        await self._commit(consumer, {TopicPartition(record.topic, record.partition): record.offset + 1})

    async def _process(self, records: Sequence[ConsumerRecord], consumer: AIOKafkaConsumer) -> None:
        decoded = [(record, self._decode(record)) for record in records]
        fresh = [e for _, e in decoded if isinstance(e, Event) and e.envelope.id not in self._seen]
        async with self.state_lock:
            await self.stage.prepare(fresh)
            outputs: list[Output] = []
            handled: set[str] = set()
            for record, event in decoded:
                outputs.extend(self._handle(record, event, handled))
            await self.producer.publish(outputs)
            changelog = self.stage.changelog()
            await self.producer.publish(changelog)
            self.stage.commit()
        self.stage.journal.flush()
        self._remember(handled)
        await self._commit(consumer, next_offsets(records))
        name = self.stage.name
        for topic, count in Counter(record.topic for record in records).items():  # per batch, not per record
            STAGE_CONSUMED.labels(name, topic).inc(count)
        for topic, count in Counter(output.topic for output in [*outputs, *changelog]).items():
            STAGE_PRODUCED.labels(name, topic).inc(count)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner re-reads these records and, our outputs
            # having the same derived ids, its duplicates are dropped downstream. Nothing to retry here.
            self.log.warning("offset commit refused after a rebalance", error=repr(exc))
        for tp, offset in offsets.items():
            held = self._held.get(tp)
            if held is not None and held[0] < offset:
                del self._held[tp]  # the partition moved

    def _hold(self, batch: dict[TopicPartition, tuple[int, int]]) -> None:
        """Input waits at these offsets (each partition's first in the batch): remember since when (kept while
        the same offset comes back)."""
        now = time.monotonic()
        for tp, (offset, _) in batch.items():
            held = self._held.get(tp)
            if held is not None and held[0] == offset:
                continue
            self._held[tp] = (offset, now)
            gauge = STAGE_STUCK_SECONDS.labels(self.stage.name, tp.topic, str(tp.partition))
            gauge.set_function(functools.partial(self.held_seconds, tp))

    def held_seconds(self, tp: TopicPartition) -> float:
        held = self._held.get(tp)
        return 0.0 if held is None else time.monotonic() - held[1]

    def stuck(self) -> list[dict[str, Any]]:
        """This stage's partitions held on one offset for longer than STAGE_STUCK_AFTER_S."""
        out = []
        for tp, (offset, _) in list(self._held.items()):
            seconds = self.held_seconds(tp)
            if seconds > self.settings.stage_stuck_after_s:
                out.append(
                    {
                        "stage": self.stage.name,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "offset": offset,
                        "held_seconds": round(seconds, 1),
                    }
                )
        return out

    @staticmethod
    def _decode(record: ConsumerRecord) -> Event | InvalidEvent:
        try:
            return decode(record.value, record.headers)
        except InvalidEvent as exc:
            return exc

    def _handle(self, record: ConsumerRecord, event: Event | InvalidEvent, handled: set[str]) -> list[Output]:
        if isinstance(event, InvalidEvent):
            return [self._dead_letter(record, event, attempts=1)]
        event_id = event.envelope.id
        if event_id in self._seen or event_id in handled:
            STAGE_DUPLICATES.labels(self.stage.name).inc()
            return []
        bound = bind_message(self.stage.name, event.envelope)  # every line about this message carries its ids
        try:
            outputs = self.stage.handle(event, Origin.of(record))
        except TransientError:
            raise  # retry the batch later; never dead-letter for it
        except Exception as exc:  # noqa: BLE001 - permanent: a handler bug must not stop the partition
            STAGE_FAILED.labels(self.stage.name).inc()
            self.log.warning("handler failed", error=repr(exc))
            return [self._dead_letter(record, exc, attempts=1)]
        finally:
            unbind_message(bound)
        handled.add(event_id)
        return outputs

    def _dead_letter(self, record: ConsumerRecord, error: BaseException | str, attempts: int) -> Output:
        """The dead letter of an input record, counted and logged with its origin."""
        STAGE_DEAD_LETTERED.labels(self.stage.name).inc()
        self.log.error(
            "dead-lettered",
            origin_topic=record.topic,
            origin_partition=record.partition,
            origin_offset=record.offset,
            error=error if isinstance(error, str) else repr(error),
            attempts=attempts,
        )
        return Output.dead_letter(
            self.deadletter_topic, record, stage=self.stage.name, error=error, attempts=attempts
        )

    def _remember(self, event_ids: set[str]) -> None:
        seen = self._seen
        seen.update(dict.fromkeys(event_ids))
        while len(seen) > SEEN_IDS:
            seen.popitem(last=False)

    def _rewind(self, records: Sequence[ConsumerRecord], consumer: AIOKafkaConsumer) -> None:
        """Give up on this batch for now: seek back so the next fetch delivers it again."""
        rewind(consumer, records)

    def _record_lag(self, batch: dict[TopicPartition, tuple[int, int]], consumer: AIOKafkaConsumer) -> None:
        for tp, (_, offset) in batch.items():
            high = consumer.highwater(tp)
            if high is not None:
                STAGE_LAG.labels(self.stage.name, tp.topic, str(tp.partition)).set(max(0, high - offset - 1))

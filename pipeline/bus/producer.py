"""Producing events: keyed per record (so per-key order holds), acknowledged by the broker before we go on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
    UnsupportedForMessageFormatError,
)
from aiokafka.structs import RecordMetadata

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.events import Event

# What a dead letter adds to the original record's headers (the AsyncAPI document lists them): name -> meaning.
DEAD_LETTER_HEADERS = {
    "dlq_origin_topic": "The topic the record was read from.",
    "dlq_origin_partition": "Its partition (decimal).",
    "dlq_origin_offset": "Its offset (decimal).",
    "dlq_stage": "The stage that gave up on it.",
    "dlq_error": "Why: the last error, `Type: message`, at most 4000 characters.",
    "dlq_attempts": "How many times the stage tried it (decimal).",
    "dlq_time": "When it was dead-lettered (RFC 3339).",
}
DEAD_LETTER_TRUNCATED = {
    "dlq_truncated": "Only when the broker refused the dead letter as too large and its value was cut "
                     "(to DEADLETTER_MAX_PAYLOAD_BYTES, then to nothing): `payload cut from N to M bytes`.",
}
# A dead letter replayed to its origin topic (`pipeline dlq replay`): the original record with these instead.
REPLAY_OF, REPLAY_ORIGIN = "dlq_replay_of", "dlq_replay_origin"
REPLAY_HEADERS = {
    REPLAY_OF: "Only on a replayed dead letter: its ID in the dead-letter topic, `<partition>:<offset>`.",
    REPLAY_ORIGIN: "Only on a replayed dead letter: where it was first read, `<topic>:<partition>:<offset>`.",
}


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce. `partition` None lets the key choose (murmur2, like every Kafka client)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None

    @classmethod
    def event(cls, topic: str, event: Event, partition: int | None = None) -> Output:
        key, value, headers = event.encode()
        return cls(topic, key, value, headers, partition)

    @classmethod
    def dead_letter(
        cls, topic: str, record: ConsumerRecord, *, stage: str, error: BaseException | str, attempts: int
    ) -> Output:
        """The original record, unchanged, plus headers saying where it came from and why it failed."""
        reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        origin = [
            ("dlq_origin_topic", record.topic.encode()),
            ("dlq_origin_partition", str(record.partition).encode()),
            ("dlq_origin_offset", str(record.offset).encode()),
            ("dlq_stage", stage.encode()),
            ("dlq_error", reason[:4000].encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_time", datetime.now(UTC).isoformat().encode()),
        ]
        return cls(topic, record.key, record.value, [*(record.headers or ()), *origin])

    def truncated(self, limit: int) -> Output:
        """This dead letter with at most `limit` bytes of its payload, saying so in `dlq_truncated`."""
        value = self.value or b""
        note = f"payload cut from {len(value)} to {min(limit, len(value))} bytes".encode()
        return Output(
            self.topic, self.key, value[:limit], [*self.headers, ("dlq_truncated", note)], self.partition
        )


# Refusals that retrying cannot fix: the record itself is wrong for the topic (too large, malformed). Not here:
# timeouts, unreachable brokers, authorisation or missing topics, which a retry (or an operator) can fix.
PERMANENT = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)


class RecordRejected(KafkaError):  # type: ignore[misc]  # aiokafka ships no types
    """The broker (or the client, before sending) refused one record for good: `outputs[index]`; `cause` is the
    client's error. A KafkaError, so callers that treat any broker error alike keep doing so."""

    def __init__(self, index: int, output: Output, cause: BaseException) -> None:
        self.index, self.output, self.cause = index, output, cause
        size = (
            len(output.value or b"")
            + len(output.key or b"")
            + sum(len(k) + len(v) for k, v in output.headers)
        )
        self.reason = f"{type(cause).__name__}: {cause} (record for {output.topic}, about {size} bytes)"
        super().__init__(self.reason)


# After these, an idempotent producer's sequence numbers no longer match the broker's (typically after
# batches failed while the broker was away) and every later send fails the same way: start a new producer,
# which gets a new producer id. The caller still sees the error and retries; ids make duplicates harmless.
_POISONED = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, InvalidProducerIdMapping)


class EventProducer:
    """An acks=all, idempotent producer. `publish` returns only once the broker has every record."""

    def __init__(self, settings: Settings, **overrides: object) -> None:
        self._settings = settings
        self._overrides = overrides
        self._producer: AIOKafkaProducer = kafka.producer(settings, **overrides)
        self._replacing = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._producer.start()
        except BaseException:
            with contextlib.suppress(Exception):  # closed, not left for the collector to warn about
                await self._producer.stop()
            raise

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, outputs: Sequence[Output]) -> list[RecordMetadata]:
        """Send every record (in order, each to its key's partition), then wait for all acks; returns where the
        broker stored each (topic, partition, offset), in the order of `outputs`.

        Raises `RecordRejected` naming the first record refused for a PERMANENT reason (the others may have been
        stored); any other error is transient: the caller retries the whole call.
        """
        producer = self._producer
        try:
            futures = []
            for index, o in enumerate(outputs):
                try:
                    futures.append(
                        await producer.send(
                            o.topic, o.value, key=o.key, headers=o.headers, partition=o.partition
                        )
                    )
                except PERMANENT as exc:  # e.g. larger than max_request_size: refused before sending
                    raise RecordRejected(index, o, exc) from exc
            failed: list[tuple[int, BaseException]] = []
            stored: list[RecordMetadata] = []
            for index, future in enumerate(futures):  # every ack awaited, in turn (no gathering future)
                try:
                    stored.append(await future)
                except Exception as exc:  # noqa: BLE001 - each failure is looked at below, once all are in
                    failed.append((index, exc))
            for index, error in failed:
                if isinstance(error, PERMANENT):
                    raise RecordRejected(index, outputs[index], error) from error
            if failed:
                raise failed[0][1]
            return stored
        except _POISONED:
            await self._replace(producer)
            raise

    async def _replace(self, poisoned: AIOKafkaProducer) -> None:
        async with self._replacing:
            if self._producer is not poisoned:
                return  # a concurrent publish already replaced it
            fresh = kafka.producer(self._settings, **self._overrides)
            await fresh.start()
            self._producer = fresh
        await poisoned.stop()

    @property
    def raw(self) -> AIOKafkaProducer:
        """The aiokafka producer, for the benchmarks' baselines."""
        return self._producer

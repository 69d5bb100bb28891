"""Ingest's memory of recent signal ids, shared by every ingest instance through the `signals` topic.

A webhook's alert instance becomes a signal whose id (`ce_id` header) is deterministic
(`domain.alertmanager.signal_id`). `RecentIds` holds the ids of recent signals, at most INGEST_DEDUP_SIZE,
the least recently seen dropped first. `SignalIdTail` fills it from the topic itself:

- on start it reads the recent window of `signals` (the seed): at most INGEST_DEDUP_SIZE records in all,
  shared between the partitions (a partition holding fewer than its share leaves the rest to the others), and
  with INGEST_DEDUP_WINDOW_S > 0 only records of the last that many seconds (`offsets_for_times`). Only the
  `ce_id` header of each record is read; values are never parsed. Ingest waits for the seed at most
  INGEST_DEDUP_SEED_TIMEOUT_S before it answers webhooks; past that it logs and answers without it (a
  redelivery is then published again, and correlate drops it by its id);
- then it keeps tailing the topic's partitions (assigned, no consumer group, nothing committed), so ids
  published by other ingest instances, and records the producer delivered late after ingest answered 503,
  are known too, a moment (the tail's lag, at most ~`TAIL_PAUSE_S` + a fetch) after they are stored. What this
  instance stored itself it knows already: ingest tells the tail where each of its records went
  (`SignalIdTail.written`), and the tail seeks past a run of its own records instead of reading them back (a
  single ingest instance reads almost nothing; reading every record back cost ~15 % of a webhook's CPU).

The tail survives broker outages: connecting is retried (stamina) and fetch errors are logged and retried.
Partitions added to `signals` after ingest started are not read until the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TypeVar

import stamina
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.observability import (
    INGEST_DEDUP_READ,
    INGEST_DEDUP_SEED_IDS,
    INGEST_DEDUP_SEED_SECONDS,
    INGEST_DEDUP_SKIPPED,
    get_logger,
)

log = get_logger("pipeline.ingest.dedup")

P = TypeVar("P")

STOP_TIMEOUT_S = 5.0
# Between two reads of the tail (each takes what the consumer fetched meanwhile, without waiting): the
# acknowledgements of this instance's records, which arrive when the records become readable, are in by then,
# so the tail seeks past those records instead of decoding them.
TAIL_PAUSE_S = 0.2
OWN_OFFSETS_MAX = 100_000  # per partition: past this, the tail forgets them and reads those records back


class RecentIds:
    """Signal ids seen recently, at most `size` (0 remembers nothing); the least recently seen goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._ids

    def seen(self, signal_id: str) -> bool:
        """True when `signal_id` is remembered; it then counts as just seen (a redelivered alert stays)."""
        if signal_id not in self._ids:
            return False
        self._ids.move_to_end(signal_id)
        return True

    def add(self, signal_id: str) -> None:
        if self.size == 0:
            return
        self._ids[signal_id] = None
        self._ids.move_to_end(signal_id)
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)


def window_starts(begin: Mapping[P, int], end: Mapping[P, int], budget: int) -> dict[P, int]:
    """Where to start reading each partition so that at most `budget` records are read in all, the newest of
    each partition: the budget is shared evenly, and what a partition with fewer records does not use goes to
    the others."""
    available = {p: max(0, end[p] - begin.get(p, 0)) for p in end}
    starts: dict[P, int] = {}
    left, partitions = max(0, budget), len(available)
    for p in sorted(available, key=lambda q: available[q]):
        take = min(available[p], left // partitions)
        starts[p] = end[p] - take
        left -= take
        partitions -= 1
    return starts


def _signal_id(headers: object) -> str | None:
    for name, value in headers:  # type: ignore[attr-defined]
        if name == "ce_id":
            return value.decode("utf-8", "replace") if value else None
    return None


class SignalIdTail:
    """Reads the recent window of `signals` into `ids`, then tails the topic until stopped."""

    def __init__(self, settings: Settings, ids: RecentIds) -> None:
        self.settings = settings
        self.ids = ids
        self.topic = settings.topic("signals")
        self.seeded = asyncio.Event()
        self.seed_ids = 0
        self.seed_seconds: float | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._targets: dict[TopicPartition, int] = {}
        self._own: dict[int, set[int]] = {}  # partition -> offsets of records this instance wrote, not yet passed

    def written(self, partition: int, offset: int) -> None:
        """This instance stored a record of `signals` at `partition`/`offset` (its id is in `ids` already)."""
        own = self._own.get(partition)
        if own is None or len(own) >= OWN_OFFSETS_MAX:  # not passed for long (still seeding): read them instead
            own = self._own[partition] = set()
        own.add(offset)

    async def start(self) -> None:
        """Start reading, and wait for the seed at most INGEST_DEDUP_SEED_TIMEOUT_S. Never raises: without
        the broker, ingest answers from its own memory and the tail catches up when the broker is back."""
        self._task = asyncio.create_task(self._run(), name="ingest-dedup-tail")
        timeout = self.settings.ingest_dedup_seed_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(self.seeded.wait()), timeout)
        except TimeoutError:
            log.warning("signal ids not read in time; ingest answers without them until they are",
                        topic=self.topic, timeout_s=timeout, ids_read=self.seed_ids)

    async def stop(self) -> None:
        """Cancel the tail and close its consumer, within STOP_TIMEOUT_S each."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, STOP_TIMEOUT_S)
            self._task = None
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - closing is best effort; the process goes on stopping
                log.warning("signal id tail did not close cleanly", error=repr(exc))

    async def _run(self) -> None:
        started = time.perf_counter()
        async for attempt in stamina.retry_context(on=Exception, attempts=None, timeout=None, wait_initial=0.5,
                                                   wait_max=10.0):
            with attempt:
                try:
                    await asyncio.wait_for(self._connect(), self.settings.kafka_request_timeout_ms / 1000 * 3)
                except Exception as exc:
                    log.warning("cannot read signal ids yet; retrying", topic=self.topic, error=repr(exc))
                    await self._close()
                    raise
        assert self._consumer is not None
        consumer = self._consumer
        await self._check_seeded(consumer, 0, started)  # nothing to read: seeded without waiting on a fetch
        failures = 0
        while True:
            wait_ms = 500
            if self.seeded.is_set():  # tailing: every TAIL_PAUSE_S, what was fetched meanwhile, less its own
                await asyncio.sleep(TAIL_PAUSE_S)
                await self._pass_own(consumer)
                wait_ms = 0
            try:
                batches = await consumer.getmany(timeout_ms=wait_ms, max_records=10_000)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the tail must outlive broker outages
                failures += 1
                log.warning("signal id tail fetch failed; retrying", topic=self.topic, error=repr(exc))
                await asyncio.sleep(min(10.0, 0.5 * 2 ** min(failures, 5)))
                continue
            read = 0
            for records in batches.values():
                for record in records:
                    signal_id = _signal_id(record.headers)
                    if signal_id:
                        self.ids.add(signal_id)
                        read += 1
            if read:
                INGEST_DEDUP_READ.labels(self.topic).inc(read)
            await self._check_seeded(consumer, read, started)

    async def _pass_own(self, consumer: AIOKafkaConsumer) -> None:
        """Seek each partition past the run of this instance's own records at its position (what the fetcher
        holds from before is then dropped unread), and forget own offsets already behind it."""
        for partition, own in list(self._own.items()):
            tp = TopicPartition(self.topic, partition)
            if not own or tp not in self._targets:
                continue
            start = position = await consumer.position(tp)
            while position in own:
                position += 1
            if position != start:
                consumer.seek(tp, position)
                INGEST_DEDUP_SKIPPED.labels(self.topic).inc(position - start)
            self._own[partition] = {offset for offset in own if offset >= position}

    async def _check_seeded(self, consumer: AIOKafkaConsumer, read: int, started: float) -> None:
        if self.seeded.is_set():
            return
        self.seed_ids += read
        if await self._caught_up(consumer):
            self.seed_seconds = time.perf_counter() - started
            INGEST_DEDUP_SEED_IDS.set(self.seed_ids)
            INGEST_DEDUP_SEED_SECONDS.set(self.seed_seconds)
            self.seeded.set()
            log.info("signal ids read", topic=self.topic, ids=self.seed_ids, remembered=len(self.ids),
                     seconds=round(self.seed_seconds, 3))

    async def _connect(self) -> None:
        """Assign every partition of `signals` and seek each to the start of its recent window."""
        found = (await kafka.partitions(self.settings, self.topic)).get(self.topic)
        if not found:
            raise RuntimeError(f"topic {self.topic} does not exist: run `pipeline topics apply`")
        consumer = kafka.consumer(self.settings, group_id=None, max_partition_fetch_bytes=8 << 20,
                                  fetch_max_bytes=64 << 20)
        self._consumer = consumer
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in found]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        starts = window_starts(begin, end, self.ids.size)
        window_s = self.settings.ingest_dedup_window_s
        if window_s > 0:
            since_ms = int((time.time() - window_s) * 1000)
            by_time = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            for tp in tps:
                found_at = by_time.get(tp)
                starts[tp] = max(starts[tp], end[tp] if found_at is None else found_at.offset)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        self._targets = dict(end)
        log.info("reading recent signal ids", topic=self.topic, partitions=len(tps),
                 records=sum(end[tp] - starts[tp] for tp in tps), window_s=window_s or None)

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, target in self._targets.items():
            if await consumer.position(tp) < target:
                return False
        return True

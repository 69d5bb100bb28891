"""`pipeline bench stage`: the correlate stage (FastStream runtime) vs raw aiokafka loops, same broker, same run.

The input topic is filled once with signals (firing then resolved, over many resources); each variant
consumes all of it in its own consumer group from the earliest offset. The clock starts at the first
consumed record (group joins excluded) and stops when every record's output is acknowledged and its
offset committed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from pipeline.bench.harness import Report, bench_settings
from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import Stage, StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.domain.correlation import changelog_records, correlate
from pipeline.events import CorrelationState, Event, Resource, Severity, Signal, decode, derived_id, utcnow
from pipeline.stages.correlate import CorrelateStage


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("stage: correlate (signals -> incidents + changelog), msgs/s")
    settings = bench_settings(bootstrap)
    total = asyncio.run(_prefill(settings, args.messages))
    process = psutil.Process()
    results: dict[str, float] = {}
    for name, variant in (
        ("raw aiokafka loop, same work", _raw_same_work),
        ("raw aiokafka passthrough", raw_passthrough),
        ("correlate stage (runtime)", lambda s, n: run_stage(s, n, CorrelateStage(s), "signals")),
    ):
        rate = asyncio.run(variant(settings, total))
        results[name] = rate
        report.add(name, msgs_per_s=rate, records=total, rss_mb=process.memory_info().rss / 2**20)
    runtime = results["correlate stage (runtime)"]
    for row in report.rows[:2]:
        ratio = report.add(f"runtime / {row.name}")
        ratio.ratio, ratio.ratio_of = runtime / row.figures["msgs_per_s"], "msgs/s"
    return report


def signal_events(n: int) -> list[Event]:
    """Firing, then resolved, for n/2 alerts spread over n/8 pods."""
    now = utcnow()
    events = []
    for i in range(n // 2):
        pod = Resource(namespace=f"ns-{i % 20}", kind="Pod", name=f"pod-{i % (max(n // 8, 1))}")
        for status in ("firing", "resolved"):
            signal = Signal(
                signal_id=f"{i}-{status}", source="alertmanager", resource=pod, name=f"Alert{i % 7}",
                status=status, severity=Severity.HIGH, fingerprint=f"{i:016x}",
                starts_at=now - timedelta(minutes=5), observed_at=now,
                labels={"alertname": f"Alert{i % 7}", "namespace": pod.namespace, "pod": pod.name},
                annotations={"summary": "bench signal " * 8},
            )
            events.append(Event.of(signal, source="bench", id=signal.signal_id))
    events.sort(key=lambda e: (e.payload.fingerprint, e.payload.status != "firing"))  # type: ignore[attr-defined]
    return events


async def _prefill(settings: Settings, n: int) -> int:
    await apply(settings)
    producer = EventProducer(settings)
    await producer.start()
    try:
        events = signal_events(n)
        topic = settings.topic("signals")
        for start in range(0, len(events), 2000):
            await producer.publish([Output.event(topic, e) for e in events[start : start + 2000]])
        return len(events)
    finally:
        await producer.stop()


async def out_topics(settings: Settings, *names: str) -> None:
    client = kafka.admin(settings)
    await client.start()
    try:
        await client.create_topics([NewTopic(n, 6, 1) for n in names])
    finally:
        await client.close()


async def consume_all(
    settings: Settings, total: int, work: Any, producer: EventProducer, topic: str = "signals",
    on_batch: Any = None, cpu: list[float] | None = None,
) -> float:
    """The hand-written loop: getmany -> work -> send futures -> gather acks -> commit. `on_batch` (if any)
    turns the batch's records into outputs instead of `work` record by record; when it returns (outputs, state),
    the state records are produced once the outputs are acknowledged, as the runtime does (a state stored ahead
    of its outputs would skip them after a crash)."""
    consumer = kafka.consumer(settings, settings.topic(topic), group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
                              max_poll_records=settings.stage_batch_size)
    await consumer.start()
    try:
        seen, started, cpu_started = 0, 0.0, 0.0
        while seen < total:
            batches = await consumer.getmany(timeout_ms=200, max_records=settings.stage_batch_size)
            if not batches:
                continue
            if not started:
                started, cpu_started = time.perf_counter(), time.process_time()
            outputs: list[Output] = []
            offsets = {}
            for tp, records in batches.items():
                if on_batch is None:
                    for record in records:
                        outputs.extend(work(record))
                offsets[tp] = records[-1].offset + 1
                seen += len(records)
            state: list[Output] = []
            if on_batch is not None:
                outputs = on_batch([r for records in batches.values() for r in records])
                if isinstance(outputs, tuple):
                    outputs, state = outputs
            await producer.publish(outputs)
            if state:
                await producer.publish(state)
            await consumer.commit(offsets)
        if cpu is not None:
            cpu.append(time.process_time() - cpu_started)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def raw_passthrough(settings: Settings, total: int, topic: str = "signals") -> float:
    out = f"{settings.topic_prefix}raw-pass-{uuid.uuid4().hex[:6]}"
    await out_topics(settings, out)
    producer = EventProducer(settings)
    await producer.start()
    try:
        return await consume_all(
            settings, total, lambda r: [Output(out, r.key, r.value, list(r.headers))], producer, topic
        )
    finally:
        await producer.stop()


async def _raw_same_work(settings: Settings, total: int) -> float:
    """Decode, correlate with the same domain function, produce the change and the state, commit."""
    incidents = f"{settings.topic_prefix}raw-inc-{uuid.uuid4().hex[:6]}"
    changelog = f"{settings.topic_prefix}raw-state-{uuid.uuid4().hex[:6]}"
    await out_topics(settings, incidents, changelog)
    producer = EventProducer(settings)
    await producer.start()
    state: dict[str, CorrelationState] = {}

    def work(record: Any) -> list[Output]:
        event = decode(record.value, record.headers)
        signal = event.payload
        assert isinstance(signal, Signal)
        before = state.get(signal.resource_key)
        outcome = correlate(before, signal)
        state[signal.resource_key] = outcome.state
        closed = before.incident.signals if before and before.incident and not outcome.state.incident else ()
        header, alerts, gone = changelog_records(outcome.state, outcome.alerts, closed)
        out = [Output(changelog, key.encode(), None, partition=record.partition) for key in gone]
        out += [Output.event(changelog, Event.of(p, source="bench"), partition=record.partition)
                for p in (*alerts, header)]
        if outcome.change is not None:
            change = Event.of(outcome.change, source="bench", id=derived_id(event.envelope.id))
            out.insert(0, Output.event(incidents, change))
        return out

    try:
        return await consume_all(settings, total, work, producer)
    finally:
        await producer.stop()


async def run_stage(settings: Settings, total: int, stage: Stage, topic_name: str,
                    cpu: list[float] | None = None) -> float:
    """Records/s of a stage under the runtime, from its first batch to its last committed offset (as the
    hand-written loops are timed). Counted per batch, in `prepare` (the runtime hands it each batch's new
    events): counting in `handle` cost the stage ~1 µs a record that the loops it is compared with do not pay.
    `cpu` gets the process's CPU seconds over the same window (the stage's start and the offset polling that
    ends it left out)."""
    first: list[float] = []
    cpu_window: list[float] = []
    original = stage.prepare
    handled = [0]
    all_handled = asyncio.Event()

    async def prepare(events: list[Event]) -> None:
        if not first:
            first.append(time.perf_counter())
            cpu_window.append(time.process_time())
        await original(events)
        handled[0] += len(events)
        if handled[0] >= total:
            cpu_window.append(time.process_time())
            all_handled.set()

    stage.prepare = prepare  # type: ignore[method-assign]
    runtime = StageRuntime(settings, stage)
    await runtime.start()
    try:
        group = f"{settings.topic_prefix}{stage.name}"
        topic = settings.topic(topic_name)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await consumer.start()
        admin = kafka.admin(settings)
        await admin.start()
        try:
            parts = (await kafka.partitions(settings, topic))[topic]
            end = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            # Polling the group's offsets costs the process it measures CPU (a coordinator lookup and an offset
            # fetch every 20 ms took ~10 % from the stage): poll only once every record was handled.
            await all_handled.wait()
            while True:
                committed = await admin.list_consumer_group_offsets(group)
                done = sum(meta.offset for tp, meta in committed.items() if tp.topic == topic)
                if done >= sum(end.values()):
                    break
                await asyncio.sleep(0.02)
            finished = time.perf_counter()
        finally:
            await admin.close()
            await consumer.stop()
        if cpu is not None:
            cpu.append(cpu_window[-1] - cpu_window[0])
        return total / (finished - first[0])
    finally:
        await runtime.stop()

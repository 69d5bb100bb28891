"""No input stalls a partition: a record the broker refuses for good is dead-lettered and the next one is
handled; a partition held by a transient failure shows up as stuck in `/api/v1/health` and the metrics.

Real broker (tests/conftest.py); the topics' `max.message.bytes` are lowered so the records stay small.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import Origin, Stage, StageRuntime, TransientError, stuck_partitions
from pipeline.bus.topics import apply
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.events import Event
from pipeline.events.incidents import Resource, Signal
from tests.support import PipelineUnderTest, eventually, read_topic, set_max_message_bytes

OUTPUT_LIMIT = 50_000  # max.message.bytes of the output topic in these tests
DEADLETTER_LIMIT = 20_000  # ... and of the dead-letter topic


def _signal(name: str, description: str = "") -> Event:
    """Signals about one resource: one key, so one partition, in the order produced."""
    payload = Signal(
        signal_id=name,
        source="manual",
        resource=Resource(kind="Pod", namespace="stall", name="same-pod"),
        name=name,
        status="firing",
        severity="medium",
        description=description,
        fingerprint=name,
        starts_at=datetime(2026, 12, 1, tzinfo=UTC),
        observed_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return Event.of(payload, source="test")


async def _publish(settings: Settings, events: list[Event]) -> None:
    producer = EventProducer(settings)
    await producer.start()
    try:
        await producer.publish([Output.event(settings.topic("signals"), e) for e in events])
    finally:
        await producer.stop()


class InflatingStage(Stage):
    """Writes one record per signal to `features`; a signal named `big-*` gets an output over the topic's limit."""

    name: ClassVar[str] = "inflating"
    inputs: ClassVar[tuple[str, ...]] = ("signals",)

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        name = event.payload.name  # type: ignore[attr-defined]
        size = 2 * OUTPUT_LIMIT if name.startswith("big") else 100
        return [Output(self.settings.topic("features"), event.key.encode(), name.encode() + b"=" + b"x" * size)]


async def test_an_output_too_large_for_its_topic_dead_letters_the_input_and_the_partition_moves_on(
    settings: Settings,
) -> None:
    await apply(settings)
    await set_max_message_bytes(settings, {"features": OUTPUT_LIMIT, "deadletter": DEADLETTER_LIMIT})
    events = [
        _signal("big-output"),
        # its dead letter is too big for the dead-letter topic too
        _signal("big-output-and-input", description="d" * (2 * DEADLETTER_LIMIT)),
        _signal("normal-after"),
    ]
    await _publish(settings, events)
    runtime = StageRuntime(settings, InflatingStage(settings))
    await runtime.start()
    try:

        async def two_dead_letters() -> list | None:
            records = await read_topic(settings, "deadletter")
            return records if len(records) == 2 else None

        dead = await eventually(two_dead_letters, timeout=60)
        written = await eventually(lambda: read_topic(settings, "features"), timeout=30)
    finally:
        await runtime.stop()

    # The record after the refused ones on the same partition was handled.
    assert [r.value.split(b"=")[0] for r in written] == [b"normal-after"]
    by_id = {dict(r.headers)["ce_id"]: r for r in dead}
    first, second = by_id[events[0].envelope.id.encode()], by_id[events[1].envelope.id.encode()]
    for record in (first, second):
        headers = dict(record.headers)
        assert headers["dlq_stage"] == b"inflating"
        assert headers["dlq_origin_topic"] == settings.topic("signals").encode()
        assert b"output refused for good" in headers["dlq_error"]
        assert b"MessageSizeTooLarge" in headers["dlq_error"]
    # The first dead letter fits: the original payload, whole. The second did not: cut, and it says so.
    key, value, _ = events[0].encode()
    assert first.value == value and first.key == key and "dlq_truncated" not in dict(first.headers)
    full = events[1].encode()[1]
    second_headers = dict(second.headers)
    assert len(second.value) < len(full) and full.startswith(second.value)
    assert second_headers["dlq_truncated"].startswith(f"payload cut from {len(full)} to".encode())
    assert int(dict(first.headers)["dlq_origin_offset"]) < int(second_headers["dlq_origin_offset"])


class WaitingStage(Stage):
    """A stage whose dependency never comes back: every attempt fails transiently, so the record is retried."""

    name: ClassVar[str] = "waiting"
    inputs: ClassVar[tuple[str, ...]] = ("signals",)

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        raise TransientError("dependency away")


def _stuck_metric(stage: str) -> list[Any]:
    return [
        s
        for metric in REGISTRY.collect()
        if metric.name == "pipeline_stage_stuck_seconds"
        for s in metric.samples
        if s.labels["stage"] == stage and s.value > 0
    ]


async def test_a_partition_held_by_a_transient_failure_is_reported_stuck_in_health_and_metrics(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"stage_stuck_after_s": 0.0})
    await apply(settings)
    await _publish(settings, [_signal("held")])
    runtime = StageRuntime(settings, WaitingStage(settings))
    await runtime.start()
    try:
        async with PipelineUnderTest(settings, Plan(ingest=True)) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:

                async def stuck_in_health() -> dict | None:
                    body = (await client.get("/api/v1/health")).json()
                    stages = body["dependencies"]["kafka"].get("stages", {})
                    return body if stages.get("stuck") else None

                health = await eventually(stuck_in_health, timeout=30)
                stages = health["dependencies"]["kafka"]["stages"]
                metrics = (await client.get("/metrics")).text
        assert stages["status"] == "stuck" and "waiting" in stages["running"]
        assert health["status"] == "degraded" and health["components"]["stages"] == stages
        [held] = [s for s in stages["stuck"] if s["stage"] == "waiting"]
        assert held["topic"] == settings.topic("signals") and held["offset"] == 0
        assert [s["stage"] for s in stuck_partitions()] == ["waiting"]
        [sample] = _stuck_metric("waiting")
        assert sample.labels["partition"] == str(held["partition"])
        exported = [
            s.labels
            for family in text_string_to_metric_families(metrics)
            if family.name == "pipeline_stage_stuck_seconds"
            for s in family.samples
            if s.value > 0
        ]
        assert {"stage": "waiting", "topic": held["topic"], "partition": str(held["partition"])} in exported
        assert await read_topic(settings, "deadletter") == []  # waiting, not thrown away
    finally:
        await runtime.stop()
    assert stuck_partitions() == [] and _stuck_metric("waiting") == []  # stopped: nothing held any more

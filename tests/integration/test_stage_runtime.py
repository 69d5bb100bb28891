"""The stage runtime on a real broker: dead letters with their origin, bounded retries, state rebuilt."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import ClassVar

import httpx
import pytest
import stamina
import structlog

from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import Origin, Stage, StageRuntime, TransientError
from pipeline.bus.topics import apply
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.events import Envelope, Event, Resource, Signal, utcnow
from pipeline.observability import configure_logging, get_logger
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

FIRING = sample("alertmanager-webhook-firing.json")
RESOLVED = sample("alertmanager-webhook-resolved-from-prometheus.json")


async def _produce_raw(settings: Settings, records: list[tuple[bytes, bytes, list]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(settings.topic("signals"), value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_records_that_are_not_events_are_dead_lettered_with_their_origin_and_the_stage_moves_on(
    pipeline: PipelineUnderTest, http: httpx.AsyncClient, settings: Settings
) -> None:
    bad_payload = Envelope(type="pipeline.signal.observed.v1", source="test").headers()
    await _produce_raw(
        settings,
        [
            (b"k1", b"this is not json and has no headers", []),
            (b"k1", b'{"signal_id": 12}', bad_payload),
        ],
    )
    assert (await http.post("/api/v1/alerts", json=FIRING)).status_code == 200

    async def two_dead_letters() -> list | None:
        records = await read_topic(settings, "deadletter")
        return records if len(records) == 2 else None

    dead = await eventually(two_dead_letters)
    by_value = {r.value: dict(r.headers) for r in dead}
    garbage = by_value[b"this is not json and has no headers"]
    assert garbage[b"dlq_origin_topic".decode()] == settings.topic("signals").encode()
    assert garbage["dlq_stage"] == b"correlate" and garbage["dlq_attempts"] == b"1"
    assert int(garbage["dlq_origin_offset"]) >= 0 and garbage["dlq_origin_partition"].isdigit()
    assert b"missing CloudEvents header" in garbage["dlq_error"]
    assert b"payload invalid" in by_value[b'{"signal_id": 12}']["dlq_error"]
    # The partition moved on: the valid alerts after the bad records became incidents.
    await eventually(lambda: _total(http, 2))


async def _total(client: httpx.AsyncClient, n: int) -> bool:
    return (await incidents(client))["summary"]["total"] == n


class ExplodingStage(Stage):
    """A stage whose handler always raises a bug: retrying a pure handler cannot help."""

    name: ClassVar[str] = "exploding"
    inputs: ClassVar[tuple[str, ...]] = ("signals",)
    calls = 0

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        type(self).calls += 1
        raise RuntimeError(f"cannot handle {event.envelope.id}")


async def test_a_failing_handler_dead_letters_the_record_at_once(settings: Settings) -> None:
    await apply(settings)
    runtime = StageRuntime(settings, ExplodingStage(settings))
    await runtime.start()
    try:
        ingest_only = Plan(ingest=True)
        async with PipelineUnderTest(settings, ingest_only) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:
                assert (await client.post("/api/v1/alerts", json=FIRING)).status_code == 200

        async def dead() -> list | None:
            records = await read_topic(settings, "deadletter")
            return records if len(records) == 2 else None

        records = await eventually(dead)
    finally:
        await runtime.stop()
    for record in records:
        headers = dict(record.headers)
        assert headers["dlq_attempts"] == b"1"
        assert headers["dlq_stage"] == b"exploding"
        assert b"RuntimeError: cannot handle" in headers["dlq_error"]
        assert headers["ce_type"] == b"pipeline.signal.observed.v1"  # original headers kept
    assert ExplodingStage.calls == 2  # once per record: a permanent error is not retried


def _signal(signal_id: str, name: str, **envelope: str) -> Event:
    return Event.of(Signal(signal_id=signal_id, source="manual", resource=Resource(kind="Pod", namespace="ns", name="p"),
                           name=name, status="firing", severity="medium", fingerprint="f", starts_at=utcnow(),
                           observed_at=utcnow()), source="test", **envelope)


async def _handle_once(settings: Settings, stage: Stage, event: Event) -> list:
    """`event` on `signals`, then `stage` run until it wrote to `features` (its batch retries without waits)."""
    await apply(settings)
    producer = EventProducer(settings)
    await producer.start()
    try:
        await producer.publish([Output.event(settings.topic("signals"), event)])
    finally:
        await producer.stop()
    runtime = StageRuntime(settings, stage)
    with stamina.set_testing(True, attempts=3):  # the batch's retries without their waits
        await runtime.start()
        try:
            return await eventually(lambda: read_topic(settings, "features"))
        finally:
            await runtime.stop()


class FlakyStage(Stage):
    """A stage whose dependency is away for its first two attempts, then answers."""

    name: ClassVar[str] = "flaky"
    inputs: ClassVar[tuple[str, ...]] = ("signals",)
    failures = 2
    origins: ClassVar[list[Origin]] = []

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        if type(self).failures:
            type(self).failures -= 1
            raise TransientError("dependency away")
        type(self).origins.append(origin)
        return [Output(self.settings.topic("features"), event.key.encode(), event.envelope.id.encode())]


async def test_a_transient_failure_is_retried_and_the_record_handled_once_the_dependency_answers(
    settings: Settings,
) -> None:
    event = _signal("s-1", "Flaky")
    written = await _handle_once(settings, FlakyStage(settings), event)
    assert [r.value for r in written] == [event.envelope.id.encode()]
    assert await read_topic(settings, "deadletter") == []  # transient: retried, never thrown away
    assert FlakyStage.failures == 0
    [origin] = FlakyStage.origins
    assert (origin.topic, origin.offset) == (settings.topic("signals"), 0) and origin.timestamp > 0


class NotingStage(Stage):
    """Notes what it did in its journal and logs a line while handling; its dependency is away the first time."""

    name: ClassVar[str] = "noting"
    inputs: ClassVar[tuple[str, ...]] = ("signals",)
    failures = 1

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        get_logger("tests.noting").info("handling")
        self.journal.note("handled", signal_id=event.payload.signal_id)  # type: ignore[attr-defined]
        if type(self).failures:
            type(self).failures -= 1
            raise TransientError("dependency away")
        return [Output(self.settings.topic("features"), event.key.encode(), event.envelope.id.encode())]


@pytest.fixture
def info_logs() -> Iterator[None]:
    configure_logging("INFO", "json", repeat_window_s=0)  # every line, also those an earlier test just wrote
    yield
    structlog.reset_defaults()
    configure_logging("WARNING")


async def test_a_handlers_lines_carry_the_message_ids_and_a_retried_batch_notes_what_it_did_once(
    settings: Settings, info_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    event = _signal("s-7", "Noted", incidentid="inc-7",
                    traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    await _handle_once(settings, NotingStage(settings), event)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    ids = {"stage": "noting", "event_id": event.envelope.id, "incident_id": "inc-7",
           "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    handling = [line for line in lines if line["event"] == "handling"]
    assert len(handling) == 2  # the first attempt and the retry, each with the message's ids
    assert all(line.items() >= ids.items() for line in handling), handling
    handled = [line for line in lines if line["event"] == "handled"]
    assert len(handled) == 1, handled  # the rolled-back attempt's note is dropped; the committed one written
    assert handled[0].items() >= {**ids, "signal_id": "s-7", "level": "info", "logger": "pipeline.noting"}.items()
    retried = [line for line in lines if line["event"] == "batch failed, will retry"]
    assert retried and retried[0]["stage"] == "noting" and "event_id" not in retried[0]  # the batch's: stage only
    assert lines.index(handling[1]) < lines.index(handled[0])


async def test_correlation_state_survives_a_restart(settings: Settings) -> None:
    """After a restart the stage knows the open incident: resolving it resolves the same incident."""
    firing = copy.deepcopy(RESOLVED)
    for alert in firing["alerts"]:
        alert["status"] = "firing"
        alert["endsAt"] = "0001-01-01T00:00:00Z"
    firing["status"] = "firing"
    async with PipelineUnderTest(settings) as first:
        async with httpx.AsyncClient(base_url=first.url, trust_env=False) as client:
            assert (await client.post("/api/v1/alerts", json=firing)).status_code == 200
            await eventually(lambda: _total(client, len(firing["alerts"])))
    async with PipelineUnderTest(settings) as second:
        async with httpx.AsyncClient(base_url=second.url, trust_env=False) as client:
            assert (await client.post("/api/v1/alerts", json=firing)).status_code == 200  # redelivered
            assert (await client.post("/api/v1/alerts", json=RESOLVED)).status_code == 200

            async def resolved() -> dict | None:
                body = await incidents(client)
                return body if body["summary"]["completed"] == len(firing["alerts"]) else None

            body = await eventually(resolved)
    assert body["summary"]["total"] == len(firing["alerts"])  # no second incident was opened
    changes = [dict(r.headers)["ce_type"] for r in await read_topic(settings, "incidents")]
    assert sorted(changes) == sorted(
        [b"pipeline.incident.opened.v1"] * len(firing["alerts"])
        + [b"pipeline.incident.resolved.v1"] * len(firing["alerts"])
    )


async def test_stage_metrics_are_exported(pipeline: PipelineUnderTest, http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v1/alerts", json=FIRING)).status_code == 200
    await eventually(lambda: _total(http, 2))
    text = (await http.get("/metrics")).text
    for name in (
        "pipeline_stage_consumed_total",
        "pipeline_stage_produced_total",
        "pipeline_stage_handler_seconds_bucket",
        "pipeline_stage_lag",
        "pipeline_stage_dead_lettered_total",
    ):
        assert name in text, name

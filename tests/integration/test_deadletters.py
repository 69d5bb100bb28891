"""`pipeline dlq list|show|replay` as an operator runs them (the CLI in a subprocess), on the real broker with the
real correlate and propose stages: a poison record reaches the dead-letter topic and, replayed after the fix,
is processed once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from aiokafka.admin import NewTopic

from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.topics import apply
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.events import Envelope, Event, Resource, Signal
from pipeline.forensics.deadletters import DeadLetter, read_dead_letters
from tests.support import PipelineUnderTest, consumed, eventually, publish, read_topic, set_max_message_bytes

INCIDENTS_LIMIT = 20_000  # max.message.bytes of `incidents` as the operator first (wrongly) set it
DESCRIPTION = 30_000  # a signal whose incident needs more than that


async def dlq(settings: Settings, *args: str) -> tuple[int, str, str]:
    """`pipeline dlq ARGS` in its own process, configured by the environment like a deployment."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "TOPIC_PREFIX": settings.topic_prefix}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "pipeline.cli", "dlq", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _signal(name: str, description: str = "") -> Event:
    payload = Signal(signal_id=f"id-{name}", source="manual", resource=Resource(kind="Pod", namespace="dlq", name=name),
                     name="PodCrashLooping", status="firing", severity="high", description=description,
                     fingerprint=f"fp-{name}", starts_at=datetime(2026, 12, 1, tzinfo=UTC),
                     observed_at=datetime(2026, 12, 1, tzinfo=UTC))
    return Event.of(payload, source="test")


async def _caused_by(settings: Settings, event: Event) -> list[object]:
    """The records on `incidents` the correlate stage produced from this signal."""
    return [r for r in await read_topic(settings, "incidents")
            if dict(r.headers).get("ce_causationid") == event.envelope.id.encode()]


async def _dead_letters(settings: Settings, n: int) -> list[DeadLetter] | None:
    letters = await read_dead_letters(settings)
    return letters if len(letters) == n else None


async def test_a_poison_record_reaches_the_dead_letter_topic_and_replayed_after_the_fix_is_processed_once(
    settings: Settings,
) -> None:
    await apply(settings)
    await set_max_message_bytes(settings, {"incidents": INCIDENTS_LIMIT})  # an operator's mistake
    poison, healthy = _signal("big", "d" * DESCRIPTION), _signal("small")
    async with PipelineUnderTest(settings, Plan(stages=["correlate"])):
        await publish(settings, "signals", [poison, healthy])
        # Its incident is too large for `incidents`: the broker refuses it for good, the signal is dead-lettered.
        [letter] = await eventually(lambda: _dead_letters(settings, 1), timeout=60, what="the dead letter")
        await eventually(lambda: _caused_by(settings, healthy), what="the healthy signal's incident")
        assert await _caused_by(settings, poison) == []

        code, out, err = await dlq(settings, "list", "--json")
        assert code == 0, err
        [listed] = [json.loads(line) for line in out.splitlines()]
        assert listed["id"] == letter.id and listed["stage"] == "correlate" and listed["attempts"] == 1
        assert listed["origin"]["topic"] == settings.topic("signals")
        assert listed["error"].startswith("output refused for good:") and "MessageSizeTooLarge" in listed["error"]

        await set_max_message_bytes(settings, {"incidents": 1_048_588})  # the fix
        code, out, err = await dlq(settings, "replay", letter.id)
        assert code == 0, err
        assert f"{letter.id}  replayed to {settings.topic('signals')}" in out
        [opened] = await eventually(lambda: _caused_by(settings, poison), what="the replayed signal's incident")
        assert dict(opened.headers)["ce_type"] == b"pipeline.incident.opened.v1"  # type: ignore[attr-defined]

        # Replaying again is refused; forced, or racing a redelivery of the same record, nothing more comes out.
        code, _, err = await dlq(settings, "replay", letter.id)
        assert code == 2 and f"{letter.id}: already replayed as {settings.topic('signals')}:" in err
        code, _, err = await dlq(settings, "replay", "--force", letter.id)
        assert code == 0, err
        await publish(settings, "signals", [poison])  # upstream redelivers the same signal
        await eventually(lambda: consumed(settings, "correlate", "signals"), what="correlate consumed everything")
        assert len(await _caused_by(settings, poison)) == 1

    # A new correlate instance (no memory of handled event ids): its changelog still knows the signal.
    async with PipelineUnderTest(settings, Plan(stages=["correlate"])):
        code, _, err = await dlq(settings, "replay", "--force", letter.id)
        assert code == 0, err
        await eventually(lambda: consumed(settings, "correlate", "signals"), what="correlate consumed everything")
    assert len(await _caused_by(settings, poison)) == 1
    # One incident per signal, nothing else. (The healthy signal's may be on the topic twice under one id: its
    # batch was produced, then redone record by record after the refusal; consumers drop the same id.)
    ids = {dict(r.headers)["ce_id"] for r in await read_topic(settings, "incidents")}
    assert len(ids) == 2
    replays = [dict(r.headers) for r in await read_topic(settings, "signals") if "dlq_replay_of" in dict(r.headers)]
    assert [h["dlq_replay_of"] for h in replays] == [letter.id.encode()] * 3
    assert {h["dlq_replay_origin"] for h in replays} == {(letter.origin or "").encode()}
    assert all(h["ce_id"] == poison.envelope.id.encode() and "dlq_error" not in h for h in replays)


async def _produce(settings: Settings, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    finally:
        await producer.stop()


async def test_list_filters_and_show_a_dead_letter_with_its_record(settings: Settings) -> None:
    async with PipelineUnderTest(settings, Plan(stages=["correlate", "propose"], apply_topics=True)):
        await _produce(settings, settings.topic("signals"), b"not json, no headers", [])
        opened = Envelope(type="pipeline.incident.opened.v1", source="test").headers()
        await _produce(settings, settings.topic("incidents"), b'{"incident": {"id": 12}}', opened)
        letters = await eventually(lambda: _dead_letters(settings, 2), timeout=60, what="two dead letters")
    by_stage = {letter.stage: letter for letter in letters}
    garbage, invalid = by_stage["correlate"], by_stage["propose"]

    code, out, err = await dlq(settings, "list")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "TIME", "STAGE", "ORIGIN", "ATTEMPTS", "NOTE", "ERROR"]
    assert sorted(row.split()[0] for row in rows) == sorted([garbage.id, invalid.id])
    [row] = [row for row in rows if row.startswith(f"{garbage.id} ")]
    assert f"correlate  {garbage.origin}" in row and "missing CloudEvents header" in row

    code, out, _ = await dlq(settings, "list", "--stage", "propose", "--json")
    [only] = [json.loads(line) for line in out.splitlines()]
    assert only["id"] == invalid.id and only["origin"]["topic"] == settings.topic("incidents")
    code, out, _ = await dlq(settings, "list", "--since", "1h", "--json")
    assert len(out.splitlines()) == 2
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    code, out, _ = await dlq(settings, "list", "--since", later)
    assert code == 0 and out.startswith("no dead letters in ")

    code, out, err = await dlq(settings, "show", invalid.id)
    assert code == 0, err
    assert "  stage       propose" in out and "  replayed    not yet" in out
    assert f"  origin      {settings.topic('incidents')} partition {invalid.origin_partition} offset 0" in out
    assert "payload invalid" in out and "    ce_type: pipeline.incident.opened.v1" in out
    assert '    {\n      "incident": {\n        "id": 12\n      }\n    }' in out  # the record, pretty
    code, out, _ = await dlq(settings, "show", garbage.id, "--json")
    shown = json.loads(out)
    assert shown["record"] == {"text": "not json, no headers"} and shown["key"] == "k"
    assert shown["deadletter"]["partition"] == garbage.position.partition and "not_an_event" in shown

    for args, message in [(["show", "7:99999"], "no dead letter 7:99999"), (["show", "abc"], "<partition>:<offset>"),
                          (["replay", "--all"], "--all needs --stage"), (["replay"], "name dead letter IDs")]:
        code, _, err = await dlq(settings, *args)
        assert code == 2 and message in err, (args, err)


async def test_replay_refuses_a_truncated_or_foreign_dead_letter_unless_forced(settings: Settings) -> None:
    """Dead letters written by the stage runtime's own code (`Output.dead_letter`), of records read back from a
    topic of ours and from one that is not."""
    await apply(settings)
    foreign = f"{settings.topic_prefix}elsewhere"
    admin = kafka.admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(foreign, 1, 1)])
    finally:
        await admin.close()
    await publish(settings, "signals", [_signal("a")])
    await _produce(settings, foreign, b"theirs", [])
    [ours] = await read_topic(settings, "signals")
    [theirs] = await read_topic(settings, "elsewhere")
    deadletter = settings.topic("deadletter")
    producer = EventProducer(settings)
    await producer.start()
    try:
        await producer.publish([
            Output.dead_letter(deadletter, ours, stage="correlate", error="boom", attempts=1).truncated(10),
            Output.dead_letter(deadletter, theirs, stage="correlate", error="boom", attempts=1),
        ])
    finally:
        await producer.stop()
    letters = await read_dead_letters(settings)
    [cut] = [x for x in letters if x.truncated]
    [alien] = [x for x in letters if x.origin_topic == foreign]

    code, _, err = await dlq(settings, "replay", cut.id, alien.id)
    assert code == 2
    assert f"{cut.id}: its payload was truncated (payload cut from" in err
    assert f"{alien.id}: its origin topic '{foreign}' is not one of this pipeline's topics" in err
    assert len(await read_topic(settings, "signals")) == 1 and len(await read_topic(settings, "elsewhere")) == 1

    code, out, err = await dlq(settings, "replay", "--force", cut.id, alien.id)
    assert code == 0, err
    [replayed] = [r for r in await read_topic(settings, "signals") if "dlq_replay_of" in dict(r.headers)]
    assert replayed.value == ours.value[:10] and dict(replayed.headers)["dlq_replay_of"] == cut.id.encode()
    assert [r.value for r in await read_topic(settings, "elsewhere")] == [b"theirs", b"theirs"]

    code, out, err = await dlq(settings, "replay", "--all", "--stage", "correlate")
    assert code == 0, err
    assert sorted(out.splitlines()) == sorted(
        [f"{cut.id}  skipped: already replayed as {settings.topic('signals')}:{replayed.partition}:{replayed.offset}",
         f"{alien.id}  skipped: already replayed as {foreign}:0:1"])

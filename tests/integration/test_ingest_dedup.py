"""Alertmanager redeliveries against a real broker: each alert instance is published once, whether the copies
arrive together, after a restart, at another ingest instance, or after a late delivery; and the webhook's
answer says how many copies it recognised."""

from __future__ import annotations

import asyncio
import copy
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, to_signal
from pipeline.embedded.kafka import LocalKafka
from pipeline.embedded.process import free_port
from pipeline.events import Event
from pipeline.ingest.alerts import AlertIngest
from pipeline.ingest.dedup import RecentIds
from tests.support import PipelineUnderTest, eventually, publish, read_topic, sample


def _three_alerts() -> dict:
    payload = sample("alertmanager-webhook-firing.json")
    third = copy.deepcopy(payload["alerts"][0])
    third["labels"]["pod"] = "cart-7d9f8b6c5-zz9zz"
    third["fingerprint"] = "0123456789abcdef"
    payload["alerts"].append(third)
    return payload


WEBHOOK = _three_alerts()


def _ingest_only(settings: Settings) -> PipelineUnderTest:
    return PipelineUnderTest(settings, Plan(ingest=True, apply_topics=True))


async def _signal_ids(settings: Settings) -> list[str]:
    return [dict(r.headers)["ce_id"].decode() for r in await read_topic(settings, "signals")]


async def _post(url: str, payload: dict) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        response = await client.post("/api/v1/alerts", json=payload)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _ids_read(url: str, settings: Settings, metric: str = "pipeline_ingest_dedup_ids_read_total") -> float:
    """`metric` of this test's signals topic, as /metrics shows it (summed over the ingest instances of this
    process)."""
    async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample_ in family.samples:
            if sample_.name == metric and sample_.labels.get("topic") == settings.topic("signals"):
                return sample_.value
    return 0.0


async def _ids_known(url: str, settings: Settings) -> float:
    """Signal records the tails of this process have passed: read, or sought past as their instance's own."""
    return await _ids_read(url, settings) + await _ids_read(url, settings, "pipeline_ingest_dedup_ids_skipped_total")


async def test_concurrent_copies_of_a_webhook_publish_each_alert_once(settings: Settings) -> None:
    async with _ingest_only(settings) as running:
        answers = await asyncio.gather(*(_post(running.url, WEBHOOK) for _ in range(3)))
    assert sum(a["accepted"] for a in answers) == 3
    assert sum(a["duplicates"] for a in answers) == 6
    ids = await _signal_ids(settings)
    assert len(ids) == 3 and sorted(ids) == sorted(i for a in answers for i in a["signal_ids"])


async def test_a_copy_waits_for_the_publish_in_flight_and_is_counted_a_duplicate(settings: Settings) -> None:
    """Three copies reach ingest before the first publish is acknowledged: one publishes, two wait for it."""
    async with _ingest_only(settings):  # topics applied
        producer = EventProducer(settings)
        await producer.start()
        try:
            ingest = AlertIngest(settings, producer, RecentIds(100))
            webhook = AlertmanagerWebhook.model_validate(WEBHOOK)
            results = await asyncio.gather(*(ingest.accept(webhook) for _ in range(3)))
        finally:
            await producer.stop()
    assert [(r.accepted, r.duplicates) for r in results] == [(3, 0), (0, 3), (0, 3)]
    assert sorted(await _signal_ids(settings)) == sorted(results[0].signal_ids)


async def test_a_copy_whose_publish_in_flight_was_abandoned_publishes_it_itself(settings: Settings) -> None:
    """The request publishing the alerts is cancelled (its client hung up): the copy that waited for it does
    not count them as duplicates but stores them itself, and says so."""
    async with _ingest_only(settings):
        producer = EventProducer(settings)
        await producer.start()
        try:
            ingest = AlertIngest(settings, producer, RecentIds(100))
            webhook = AlertmanagerWebhook.model_validate(WEBHOOK)
            first = asyncio.create_task(ingest.accept(webhook))
            copy_ = asyncio.create_task(ingest.accept(webhook))
            await asyncio.sleep(0)  # both have looked: the first is publishing, the copy waits for it
            first.cancel()
            result = await copy_
        finally:
            await producer.stop()
    assert (result.accepted, result.duplicates) == (3, 0)
    assert set(await _signal_ids(settings)) == set(result.signal_ids)


async def test_a_restarted_ingest_recognises_what_was_published_before(settings: Settings) -> None:
    async with _ingest_only(settings) as running:
        first = await _post(running.url, WEBHOOK)
    async with _ingest_only(settings) as restarted:
        again = await _post(restarted.url, WEBHOOK)
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert (again["accepted"], again["duplicates"], again["signal_ids"]) == (0, 3, [])
    assert len(await _signal_ids(settings)) == 3


async def test_a_copy_sent_to_another_instance_is_recognised_once_its_tail_has_seen_the_signals(
    settings: Settings,
) -> None:
    other = settings.model_copy(update={"port": free_port()})
    async with _ingest_only(settings) as one, _ingest_only(other) as two:
        before = await _ids_known(two.url, settings)
        first = await _post(one.url, WEBHOOK)
        assert first["accepted"] == 3

        async def both_tails_saw_them() -> bool:  # 3 ids, read by the other instance, read or passed by the first
            return await _ids_known(two.url, settings) >= before + 6

        await eventually(both_tails_saw_them)
        copied = await _post(two.url, WEBHOOK)
    assert (copied["accepted"], copied["duplicates"]) == (0, 3)
    assert len(await _signal_ids(settings)) == 3


def _signal_events(payload: dict) -> list[Event]:
    webhook = AlertmanagerWebhook.model_validate(payload)
    now = datetime.now(UTC)
    events = []
    for alert in webhook.alerts:
        signal = to_signal(alert, webhook, now)
        events.append(Event.of(signal, source="alertmanager", id=signal.signal_id, subject=signal.resource_key))
    return events


async def test_signals_stored_behind_ingest_s_back_are_recognised(settings: Settings) -> None:
    """A late delivery: the records of a webhook answered 503 reach the topic afterwards. Alertmanager's
    retry of that webhook is then answered with duplicates, and nothing is published again."""
    async with _ingest_only(settings) as running:
        before = await _ids_read(running.url, settings)
        await publish(settings, "signals", _signal_events(WEBHOOK))
        await eventually(lambda: _at_least(running.url, settings, before + 3))
        retried = await _post(running.url, WEBHOOK)
    assert (retried["accepted"], retried["duplicates"]) == (0, 3)
    assert len(await _signal_ids(settings)) == 3


def _on_one_pod(tag: str) -> dict:
    """`WEBHOOK`'s alerts, all about one pod (so their records share a partition), as new alert instances."""
    payload = copy.deepcopy(WEBHOOK)
    for index, alert in enumerate(payload["alerts"]):
        alert["labels"]["pod"] = "cart-7d9f8b6c5-one"
        alert["fingerprint"] = f"{tag}{index:04x}".rjust(16, "0")
    return payload


async def test_the_tail_passes_its_own_records_unread_and_reads_those_between_them(settings: Settings) -> None:
    """One partition holds this instance's records, then another writer's (a late delivery), then this
    instance's again: the tail seeks past its own runs without reading them back, and still reads the other
    writer's records between them, so a retry of that webhook is answered with duplicates."""
    async with _ingest_only(settings) as running:
        read_before = await _ids_read(running.url, settings)
        skipped_before = await _ids_read(running.url, settings, "pipeline_ingest_dedup_ids_skipped_total")
        assert (await _post(running.url, _on_one_pod("a")))["accepted"] == 3
        late = _on_one_pod("b")
        await publish(settings, "signals", _signal_events(late))
        assert (await _post(running.url, _on_one_pod("c")))["accepted"] == 3

        async def passed_all_nine() -> bool:
            return await _ids_known(running.url, settings) >= read_before + skipped_before + 9

        await eventually(passed_all_nine)
        read = await _ids_read(running.url, settings) - read_before
        skipped = await _ids_read(running.url, settings, "pipeline_ingest_dedup_ids_skipped_total") - skipped_before
        retried = await _post(running.url, late)
    assert (read + skipped, retried["accepted"], retried["duplicates"]) == (9, 0, 3)
    assert read >= 3  # the other writer's records are read; its own may be, when their acks came late
    assert skipped >= 3  # at least one run of its own was passed unread
    assert len(await _signal_ids(settings)) == 9


async def _at_least(url: str, settings: Settings, count: float) -> bool:
    return await _ids_read(url, settings) >= count


async def test_the_tail_outlives_a_broker_outage(settings: Settings, tmp_path: Path) -> None:
    """The broker goes away and comes back: ingest keeps serving, and signals stored after the outage are
    still recognised."""
    broker = LocalKafka(tmp_path / "own-kafka")  # this test's own broker: it is stopped mid-test
    bootstrap = await asyncio.to_thread(broker.start)
    own = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
    try:
        async with _ingest_only(own) as running:
            before = await _ids_read(running.url, own)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(2)  # let the tail's fetches fail for a while
            await asyncio.to_thread(broker.start)
            await publish(own, "signals", _signal_events(WEBHOOK))
            await eventually(lambda: _at_least(running.url, own, before + 3), timeout=60)
            retried = await _post(running.url, WEBHOOK)
        assert (retried["accepted"], retried["duplicates"]) == (0, 3)
        assert len(await _signal_ids(own)) == 3
    finally:
        await asyncio.to_thread(broker.stop)


async def test_the_start_up_read_is_bounded_by_the_memory_size(settings: Settings) -> None:
    """With INGEST_DEDUP_SIZE=2 a restarted ingest reads only the 2 newest of the 3 stored signals: one alert of
    the copy is published again (and correlate drops it by its id)."""
    small = settings.model_copy(update={"ingest_dedup_size": 2})
    async with _ingest_only(small) as running:
        assert (await _post(running.url, WEBHOOK))["accepted"] == 3
    async with _ingest_only(small) as restarted:
        again = await _post(restarted.url, WEBHOOK)
    assert (again["accepted"], again["duplicates"]) == (1, 2)
    assert len(await _signal_ids(settings)) == 4


async def test_the_start_up_read_keeps_to_the_time_window(settings: Settings) -> None:
    """With INGEST_DEDUP_WINDOW_S an alert stored before the window is not recognised after a restart; one
    stored within it is."""
    async with _ingest_only(settings):  # topics applied
        pass
    old, recent = _signal_events(WEBHOOK)[:2]
    producer = kafka.producer(settings)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for event, timestamp_ms in ((old, now_ms - 2 * 3600 * 1000), (recent, now_ms)):
            key, value, headers = event.encode()
            await producer.send_and_wait(settings.topic("signals"), value, key=key, headers=headers,
                                         timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()
    windowed = settings.model_copy(update={"ingest_dedup_window_s": 3600.0})
    async with _ingest_only(windowed) as running:
        answer = await _post(running.url, WEBHOOK)
    assert (answer["accepted"], answer["duplicates"]) == (2, 1)  # the old alert and the third one are published
    assert old.envelope.id in answer["signal_ids"] and recent.envelope.id not in answer["signal_ids"]

"""Bounded rebuilds: a gateway started from the snapshot topics (written by the snapshot stage) and the log after
their watermarks answers as a gateway that folded the whole log, and an open incident whose opening is past the
incidents topic's retention is still served. Real broker, real snapshot stage, real gateways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from pipeline.bench.history import history, incident_id, publish
from pipeline.bench.readmodel import snapshot
from pipeline.bus import kafka
from pipeline.bus.topics import apply
from pipeline.compose.process import Plan, Process
from pipeline.config import Settings
from pipeline.embedded.process import free_port
from pipeline.events import INDEX_HEADER, IncidentSnapshot

INCIDENTS = 3000  # the property is the same at 100,000 (`pipeline bench readmodel`)
CUT = 2400  # the snapshot stage runs once the incidents before it are in the log


async def snapshot_everything(settings: Settings) -> None:
    """Run the snapshot stage until its group has committed every record of its inputs, then stop it."""
    await asyncio.wait_for(snapshot(settings), 120)


@asynccontextmanager
async def gateway(settings: Settings, snapshots: bool) -> AsyncIterator[tuple[Process, httpx.AsyncClient]]:
    own = settings.model_copy(update={"port": free_port(), "gateway_snapshots": snapshots})
    process = Process(own, Plan(stages=[], gateway=True))
    await process.start()
    try:
        async with httpx.AsyncClient(base_url=process.url or "", timeout=30, trust_env=False) as client:
            yield process, client
    finally:
        await process.stop()


def rebuild_of(process: Process) -> dict[str, float]:
    runner = process.projection
    assert runner is not None
    return runner.rebuild


async def answers(client: httpx.AsyncClient, workflows: list[str]) -> dict[str, Any]:
    """What the routes a user reads answer: every page of incidents, every workflow, the coordination views."""
    out: dict[str, Any] = {}
    for offset in range(0, INCIDENTS + 1000, 1000):
        page = await client.get("/api/v1/incidents", params={"status": "all", "severity": "all", "limit": 1000,
                                                             "offset": offset})
        assert page.status_code == 200, page.text
        out[f"incidents@{offset}"] = page.json()
    for status in ("active", "completed"):
        out[f"incidents?{status}"] = (await client.get("/api/v1/incidents", params={"status": status})).json()
    for wid in workflows:
        out[wid] = (await client.get(f"/api/v1/workflows/{wid}")).json()
    out["coordination"] = (await client.get("/api/v1/coordination/workflows")).json()
    out["status"] = steady((await client.get("/api/v1/status")).json())
    return out


def steady(answer: Any) -> Any:
    """An answer without what differs between two processes by nature: the time it was given, their uptimes."""
    if isinstance(answer, dict):
        return {k: steady(v) for k, v in answer.items() if k not in ("timestamp", "uptime", "uptime_seconds")}
    return answer


async def test_a_gateway_started_from_snapshots_answers_as_one_that_folded_the_whole_log(
        settings: Settings) -> None:
    await apply(settings)
    # before the cut: incidents 0..CUT-1, the last 300 only opened so far
    before = await publish(settings, history(0, CUT, open_only=range(CUT - 300, CUT)))
    await snapshot_everything(settings)
    # after the cut: new incidents, the rest of those 300, and earlier events delivered again (at least once)
    after = await publish(settings, history(CUT, INCIDENTS, later_of=range(CUT - 300, CUT), again=range(0, 400, 7)))
    workflows = [f"wf-{i}" for i in range(0, INCIDENTS, 20)]

    async with gateway(settings, snapshots=True) as (snap, a), gateway(settings, snapshots=False) as (full, b):
        from_snapshots, from_log = await answers(a, workflows), await answers(b, workflows)
        rebuilt, folded = rebuild_of(snap), rebuild_of(full)

    assert from_log["incidents@0"]["total"] == INCIDENTS
    assert from_log["incidents?active"]["total"] > 0 and from_log["incidents?completed"]["total"] > 0
    assert all(from_log[wid]["status"] in ("pending", "running") for wid in workflows)
    for route, answer in from_log.items():
        assert from_snapshots[route] == answer, route
    # and it got there from the snapshots: every incident and proposal before the cut, then only the log after it
    assert rebuilt["snapshot_records"] >= CUT and rebuilt["log_records"] <= after
    assert folded["snapshot_records"] == 0 and folded["log_records"] >= before + after


async def test_an_open_incident_past_retention_is_still_served(settings: Settings) -> None:
    await apply(settings)
    await publish(settings, history(0, 40, open_only=range(0, 40)))  # 40 incidents opened, none resolved yet
    await snapshot_everything(settings)
    topic = settings.topic("incidents")
    found = await kafka.partitions(settings, topic)
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in found[topic]]
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = kafka.admin(settings)
    await admin.start()
    try:  # retention: every record of the incidents topic so far is gone
        await admin.delete_records({tp: RecordsToDelete(end[tp]) for tp in tps if end[tp]})
    finally:
        await admin.close()
    await publish(settings, history(0, 0, later_of=range(0, 1)))  # incident 0 gets its second alert and resolves

    async with gateway(settings, snapshots=True) as (_, a), gateway(settings, snapshots=False) as (_, b):
        served = (await a.get("/api/v1/incidents", params={"status": "all", "limit": 1000})).json()
        folded = (await b.get("/api/v1/incidents", params={"status": "all", "limit": 1000})).json()
        first = (await a.get("/api/v1/incidents", params={"status": "completed"})).json()

    status = {i["id"]: i["status"] for i in served["incidents"]}
    assert served["total"] == 40 and status[incident_id(1)] == status[incident_id(39)] == "active"
    assert [(i["id"], i["alerts_total"]) for i in first["incidents"]] == [(incident_id(0), 2)]
    # without the snapshot the opened incidents are gone with their records (what retention does to the log)
    assert folded["total"] == 1


async def test_snapshot_records_from_before_rows_still_load_and_newer_ones_replace_them(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade: the snapshot topic holds incident records written before they carried their row
    (INDEX_HEADER), which a gateway decodes at start, then newer records of some of the same incidents with it,
    which it keeps undecoded; it answers as a gateway that folded the whole log."""
    await apply(settings)
    with monkeypatch.context() as older:
        older.setattr(IncidentSnapshot, "index_headers", lambda self: [])
        await publish(settings, history(0, 300, open_only=range(200, 300)))
        await snapshot_everything(settings)
    assert await index_headers(settings) == {False}
    await publish(settings, history(300, 400, later_of=range(200, 300)))  # 200..299 resolve: records with rows
    await snapshot_everything(settings)
    assert await index_headers(settings) == {False, True}
    await publish(settings, history(400, 450, again=range(250, 300)))  # the log after the watermarks
    workflows = [f"wf-{i}" for i in range(0, 450, 20)]

    async with gateway(settings, snapshots=True) as (snap, a), gateway(settings, snapshots=False) as (_, b):
        from_snapshots, from_log = await answers(a, workflows), await answers(b, workflows)
        rebuilt = rebuild_of(snap)

    assert from_log["incidents@0"]["total"] == 450 and rebuilt["snapshot_records"] >= 400
    for route, answer in from_log.items():
        assert from_snapshots[route] == answer, route


async def index_headers(settings: Settings) -> set[bool]:
    """Whether the incident records on the snapshot topic carry their row: the set of answers."""
    topic = settings.topic("incidents.snapshot")
    found = await kafka.partitions(settings, topic)
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in found[topic]]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        seen: set[bool] = set()
        pending = [tp for tp in tps if end[tp]]
        while pending:
            for records in (await consumer.getmany(*pending, timeout_ms=500)).values():
                seen.update(any(k == INDEX_HEADER for k, _ in r.headers) for r in records
                            if (r.key or b"").startswith(b"inc-"))
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        return seen
    finally:
        await consumer.stop()

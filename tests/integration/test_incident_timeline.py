"""An incident's timeline after a full run through the real stages (alert → incident → features from a real
Prometheus → score from the reference ML service → proposal → decision → workflow): the REST timeline and
`pipeline replay --incident` (the real CLI, in its own process) list every stage's event in causal order and agree;
a time-window replay holds exactly the window's records; an offset replay exactly its range; replaying leaves every
consumer group's offsets as they were. Also `GET /api/v1/incidents/{id}` and `GET /api/v1/decisions`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from pipeline.bus import kafka
from pipeline.bus.timeline import TIMELINE_TOPICS
from pipeline.config import Settings
from pipeline.embedded.history import CRASHY_NAMESPACE, CRASHY_POD, LEAKY_NAMESPACE, LEAKY_POD, History
from pipeline.embedded.prometheus import PrometheusServer
from pipeline.events import FINISHED, iso_z
from pipeline.stages import stage_classes
from tests.support import EVERYTHING, PipelineUnderTest, eventually, incidents, read_topic, settings_for

STAGE_TYPES = {"pipeline.signal.observed.v1", "pipeline.incident.opened.v1", "pipeline.features.computed.v1",
               "pipeline.score.computed.v1", "pipeline.remediation.proposed.v1", "pipeline.remediation.decided.v1",
               "pipeline.workflow.changed.v1"}


def webhook(alertname: str, namespace: str, pod: str, starts_at: datetime, fingerprint: str) -> dict[str, Any]:
    labels = {"alertname": alertname, "namespace": namespace, "pod": pod, "severity": "warning"}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": f"{alertname} on {pod}"},
             "startsAt": iso_z(starts_at), "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
             "fingerprint": fingerprint}
    return {"receiver": "pipeline", "status": "firing", "alerts": [alert], "groupLabels": {"alertname": alertname},
            "commonLabels": labels, "commonAnnotations": {}, "externalURL": "http://127.0.0.1:19093", "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0}


@dataclass
class Run:
    settings: Settings
    http: httpx.AsyncClient
    leaky: str  # the incident under study
    crashy: str  # another incident at the same time: none of its events may show in the first one's timeline


async def group_offsets(settings: Settings) -> dict[str, dict[TopicPartition, int]]:
    """Every consumer group of this run and its committed offsets."""
    admin = kafka.admin(settings)
    await admin.start()
    try:
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if g[0].startswith(settings.topic_prefix))
        return {g: {tp: om.offset for tp, om in (await admin.list_consumer_group_offsets(g)).items()} for g in groups}
    finally:
        await admin.close()


async def caught_up(settings: Settings) -> bool:
    """Every stage group has committed the end of every partition of its inputs."""
    committed = await group_offsets(settings)
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        for name, stage in stage_classes().items():
            topics = [settings.topic(t) for t in stage.inputs]
            found = await kafka.partitions(settings, *topics)
            tps = [TopicPartition(t, p) for t in topics for p in found[t]]
            ends = await consumer.end_offsets(tps)
            done = committed.get(f"{settings.topic_prefix}{name}", {})
            if any(end > done.get(tp, 0) for tp, end in ends.items()):
                return False
        return True
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, prom: PrometheusServer, history: History,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    if not prom.running:
        await asyncio.to_thread(prom.start)
    settings = settings_for(kafka_bootstrap, Path(tmp_path_factory.mktemp("timeline")) / "data",
                             prometheus_url=prom.url)
    async with PipelineUnderTest(settings, EVERYTHING) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=30.0, trust_env=False) as http:
            starts_at = datetime.fromtimestamp(history.end - 30, UTC)
            for body in (webhook("ContainerMemoryHigh", LEAKY_NAMESPACE, LEAKY_POD, starts_at, "1eacc0ffee000001"),
                         webhook("KubePodCrashLooping", CRASHY_NAMESPACE, CRASHY_POD, starts_at, "c4a5c0ffee000002")):
                assert (await http.post("/api/v1/alerts", json=body)).status_code == 200

            async def settled() -> dict[str, str] | None:
                listed = (await incidents(http))["incidents"]
                actions = (await http.get("/api/v1/cluster/status")).json()["actions"]
                if len(listed) != 2 or actions["total"] < 2 or actions["pending"] or actions["running"]:
                    return None
                return {i["namespace"]: i["id"] for i in listed} if await caught_up(settings) else None

            ids = await eventually(settled, timeout=90, what="every stage done with both incidents")
            yield Run(settings, http, ids[LEAKY_NAMESPACE], ids[CRASHY_NAMESPACE])


def replay(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline replay ...` in its own process, configured from the environment as on a live cluster."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": run.settings.kafka_bootstrap_servers,
           "TOPIC_PREFIX": run.settings.topic_prefix}
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def replay_json(run: Run, *args: str) -> list[dict[str, Any]]:
    done = await asyncio.to_thread(replay, run, *args, "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def timeline(run: Run, incident_id: str) -> dict[str, Any]:
    response = await run.http.get(f"/api/v1/incidents/{incident_id}/timeline")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def where(item: dict[str, Any]) -> tuple[str, int, int]:
    p = item["position"]
    return p["topic"], p["partition"], p["offset"]


async def test_the_rest_timeline_and_replay_list_every_stage_in_causal_order_and_agree(run: Run) -> None:
    before = await group_offsets(run.settings)
    body = await timeline(run, run.leaky)
    events = body["events"]
    assert body["count"] == len(events)
    assert await replay_json(run, "--incident", run.leaky) == events  # same events, same order, same fields

    types = [e["event"]["type"] for e in events]
    assert STAGE_TYPES <= set(types), types
    prefix = run.settings.topic_prefix
    assert {where(e)[0].removeprefix(prefix) for e in events} >= {
        "signals", "incidents", "features", "scores", "remediation", "decisions", "workflows"}
    # causal order: every event after its cause (when its cause is in the timeline), and only ours
    place = {e["event"]["id"]: i for i, e in reversed(list(enumerate(events)))}
    for i, e in enumerate(events):
        cause = e["event"].get("causationid")
        assert cause is None or cause not in place or place[cause] < i, (e, cause)
        assert e["event"].get("incidentid") in (None, run.leaky)
    # the flow's order: the signal first, the incident before its features, features before the score
    first = {t: types.index(t) for t in STAGE_TYPES}
    assert first["pipeline.signal.observed.v1"] == 0
    assert first["pipeline.incident.opened.v1"] < first["pipeline.features.computed.v1"] \
        < first["pipeline.score.computed.v1"]
    assert first["pipeline.remediation.proposed.v1"] < first["pipeline.remediation.decided.v1"] \
        < first["pipeline.workflow.changed.v1"]
    # the signal is the leaky pod's, the score is the model's (complete features from Prometheus)
    assert events[0]["event"]["data"]["resource"]["name"] == LEAKY_POD
    score = next(e["event"]["data"] for e in events if e["event"]["type"] == "pipeline.score.computed.v1")
    assert score["verdict"] in ("anomaly", "normal") and score["model"], score
    workflows = [e["event"]["data"]["workflow"] for e in events if e["event"]["type"] == "pipeline.workflow.changed.v1"]
    assert any(w["status"] in FINISHED for w in workflows)
    # the other incident's events are in its own timeline, none in this one
    other = (await timeline(run, run.crashy))["events"]
    assert other and not {where(e) for e in other} & {where(e) for e in events}
    assert other[0]["event"]["data"]["resource"]["name"] == CRASHY_POD
    assert await group_offsets(run.settings) == before  # reading moved no group, and joined none


async def test_a_time_window_replay_holds_exactly_the_windows_records(run: Run) -> None:
    events = (await timeline(run, run.leaky))["events"]
    stamps = sorted({e["position"]["timestamp"] for e in events})
    start, end = stamps[1], stamps[-2]
    before = await group_offsets(run.settings)
    got = await replay_json(run, "--from", start, "--to", end)
    # What the window is, worked out here from every record: in each partition of every timeline topic, the
    # offsets from the first record stamped at or after `start` to the first stamped at or after `end`.
    lo, hi = (int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000) for t in (start, end))
    expected: set[tuple[str, int, int]] = set()
    total = 0
    for name in TIMELINE_TOPICS:
        by_partition: dict[int, list[Any]] = {}
        every = await read_topic(run.settings, name)
        total += len(every)
        for r in every:
            by_partition.setdefault(r.partition, []).append(r)
        for records in by_partition.values():
            records.sort(key=lambda r: r.offset)
            first = next((r.offset for r in records if r.timestamp >= lo), None)
            stop = next((r.offset for r in records if r.timestamp >= hi), records[-1].offset + 1)
            expected |= {(r.topic, r.partition, r.offset) for r in records
                         if first is not None and first <= r.offset < stop}
    assert len(got) == len({where(e) for e in got})  # no record twice
    assert {where(e) for e in got} == expected
    assert 3 <= len(expected) < total  # a part of the log, not all of it
    # in causal order: every event after its cause
    ids = [e["event"]["id"] for e in got if "event" in e]
    for i, e in enumerate(got):
        cause = e.get("event", {}).get("causationid")
        assert cause is None or cause not in ids or ids.index(cause) < i
    assert await group_offsets(run.settings) == before


async def test_an_offset_replay_holds_exactly_its_range_in_log_order(run: Run) -> None:
    records = await read_topic(run.settings, "workflows")  # each workflow's transitions share a partition
    partition = max({r.partition for r in records}, key=lambda p: sum(r.partition == p for r in records))
    offsets = sorted(r.offset for r in records if r.partition == partition)
    assert len(offsets) >= 2
    got = await replay_json(run, "--topic", "workflows", "--partition", str(partition),
                            "--from-offset", str(offsets[0]), "--to-offset", str(offsets[-1]))
    assert [where(e) for e in got] == [(run.settings.topic("workflows"), partition, o) for o in offsets[:-1]]
    everything = await replay_json(run, "--topic", "workflows")
    assert sorted(where(e) for e in everything) == sorted((r.topic, r.partition, r.offset) for r in records)


async def test_the_terminal_timeline_is_readable_and_coloured_only_when_asked(run: Run) -> None:
    events = (await timeline(run, run.leaky))["events"]
    plain = await asyncio.to_thread(replay, run, "--incident", run.leaky)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert len(lines) == len(events) and "\x1b[" not in plain.stdout  # piped: no colour
    prefix = run.settings.topic_prefix
    for line, e in zip(lines, events, strict=True):
        topic, partition, offset = where(e)
        assert f"{topic.removeprefix(prefix)}[{partition}]@{offset}" in line
        assert e["event"]["type"].removeprefix("pipeline.").removesuffix(".v1") in line
    assert f"{LEAKY_POD}" in lines[0] and "firing" in lines[0]
    coloured = await asyncio.to_thread(replay, run, "--incident", run.leaky, "--color")
    assert coloured.returncode == 0 and "\x1b[" in coloured.stdout
    assert f"{len(events)} record(s)" in plain.stderr


async def test_unknown_incidents_and_bad_requests_are_named(run: Run) -> None:
    for path in ("/api/v1/incidents/inc-nope", "/api/v1/incidents/inc-nope/timeline"):
        response = await run.http.get(path)
        assert response.status_code == 404 and response.json()["field"] == "id", response.text
    missing = await asyncio.to_thread(replay, run, "--incident", "inc-nope")
    assert missing.returncode == 1 and "inc-nope not found" in missing.stderr
    for args, said in ((["--from", "yesterday"], "RFC 3339"), ([], "--incident"),
                       (["--from-offset", "3"], "need --topic"), (["--from", "1h", "--topics", "nope"], "nope")):
        bad = await asyncio.to_thread(replay, run, *args)
        assert bad.returncode == 2 and said in bad.stderr, (args, bad.stderr)


async def test_one_incident_in_the_lists_shape(run: Run) -> None:
    listed = {i["id"]: i for i in (await incidents(run.http))["incidents"]}
    for incident_id in (run.leaky, run.crashy):
        response = await run.http.get(f"/api/v1/incidents/{incident_id}")
        assert response.status_code == 200 and response.json() == listed[incident_id]


async def test_decisions_filtered_by_namespace_outcome_and_time(run: Run) -> None:
    events = (await timeline(run, run.leaky))["events"]
    made = [e["event"]["data"]["decision"] for e in events if e["event"]["type"] == "pipeline.remediation.decided.v1"]
    shop = (await run.http.get("/api/v1/decisions", params={"namespace": LEAKY_NAMESPACE})).json()
    assert shop["total"] == len(made) and {d["proposal_id"] for d in shop["decisions"]} == {
        d["proposal"]["id"] for d in made}
    assert all(d["namespace"] == LEAKY_NAMESPACE and d["incident_id"] == run.leaky for d in shop["decisions"])
    every = (await run.http.get("/api/v1/decisions")).json()
    assert every["total"] > shop["total"]  # the crashy incident's decisions too
    outcome = made[0]["outcome"]
    same = (await run.http.get("/api/v1/decisions", params={"outcome": outcome})).json()
    assert same["total"] >= 1 and all(d["outcome"] == outcome for d in same["decisions"])
    later = (await run.http.get("/api/v1/decisions", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert later["total"] == 0 and later["decisions"] == []
    for params, field in (({"since": "yesterday"}, "since"), ({"outcome": "maybe"}, "outcome"),
                          ({"limit": "0"}, "limit")):
        response = await run.http.get("/api/v1/decisions", params=params)
        assert response.status_code == 400 and response.json()["field"] == field, response.text

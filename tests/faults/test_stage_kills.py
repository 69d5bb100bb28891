"""The stateful stages die mid-stream: `pipeline stage correlate` and `pipeline stage arbitrate`, each a process
of its own beside `pipeline stage ingest` and `pipeline gateway` (the split layout), are SIGKILLed while records
flow and started again.

What a user sees afterwards: every alert acknowledged by ingest is an incident, no resource has two incidents, no
incident was opened twice, every resolve reached its incident; every proposal got a decision and none was decided
twice (the decisions topic holds one decision per proposal, whatever was redelivered).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from pipeline.config import Settings
from pipeline.events import Event, Proposal, RemediationProposed
from tests.faults.helpers import (
    Load,
    PipelineProcess,
    Processes,
    alert,
    all_incidents,
    apply_topics,
    burst,
    ce,
    duplicates,
    eventually,
    figures,
    opened_incidents,
    webhook,
)
from tests.support import publish, read_topic

pytestmark = pytest.mark.timeout(300)

NS = "kills"


def _proposed(n: int) -> Event:
    namespace = f"team-{n % 20}"
    proposal = Proposal(id=f"p-{n}", target=f"{namespace}/Pod/web-{n}", namespace=namespace, action="restart_pod",
                        source="deterministic", priority=50, confidence=1.0, incident_id=f"inc-{n}", risk="low")
    return Event.of(RemediationProposed(namespace=namespace, proposal=proposal), source="faults",
                    subject=proposal.target)


async def _decisions(settings: Settings) -> tuple[int, dict[str, set[str]], dict[str, set[str]]]:
    """Decision records on the topic, the decision event ids per proposal id and the outcomes per proposal id."""
    records = await read_topic(settings, "decisions")
    events: dict[str, set[str]] = defaultdict(set)
    outcomes: dict[str, set[str]] = defaultdict(set)
    for record in records:
        decision = json.loads(record.value)["decision"]
        events[decision["proposal"]["id"]].add(ce(record, "ce_id"))
        outcomes[decision["proposal"]["id"]].add(decision["outcome"])
    return len(records), events, outcomes


async def _kill_and_restart(proc: PipelineProcess, kills: list[float], t0: float) -> None:
    await asyncio.to_thread(proc.kill)
    kills.append(round(time.monotonic() - t0, 2))
    proc.start()  # at once, as a Deployment would: it gets the partitions once the dead member's session ends
    await proc.wait_ready("/metrics")


async def test_correlate_and_arbitrate_killed_mid_stream_lose_nothing_and_duplicate_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    await apply_topics(settings)
    firing, proposals = 1500, 600
    bodies = burst(NS, firing, per_request=2)
    resolving = [webhook(*(alert(NS, f"pod-{i + j}", status="resolved") for j in range(2)))
                 for i in range(0, firing // 2, 2)]  # the first half of the pods recover
    async with Processes(settings, tmp_path / "logs", REMEDIATION_COOLDOWN_S=0) as procs:
        ingest = procs.add("ingest", ["stage", "ingest"])
        correlate = procs.add("correlate", ["stage", "correlate"])
        arbitrate = procs.add("arbitrate", ["stage", "arbitrate"])
        gateway = procs.add("gateway", ["gateway"])
        await asyncio.gather(ingest.wait_ready(), correlate.wait_ready("/metrics"), arbitrate.wait_ready("/metrics"),
                             gateway.wait_ready("/api/v1/health"))
        t0 = time.monotonic()
        correlate_kills: list[float] = []
        arbitrate_kills: list[float] = []

        async def propose() -> None:
            for start in range(0, proposals, 50):  # the propose stage's output, as it would arrive
                await publish(settings, "remediation", [_proposed(n) for n in range(start, start + 50)])
                await asyncio.sleep(0.3)

        async def decided_at_least(count: int) -> bool:
            return len((await _decisions(settings))[1]) >= count

        async def kill_arbitrate_mid_stream() -> None:
            await eventually(lambda: decided_at_least(proposals // 4), "arbitrate deciding", on_fail=procs.tails)
            await _kill_and_restart(arbitrate, arbitrate_kills, t0)

        async def fire_then_resolve() -> list:
            load = Load(ingest.url, bodies, clients=8, t0=t0)
            sending = asyncio.create_task(load.run())
            await eventually(lambda: _acknowledged(load, len(bodies) // 3), "a third of the alerts acknowledged")
            await _kill_and_restart(correlate, correlate_kills, t0)
            answers = await sending
            resolves = Load(ingest.url, resolving, clients=8, t0=t0)
            sending = asyncio.create_task(resolves.run())
            await eventually(lambda: _acknowledged(resolves, len(resolving) // 3), "a third of the resolves")
            await _kill_and_restart(correlate, correlate_kills, t0)
            return answers + await sending

        answers, *_ = await asyncio.gather(fire_then_resolve(), propose(), kill_arbitrate_mid_stream())
        assert Counter(a.status for a in answers) == {200: len(bodies) + len(resolving)}, Counter(
            (a.status, str(a.body)[:200]) for a in answers)

        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:

            async def settled() -> list[dict] | None:
                found = await all_incidents(http, NS)
                done = sum(1 for i in found if i["status"] == "completed")
                return found if len(found) >= firing and done >= firing // 2 else None

            found = await eventually(settled, f"{firing} incidents, {firing // 2} of them completed", timeout=120,
                                     on_fail=procs.tails)

        async def all_decided() -> tuple | None:
            got = await _decisions(settings)
            return got if len(got[1]) >= proposals else None

        records, events, outcomes = await eventually(all_decided, f"{proposals} proposals decided", timeout=120,
                                                     on_fail=procs.tails)
        await asyncio.sleep(2.0)  # anything decided a second time has time to show up
        records, events, outcomes = await _decisions(settings)
        assert ingest.alive and gateway.alive and ingest.starts == gateway.starts == 1
        assert correlate.starts == 3 and arbitrate.starts == 2

    resources = Counter(i["resource"] for i in found)
    assert set(resources) == {f"Pod/pod-{n}" for n in range(firing)}  # no incident lost
    assert duplicates(resources) == {}  # no resource with two incidents
    statuses = {i["resource"]: i["status"] for i in found}
    wrong = {r: s for r, s in statuses.items() if s != ("completed" if int(r.split("-")[-1]) < firing // 2
                                                         else "active")}
    assert wrong == {}
    opened = await opened_incidents(settings, NS)
    assert len(opened.events) == firing and opened.opened_twice == {}  # no incident opened twice
    assert set(events) == {f"p-{n}" for n in range(proposals)}  # no proposal lost
    assert {p: ids for p, ids in events.items() if len(ids) > 1} == {}  # none decided twice
    assert {p: o for p, o in outcomes.items() if len(o) > 1} == {}  # ... nor differently
    figures("stage-kill", {
        "firing_alerts": firing, "resolved_alerts": firing // 2, "webhooks_200": len(answers),
        "correlate_sigkills_at_s": correlate_kills, "arbitrate_sigkills_at_s": arbitrate_kills,
        "incidents": len(found), "lost_incidents": 0, "resources_with_2_incidents": 0,
        "statuses": dict(Counter(statuses.values())), "wrong_status": 0,
        "incident_opened_records": opened.records, "incidents_opened_twice": 0,
        "opened_records_redelivered_same_id": opened.redelivered,
        "proposals": proposals, "decision_records": records, "proposals_decided": len(events),
        "proposals_decided_twice": 0, "decision_records_redelivered_same_id": records - len(events),
        "outcomes": dict(Counter(next(iter(o)) for o in outcomes.values())),
    })


async def _acknowledged(load: Load, count: int) -> bool:
    return load.ok >= count

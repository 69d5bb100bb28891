"""The arbitrate stage on a real broker: conflicting proposals for one target from concurrent producers give
exactly one approved action; a stage killed mid-stream (SIGKILL) and restarted never approves twice; the
kill switch and the approval policy hold; a resolved incident releases its target."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.bus.stage import StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.events import ActionReleased, Event, Proposal, RemediationProposed
from pipeline.stages.arbitrate import ArbitrateStage
from tests.support import eventually, publish, read_topic

ROOT = Path(__file__).resolve().parents[2]


def proposal(pid: str, target: str, action: str = "restart_pod", source: str = "deterministic", priority: int = 50,
             confidence: float = 1.0, risk: str = "low", **kw: Any) -> Proposal:
    return Proposal.model_validate({
        "id": pid, "target": target, "namespace": target.split("/")[0], "action": action, "source": source,
        "priority": priority, "confidence": confidence, "incident_id": kw.pop("incident_id", f"inc-{pid}"),
        "risk": risk, **kw,
    })


def proposed(p: Proposal) -> Event:
    return Event.of(RemediationProposed(namespace=p.namespace, proposal=p), source="test", subject=p.target)


async def decisions(settings: Settings, at_least: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Every decision event on the topic once there are `at_least`, deduplicated by event id."""

    async def enough() -> list[dict[str, Any]] | None:
        records = await read_topic(settings, "decisions")
        unique = {dict(r.headers)["ce_id"]: json.loads(r.value) for r in records}
        return list(unique.values()) if len(unique) >= at_least else None

    return await eventually(enough, timeout=timeout)


def policy(**overrides: Any) -> dict[str, Any]:
    """A permissive policy: only what a test turns on applies."""
    return {"remediation_approval": [], "remediation_cooldown_s": 0.0, "remediation_namespace_budget": 100,
            "remediation_protected_namespaces": [], **overrides}


async def test_concurrent_conflicting_proposals_for_one_target_yield_one_approved_action(settings: Settings) -> None:
    s = settings.model_copy(update=policy(stage_batch_size=4))
    await apply(s)
    runtimes = [StageRuntime(s, ArbitrateStage(s)) for _ in range(2)]  # two instances in one group
    for runtime in runtimes:
        await runtime.start()
    try:
        target = "shop/Deployment/web"
        actions = ["restart_deployment", "rollback_deployment", "scale_resources", "scale_replicas"]
        sources = ["deterministic", "ai", "manual"]
        batches = [
            [proposed(proposal(f"p{w}-{i}", target, actions[(w + i) % 4], sources[(w * i) % 3], priority=10 + w * 7 + i,
                               confidence=0.9)) for i in range(5)]
            for w in range(6)
        ]
        await asyncio.gather(*(publish(s, "remediation", batch) for batch in batches))  # six producers at once
        got = await decisions(s, 30)
    finally:
        for runtime in runtimes:
            await runtime.stop()
    by_proposal = Counter(d["decision"]["proposal"]["id"] for d in got)
    assert len(by_proposal) == 30 and set(by_proposal.values()) == {1}  # each proposal decided once
    approved = [d for d in got if d["decision"]["outcome"] == "approved"]
    assert len(approved) == 1, [(d["decision"]["proposal"]["id"], d["decision"]["outcome"]) for d in got]
    winner = approved[0]["decision"]["proposal"]["id"]
    for d in got:
        if d["decision"]["proposal"]["id"] == winner:
            continue
        codes = {r["code"] for r in d["decision"]["reasons"]}
        assert d["decision"]["outcome"] in ("rejected", "superseded")
        # Every loser says why: it lost a conflict to a named proposal, or the target was already busy.
        assert codes & {"lost_conflict", "duplicate", "target_busy"}, d
        blocking = [r for r in d["decision"]["reasons"] if r["code"] in ("lost_conflict", "duplicate", "target_busy")]
        assert all(r.get("other") for r in blocking)


def _stage_process(settings: Settings, **env: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "STAGE_BATCH_SIZE": "7",
        "STAGE_BATCH_TIMEOUT_MS": "20",
        "REMEDIATION_APPROVAL": "[]",
        "REMEDIATION_PROTECTED_NAMESPACES": "",
        "REMEDIATION_NAMESPACE_BUDGET": "1000",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        "PORT": "0",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "stage", "arbitrate"], cwd=ROOT, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def test_a_stage_killed_mid_stream_never_approves_twice(settings: Settings) -> None:
    await apply(settings)
    targets = [f"ns{n % 5}/Pod/web-{n}" for n in range(60)]
    first = [proposed(proposal(f"a{n}", t, incident_id=f"inc-{n}")) for n, t in enumerate(targets)]
    first += [proposed(proposal(f"b{n}", t, "scale_resources", priority=60, incident_id=f"inc-{n}"))
              for n, t in enumerate(targets)]
    stage = _stage_process(settings)
    try:
        await publish(settings, "remediation", first[:60])
        await decisions(settings, 10)  # it is deciding ...
        stage.send_signal(signal.SIGKILL)  # ... and dies without warning, mid-stream
        stage.wait(timeout=10)
        await publish(settings, "remediation", first[60:])
        # Replays of the same proposals (new event ids) and new proposals for the same busy targets.
        again = [proposed(proposal(f"a{n}", t, incident_id=f"inc-{n}")) for n, t in enumerate(targets)]
        later = [proposed(proposal(f"c{n}", t, "restart_pod", source="manual", priority=99)) for n, t in
                 enumerate(targets)]
        stage = _stage_process(settings)
        await publish(settings, "remediation", again + later)
        got = await decisions(settings, 180, timeout=90)
        await asyncio.sleep(1.0)  # anything more it would wrongly decide has time to show up
        got = await decisions(settings, 180)
    finally:
        stage.send_signal(signal.SIGTERM)
        _, err = stage.communicate(timeout=20)
    approved: dict[str, list[str]] = defaultdict(list)
    outcomes: dict[str, set[str]] = defaultdict(set)
    for d in got:
        p = d["decision"]["proposal"]
        outcomes[p["id"]].add(d["decision"]["outcome"])
        if d["decision"]["outcome"] == "approved":
            approved[p["target"]].append(p["id"])
    assert all(len(ids) == 1 for ids in approved.values()), {t: ids for t, ids in approved.items() if len(ids) > 1}
    assert set(approved) == set(targets)
    assert all(len(o) == 1 for o in outcomes.values())  # a redelivered proposal is never decided differently
    assert {p for p in outcomes if p.startswith("c")} == {f"c{n}" for n in range(60)}
    assert all(outcomes[f"c{n}"] == {"rejected"} for n in range(60))  # target busy, however manual
    assert b"Traceback" not in err


async def test_kill_switch_rejects_everything(settings: Settings) -> None:
    s = settings.model_copy(update=policy(remediation_kill_switch=True))
    await apply(s)
    runtime = StageRuntime(s, ArbitrateStage(s))
    await runtime.start()
    try:
        await publish(s, "remediation", [proposed(proposal(f"k{n}", f"shop/Pod/web-{n}", source=src))
                          for n, src in enumerate(["deterministic", "ai", "manual"])])
        got = await decisions(s, 3)
    finally:
        await runtime.stop()
    assert {d["decision"]["outcome"] for d in got} == {"rejected"}
    assert all(any(r["code"] == "kill_switch" for r in d["decision"]["reasons"]) for d in got)


async def test_approval_policy_and_confidence_threshold_hold(settings: Settings) -> None:
    s = settings.model_copy(update=policy(remediation_approval=[
        {"name": "high-risk", "risks": ["high"]},
        {"name": "ai-below-0.8", "sources": ["ai"], "below_confidence": 0.8},
        {"name": "critical", "severities": ["critical"]},
    ]))
    await apply(s)
    runtime = StageRuntime(s, ArbitrateStage(s))
    await runtime.start()
    try:
        await publish(s, "remediation", [
            proposed(proposal("risky", "shop/Deployment/a", "rollback_deployment", risk="high")),
            proposed(proposal("unsure", "shop/Pod/b", source="ai", confidence=0.75)),
            proposed(proposal("weak", "shop/Pod/c", source="ai", confidence=0.6)),
            proposed(proposal("critical", "shop/Pod/d", severity="critical")),
            proposed(proposal("fine", "shop/Pod/e", source="ai", confidence=0.95)),
        ])
        got = {d["decision"]["proposal"]["id"]: d["decision"] for d in await decisions(s, 5)}
    finally:
        await runtime.stop()
    assert {pid: d["outcome"] for pid, d in got.items()} == {
        "risky": "awaiting_approval", "unsure": "awaiting_approval", "weak": "rejected",
        "critical": "awaiting_approval", "fine": "approved",
    }
    rules = {pid: [r.get("rule") for r in d["reasons"] if r["code"] == "approval_required"] for pid, d in got.items()}
    assert rules["risky"] == ["high-risk"] and rules["unsure"] == ["ai-below-0.8"] and rules["critical"] == ["critical"]
    weak = next(r for r in got["weak"]["reasons"] if r["code"] == "below_confidence_threshold")
    assert weak["values"] == {"confidence": 0.6, "threshold": 0.7}


async def test_a_released_action_frees_its_target_after_the_cooldown(settings: Settings) -> None:
    s = settings.model_copy(update=policy(remediation_cooldown_s=3600.0))
    await apply(s)
    runtime = StageRuntime(s, ArbitrateStage(s))
    await runtime.start()
    try:
        await publish(s, "remediation", [proposed(proposal("first", "shop/Pod/web", incident_id="inc-1"))])
        await decisions(s, 1)
        await publish(s, "remediation", [Event.of(ActionReleased(namespace="shop", target="shop/Pod/web", incident_id="inc-1",
                                                  reason="incident_resolved", released_at=datetime.now(UTC)),
                                   source="test")])
        await publish(s, "remediation", [proposed(proposal("second", "shop/Pod/web", incident_id="inc-2"))])
        got = {d["decision"]["proposal"]["id"]: d["decision"] for d in await decisions(s, 2)}
    finally:
        await runtime.stop()
    assert got["first"]["outcome"] == "approved"
    second = got["second"]
    assert second["outcome"] == "rejected"
    assert [r["code"] for r in second["reasons"] if r["code"] in ("target_busy", "cooldown")] == ["cooldown"]


async def test_a_rebalance_during_a_batch_never_restores_older_state(settings: Settings) -> None:
    """A second instance joins while the first is in the middle of the batch that releases a target: the
    rebalance's restore must see that batch's state, not the changelog as it was before it."""
    s = settings.model_copy(update=policy(remediation_cooldown_s=3600.0))
    await apply(s)
    first = StageRuntime(s, ArbitrateStage(s))
    original = first.stage.prepare
    in_batch = asyncio.Event()

    async def slow_prepare(events: list[Event]) -> None:
        if any(isinstance(e.payload, ActionReleased) for e in events):
            in_batch.set()
            await asyncio.sleep(1.0)  # the other instance joins meanwhile: a rebalance starts
        await original(events)

    read = first.reader.read

    async def slow_read(topic: str, partitions: Any) -> Any:
        records = await read(topic, partitions)  # the changelog as it is now ...
        await asyncio.sleep(3.0)  # ... applied a little later, as on a busy machine
        return records

    first.stage.prepare = slow_prepare  # type: ignore[method-assign]
    first.reader.read = slow_read  # type: ignore[method-assign]
    await first.start()
    second = StageRuntime(s, ArbitrateStage(s))
    try:
        await publish(s, "remediation", [proposed(proposal("first", "shop/Pod/web", incident_id="inc-1"))])
        await decisions(s, 1)
        await publish(s, "remediation", [Event.of(ActionReleased(namespace="shop", target="shop/Pod/web",
                                                                 incident_id="inc-1", reason="completed",
                                                                 released_at=datetime.now(UTC)), source="test")])
        await asyncio.wait_for(in_batch.wait(), 30)
        await second.start()
        await asyncio.wait_for(second.assigned.wait(), 60)
        await publish(s, "remediation", [proposed(proposal("second", "shop/Pod/web", incident_id="inc-2"))])
        got = {d["decision"]["proposal"]["id"]: d["decision"] for d in await decisions(s, 2)}
    finally:
        await second.stop()
        await first.stop()
    codes = [r["code"] for r in got["second"]["reasons"] if r["code"] in ("target_busy", "cooldown")]
    assert (got["second"]["outcome"], codes) == ("rejected", ["cooldown"])  # released, then cooling down

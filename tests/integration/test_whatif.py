"""`pipeline replay --what-if` on a real broker: the propose and arbitrate stages decide real incidents and
scores (a mix of AI confidences, an action running since before the window, a release and its cooldown);
the what-if with a stricter threshold lists exactly the decisions whose confidence falls between the two
thresholds (approved -> rejected, with the reason), the same rules list nothing (the re-run is faithful,
state at the window start included), and nothing is produced or committed: every topic's end offsets and
every consumer group's offsets are as they were."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from pipeline.adapters.rules import load_rules
from pipeline.bus import kafka
from pipeline.bus.stage import StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.events import (
    Event,
    Incident,
    IncidentOpened,
    IncidentResolved,
    RecommendedAction,
    ScoreComputed,
    iso_z,
)
from pipeline.stages.arbitrate import ArbitrateStage
from pipeline.stages.propose import ProposeStage
from tests.integration.test_arbitrate_stage import decisions, policy
from tests.support import eventually, publish, read_topic

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules" / "remediation.yaml"
CONFIDENCES = {"web-1": 0.65, "web-2": 0.72, "web-3": 0.78, "web-4": 0.85, "web-5": 0.95}


def incident(n: str, resource: str, status: str = "active") -> Incident:
    now = datetime.now(UTC).isoformat()
    return Incident.model_validate({"id": f"inc-{n}", "title": "CrashLoopBackOff", "severity": "medium",
                                    "source": "kubernetes", "namespace": "shop", "resource": resource,
                                    "issue_type": "CrashLoopBackOff", "status": status, "created_at": now,
                                    "updated_at": now})


def scored(n: str, target: str, confidence: float) -> Event:
    namespace = target.split("/")[0]
    return Event.of(ScoreComputed(
        incident_id=f"inc-{n}", verdict="anomaly", model="iforest", score=0.9, confidence=confidence,
        features_event_id=f"f-{n}", target=target, namespace=namespace,
        recommended_actions=[RecommendedAction(action="scale_resources", confidence=confidence, reason="anomalous")],
    ), source="test")


async def _record_decisions(s: Settings) -> tuple[datetime, datetime]:
    """Decisions made by the real stages; the window starts after the first one (an action that keeps running)."""
    rules = load_rules(RULES)
    runtimes = [StageRuntime(s, ProposeStage(s, rules)), StageRuntime(s, ArbitrateStage(s))]
    for runtime in runtimes:
        await runtime.start()
    try:
        await publish(s, "incidents", [Event.of(IncidentOpened(incident=incident("held", "Pod/held")), source="t")])
        await decisions(s, 1)
        await eventually(lambda: read_topic(s, "arbitrate.state"), what="the state of the first batch")
        await asyncio.sleep(0.05)
        start = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await publish(s, "scores", [scored(n, f"ai/Pod/{n}", c) for n, c in CONFIDENCES.items()]
                      + [scored("busy", "shop/Pod/held", 0.9)])
        await publish(s, "incidents", [Event.of(IncidentOpened(incident=incident("cool", "Pod/cool")), source="t")])
        await decisions(s, 8)
        await publish(s, "incidents", [Event.of(IncidentResolved(incident=incident("cool", "Pod/cool", "completed")),
                                                source="t")])
        await eventually(lambda: _released(s), what="the release of shop/Pod/cool")
        await publish(s, "scores", [scored("cool", "shop/Pod/cool", 0.95)])
        await decisions(s, 9)
    finally:
        for runtime in reversed(runtimes):
            await runtime.stop()
    await asyncio.sleep(0.05)
    return start, datetime.now(UTC)


async def _released(s: Settings) -> bool:
    return any(b"released" in dict(r.headers).get("ce_type", b"") for r in await read_topic(s, "remediation"))


def _what_if(s: Settings, start: datetime, end: datetime, *extra: str) -> list[dict[str, Any]]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers, "TOPIC_PREFIX": s.topic_prefix,
           "REMEDIATION_APPROVAL": "[]", "REMEDIATION_PROTECTED_NAMESPACES": "",
           "REMEDIATION_NAMESPACE_BUDGET": "100", "REMEDIATION_COOLDOWN_S": "3600", "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "--what-if", "--rules", str(RULES),
                           "--from", iso_z(start), "--to", iso_z(end), *extra],
                          cwd=ROOT, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    if "--json" not in extra:
        return [{"table": done.stdout.decode()}]
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


async def _offsets(s: Settings) -> dict[str, Any]:
    """Every topic's end offsets and every consumer group's committed offsets (this test's prefix)."""
    parts = await kafka.partitions(s, *(s.topic(t) for t in ("incidents", "scores", "remediation", "decisions",
                                                             "arbitrate.state", "control")))
    consumer = kafka.consumer(s, group_id=None)
    admin = kafka.admin(s)
    await consumer.start()
    await admin.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, ps in parts.items() for p in ps])
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if g[0].startswith(s.topic_prefix))
        committed = {g: {str(tp): o.offset for tp, o in (await admin.list_consumer_group_offsets(g)).items()}
                     for g in groups}
    finally:
        await admin.close()
        await consumer.stop()
    return {"ends": {str(tp): o for tp, o in ends.items()}, "groups": committed}


async def test_what_if_with_a_stricter_threshold_reports_exactly_the_changed_decisions(settings: Settings) -> None:
    s = settings.model_copy(update=policy(remediation_cooldown_s=3600.0))
    await apply(s)
    start, end = await _record_decisions(s)
    recorded = {(d["decision"]["proposal"]["target"], d["decision"]["proposal"]["source"]): d["decision"]
                for d in await decisions(s, 9)}
    assert len(recorded) == 9
    assert recorded["shop/Pod/held", "deterministic"]["outcome"] == "approved"  # before the window, running in it
    assert "target_busy" in {r["code"] for r in recorded["shop/Pod/held", "ai"]["reasons"]}
    assert {t: recorded[f"ai/Pod/{t}", "ai"]["outcome"] for t in CONFIDENCES} == {
        "web-1": "rejected", "web-2": "approved", "web-3": "approved", "web-4": "approved", "web-5": "approved"}
    assert recorded["shop/Pod/cool", "deterministic"]["outcome"] == "approved"
    cool = {r["code"] for r in recorded["shop/Pod/cool", "ai"]["reasons"]}
    assert "cooldown" in cool and "target_busy" not in cool  # released, then cooling down
    before = await _offsets(s)
    assert before["groups"], "the stages' groups have committed offsets"

    strict = _what_if(s, start, end, "--confidence-threshold", "0.8", "--json")
    header, *differences, summary = strict
    assert header["what_if"]["confidence_threshold"] == {"recorded": 0.7, "new": 0.8}
    assert header["what_if"]["state_at_start"]["shop"].startswith("arbitrate.state changelog as of")
    assert [a["target"] for a in header["what_if"]["running_at_start"]] == ["shop/Pod/held"]
    assert sorted((d["target"], d["recorded"]["outcome"], d["new"]["outcome"]) for d in differences) == [
        ("ai/Pod/web-2", "approved", "rejected"), ("ai/Pod/web-3", "approved", "rejected")]
    for d in differences:
        below = [r for r in d["new"]["reasons"] if r["code"] == "below_confidence_threshold"]
        assert below and below[0]["values"]["threshold"] == 0.8 and not d["differs_without_the_change"]
    assert summary["summary"] == {"rerun": 8, "differ": 2, "differ_without_the_change": 0, "kept_as_recorded": 0,
                                  "decided_after_the_window": 0}

    same = _what_if(s, start, end, "--json")
    assert same[1:] == [{"summary": {"rerun": 8, "differ": 0, "differ_without_the_change": 0,
                                     "kept_as_recorded": 0, "decided_after_the_window": 0}}]
    (table,) = _what_if(s, start, end, "--confidence-threshold", "0.8")
    lines = table["table"].splitlines()
    assert lines[-1].startswith("summary: 8 decisions re-run, 2 would differ")
    assert sum("approved -> rejected" in line and "below_confidence_threshold" in line for line in lines) == 2
    assert "running at the window start: restart_pod on shop/Pod/held" in table["table"]
    assert await _offsets(s) == before  # nothing produced, nothing committed

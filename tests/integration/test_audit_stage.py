"""The audit stage on a real broker: the trail of a full run (alert → incident → features → score → decision)
holds every record of every topic once and verifies; a copy tampered with in each of the four ways is reported
at the line where it was tampered with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from pipeline.adapters.audit_log import verify
from pipeline.bus import kafka
from pipeline.bus.log import LogReader
from pipeline.compose.process import Plan
from pipeline.config import Settings
from pipeline.forensics.audit import AuditStage, audited_topics
from pipeline.stages import stage_classes
from tests.audit_support import (
    copy_trail,
    delete,
    insert_copy,
    log_keys,
    modify,
    swap,
    trail_keys,
    trail_lines,
    verify_cli,
)
from tests.support import PipelineUnderTest, eventually, sample

pytestmark = pytest.mark.timeout(240)

FLOW = ("signal.observed", "incident.opened", "features.computed", "score.computed", "remediation.proposed",
        "remediation.decided")


def _types(lines: list[dict[str, Any]]) -> set[str]:
    return {dict(map(tuple, line["headers"])).get("ce_type", "") for line in lines}


def _has_flow(directory: Path) -> set[str] | None:
    types = {t.removeprefix("pipeline.").removesuffix(".v1") for t in _types(trail_lines(directory))}
    return types if set(FLOW) <= types else None


def _skipped() -> float:
    return REGISTRY.get_sample_value("pipeline_audit_duplicates_total") or 0.0


async def _rewind_group(settings: Settings) -> None:
    """Commit offset 0 on every partition for the audit's consumer group (no member is running)."""
    consumer = kafka.consumer(settings, group_id=f"{settings.topic_prefix}audit")
    await consumer.start()
    try:
        async with LogReader(settings) as reader:
            partitions = await reader.partitions(audited_topics(settings))
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()


async def _reproduce_first_incident(settings: Settings) -> str:
    """Produce the first incidents record again, same id and headers: a stage re-producing after a crash."""
    async with LogReader(settings) as reader:
        first = await anext(aiter(reader.read([settings.topic("incidents")])))
    producer = kafka.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(first.position.topic, first.value, key=first.key, headers=list(first.headers))
    finally:
        await producer.stop()
    return dict(first.headers)["ce_id"].decode()


async def test_the_trail_of_a_full_run_holds_every_record_once_verifies_and_shows_tampering(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"audit_dir": tmp_path / "audit"})
    directory = settings.audit_directory
    plan = Plan(stages=[*stage_classes(), "audit"], ingest=True, gateway=True, apply_topics=True)
    async with PipelineUnderTest(settings, plan) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=15, trust_env=False) as http:
            answer = await http.post("/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"))
            assert answer.status_code == 200, answer.text
            health = (await http.get("/api/v1/health")).json()
            assert "audit" in health["dependencies"]["kafka"]["stages"]["running"]  # beside the stages it records
        async def flow() -> set[str] | None:
            return _has_flow(directory)

        await eventually(flow, 120, 0.3, what="alert to decision in the trail")
        reproduced = await _reproduce_first_incident(settings)

    # The audit's committed offsets are set back to the beginning, so the restarted audit gets every record
    # again (and whatever the stages produced after it stopped): it must write only what is missing.
    lines_before, skipped_before = len(trail_lines(directory)), _skipped()
    await _rewind_group(settings)
    log = await log_keys(settings)
    audit = AuditStage(settings)
    await audit.start()
    try:
        async def caught_up() -> Any:
            keys = trail_keys(directory)  # all there, and every line already written came again
            return keys if set(keys) >= set(log) and _skipped() - skipped_before >= lines_before else None

        trail = await eventually(caught_up, 60, 0.3, what="the restarted audit caught up")
    finally:
        await audit.stop()

    assert set(trail) == set(log)  # every record of every topic, nothing else
    assert lines_before > 0
    assert {k: n for k, n in trail.items() if n > 1} == {}  # each once
    assert log[f"{settings.topic('incidents')}\n{reproduced}"] == 2 and trail[f"{settings.topic('incidents')}\n"
                                                                              f"{reproduced}"] == 1
    topics = {line["topic"] for line in trail_lines(directory)}
    assert {settings.topic(t) for t in ("signals", "incidents", "features", "scores", "remediation", "decisions",
                                        "correlate.state", "arbitrate.state")} <= topics

    code, out, err = verify_cli(directory)
    assert code == 0, err
    assert f"{sum(trail.values())} line(s), seq 1..{sum(trail.values())}" in out

    for name, tamper, kind in (("insertion", lambda p: insert_copy(p, of=2, at=6), "an inserted copy"),
                               ("deletion", lambda p: delete(p, 6), "seq 6 deleted"),
                               ("modification", lambda p: modify(p, 6), "(modified)"),
                               ("reordering", lambda p: swap(p, 6), "lines reordered")):
        copy, first = copy_trail(directory, tmp_path / name)
        tamper(first)
        code, out, err = verify_cli(copy)
        assert code == 1 and f"{first.name}:6: " in err and kind in err, (name, out, err)
        assert verify(copy).broken is not None

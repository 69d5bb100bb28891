"""`pipeline stage audit` SIGKILLed mid-stream, twice, and started again at once: the trail holds every record of
every topic exactly once (events by id, others by position; re-produced copies of events too), and
`pipeline audit verify` says the chain is intact."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.events import Event, Proposal, RemediationProposed
from tests.audit_support import log_keys, trail_keys, verify_cli
from tests.faults.helpers import PipelineProcess, Processes, apply_topics, eventually, figures

pytestmark = pytest.mark.timeout(300)

EVENTS, CHUNK = 3000, 100


def _proposed(n: int) -> Event:
    namespace = f"team-{n % 20}"
    proposal = Proposal(id=f"p-{n}", target=f"{namespace}/Pod/web-{n}", namespace=namespace, action="restart_pod",
                        source="deterministic", priority=50, confidence=1.0, incident_id=f"inc-{n}", risk="low")
    return Event.of(RemediationProposed(namespace=namespace, proposal=proposal), source="faults",
                    subject=proposal.target, id=f"audit-{n}")


async def _produce(settings: Settings) -> None:
    """EVENTS proposals on remediation (every tenth produced twice, same id: a stage re-producing after a crash),
    and beside them records that are not events: foreign values on deadletter, tombstones on control."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for start in range(0, EVENTS, CHUNK):
            sends = []
            for n in range(start, start + CHUNK):
                key, value, headers = _proposed(n).encode()
                copies = 2 if n % 10 == 0 else 1
                sends += [await producer.send(settings.topic("remediation"), value, key=key, headers=headers)
                          for _ in range(copies)]
            sends.append(await producer.send(settings.topic("deadletter"), b"\xffnot json", key=b"k"))
            sends.append(await producer.send(settings.topic("control"), None, key=b"pause"))
            await asyncio.gather(*sends)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


async def _kill_when(proc: PipelineProcess, directory: Path, lines: int, kills: list[dict[str, float]],
                     t0: float) -> None:
    async def written() -> int | None:
        count = sum(trail_keys(directory).values())
        return count if count >= lines else None

    seen = await eventually(written, f"{lines} lines in the trail", every=0.05)
    await asyncio.to_thread(proc.kill)
    kills.append({"at_s": round(time.monotonic() - t0, 2), "lines_seen": seen})
    proc.start()
    await proc.wait_ready("/metrics")


async def test_the_audit_stage_killed_mid_stream_writes_each_record_once(settings: Settings, tmp_path: Path) -> None:
    await apply_topics(settings)
    directory = tmp_path / "audit"
    async with Processes(settings, tmp_path / "logs", AUDIT_DIR=directory, STAGE_BATCH_SIZE=40) as procs:
        audit = procs.add("audit", ["stage", "audit"])
        await audit.wait_ready("/metrics")
        t0 = time.monotonic()
        kills: list[dict[str, float]] = []

        async def kill_twice() -> None:
            await _kill_when(audit, directory, EVENTS // 4, kills, t0)
            await _kill_when(audit, directory, EVENTS * 2 // 3, kills, t0)

        await asyncio.gather(_produce(settings), kill_twice())
        log = await log_keys(settings)

        async def complete() -> Counter[str] | None:
            trail = trail_keys(directory)
            return trail if set(trail) >= set(log) else None

        trail = await eventually(complete, "every record in the trail", timeout=120, on_fail=procs.tails)
        assert audit.starts == 3 and audit.alive
        async with httpx.AsyncClient(base_url=audit.url, timeout=10, trust_env=False) as http:
            metrics = (await http.get("/metrics")).text
        skipped = [line for line in metrics.splitlines() if line.startswith("pipeline_audit_duplicates_total ")]

    assert set(trail) == set(log)
    assert {k: n for k, n in trail.items() if n > 1} == {}  # each record once, across kills and redeliveries
    reproduced = sum(1 for n in log.values() if n > 1)
    assert reproduced == EVENTS // 10  # the copies are on the log, and once in the trail
    code, out, err = verify_cli(directory)
    assert code == 0, err + out
    figures("audit-kill", {"kills": kills, "log_records": sum(log.values()), "trail_lines": sum(trail.values()),
                           "reproduced_events": reproduced, "verify": out.strip(),
                           "duplicates_skipped_since_last_start": float(skipped[0].split()[1]) if skipped else None})

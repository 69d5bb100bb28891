"""Alertmanager redelivers a webhook across ingest restarts (split layout: `pipeline stage ingest`,
`pipeline stage correlate`, `pipeline gateway`; ingest restarted with SIGTERM, as a rollout does, then SIGKILLed
and started again, as after a crash).

What a user sees: one incident per alert however often the webhook comes, and an honest answer: after a restart
ingest still knows what it stored (pipeline/ingest/dedup.py reads it back from the signals topic), so a
redelivery is answered `duplicates` = the alerts re-sent, `accepted` 0, and adds no signal record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from tests.faults.helpers import (
    PipelineProcess,
    Processes,
    alert,
    all_incidents,
    apply_topics,
    eventually,
    figures,
    signal_pods,
    webhook,
)

pytestmark = pytest.mark.timeout(300)

NS = "redelivery"
PODS = ("web-0", "web-1", "web-2")


async def _send(ingest: PipelineProcess, body: dict[str, Any]) -> tuple[int, int | None, int | None]:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30, trust_env=False) as http:
        response = await http.post("/api/v1/alerts", json=body)
    answer = response.json()
    return response.status_code, answer.get("accepted"), answer.get("duplicates")


async def test_a_webhook_redelivered_across_ingest_restarts_is_one_incident_and_reported_duplicate(
    settings: Settings, tmp_path: Path
) -> None:
    await apply_topics(settings)
    body = webhook(*(alert(NS, pod) for pod in PODS))
    steps: dict[str, Any] = {}
    records: dict[str, int] = {}
    async with Processes(settings, tmp_path / "logs") as procs:
        ingest = procs.add("ingest", ["stage", "ingest"])
        correlate = procs.add("correlate", ["stage", "correlate"])
        gateway = procs.add("gateway", ["gateway"])
        await asyncio.gather(ingest.wait_ready(), correlate.wait_ready("/metrics"),
                             gateway.wait_ready("/api/v1/health"))
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, trust_env=False) as http:

            async def three() -> list[dict] | None:
                found = await all_incidents(http, NS)
                return found if len(found) >= len(PODS) else None

            steps["first"] = await _send(ingest, body)
            steps["again_same_process"] = await _send(ingest, body)
            await eventually(three, "three incidents", on_fail=procs.tails)
            records["before_restarts"] = sum((await signal_pods(settings, NS)).values())

            await asyncio.to_thread(ingest.stop)  # SIGTERM: a rollout
            ingest.start()
            await ingest.wait_ready()
            steps["after_sigterm_restart"] = await _send(ingest, body)
            records["after_sigterm_restart"] = sum((await signal_pods(settings, NS)).values())

            await asyncio.to_thread(ingest.kill)  # SIGKILL: a crash
            ingest.start()
            await ingest.wait_ready()
            steps["after_sigkill_restart"] = await _send(ingest, body)
            await asyncio.sleep(2.0)  # a signal published again would have reached correlate by now
            records["after_sigkill_restart"] = sum((await signal_pods(settings, NS)).values())
            found = await all_incidents(http, NS)
        assert correlate.alive and gateway.alive and ingest.starts == 3

    resources = Counter(i["resource"] for i in found)
    figures("redelivery", {
        "alerts_per_webhook": len(PODS), "answers_status_accepted_duplicates": steps, "signal_records": records,
        "incidents": len(found), "signal_count": sorted(i.get("signal_count", 0) for i in found),
    })
    # One incident per alert, however often and whenever it is delivered.
    assert resources == Counter({f"Pod/{pod}": 1 for pod in PODS}), resources
    assert steps["first"] == (200, len(PODS), 0)
    assert steps["again_same_process"] == (200, 0, len(PODS))
    # After a restart the answer is as honest as before it, and nothing is published again.
    assert steps["after_sigterm_restart"] == (200, 0, len(PODS)), steps
    assert steps["after_sigkill_restart"] == (200, 0, len(PODS)), steps
    assert records == {"before_restarts": len(PODS), "after_sigterm_restart": len(PODS),
                       "after_sigkill_restart": len(PODS)}, records

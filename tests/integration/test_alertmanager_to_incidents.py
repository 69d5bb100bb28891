"""A real Alertmanager delivers webhooks to the running pipeline; incidents appear in the REST API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from pydantic import SecretStr

from pipeline.config import Settings
from tests.components.alertmanager import AlertmanagerServer
from tests.support import PipelineUnderTest, eventually, incidents

TOKEN = "am-webhook-token"


def _labels(pod: str) -> dict[str, str]:
    return {
        "alertname": "KubePodCrashLooping",
        "namespace": "payments",
        "pod": pod,
        "deployment": "api",
        "severity": "warning",
    }


async def test_alerts_fired_and_resolved_in_alertmanager_become_incidents_that_resolve(
    settings: Settings, tmp_path: Path
) -> None:
    secured = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    async with PipelineUnderTest(secured) as running:
        am = AlertmanagerServer(tmp_path, f"{running.url}/api/v1/alerts", bearer_token=TOKEN)
        await asyncio.to_thread(am.start)
        try:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:
                pods = ["api-5f7d-abcde", "api-5f7d-fghij"]
                for pod in pods:
                    await asyncio.to_thread(am.fire, _labels(pod), {"summary": f"{pod} is crash looping"})

                async def two_active() -> dict | None:
                    body = await incidents(client, namespace="payments")
                    return body if body["summary"]["active"] == 2 else None

                body = await eventually(two_active, timeout=30)
                assert {i["resource"] for i in body["incidents"]} == {f"Pod/{p}" for p in pods}
                assert all(i["severity"] == "medium" and i["source"] == "alertmanager" for i in body["incidents"])
                assert {i["description"] for i in body["incidents"]} == {f"{p} is crash looping" for p in pods}

                for pod in pods:
                    await asyncio.to_thread(am.resolve, _labels(pod))

                async def both_completed() -> dict | None:
                    body = await incidents(client, namespace="payments", status="completed")
                    return body if body["summary"]["total"] == 2 else None

                done = await eventually(both_completed, timeout=30)
                for incident in done["incidents"]:
                    assert incident["completed_at"] and incident["duration_seconds"] >= 0
                    assert [a["status"] for a in incident["alerts"]] == ["resolved"]
                everything = await incidents(client)
                assert everything["summary"]["total"] == 2  # resolving opened nothing new
        finally:
            await asyncio.to_thread(am.stop)


async def test_active_alerts_are_reconciled_from_alertmanager_on_start(settings: Settings, tmp_path: Path) -> None:
    """Alerts that fired while ingest was down are fetched from Alertmanager's API when it starts."""
    dead_receiver = "http://127.0.0.1:9/api/v1/alerts"  # nothing listens: deliveries fail meanwhile
    am = AlertmanagerServer(tmp_path, dead_receiver)
    await asyncio.to_thread(am.start)
    try:
        await asyncio.to_thread(am.fire, _labels("api-during-outage"))
        reconciling = settings.model_copy(update={"alertmanager_url": am.url})
        async with PipelineUnderTest(reconciling) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False) as client:

                async def reconciled() -> list | None:
                    found = (await incidents(client))["incidents"]
                    return found or None

                found = await eventually(reconciled, timeout=20)
                assert [i["resource"] for i in found] == ["Pod/api-during-outage"]
    finally:
        await asyncio.to_thread(am.stop)

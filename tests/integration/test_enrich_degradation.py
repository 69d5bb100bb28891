"""Prometheus down or slow: enrichment goes on with features marked missing, incidents are not held back,
and `/api/v1/health` says degraded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from pipeline.config import Settings
from pipeline.embedded.history import generate_history
from pipeline.embedded.prometheus import PrometheusServer
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample


async def test_prometheus_down_degrades_but_nothing_is_held_back(settings: Settings, tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "prometheus", generate_history(duration_s=1800))
    await asyncio.to_thread(server.start)
    enriched = settings.model_copy(update={"prometheus_url": server.url, "prometheus_timeout_s": 2.0})
    try:
        async with PipelineUnderTest(enriched) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=30) as client:
                healthy = (await client.get("/api/v1/health")).json()
                assert healthy["status"] == "healthy"
                assert healthy["dependencies"]["prometheus"]["status"] == "ok"

                await asyncio.to_thread(server.stop)
                health = await client.get("/api/v1/health")
                assert health.status_code == 200 and health.json()["status"] == "degraded"
                assert health.json()["dependencies"]["prometheus"]["status"] == "down"

                assert (await client.post("/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"))).status_code == 200

                async def two_incidents() -> bool:
                    return (await incidents(client))["summary"]["total"] == 2

                await eventually(two_incidents)

                async def two_vectors() -> list | None:
                    records = await read_topic(enriched, "features")
                    return records if len(records) == 2 else None

                records = await eventually(two_vectors, timeout=30)
        for record in records:
            vector = json.loads(record.value)
            assert all(v is None for v in vector["values"])
            assert set(vector["missing"]) == set(vector["feature_names"])
            assert all(r.startswith("prometheus unavailable") for r in vector["missing"].values())
    finally:
        await asyncio.to_thread(server.stop)

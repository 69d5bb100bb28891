"""The broker goes away and comes back: ingest says 503 meanwhile, and nothing it acknowledged is lost."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import httpx

from pipeline.config import Settings
from pipeline.embedded.kafka import LocalKafka
from tests.support import PipelineUnderTest, eventually, incidents, read_topic, sample

FIRING = sample("alertmanager-webhook-firing.json")


def _webhook(n: int) -> dict:
    payload = copy.deepcopy(FIRING)
    payload["alerts"] = payload["alerts"][:1]
    alert = payload["alerts"][0]
    alert["labels"] = {**alert["labels"], "pod": f"cart-{n}"}
    alert["fingerprint"] = f"{n:016x}"
    return payload


async def _after(delay: float, request):  # type: ignore[no-untyped-def]
    await asyncio.sleep(delay)
    return await request


async def test_ingest_answers_503_while_the_broker_is_down_and_loses_nothing_acknowledged(
    settings: Settings, tmp_path: Path
) -> None:
    broker = LocalKafka(tmp_path / "own-kafka")  # this test's own broker: it is stopped mid-test
    bootstrap = await asyncio.to_thread(broker.start)
    own = settings.model_copy(
        update={"kafka_bootstrap_servers": bootstrap, "ingest_produce_timeout_s": 2.0, "ingest_max_in_flight": 1}
    )
    acknowledged: list[int] = []
    try:
        async with PipelineUnderTest(own) as running:
            async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=30) as client:
                for n in range(5):
                    response = await client.post("/api/v1/alerts", json=_webhook(n))
                    assert response.status_code == 200
                    acknowledged.append(n)

                await asyncio.to_thread(broker.stop)
                refused = 0
                for n in range(5, 8):
                    response = await client.post("/api/v1/alerts", json=_webhook(n))
                    if response.status_code == 200:
                        acknowledged.append(n)
                        continue
                    assert response.status_code == 503, response.text
                    assert response.headers["retry-after"]
                    assert response.json()["code"] == "BROKER_UNAVAILABLE"
                    refused += 1
                assert refused >= 1  # the broker is down: at least the later requests must be refused
                # While one request waits for the broker, the in-flight limit (1 here) refuses the next at once.
                # (A refused request's record may still reach the broker later: at least once. The retries
                # below resend the same alerts, whose deterministic ids make any such duplicate harmless.)
                waiting, limited = await asyncio.gather(
                    client.post("/api/v1/alerts", json=_webhook(6)),
                    _after(0.3, client.post("/api/v1/alerts", json=_webhook(7))),
                )
                assert waiting.status_code == limited.status_code == 503
                assert "too many requests" in limited.json()["error"]
                health = await client.get("/api/v1/health")
                assert health.status_code == 503
                assert health.json()["dependencies"]["kafka"]["status"] == "down"

                await asyncio.to_thread(broker.start)
                # Alertmanager retries what got a 5xx; do the same until the broker takes it.
                for n in range(5, 8):
                    if n in acknowledged:
                        continue

                    async def retried(n: int = n) -> bool:
                        return (await client.post("/api/v1/alerts", json=_webhook(n))).status_code == 200

                    await eventually(retried, timeout=60, every=0.5)
                    acknowledged.append(n)

                async def all_visible() -> bool:
                    return (await incidents(client))["summary"]["total"] == 8

                await eventually(all_visible, timeout=60, every=0.2)
                assert (await client.get("/api/v1/health")).status_code == 200
        keys = {r.key.decode() for r in await read_topic(own, "signals")}
        assert {f"shop/Pod/cart-{n}" for n in acknowledged} <= keys
        assert sorted(acknowledged) == list(range(8))
    finally:
        await asyncio.to_thread(broker.stop)

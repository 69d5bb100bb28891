"""The score stage on a real broker against the reference ML service over real HTTP: verdicts while it
is up, "degraded: rules only" while it is down (the breaker opens, events keep flowing), recovery after."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
from pipeline.adapters.scorer import KServeScorer
from pipeline.bus.stage import StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.embedded.ml import ReferenceMLServer
from pipeline.events import Event, FeaturesComputed
from pipeline.stages.score import ScoreStage
from tests.support import eventually, publish, read_topic


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceMLServer]:
    with ReferenceMLServer(tmp_path_factory.mktemp("ml")) as ref:
        yield ref


def features(n: int, values: list[float | None]) -> Event:
    missing = {name: "no sample" for name, v in zip(FEATURE_NAMES, values, strict=True) if v is None}
    payload = FeaturesComputed(
        incident_id=f"inc-{n:04d}", scope={"namespace": "shop"}, evaluated_at=datetime.now(UTC),
        feature_names=list(FEATURE_NAMES), values=values, missing=missing, query_count=6, query_seconds=0.01,
    )
    return Event.of(payload, source="test")


async def scores(settings: Settings, n: int) -> list[dict]:
    async def enough() -> list | None:
        records = await read_topic(settings, "scores")
        return records if len(records) >= n else None

    records = await eventually(enough, timeout=60)
    return [json.loads(r.value) for r in records]


NORMAL = [0.3, 0.3, 0.01, 0.29, 0.31, 0.3, 0.3, 0.0, 0.0, 0.3, 0.3, 0.01, 0.29, 0.31, 0.3, 0.3, 0.0, 0.0,
          0.2, 0.2, 0.005, 0.19, 0.21, 0.2, 0.2, 0.0, 0.0, 0.3, 0.3, 0.001, 0.29, 0.31, 0.3, 0.3, 0.0, 0.0,
          0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


async def test_scores_degrade_while_the_service_is_down_and_recover(settings: Settings, service: ReferenceMLServer) -> None:
    fast = settings.model_copy(update={"ml_circuit_breaker_timeout_s": 2.0, "kserve_timeout_s": 2.0,
                                       "ml_retry_attempts": 1})
    await apply(fast)
    registry = ModelRegistry([ModelEndpoint("anomaly-detector", "reference", "", "anomaly-detector", service.url)])
    client = KServeClient(fast, registry)
    runtime = StageRuntime(fast, ScoreStage(fast, scorer=KServeScorer(client)))
    await runtime.start()
    try:
        await publish(fast, "features", [features(0, NORMAL), features(1, [*NORMAL[:-1], None])])
        first = await scores(fast, 2)
        by_incident = {s["incident_id"]: s for s in first}
        up = by_incident["inc-0000"]
        assert up["verdict"] in ("anomaly", "normal") and up["source"] == "kserve"
        assert up["model"] == "anomaly-detector" and up["model_version"]
        assert 0 <= up["score"] <= 1 and 0 <= up["confidence"] <= 1
        incomplete = by_incident["inc-0001"]
        assert incomplete["verdict"] == "degraded"
        assert incomplete["degraded_reason"] == "rules only: 1 of 45 features missing"

        await asyncio.to_thread(service.stop)
        for n in range(10, 13):  # one failed call each (a batch is one call): 3 failures open the breaker
            await publish(fast, "features", [features(n, NORMAL)])
            await scores(fast, 3 + n - 10)
        await publish(fast, "features", [features(n, NORMAL) for n in range(13, 15)])  # these fail fast
        down = [s for s in await scores(fast, 7) if s["incident_id"] in {f"inc-{n:04d}" for n in range(10, 15)}]
        assert len(down) == 5 and {s["verdict"] for s in down} == {"degraded"}
        assert all(s["degraded_reason"].startswith("rules only:") for s in down)
        late = [s for s in down if s["incident_id"] in ("inc-0013", "inc-0014")]
        assert all("open" in s["degraded_reason"] for s in late), late  # the breaker opened: fail fast
        assert client.breaker("anomaly-detector").state.label == "open"

        await asyncio.to_thread(service.start)
        await asyncio.sleep(2.5)  # past the breaker's reset timeout: the next call is the half-open trial
        await publish(fast, "features", [features(20, NORMAL)])

        async def recovered() -> dict | None:
            found = [s for s in await scores(fast, 8) if s["incident_id"] == "inc-0020"]
            return found[0] if found else None

        back = await eventually(recovered, timeout=60)
        assert back["verdict"] in ("anomaly", "normal") and back["degraded_reason"] is None
        assert client.breaker("anomaly-detector").state.label == "closed"
    finally:
        await runtime.stop()

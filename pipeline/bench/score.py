"""`pipeline bench score`: scores per second against the reference ML service over real HTTP, and the
overhead of our client (registry, retries, circuit breaker, response validation) over a bare httpx call
to the same service, in the same run."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from pipeline.adapters.ml import KServeClient, ModelEndpoint, ModelRegistry
from pipeline.adapters.scorer import ANOMALY_MODEL, KServeScorer
from pipeline.bench.harness import Report, latency_figures
from pipeline.config import Settings
from pipeline.embedded.ml import ReferenceMLServer

VECTOR = [0.3] * 18 + [0.2] * 9 + [0.3] * 9 + [0.0] * 9
BATCH = 32


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("score: 45-feature vectors scored by the reference model (KServe v1 over HTTP)")
    with tempfile.TemporaryDirectory() as tmp, ReferenceMLServer(Path(tmp)) as server:
        url = server.url
        for in_flight in (1, 8):
            ours = asyncio.run(_ours(url, args.seconds / 4, in_flight))
            bare = asyncio.run(_bare(url, args.seconds / 4, in_flight))
            for name, (rate, latencies) in ((f"client + breaker, {in_flight} in flight", ours),
                                            (f"bare httpx, {in_flight} in flight", bare)):
                report.add(name, scores_per_s=rate, **latency_figures(latencies))
            ratio = report.add(f"ours / bare, {in_flight} in flight")
            ratio.ratio, ratio.ratio_of = ours[0] / bare[0], "scores/s"
            overhead = latency_figures(ours[1])["p50_ms"] - latency_figures(bare[1])["p50_ms"]
            report.add(f"client overhead at p50, {in_flight} in flight", ms=overhead)
        rate, latencies = asyncio.run(_ours(url, args.seconds / 4, 1, batch=BATCH))
        report.add(f"client, {BATCH} vectors per request (the score stage's batching)",
                   scores_per_s=rate * BATCH, **latency_figures(latencies))
    report.notes.append("the service (sklearn IsolationForest, 200 trees) and the bench share 2 cores")
    return report


async def _drive(seconds: float, in_flight: int, one: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def _ours(url: str, seconds: float, in_flight: int, batch: int = 1) -> tuple[float, list[float]]:
    registry = ModelRegistry([ModelEndpoint(ANOMALY_MODEL, "reference", "", ANOMALY_MODEL, url)])
    scorer = KServeScorer(KServeClient(Settings(), registry))

    async def one() -> None:
        await scorer.score_many([VECTOR] * batch)

    try:
        return await _drive(seconds, in_flight, one)
    finally:
        await scorer.aclose()


async def _bare(url: str, seconds: float, in_flight: int) -> tuple[float, list[float]]:
    body = json.dumps({"instances": [VECTOR]}).encode()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:

        async def one() -> None:
            response = await client.post(f"{url}/v1/models/{ANOMALY_MODEL}:predict", content=body,
                                         headers={"content-type": "application/json"})
            response.raise_for_status()
            response.json()

        return await _drive(seconds, in_flight, one)

"""`pipeline bench analyze`: `POST /api/v1/anomalies/analyze` per second, latency, server CPU per call and
Prometheus queries per call, against the anchor (Go) engine's approach reproduced as the baseline.

Both routes are served by one server process (`pipeline.bench.analyze_server`) over the same Prometheus
(a real one, serving the generated history that ends now) and the same reference ML service; the load
comes from this process with aiohttp, 1 and 8 requests in flight, one variant at a time. CPU per call is
the server process's user+system time over the calls it answered, so the load generator, Prometheus and
the model service are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

from pipeline.bench.harness import Report, latency_figures
from pipeline.embedded.history import generate_history
from pipeline.embedded.ml import ReferenceMLServer
from pipeline.embedded.process import ServerProcess, free_port, new_workdir
from pipeline.embedded.prometheus import PrometheusServer

ROUTES = {"ours": "/api/v1/anomalies/analyze", "anchor": "/bench/anchor/analyze"}
BODIES = [
    {"namespace": "payments", "time_range": "1h"},
    {"namespace": "shop", "deployment": "leaky", "time_range": "6h"},
    {"namespace": "shop", "time_range": "1h"},
]
IN_FLIGHT = (1, 8)


class AnalyzeServer(ServerProcess):
    """`pipeline.bench.analyze_server` in its own process."""

    name = "analyze bench server"

    def __init__(self, workdir: Path, prometheus_url: str, ml_url: str) -> None:
        super().__init__()
        self.dir = new_workdir(workdir, "analyze-")
        self.log_path = self.dir / "server.log"
        self.port = free_port()
        self.prometheus_url, self.ml_url = prometheus_url, ml_url

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.bench.analyze_server", "--prometheus", self.prometheus_url,
                "--ml-url", self.ml_url, "--port", str(self.port)]

    def start(self, timeout: float = 60) -> AnalyzeServer:
        if not self.running:
            self._spawn()
            self._wait_ready(time.monotonic() + timeout, "/health")
        return self


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("analyze: POST /api/v1/anomalies/analyze vs the anchor engine's approach (same server process)")
    with tempfile.TemporaryDirectory() as tmp:
        # The history ends 15 minutes from now: instant queries at "now" fall inside it for the whole run.
        history = generate_history(end=time.time() + 900)
        with PrometheusServer(Path(tmp), history) as prom, ReferenceMLServer(Path(tmp)).start() as ml, \
                AnalyzeServer(Path(tmp), prom.url, ml.url).start() as server:
            process = psutil.Process(server.pid)
            results: dict[tuple[str, int], dict[str, Any]] = {}
            for in_flight in IN_FLIGHT:
                for variant in ("ours", "anchor"):
                    results[variant, in_flight] = asyncio.run(
                        _measure(server.url, variant, in_flight, args.seconds / 2, process))
                    report.add(f"{variant}, {in_flight} in flight", **results[variant, in_flight])
                ours, anchor = results["ours", in_flight], results["anchor", in_flight]
                row = report.add(f"ours / anchor, {in_flight} in flight",
                                 cpu_ms_ratio=ours["cpu_ms_per_call"] / anchor["cpu_ms_per_call"])
                row.ratio, row.ratio_of = ours["req_per_s"] / anchor["req_per_s"], "req/s"
    report.notes.append("bodies rotate over: " + "; ".join(str(b) for b in BODIES))
    report.notes.append("the anchor Go engine measured 5-7 ms CPU per analyze call on these machines "
                        "(research/outside-tests/go-engine-side-by-side.md §4); cpu_ms_per_call is comparable")
    return report


async def _measure(url: str, variant: str, in_flight: int, seconds: float, process: psutil.Process) -> dict[str, Any]:
    route = url + ROUTES[variant]
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession() as session:
        async def call(n: int) -> None:
            nonlocal failures
            t0 = time.perf_counter()
            async with session.post(route, json=BODIES[n % len(BODIES)]) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - t0)

        for n in range(len(BODIES)):  # warm-up, not counted
            await call(n)
        latencies.clear()
        before_queries = _stats(url)[variant]
        before_cpu = process.cpu_times()
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        counter = iter(range(10**9))

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await call(next(counter))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
        after_cpu = process.cpu_times()
    calls = max(len(latencies), 1)
    cpu = (after_cpu.user + after_cpu.system) - (before_cpu.user + before_cpu.system)
    return {
        "req_per_s": len(latencies) / elapsed,
        **latency_figures(latencies),
        "cpu_ms_per_call": cpu * 1000 / calls,
        "queries_per_call": (_stats(url)[variant] - before_queries) / calls,
        "failed": failures,
    }


def _stats(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(url + "/bench/stats", trust_env=False, timeout=10).json()
    return stats

"""`pipeline bench e2e`: webhook 2xx -> incident visible in `GET /api/v1/incidents`, one alert at a time."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from pipeline.bench.harness import Child, Report, bench_settings, child_env, latency_figures
from pipeline.bench.load import webhook
from pipeline.embedded.process import free_port


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("e2e: webhook 2xx -> incident visible in the REST API (ingest + correlate + gateway)")
    settings = bench_settings(bootstrap)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        child = Child(["run"], child_env(settings, PORT=str(port), LOG_LEVEL="WARNING"), Path(tmp) / "run.log")
        try:
            child.wait_http(f"{url}/api/v1/health")
            with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
                visible, acked = _measure(client, args.samples)
                child.sample_rss()
        finally:
            child.stop()
    report.add("2xx -> visible", samples=len(visible), **latency_figures(visible))
    report.add("POST -> 2xx (broker acks)", samples=len(acked), **latency_figures(acked))
    report.add("process", peak_rss_mb=child.peak_rss / 2**20)
    report.notes.append("polled every 1 ms with namespace-scoped GETs; resolution is about 1 ms")
    return report


def _measure(client: httpx.Client, samples: int) -> tuple[list[float], list[float]]:
    visible: list[float] = []
    acked: list[float] = []
    headers = {"content-type": "application/json"}
    for n in range(samples + 20):
        namespace = f"e2e-{n}"
        body = webhook(1, namespace=namespace, pod=f"p-{n}")
        posted = time.perf_counter()
        response = client.post("/api/v1/alerts", content=body, headers=headers)
        ok = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"webhook refused: {response.status_code} {response.text}")
        while True:
            found = client.get("/api/v1/incidents", params={"namespace": namespace}).json()["summary"]["total"]
            if found:
                break
            if time.perf_counter() - ok > 30:
                raise RuntimeError(f"incident for {namespace} not visible after 30 s")
            time.sleep(0.001)
        if n >= 20:  # the first requests warm up connections, JIT and caches
            visible.append(time.perf_counter() - ok)
            acked.append(ok - posted)
    return visible, acked

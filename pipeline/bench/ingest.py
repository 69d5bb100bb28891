"""`pipeline bench ingest`: webhook alerts/s with broker acks, beside its ceilings in the same run: the same HTTP
server answering at once with no framework and no Kafka (`http_ceiling.py server`), the ingest app's framework
answering at once (`http_ceiling.py app`), the same server producing ready-made records and answering once the
broker has them (`http_ceiling.py produce`: the stack's own ceiling), and raw aiokafka producing the same records
(alone, and with the webhook's concurrency)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from pipeline.bench.harness import Child, Report, bench_settings, child_env, latency_figures
from pipeline.bench.load import closed_loop, webhook
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.domain.alertmanager import AlertmanagerWebhook, to_signal
from pipeline.embedded.process import free_port
from pipeline.events import Event, utcnow


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("ingest: Alertmanager webhook -> signals acknowledged by the broker")
    settings = bench_settings(bootstrap)
    asyncio.run(apply(settings))

    raw_rate = asyncio.run(_raw_ceiling(settings, args.seconds))
    report.add("raw aiokafka produce (ceiling)", msgs_per_s=raw_rate, acks="all", linger_ms=0)
    same_rate, same_latencies = asyncio.run(
        _raw_same_pattern(settings, args.seconds, args.clients, args.alerts_per_request)
    )
    report.add(
        f"raw aiokafka, {args.clients} tasks x {args.alerts_per_request}",
        msgs_per_s=same_rate,
        **latency_figures(same_latencies),
    )

    ceilings: dict[str, float] = {}
    for which, name in (("server", "HTTP server alone (ceiling)"), ("app", "the ingest app answering at once"),
                        ("produce", "HTTP server + raw produce (stack ceiling)")):
        rate, latencies, cpu = _ceiling(which, args, settings)
        ceilings[which] = rate
        report.add(f"{name}, {args.clients} clients", alerts_per_s=rate, requests_per_s=rate / args.alerts_per_request,
                   **latency_figures(latencies), server_cpu_ms_per_request=cpu)

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        child = Child(["stage", "ingest"], child_env(settings, PORT=str(port), LOG_LEVEL="WARNING"), Path(tmp) / "ingest.log")
        try:
            child.wait_http(f"http://127.0.0.1:{port}/health")
            stop = threading.Event()
            sampler = threading.Thread(target=_sample, args=(child, stop), daemon=True)
            sampler.start()
            load = _load(child, port, args)
            stop.set()
            sampler.join()
        finally:
            child.stop()
    alerts_per_s = load.alerts_per_s
    row = report.add(
        f"webhook, {args.clients} clients",
        alerts_per_s=alerts_per_s,
        requests_per_s=load.ok / load.seconds,
        failed=load.failed,
        **latency_figures(load.latencies),
        server_peak_rss_mb=child.peak_rss / 2**20,
        server_cpu_ms_per_request=load.cpu_ms_per_request,
    )
    row.ratio, row.ratio_of = alerts_per_s / ceilings["server"], "over the HTTP server alone"
    raw = report.add("webhook / raw aiokafka produce", ratio_to_raw_produce=alerts_per_s / raw_rate)
    raw.ratio, raw.ratio_of = alerts_per_s / raw_rate, "over the raw produce ceiling"
    app = report.add("webhook / the app answering at once", ratio_to_app=alerts_per_s / ceilings["app"])
    app.ratio, app.ratio_of = alerts_per_s / ceilings["app"], "over the same app without parsing or Kafka"
    stack = report.add("webhook / HTTP server + raw produce", ratio_to_stack=alerts_per_s / ceilings["produce"])
    stack.ratio, stack.ratio_of = alerts_per_s / ceilings["produce"], "over the same server and producer doing nothing else"
    bound = report.add("HTTP server + raw produce / HTTP server alone",
                       ratio_stack_to_http=ceilings["produce"] / ceilings["server"])
    bound.ratio, bound.ratio_of = ceilings["produce"] / ceilings["server"], "the most any webhook handler can reach"
    same = report.add("webhook / raw same pattern", ratio_to_same_pattern=alerts_per_s / same_rate)
    same.ratio, same.ratio_of = alerts_per_s / same_rate, "over raw aiokafka with the same concurrency"
    report.notes.append(
        "the load generator (aiohttp) runs in the bench process, on the same 2 cores as the server and broker"
    )
    return report


def _ceiling(which: str, args: argparse.Namespace, settings: Settings) -> tuple[float, list[float], float]:
    """(alerts/s, latencies, server CPU ms per request) of the same load against `http_ceiling` (`which`)."""
    port = free_port()
    env = child_env(settings)  # the broker and topics, for `produce`
    with tempfile.TemporaryDirectory() as tmp:
        child = Child(["-"], env, Path(tmp) / "ceiling.log",
                      argv=[sys.executable, "-m", "pipeline.bench.http_ceiling", str(port), which,
                            str(args.alerts_per_request)])
        try:
            child.wait_http(f"http://127.0.0.1:{port}/api/v1/alerts", method="POST")
            load = _load(child, port, args)
        finally:
            child.stop()
    return load.alerts_per_s, load.latencies, load.cpu_ms_per_request


@dataclass
class _Loaded:
    ok: int
    failed: int
    latencies: list[float]
    seconds: float
    cpu_ms_per_request: float
    alerts_per_s: float


def _load(child: Child, port: int, args: argparse.Namespace) -> _Loaded:
    """The closed-loop webhook load against the child's port, with the child's CPU time per request."""
    cpu_before = sum(child.ps.cpu_times()[:2])
    started = time.perf_counter()
    ok, failed, latencies = asyncio.run(
        closed_loop(f"http://127.0.0.1:{port}/api/v1/alerts", args.clients, args.seconds, args.alerts_per_request)
    )
    elapsed = time.perf_counter() - started
    cpu = sum(child.ps.cpu_times()[:2]) - cpu_before
    return _Loaded(ok, failed, latencies, elapsed, cpu * 1000 / max(ok, 1), ok * args.alerts_per_request / elapsed)


def _sample(child: Child, stop: threading.Event) -> None:
    while not stop.is_set():
        child.sample_rss()
        time.sleep(0.1)


def signal_records(n: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    hook = AlertmanagerWebhook.model_validate_json(webhook(n))
    return [Event.of(to_signal(a, hook, utcnow()), source="bench").encode() for a in hook.alerts]


async def _raw_same_pattern(
    settings: Settings, seconds: float, tasks: int, per_request: int
) -> tuple[float, list[float]]:
    """What the webhook does without HTTP: `tasks` concurrent senders, each awaiting acks for its records."""
    records = signal_records(2000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0,
                                enable_idempotence=True)
    await producer.start()
    topic = settings.topic("signals")
    latencies: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def sender(offset: int) -> int:
            sent = 0
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                batch = [records[(offset + sent + i) % len(records)] for i in range(per_request)]
                futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in batch]
                await asyncio.gather(*futures)
                latencies.append(time.perf_counter() - t0)
                sent += per_request
            return sent

        total = sum(await asyncio.gather(*(sender(i * 37) for i in range(tasks))))
        return total / (time.perf_counter() - started), latencies
    finally:
        await producer.stop()


async def _raw_ceiling(settings: Settings, seconds: float) -> float:
    """The same signal events, produced keyed with acks=all straight from aiokafka, as fast as it can."""
    records = signal_records(2000)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0,
                                enable_idempotence=True)
    await producer.start()
    topic = settings.topic("signals")
    sent = 0
    try:
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records[:500]]
            await asyncio.gather(*futures)
            sent += len(futures)
            records = records[500:] + records[:500]
        return sent / (time.perf_counter() - started)
    finally:
        await producer.stop()

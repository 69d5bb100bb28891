"""`pipeline bench scale`: throughput with 1, 2 and 4 processes of ingest and of correlate on one broker.

Ingest is stateless: `--processes` copies of `pipeline stage ingest` (each its own port) share the closed-loop
load (client i posts to server i mod n). Correlate is a consumer group: n copies of `pipeline stage correlate`
join it (the signals topic has 6 partitions), then `--messages` signals are produced and the clock runs from the
first produced to the last offset committed by the group. Each count runs on its own topics. Per count:
throughput, its ratio to one process, the processes' CPU (in cores) and the whole machine's busy share -- where
the curve flattens, the machine is full (the broker and the load generator share the same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from aiokafka import TopicPartition

from pipeline.bench.harness import Child, Report, bench_settings, child_env, latency_figures
from pipeline.bench.load import closed_loop
from pipeline.bench.stage import signal_events
from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.topics import apply
from pipeline.compose.health import KafkaProbe
from pipeline.config import Settings
from pipeline.embedded.process import free_port

COUNTS = (1, 2, 4)


class Machine:
    """CPU seconds of some processes, and the share of the machine's CPU time that was busy, over a window."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self.cpu = self._cpu()
        self.times = psutil.cpu_times()
        self.started = time.perf_counter()

    def _cpu(self) -> float:
        total = 0.0
        for child in self.children:
            with contextlib.suppress(psutil.Error):
                total += sum(child.ps.cpu_times()[:2])
        return total

    def figures(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        now = psutil.cpu_times()
        busy = sum(now) - now.idle - (sum(self.times) - self.times.idle)
        total = sum(now) - sum(self.times)
        return {"processes_cores": (self._cpu() - self.cpu) / elapsed, "machine_busy": busy / total if total else 0.0}


@contextlib.contextmanager
def _children(args: list[str], settings: Settings, n: int, base: Path, ports: list[int] | None = None
              ) -> Iterator[list[Child]]:
    children = []
    try:
        for i in range(n):
            extra = {"PORT": str(ports[i])} if ports else {}
            children.append(Child(args, child_env(settings, LOG_LEVEL="INFO", **extra), base / f"{args[-1]}-{i}.log"))
        yield children
    finally:
        for child in children:
            child.stop()


def ingest(bootstrap: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    settings = bench_settings(bootstrap)
    asyncio.run(apply(settings))
    ports = [free_port() for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp, _children(["stage", "ingest"], settings, n, Path(tmp), ports) as kids:
        for child, port in zip(kids, ports, strict=True):
            child.wait_http(f"http://127.0.0.1:{port}/health")
        machine = Machine(kids)
        started = time.perf_counter()
        ok, failed, latencies = asyncio.run(closed_loop(
            [f"http://127.0.0.1:{port}/api/v1/alerts" for port in ports], args.clients, args.seconds,
            args.alerts_per_request))
        elapsed = time.perf_counter() - started
        used = machine.figures()
    return {"alerts_per_s": ok * args.alerts_per_request / elapsed, "failed": failed,
            **latency_figures(latencies), **used}


async def _committed(settings: Settings, group: str, topic: str) -> int:
    admin = kafka.admin(settings)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for tp, meta in found.items() if tp.topic == topic)
    finally:
        await admin.close()


async def _correlate_run(settings: Settings, n: int, messages: int, kids: list[Child]) -> tuple[float, dict[str, float]]:
    group, topic = f"{settings.topic_prefix}correlate", settings.topic("signals")
    probe, deadline = KafkaProbe(settings), time.monotonic() + 120
    try:
        while await probe.group_members(group) < n:  # every process in the group
            if time.monotonic() > deadline:
                raise RuntimeError(f"the correlate group did not reach {n} members")
            await asyncio.sleep(0.2)
    finally:
        await probe.close()
    await asyncio.sleep(1.0)  # the last join's rebalance settles
    events = signal_events(messages)
    producer = EventProducer(settings)
    await producer.start()
    try:
        machine = Machine(kids)
        started = time.perf_counter()
        for start in range(0, len(events), 2000):
            await producer.publish([Output.event(topic, e) for e in events[start:start + 2000]])
    finally:
        await producer.stop()
    parts = (await kafka.partitions(settings, topic))[topic]
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        end = sum((await consumer.end_offsets([TopicPartition(topic, p) for p in parts])).values())
    finally:
        await consumer.stop()
    while await _committed(settings, group, topic) < end:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    return len(events) / elapsed, machine.figures()


def correlate(bootstrap: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    settings = bench_settings(bootstrap)
    asyncio.run(apply(settings))
    with tempfile.TemporaryDirectory() as tmp, _children(["stage", "correlate"], settings, n, Path(tmp)) as kids:
        for child in kids:
            child.wait_log("partitions assigned")
        rate, used = asyncio.run(_correlate_run(settings, n, args.messages, kids))
    return {"msgs_per_s": rate, **used}


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report(f"scale: 1, 2 and 4 processes of ingest and of correlate on one broker ({psutil.cpu_count()} cores)")
    for name, run, unit in (("ingest", ingest, "alerts_per_s"), ("correlate", correlate, "msgs_per_s")):
        one = 0.0
        for n in COUNTS:
            figures = run(bootstrap, n, args)
            one = one or figures[unit]
            row = report.add(f"{name} x {n}", **figures)
            row.ratio, row.ratio_of = figures[unit] / one, f"{unit} over one process"
    report.notes.append("processes_cores: CPU seconds per second of the ingest or correlate processes together; "
                        "machine_busy: the share of all cores' time not idle (broker and load generator included)")
    return report

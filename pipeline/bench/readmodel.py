"""`pipeline bench readmodel` (earlier `rebuild`): the gateway's read models at scale -- how fast it is ready,
how much memory it holds and how fast it answers list pages -- from the snapshot topics and from the whole log,
on a history of `--incidents` incidents (with proposals, decisions and workflows for some).

Figures: the snapshot stage folding the history (events/s); a raw aiokafka read of the same topics, nothing
decoded (the baseline); `pipeline gateway` spawned to ready on empty topics (the process without a read model:
the memory baseline), with GATEWAY_SNAPSHOTS=false (every source topic from its beginning) and with snapshots
(the snapshot topics whole, then the log after their watermarks): records read per second while rebuilding,
from the gateway's own "projection ready" line, and seconds from spawn to ready, with their ratios to the raw
read of the same topics; its resident memory once its lists are built (and per incident beyond the empty
gateway's); the slowest of eight list pages (start, middle and end of the list, filtered by status, severity,
namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import TopicPartition

from pipeline.bench.harness import Child, Report, bench_settings, child_env
from pipeline.bench.history import history, publish
from pipeline.bus import kafka
from pipeline.bus.stage import StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.domain.snapshots import SOURCES
from pipeline.embedded.process import free_port
from pipeline.stages.snapshot import SnapshotStage


async def raw_read(settings: Settings, topics: list[str]) -> tuple[int, float]:
    """(records, seconds): every record of the topics read with a bare aiokafka consumer, nothing decoded."""
    found = await kafka.partitions(settings, *topics)
    consumer = kafka.consumer(settings, group_id=None, **kafka.BULK_READ)  # the gateway's fetch sizes
    await consumer.start()
    try:
        started = time.perf_counter()
        tps = [TopicPartition(t, p) for t in topics for p in found[t]]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        count, pending = 0, [tp for tp in tps if end[tp] > 0]
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=10_000)
            count += sum(len(records) for records in batches.values())
            pending = [tp for tp in pending if await consumer.position(tp) < end[tp]]
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


async def snapshot(settings: Settings) -> tuple[int, float]:
    """(records folded, seconds): the snapshot stage run until its group committed the whole history."""
    topics = [settings.topic(t) for t in SOURCES]
    found = await kafka.partitions(settings, *topics)
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        want = await consumer.end_offsets([TopicPartition(t, p) for t in topics for p in found[t]])
    finally:
        await consumer.stop()
    runtime = StageRuntime(settings, SnapshotStage(settings))
    admin = kafka.admin(settings)
    started = time.perf_counter()
    await runtime.start()
    await admin.start()
    try:
        while True:
            got = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}snapshot")
            if all(end == 0 or (tp in got and got[tp].offset >= end) for tp, end in want.items()):
                return sum(want.values()), time.perf_counter() - started
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
        await runtime.stop()


def answers(url: str, n: int) -> tuple[dict[str, Any], float]:
    """What a client reads from a gateway: incident pages at the start, middle and end of the list, and the
    filtered summaries (the comparison between a gateway that rebuilt from snapshots and one that read the log),
    and the slowest of those requests once the gateway has answered each (median of 3, in ms)."""
    paths = [f"/api/v1/incidents?status=all&severity=all&limit=100&offset={offset}"
             for offset in sorted({0, n // 2, max(n - 100, 0)})]
    paths += [f"/api/v1/incidents?status={status}&severity=all&limit=10" for status in ("active", "completed")]
    paths += ["/api/v1/incidents?status=all&severity=critical&limit=10",
              f"/api/v1/incidents?status=active&limit=100&offset={n // 5}", "/api/v1/incidents?namespace=ns-3&limit=100"]
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        read = {path: client.get(path).json() for path in paths}
        slowest = 0.0
        for path in paths:
            times = []
            for _ in range(3):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            slowest = max(slowest, statistics.median(times))
    return read, slowest


def gateway_ready(settings: Settings, base: Path, snapshots: bool, n: int) -> tuple[float, dict[str, float], dict[str, Any]]:
    """(seconds from spawn to ready, the gateway's rebuild figures and resident memory once ready, its answers) of
    `pipeline gateway`."""
    port = free_port()
    env = child_env(settings, PORT=str(port), GATEWAY_SNAPSHOTS=str(snapshots).lower())
    child = Child(["gateway"], env, base / f"gateway-{snapshots}.log")
    try:
        seconds = child.wait_http(f"http://127.0.0.1:{port}/api/v1/health", timeout=600)
        read, page_ms = answers(f"http://127.0.0.1:{port}", n)  # the first list request waits for the lists
        rss = child.sample_rss()
    finally:
        child.stop()
    for line in child.log.read_text(errors="replace").splitlines():
        if "projection ready" in line and line.startswith("{"):
            found = json.loads(line)
            figures = {k: float(found[k]) for k in ("snapshot_records", "log_records", "seconds")}
            return seconds, {**figures, "rss_mb": rss / 2**20, "page_ms": page_ms}, read
    raise RuntimeError(f"no 'projection ready' line: {child.log.read_text()[-2000:]}")


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    n = args.incidents
    report = Report(f"readmodel: the gateway's read models on a history of {n:,} incidents")
    settings = bench_settings(bootstrap)
    asyncio.run(apply(settings))
    started = time.perf_counter()
    events = asyncio.run(publish(settings, history(0, n)))
    report.notes.append(f"history: {events:,} events produced in {time.perf_counter() - started:.1f} s")
    folded, seconds = asyncio.run(snapshot(settings))
    report.add("snapshot stage: fold the history", events=folded, seconds=seconds, events_per_s=folded / seconds)
    sources = [settings.topic(t) for t in SOURCES]
    snapshots = [settings.topic("incidents.snapshot"), settings.topic("remediation.snapshot")]
    with tempfile.TemporaryDirectory() as tmp:
        empty = bench_settings(bootstrap)
        asyncio.run(apply(empty))
        _, base, _ = gateway_ready(empty, Path(tmp), True, 0)
    report.add("baseline: gateway on empty topics", rss_mb=base["rss_mb"])
    read: dict[bool, dict[str, Any]] = {}
    for name, topics, flag in (("whole log", sources, False), ("snapshots", [*snapshots, *sources], True)):
        raw, raw_s = asyncio.run(raw_read(settings, topics if not flag else snapshots))
        report.add(f"baseline: raw aiokafka read, {name}", records=raw, seconds=raw_s, records_per_s=raw / raw_s)
        with tempfile.TemporaryDirectory() as tmp:
            ready, rebuilt, read[flag] = gateway_ready(settings, Path(tmp), flag, n)
        records = rebuilt["snapshot_records"] + rebuilt["log_records"]
        rate = records / rebuilt["seconds"]
        row = report.add(f"gateway from the {name}", records=int(records), rebuild_s=rebuilt["seconds"],
                         records_per_s=rate, ready_s=ready, rss_mb=rebuilt["rss_mb"],
                         kb_per_incident=(rebuilt["rss_mb"] - base["rss_mb"]) * 1024 / n, page_ms_max=rebuilt["page_ms"])
        row.ratio, row.ratio_of = rate / (raw / raw_s), "records/s over the raw read of the same records"
    differ = sorted(path for path in read[False] if read[False][path] != read[True].get(path))
    report.add("answers: from the snapshots == from the whole log", pages=len(read[False]),
               identical="yes" if not differ else f"no: {', '.join(differ)}")
    report.notes.append("ready_s: `pipeline gateway` spawned until /api/v1/health answers (it serves once the "
                        "backlog present at start is applied); rebuild_s: the projection's own start to ready; "
                        "page_ms_max: the slowest of the compared requests (median of 3) after each was answered once; rss_mb: "
                        "resident memory after those requests; kb_per_incident: beyond the empty gateway's")
    return report

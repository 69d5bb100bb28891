"""`pipeline bench startup`: spawn to ready, and RSS, of `pipeline run`, one stage, and the gateway.

Baselines in the same run: a bare interpreter, and a raw aiokafka consumer that joins a group and gets
its partitions (what "ready" means for a stage).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.bench.harness import Child, Report, bench_settings, child_env
from pipeline.bus.topics import apply
from pipeline.embedded.process import free_port

_RAW_JOIN = """
import asyncio, sys, time
from aiokafka import AIOKafkaConsumer
async def main():
    c = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3])
    await c.start()
    while not c.assignment():
        await asyncio.sleep(0.01)
    print("assigned", flush=True)
    await c.stop()
asyncio.run(main())
"""


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("startup: spawn -> ready, and resident memory")
    settings = bench_settings(bootstrap)
    asyncio.run(apply(settings))

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    report.add("baseline: bare python", seconds=time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _RAW_JOIN, bootstrap, settings.topic("signals"), f"raw-join-{time.time_ns()}"],
        check=True, capture_output=True,
    )
    raw_join = time.perf_counter() - started
    report.add("baseline: raw aiokafka group join", seconds=raw_join)

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stage = Child(["stage", "correlate"], child_env(settings), base / "stage.log")
        try:
            seconds = stage.wait_log("partitions assigned")
            time.sleep(1.0)
            row = report.add("pipeline stage correlate", seconds=seconds, rss_mb=stage.sample_rss() / 2**20)
            row.ratio, row.ratio_of = seconds / raw_join, "over the raw group join"
        finally:
            stage.stop()

        for name, command in (("pipeline gateway", "gateway"), ("pipeline run (existing broker)", "run")):
            port = free_port()
            child = Child([command], child_env(settings, PORT=str(port)), base / f"{command}.log")
            try:
                seconds = child.wait_http(f"http://127.0.0.1:{port}/api/v1/health")
                time.sleep(1.0)
                report.add(name, seconds=seconds, rss_mb=child.sample_rss() / 2**20)
            finally:
                child.stop()

        port, kafka_port = free_port(), free_port()
        env = {"PORT": str(port), "DATA_DIR": str(base / "embedded"), "EMBEDDED_KAFKA_PORT": str(kafka_port),
               "HOST": "127.0.0.1", "KAFKA_BOOTSTRAP_SERVERS": ""}
        embedded = Child(["run"], env, base / "embedded.log")
        try:
            seconds = embedded.wait_http(f"http://127.0.0.1:{port}/api/v1/health", timeout=300)
            time.sleep(1.0)
            broker_rss = sum(c.memory_info().rss for c in embedded.ps.children(recursive=True))
            report.add(
                "pipeline run (embedded broker, new data dir)",
                seconds=seconds,
                rss_mb=embedded.sample_rss() / 2**20,
                broker_rss_mb=broker_rss / 2**20,
            )
        finally:
            embedded.stop()
    report.notes.append("jar cache warm; the first `pipeline run` on a new machine also downloads Kafka (~15 s)")
    return report

"""`pipeline run`, the README's first command: embedded broker, all parts, clean Ctrl-C, data kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaConsumer

from pipeline.embedded.process import free_port
from tests.support import sample


async def _read(bootstrap: str, topic: str, count: int) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        values: list[dict] = []
        deadline = time.monotonic() + 60
        while len(values) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(json.loads(r.value) for r in records)
        return values
    finally:
        await consumer.stop()


def start(data_dir: Path, port: int, kafka_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        PORT=str(port), DATA_DIR=str(data_dir), EMBEDDED_KAFKA_PORT=str(kafka_port), HOST="127.0.0.1"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pipeline run exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"pipeline run not healthy in {timeout}s:\n{log.read_text()[-4000:]}")


def interrupt(proc: subprocess.Popen[bytes], log: Path) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    broker_pids = [c.pid for c in children]
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p for p in broker_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert leftovers == [], f"stray processes after Ctrl-C: {leftovers}"


def test_run_serves_everything_on_an_embedded_broker_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    port, kafka_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    proc = start(tmp_path / "data", port, kafka_port, log)
    try:
        wait_healthy(url, proc, log)
        assert httpx.post(f"{url}/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"), trust_env=False).status_code == 200
        deadline = time.monotonic() + 30
        body: dict = {}
        while time.monotonic() < deadline:
            body = httpx.get(f"{url}/api/v1/incidents", trust_env=False).json()
            if body["summary"]["total"] == 2:
                break
            time.sleep(0.1)
        assert body["summary"]["total"] == 2, body
        assert any(psutil.Process(proc.pid).children(recursive=True)), "embedded broker should be a child"
        # Every stage ran: each incident was enriched and scored (no Prometheus here: rules only, and why).
        scores = asyncio.run(_read(f"127.0.0.1:{kafka_port}", "pipeline.scores", 2))
        assert {s["verdict"] for s in scores} == {"degraded"}
        assert all(s["degraded_reason"] == "rules only: 45 of 45 features missing" for s in scores)
        deadline = time.monotonic() + 120  # the model loads once the process is ready (trains on a new machine)
        while "reference ML model loaded" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "reference ML model loaded" in log.read_text(), log.read_text()[-3000:]
    finally:
        interrupt(proc, log)
    assert '"event": "stopped"' in log.read_text()

    # Same data dir: the incidents are still there after a restart.
    proc = start(tmp_path / "data", port, kafka_port, log)
    try:
        wait_healthy(url, proc, log)
        again = httpx.get(f"{url}/api/v1/incidents", trust_env=False).json()
        assert [i["id"] for i in again["incidents"]] == [i["id"] for i in body["incidents"]]
    finally:
        interrupt(proc, log)

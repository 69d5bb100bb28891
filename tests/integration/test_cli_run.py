"""`pipeline run`, the README's first command: embedded broker, all parts, clean Ctrl-C, data kept."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import psutil
from aiokafka import AIOKafkaConsumer

from pipeline.embedded.process import free_port
from tests.support import interrupt, sample, start_run, wait_healthy


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


def test_run_serves_everything_on_an_embedded_broker_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    port, kafka_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    proc = start_run(tmp_path / "data", port, kafka_port, log)
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
    proc = start_run(tmp_path / "data", port, kafka_port, log)
    try:
        wait_healthy(url, proc, log)
        again = httpx.get(f"{url}/api/v1/incidents", trust_env=False).json()
        assert [i["id"] for i in again["incidents"]] == [i["id"] for i in body["incidents"]]
    finally:
        interrupt(proc, log)

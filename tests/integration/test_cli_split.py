"""The cluster layout: `pipeline stage ingest`, `pipeline stage correlate` and `pipeline gateway` as
separate processes on one broker, as one Deployment each would run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pipeline.config import Settings
from pipeline.embedded.process import free_port
from tests.support import sample


def spawn(args: list[str], settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def wait_for(check, what: str, logs: list[Path], timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s\n" + "\n".join(p.read_text()[-2000:] for p in logs))


def test_stage_and_gateway_commands_work_as_separate_processes(settings: Settings, tmp_path: Path) -> None:
    applied = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "topics", "apply"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
             "TOPIC_PREFIX": settings.topic_prefix},
        capture_output=True, text=True, timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    ingest_port, gateway_port = free_port(), free_port()
    logs = [tmp_path / "ingest.log", tmp_path / "correlate.log", tmp_path / "gateway.log"]
    procs = [
        spawn(["stage", "ingest"], settings, ingest_port, logs[0]),
        spawn(["stage", "correlate"], settings, free_port(), logs[1]),
        spawn(["gateway"], settings, gateway_port, logs[2]),
    ]
    try:
        ingest, gateway = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{gateway_port}"
        wait_for(lambda: httpx.get(f"{ingest}/health", trust_env=False).status_code == 200, "ingest up", logs)
        wait_for(lambda: httpx.get(f"{gateway}/health", trust_env=False).status_code == 200, "gateway up", logs)
        # Each process serves only its own part.
        assert httpx.get(f"{ingest}/api/v1/incidents", trust_env=False).status_code == 404
        assert httpx.post(f"{gateway}/api/v1/alerts", json={}, trust_env=False).status_code == 404
        posted = httpx.post(f"{ingest}/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"), trust_env=False)
        assert posted.status_code == 200

        def two() -> dict | None:
            body = httpx.get(f"{gateway}/api/v1/incidents", trust_env=False).json()
            return body if body["summary"]["total"] == 2 else None

        body = wait_for(two, "two incidents in the gateway", logs)
        assert {i["resource"] for i in body["incidents"]} == {"Pod/cart-7d9f8b6c5-hw7kz", "Pod/cart-7d9f8b6c5-x2x9q"}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
    assert codes == [0, 0, 0], "\n".join(p.read_text()[-2000:] for p in logs)

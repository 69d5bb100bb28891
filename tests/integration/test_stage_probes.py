"""A stage process's probes, from the real `pipeline stage correlate` on the session's broker: its metrics port
answers /healthz (liveness, from the event loop) at once, /readyz 200 once its partitions are assigned and its
state restored -- naming the stage -- and /metrics (the process's registry)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_stage_serves_healthz_readyz_and_metrics_on_its_metrics_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TOPIC_PREFIX": f"probes{port}.",
           "HOST": "127.0.0.1", "METRICS_PORT": str(port)}
    assert subprocess.run([sys.executable, "-m", "pipeline.cli", "topics", "apply"], env=env, capture_output=True,
                          timeout=120, check=False).returncode == 0
    log = tmp_path / "stage.log"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "stage", "correlate"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 120, None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False) as http:
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    ready = http.get("/readyz")
                except httpx.HTTPError:
                    time.sleep(0.1)
                    continue
                if ready.status_code == 200:
                    break
                assert ready.status_code == 503 and ready.json()["status"] == "not ready", ready.text
                time.sleep(0.1)
            assert ready is not None and ready.status_code == 200, log.read_text()[-3000:]
            assert ready.json() == {"status": "ready", "stages": ["correlate"], "waiting_for_partitions": [],
                                    "stuck": []}
            assert http.get("/healthz").json() == {"status": "ok"}
            metrics = http.get("/metrics").text
            assert "process_resident_memory_bytes" in metrics and "pipeline_http_refused_total" in metrics
    finally:
        proc.send_signal(2)
        proc.wait(30)
    assert '"event": "stopped"' in log.read_text()

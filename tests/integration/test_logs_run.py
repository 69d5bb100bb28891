"""What `pipeline run` writes on stderr when nobody chose a format and stderr is a pipe (a container, a log
collector): one JSON object per line with `timestamp`, `level`, `logger` and `event`, the embedded broker's own
events included (a stack trace stays on its line); an INFO line for each incident opened and each decision made,
carrying the ids of the message it is about; and never the API token."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pipeline.embedded.process import free_port
from tests.support import interrupt, sample, start_run, wait_healthy

TOKEN = "s3cr3t-log-test-token-5b1e"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Stderr:
    """The child's stderr read from its pipe line by line (as a log collector reads it), copied to a file for the
    failure messages."""

    def __init__(self, proc: subprocess.Popen[bytes], copy: Path) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc, copy), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes], copy: Path) -> None:
        assert proc.stderr is not None
        with copy.open("a") as out:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                out.write(line + "\n")
                out.flush()

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_for(self, check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.records()):
                return
            time.sleep(0.2)
        raise AssertionError(f"not logged in {timeout}s: {what}\n" + "\n".join(self.lines[-40:]))

    def close(self) -> None:
        self._thread.join(30)


def named(records: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == event]


def test_pipeline_run_logs_one_json_object_per_line_with_what_happened_and_no_secret(tmp_path: Path) -> None:
    port, kafka_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    copy = tmp_path / "stderr.log"
    proc = start_run(tmp_path / "data", port, kafka_port, tmp_path / "stdout.log", stderr=subprocess.PIPE,
                     API_TOKEN=TOKEN, LOG_FORMAT=None, LOG_LEVEL=None)
    stderr = Stderr(proc, copy)
    try:
        wait_healthy(url, proc, copy)
        accepted = httpx.post(f"{url}/api/v1/alerts", json=sample("alertmanager-webhook-firing.json"), trust_env=False,
                              headers={"Authorization": f"Bearer {TOKEN}",
                                       "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"})
        assert accepted.status_code == 200, accepted.text
        signal_ids = set(accepted.json()["signal_ids"])
        assert len(signal_ids) == 2
        # Bytes that are not Kafka's protocol: the broker logs a warning with a Java stack trace.
        with socket.create_connection(("127.0.0.1", kafka_port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: kafka\r\n\r\n")
        stderr.wait_for(lambda rs: len(named(rs, "decision made")) == 2, "two decisions")
        stderr.wait_for(lambda rs: any("InvalidReceiveException" in r.get("exception", "") for r in rs),
                        "the broker's warning about the bytes that are not Kafka's")
    finally:
        interrupt(proc, copy)
        stderr.close()

    assert stderr.lines, "nothing on stderr"
    records = []
    for line in stderr.lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"a line on stderr is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line
        for field in ("timestamp", "level", "logger", "event"):
            assert isinstance(record.get(field), str) and record[field], (field, line)
        records.append(record)
    assert TOKEN not in "\n".join(stderr.lines)

    opened = named(records, "incident opened")
    assert len(opened) == 2, opened
    assert {r["event_id"] for r in opened} == signal_ids  # bound: the signal each incident was opened by
    for r in opened:
        assert r["level"] == "info" and r["logger"] == "pipeline.correlate" and r["stage"] == "correlate"
        assert r["incident_id"].startswith("inc-") and r["trace_id"] == TRACE_ID
        assert r["severity"] == "critical" and r["resource"].startswith("shop/Pod/cart-")

    decisions = named(records, "decision made")
    assert {r["incident_id"] for r in decisions} == {r["incident_id"] for r in opened}
    for r in decisions:
        assert r["level"] == "info" and r["stage"] == "arbitrate" and r["trace_id"] == TRACE_ID
        assert r["event_id"] and r["event_id"] not in signal_ids  # the proposal's event, not the alert's
        assert r["outcome"] == "approved" and r["action"] == "scale_resources" and r["namespace"] == "shop"
        assert "matched_rule" in r["reasons"]

    # Alerts themselves are not logged one by one at INFO (the ingest path stays quiet).
    assert not [r for r in records if r["logger"] == "pipeline.ingest" and r["level"] == "info"]

    broker = [r for r in records if "InvalidReceiveException" in r.get("exception", "")]
    assert len(broker) == 1, broker
    assert broker[0]["logger"] == "org.apache.kafka.common.network.Selector" and broker[0]["level"] == "warning"
    assert "\n\tat org.apache.kafka" in broker[0]["exception"]  # the whole stack trace, on the event's line
    assert any(r["logger"] == "kafka.server.KafkaRaftServer" and r["level"] == "info" for r in records)

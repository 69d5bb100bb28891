"""A real Alertmanager 0.25 delivers webhook v4 payloads, with bearer auth, to a local receiver.

Needs the binaries from scripts/install-components.sh; fails (never skips) without them.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from tests.components.alertmanager import AlertmanagerServer

T = TypeVar("T")
ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookReceiver:
    """Records every POST (monotonic receive time, path, headers, JSON body) on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "at": time.monotonic(),
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "json": json.loads(body),
                        }
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alertmanager/webhook"

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def alerts_with_status(requests: list[dict[str, Any]], status: str) -> dict[str, dict[str, Any]]:
    """fingerprint -> alert, over every received payload, for alerts with the given status."""
    return {
        alert["fingerprint"]: alert
        for req in requests
        for alert in req["json"]["alerts"]
        if alert["status"] == status
    }


def test_real_alertmanager_delivers_firing_and_resolved_webhooks(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    pods = ["cart-7d9f8b6c5-hw7kz", "cart-7d9f8b6c5-x2x9q"]
    labels = [
        {"alertname": "PodOOMKilled", "namespace": "shop", "pod": pod, "container": "app",
         "severity": "critical"}
        for pod in pods
    ]

    with WebhookReceiver() as receiver, AlertmanagerServer(tmp_path, receiver.url, bearer_token=token) as am:
        assert "authorization" in am.config_path.read_text()
        fired_at = time.monotonic()
        for lbl in labels:
            am.fire(lbl, {"summary": f"Container app in shop/{lbl['pod']} was OOMKilled"})

        # Alertmanager holds both alerts ...
        def both_active() -> list[dict[str, Any]] | None:
            got = [a for a in am.active_alerts() if a["labels"].get("alertname") == "PodOOMKilled"]
            return got if len(got) == 2 else None

        active = wait_for("both alerts in GET /api/v2/alerts", both_active)
        fingerprints = {a["labels"]["pod"]: a["fingerprint"] for a in active}
        assert all(a["status"]["state"] == "active" for a in active)

        # ... and delivers both, firing, to the webhook. group_by includes `pod`: one group per pod.
        def delivered(status: str) -> Callable[[], dict[str, dict[str, Any]] | None]:
            def probe() -> dict[str, dict[str, Any]] | None:
                got = alerts_with_status(receiver.snapshot(), status)
                return got if set(got) >= set(fingerprints.values()) else None

            return probe

        firing = wait_for("firing webhooks for both pods", delivered("firing"))
        first = receiver.snapshot()[0]
        print(f"\nfirst webhook {first['at'] - fired_at:.3f}s after fire()")

        for req in receiver.snapshot():
            assert req["path"] == "/alertmanager/webhook"
            assert req["headers"]["Authorization"] == f"Bearer {token}"
            assert req["headers"]["Content-Type"] == "application/json"
            assert req["headers"]["User-Agent"].startswith("Alertmanager/")
            payload = req["json"]
            assert payload["version"] == "4"
            assert payload["receiver"] == "pipeline"
            assert payload["status"] == "firing"
            assert payload["externalURL"] == am.url
            assert payload["truncatedAlerts"] == 0
            assert set(payload["groupLabels"]) == {"alertname", "namespace", "pod"}
            assert len(payload["alerts"]) == 1
            assert payload["commonLabels"] == payload["alerts"][0]["labels"]

        for lbl in labels:
            alert = firing[fingerprints[lbl["pod"]]]
            assert alert["labels"] == lbl
            assert alert["annotations"]["summary"].endswith("was OOMKilled")
            assert alert["endsAt"] == ZERO_TIME
            assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
            assert alert["generatorURL"] == ""

        # The real amtool sees them too.
        listed = json.loads(am.amtool("-o", "json", "alert", "query", "alertname=PodOOMKilled"))
        assert {a["labels"]["pod"] for a in listed} == set(pods)
        assert {a["fingerprint"] for a in listed} == set(fingerprints.values())
        simple = am.amtool("alert", "query")
        assert simple.count("PodOOMKilled") == 2

        # Resolve: same labels and startsAt, endsAt = now -> resolved webhooks for the same fingerprints.
        resolved_at = time.monotonic()
        for lbl in labels:
            am.resolve(lbl)
        resolved = wait_for("resolved webhooks for both pods", delivered("resolved"))
        first_resolved = min(r["at"] for r in receiver.snapshot() if r["json"]["status"] == "resolved")
        print(f"first resolved webhook {first_resolved - resolved_at:.3f}s after resolve()")
        for lbl in labels:
            fp = fingerprints[lbl["pod"]]
            assert resolved[fp]["labels"] == lbl
            assert resolved[fp]["startsAt"] == firing[fp]["startsAt"]  # same alert instance
            assert resolved[fp]["endsAt"] != ZERO_TIME
        resolved_payloads = [r for r in receiver.snapshot() if r["json"]["status"] == "resolved"]
        assert all(r["headers"]["Authorization"] == f"Bearer {token}" for r in resolved_payloads)
        assert all(a["status"] == "resolved" for r in resolved_payloads for a in r["json"]["alerts"])

        wait_for("alerts gone from GET /api/v2/alerts", lambda: not am.active_alerts() or None)
        assert json.loads(am.amtool("-o", "json", "alert", "query")) == []

    assert not am.running

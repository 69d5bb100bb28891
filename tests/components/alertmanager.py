"""A real Prometheus Alertmanager (Debian ``prometheus-alertmanager`` 0.25) for integration tests.

Install the binaries with ``scripts/install-components.sh``. Tests never skip when they are missing:
:func:`require_binary` raises :class:`ComponentMissingError` so the test fails with instructions.

Usage::

    with AlertmanagerServer(tmp_path, "http://127.0.0.1:8080/webhook", bearer_token="s3cret") as am:
        am.fire({"alertname": "PodOOMKilled", "namespace": "shop", "pod": "cart-1"}, {"summary": "..."})
        ...
        am.resolve({"alertname": "PodOOMKilled", "namespace": "shop", "pod": "cart-1"})

The API is synchronous (``httpx.Client``); from async tests call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.embedded.process import (
    ComponentMissingError,
    ServerProcess,
    free_port,
    new_workdir,
    require_binary,
)

__all__ = ["AlertmanagerServer", "ComponentMissingError", "require_binary", "free_port"]

def _rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label_key(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset((str(k), str(v)) for k, v in labels.items())


class AlertmanagerServer(ServerProcess):
    """A real Alertmanager subprocess on 127.0.0.1 whose only receiver is a webhook.

    Route: ``group_by: [alertname, namespace, pod]``, ``group_wait: 1s``, ``group_interval: 2s``,
    ``repeat_interval: 1h``; receiver ``pipeline`` with one webhook (``send_resolved: true``,
    ``max_alerts: 0``), authenticated with ``Authorization: Bearer <bearer_token>`` when given.
    Gossip is disabled (``--cluster.listen-address=``), so only the HTTP port is opened.
    """

    receiver_name = "pipeline"
    group_by = ("alertname", "namespace", "pod")
    group_wait = "1s"
    group_interval = "2s"
    repeat_interval = "1h"
    log_level = "debug"  # notification attempts and failures are logged at debug level
    name = "alertmanager"

    def __init__(self, workdir: Path, webhook_url: str, *, bearer_token: str | None = None) -> None:
        super().__init__()
        self.binary = require_binary("alertmanager")
        self.amtool_binary = require_binary("amtool")
        self.dir = new_workdir(workdir, "alertmanager-")
        self.storage_path = self.dir / "data"
        self.config_path = self.dir / "alertmanager.yml"
        self.log_path = self.dir / "alertmanager.log"
        self.webhook_url = webhook_url
        self.bearer_token = bearer_token
        self.port = free_port()
        # startsAt of alerts fired through this object and not resolved yet, keyed by label set.
        self._starts_at: dict[frozenset[tuple[str, str]], str] = {}
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        webhook: dict[str, Any] = {"url": self.webhook_url, "send_resolved": True, "max_alerts": 0}
        if self.bearer_token is not None:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": self.bearer_token},
            }
        return {
            "route": {
                "receiver": self.receiver_name,
                "group_by": list(self.group_by),
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": self.receiver_name, "webhook_configs": [webhook]}],
        }

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.storage_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            f"--log.level={self.log_level}",
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30) -> AlertmanagerServer:
        """Start the process and wait until ``/-/ready`` answers 200."""
        if self.running:
            return self
        self.storage_path.mkdir(parents=True, exist_ok=True)

        def new_port() -> None:
            self.port = free_port()

        self._spawn_until_ready(time.monotonic() + timeout, on_port_lost=new_port)
        return self

    # ------------------------------------------------------------------ HTTP API (v2)
    def _post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        resp = self.client.post("/api/v2/alerts", json=alerts)
        if resp.status_code != 200:
            raise RuntimeError(f"POST /api/v2/alerts -> {resp.status_code}: {resp.text}")

    def fire(self, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        """Post a firing alert. Re-firing the same label set keeps its startsAt (same alert instance).

        No endsAt is sent, so Alertmanager keeps it firing for ``resolve_timeout`` (5 m) unless re-fired.
        """
        key = _label_key(labels)
        starts_at = self._starts_at.setdefault(key, _rfc3339(datetime.now(UTC)))
        alert: dict[str, Any] = {"labels": dict(labels), "startsAt": starts_at}
        if annotations:
            alert["annotations"] = dict(annotations)
        self._post_alerts([alert])

    def resolve(self, labels: dict[str, str]) -> None:
        """Resolve an alert: the same labels and startsAt, with endsAt = now.

        Alerts fired elsewhere (e.g. with amtool) are looked up in ``GET /api/v2/alerts`` for their startsAt.
        """
        key = _label_key(labels)
        starts_at = self._starts_at.get(key)
        if starts_at is None:
            for alert in self.active_alerts():
                if _label_key(alert.get("labels", {})) == key:
                    starts_at = alert["startsAt"]
                    break
            else:
                raise KeyError(f"no active alert with labels {labels!r} in {self.url}")
        now = datetime.now(UTC)
        ends_at = _rfc3339(now)
        if ends_at < starts_at:  # same-millisecond fire/resolve: endsAt must not precede startsAt
            ends_at = starts_at
        self._post_alerts([{"labels": dict(labels), "startsAt": starts_at, "endsAt": ends_at}])
        self._starts_at.pop(key, None)

    def active_alerts(self, **filters: Any) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (unresolved alerts). Keyword filters are passed as query parameters,
        e.g. ``active_alerts(filter=['alertname="X"'], silenced=False)``."""
        resp = self.client.get("/api/v2/alerts", params=filters or None)
        resp.raise_for_status()
        return resp.json()

    # ------------------------------------------------------------------ amtool
    def amtool(self, *args: str, timeout: float = 30) -> str:
        """Run the real amtool against this server; returns stdout, raises RuntimeError on failure."""
        argv = [self.amtool_binary, f"--alertmanager.url={self.url}", *args]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited with {result.returncode}:\n{result.stderr}{result.stdout}"
            )
        return result.stdout

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AlertmanagerServer {self.url} {state} dir={self.dir}>"

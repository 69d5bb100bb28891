"""Dependency checks for `/api/v1/health`: each answers ok/degraded/down with a message and latency."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from pipeline.bus import kafka
from pipeline.config import Settings
from pipeline.events import iso_z

CHECK_TIMEOUT_S = 3.0


@dataclass
class DependencyStatus:
    name: str
    status: str  # ok | degraded | down
    message: str
    latency_ms: float
    checked_at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "latency_ms": round(self.latency_ms, 2),
            "checked_at": iso_z(self.checked_at),
            **self.details,
        }


def stages_status() -> dict[str, Any] | None:
    """The stream stages this process runs and their stuck partitions (held on one offset while input waits for
    longer than STAGE_STUCK_AFTER_S); None when it runs none (a gateway-only process never imports them)."""
    stage = sys.modules.get("pipeline.bus.stage")
    if stage is None:
        return None
    running = stage.running_stages()
    if not running:
        return None
    stuck = stage.stuck_partitions()
    return {"status": "stuck" if stuck else "ok", "running": running, "stuck": stuck}


def readiness() -> tuple[bool, dict[str, Any]]:
    """`/readyz` of a process: ready once each of its stages has its partitions (state restored) and none is
    held on one offset past STAGE_STUCK_AFTER_S; (ready, what it says)."""
    stage = sys.modules.get("pipeline.bus.stage")
    if stage is None:
        return True, {"status": "ready", "stages": []}
    waiting, stuck = stage.waiting_stages(), stage.stuck_partitions()
    ready = not waiting and not stuck
    return ready, {"status": "ready" if ready else "not ready", "stages": stage.running_stages(),
                   "waiting_for_partitions": waiting, "stuck": stuck}


def probe_app() -> Any:
    """The metrics port's app: `/metrics`, `/healthz` (liveness: answered by the event loop, so a blocked loop
    fails it) and `/readyz` (`readiness`: 503 with the reason until ready)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        ready, body = readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)])


class KafkaProbe:
    """Asks the cluster for its brokers, through one long-lived admin client, with a short deadline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> DependencyStatus:
        started = time.perf_counter()
        try:
            async with self._lock:
                brokers = await asyncio.wait_for(self._describe(), CHECK_TIMEOUT_S)
            status, message = "ok", f"{brokers} broker(s) reachable"
        except Exception as exc:  # noqa: BLE001 - any failure means the broker is not usable
            status, message = "down", f"kafka unreachable: {type(exc).__name__}"
        latency = (time.perf_counter() - started) * 1000
        details: dict[str, Any] = {}
        stages = stages_status()
        if stages is not None:
            # The broker answers, but a stage of this process may be held on a batch: say so beside it.
            details["stages"] = stages
            if stages["stuck"]:
                held = ", ".join(
                    f"{s['stage']} {s['topic']}/{s['partition']} at offset {s['offset']} for "
                    f"{s['held_seconds']:g}s"
                    for s in stages["stuck"]
                )
                message = f"{message}; stage partition(s) stuck: {held}"
        return DependencyStatus("kafka", status, message, latency, datetime.now(UTC), details)

    async def group_members(self, group_id: str) -> int:
        """How many consumers are in a consumer group now (0 for an empty or unknown group); raises when Kafka
        does not answer within CHECK_TIMEOUT_S or refuses (e.g. not authorised to describe the group)."""
        async with self._lock:
            return await asyncio.wait_for(self._members(group_id), CHECK_TIMEOUT_S)

    async def _members(self, group_id: str) -> int:
        admin = await self._client()
        count = 0
        for response in await admin.describe_consumer_groups([group_id]):
            for group in response.groups:  # (error_code, group, state, protocol_type, protocol, members, ...)
                error_code, _, state, *_ = group
                if error_code:
                    raise RuntimeError(
                        f"describing consumer group {group_id} failed: Kafka error {error_code}"
                    )
                if state != "Dead":
                    count += len(group[5])
        return count

    async def _client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = kafka.admin(self.settings)
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def _describe(self) -> int:
        cluster = await (await self._client()).describe_cluster()
        return len(cluster["brokers"])

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


async def prometheus_status(client: Any) -> DependencyStatus:
    """Prometheus / Thanos readiness (`/-/ready`); down only degrades the pipeline."""
    started = time.perf_counter()
    ok = await client.ready()
    latency = (time.perf_counter() - started) * 1000
    message = "ready" if ok else f"not ready or unreachable at {client.url}"
    return DependencyStatus("prometheus", "ok" if ok else "down", message, latency, datetime.now(UTC))

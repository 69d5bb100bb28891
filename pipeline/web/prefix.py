"""Requests under a doubled `/api/v1/api/v1/` prefix are served as `/api/v1/...`.

The MCP server's own Helm chart sets `COORDINATION_ENGINE_URL` to `http://<engine>:8080/api/v1`, and its client
appends `/api/v1/incidents` etc. to that base, so every call arrives as `/api/v1/api/v1/...`. No route of ours
starts with `/api/v1/api/v1/`, so mapping the doubled prefix onto one is unambiguous. The first such request
logs a warning that names the fix (set the URL without `/api/v1`); every one is counted in
`pipeline_gateway_doubled_prefix_requests_total`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

from pipeline.observability import get_logger

PREFIX = "/api/v1"
DOUBLED = PREFIX + PREFIX + "/"
FIX = (
    "the client's base URL ends in /api/v1 and it appends /api/v1/... again; set it without the suffix, "
    "e.g. the MCP server's COORDINATION_ENGINE_URL=http://<gateway>:8080 (Helm: coordinationEngine.url)"
)

log = get_logger("pipeline.web")
DOUBLED_REQUESTS = Counter(
    "pipeline_gateway_doubled_prefix_requests_total",
    "Requests that arrived under /api/v1/api/v1/ and were served as /api/v1/",
)


class DoubledPrefix:
    """ASGI middleware: `/api/v1/api/v1/<rest>` becomes `/api/v1/<rest>` before routing."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(DOUBLED):
            path = scope["path"][len(PREFIX) :]
            raw = scope.get("raw_path") or b""
            raw = raw[len(PREFIX) :] if raw.startswith(DOUBLED.encode()) else path.encode()
            scope = {**scope, "path": path, "raw_path": raw}
            DOUBLED_REQUESTS.inc()
            if not self.warned:
                self.warned = True
                log.warning("request under a doubled /api/v1 prefix served as /api/v1", path=path, fix=FIX)
        await self.app(scope, receive, send)

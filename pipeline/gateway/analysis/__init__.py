"""Capacity, prediction and rightsizing routes, computed from Prometheus history.

The engine's R8 (`POST /api/v1/predict`), R17/R18 (capacity), R20-R22 (disk exhaustion, memory leaks,
rightsizing) and the MCP server's `GET /api/v1/capacity/trends`. Per-object rows (one per filesystem, per
container) replace the engine's single aggregated row, which is kept as `aggregate`.

Every input is validated before it gets near PromQL: names against the Kubernetes DNS label/subdomain
rules, `window` against its enum, `mountpoint` against a strict path pattern; label values are still
quoted and regex-escaped when a query is built. Where the MCP server promises namespace wildcards
(`POST /api/v1/predict`, `GET /api/v1/capacity/trends`), a namespace may be a glob of label characters and
`*`/`?`, translated to an anchored regex matcher (pipeline.domain.names.glob_pattern). Independent queries run concurrently; the numbers are
computed by `pipeline.domain.capacity` in a worker thread, so the event loop never waits on arithmetic.
"""

from pipeline.gateway.analysis.routes import router

__all__ = ["router"]

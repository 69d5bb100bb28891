"""The one way the pipeline makes an outgoing async HTTP client.

httpx's API (requests, responses, timeouts, exceptions: what every adapter and test is written against)
over aiohttp's transport (`httpx-aiohttp`, by an httpx maintainer). httpx's own transport (httpcore on
anyio, h11) costs about twice the CPU per request on the hot paths that call Prometheus and the model for
every analysis (`pipeline bench analyze`); aiohttp's C-accelerated HTTP/1.1 is what brings a gateway call
under the Go engine's CPU. The environment's proxy settings are ignored (`trust_env=False`): the pipeline
talks to in-cluster services it is configured for.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx
from httpx_aiohttp import HttpxAiohttpClient


def async_client(
    *,
    timeout: float | httpx.Timeout,
    verify: ssl.SSLContext | bool = True,
    headers: Mapping[str, str] | None = None,
    base_url: str = "",
    limits: httpx.Limits | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient`; `transport` replaces the aiohttp one (tests, ASGI apps)."""
    return HttpxAiohttpClient(
        timeout=timeout,
        verify=verify,
        headers=dict(headers or {}),
        base_url=base_url,
        limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
        transport=transport,
        trust_env=False,
    )

"""The one way the pipeline makes an outgoing async HTTP client.

httpx's API (requests, responses, timeouts, exceptions: what every adapter and test is written against)
over aiohttp's transport (`httpx-aiohttp`, by an httpx maintainer). httpx's own transport (httpcore on
anyio, h11) costs about twice the CPU per request on the hot paths that call Prometheus and the model for
every analysis (`pipeline bench analyze`); aiohttp's C-accelerated HTTP/1.1 is what brings a gateway call
under the Go engine's CPU. The environment's proxy settings are ignored (`trust_env=False`): the pipeline
talks to in-cluster services it is configured for.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with its errors told apart: it reports every aiohttp connection error
    that is not a timeout (refused, reset, closed by the server) as `httpx.ConnectTimeout`, so callers
    would wait out their timeout retrying a refused connection and report "timed out"."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if cause is None or isinstance(cause, asyncio.TimeoutError):
                raise httpx.ConnectTimeout(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(exc) or "connection failed", request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from cause
            raise httpx.ReadError(str(exc) or type(cause).__name__, request=request) from cause


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
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return HttpxAiohttpClient(
        timeout=timeout,
        headers=dict(headers or {}),
        base_url=base_url,
        transport=transport or _Transport(verify=verify, limits=limits, trust_env=False),
        trust_env=False,
    )

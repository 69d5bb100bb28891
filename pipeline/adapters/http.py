"""The one way the pipeline makes an outgoing async HTTP client.

httpx's API (requests, responses, timeouts, exceptions: what every adapter and test is written against)
over aiohttp's transport (`httpx-aiohttp`, by an httpx maintainer). httpx's own transport (httpcore on
anyio, h11) costs about twice the CPU per request on the hot paths that call Prometheus and the model for
every analysis (`pipeline bench analyze`); aiohttp's C-accelerated HTTP/1.1 is what brings a gateway call
under the Go engine's CPU.

Every outgoing call (Prometheus/Thanos, KServe, the ML service, Alertmanager reconcile) is made by a client
from `async_client`, with one policy: the dependency's timeout and TLS settings, the pipeline's user agent,
CA bundle and proxy. The environment's proxy variables are ignored (`trust_env=False`): the pipeline talks
to in-cluster services it is configured for, and a proxy is used only when `HTTP_PROXY_URL` names one.
ArgoCD Applications are reached through the Kubernetes API (kubernetes-asyncio, TLS from the kubeconfig or
the service account), not over HTTP of our own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from pipeline.config import Settings


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


def tls(*, verify: bool, ca_file: str, default_ca_file: str = "") -> ssl.SSLContext | bool:
    """How to check a dependency's certificate: not at all (`verify` false), against its own CA bundle, else
    against the pipeline's (`HTTP_CA_FILE`), else against the system's trust store."""
    if not verify:
        return False
    cafile = ca_file or default_ca_file
    return ssl.create_default_context(cafile=cafile) if cafile else True


def async_client(
    settings: Settings,
    *,
    timeout: float | httpx.Timeout,
    ca_file: str = "",
    tls_verify: bool = True,
    headers: Mapping[str, str] | None = None,
    base_url: str = "",
    limits: httpx.Limits | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for one dependency: its timeout and TLS (`ca_file`, `tls_verify`), and the
    settings' user agent (`HTTP_USER_AGENT`), CA bundle (`HTTP_CA_FILE`) and proxy (`HTTP_PROXY_URL`) for
    every dependency alike. `transport` replaces the aiohttp one (tests, ASGI apps)."""
    limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
    verify = tls(verify=tls_verify, ca_file=ca_file, default_ca_file=settings.http_ca_file)
    proxy = httpx.Proxy(settings.http_proxy_url) if settings.http_proxy_url else None
    return HttpxAiohttpClient(
        timeout=timeout,
        headers={"User-Agent": settings.http_user_agent, **(headers or {})},
        base_url=base_url,
        transport=transport or _Transport(verify=verify, limits=limits, trust_env=False, proxy=proxy),
        trust_env=False,
    )

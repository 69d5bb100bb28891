"""Serving HTTP: uvicorn inside the process's own event loop, with the deadlines and connection cap uvicorn
lacks (`GuardedHttpTools`): slow or half-open clients are cut, too many connections get a JSON 503."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Generator
from http import HTTPStatus
from typing import Any

import uvicorn
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipeline.config import Settings


class Server(uvicorn.Server):
    """uvicorn inside our own event loop; the process (not uvicorn) owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


HTTP_REFUSED = Counter(
    "pipeline_http_refused_total",
    "Requests refused and connections closed on slow, oversized or too many clients "
    "(header_timeout, body_timeout, headers_too_large, too_many_connections)",
    ["reason"],
)


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    """The answer past HTTP_MAX_CONNECTIONS: JSON like every error, and the connection is not kept."""
    HTTP_REFUSED.labels("too_many_connections").inc()
    body = json.dumps({"status": "error", "error": "too many open connections; retry shortly",
                       "code": "TOO_MANY_CONNECTIONS"}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class Deferred:
    """An ASGI app built later (`build`, e.g. a model loading in a thread): served at once, so its URL is known;
    `start` begins building it (the first request does, if nothing did before). A request waits until the app
    is there, or gets a JSON 503 saying why building it failed."""

    def __init__(self, build: Callable[[], Awaitable[Any]], what: str) -> None:
        self.build = build
        self.what = what
        self._building: asyncio.Future[Any] | None = None

    def start(self) -> asyncio.Future[Any]:
        if self._building is None:
            self._building = asyncio.ensure_future(self.build())
        return self._building

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            app = await asyncio.shield(self.start())
        except Exception as exc:  # noqa: BLE001 - the app could not be built: every request says so
            body = json.dumps({"status": "error", "error": f"{self.what} unavailable: {exc!r}",
                               "code": "UNAVAILABLE"}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines it lacks (slowloris and slow-drip bodies).

    A request's line and headers must arrive within `header_timeout_s` of the connection or of the request's
    first byte, and its body within `body_timeout_s` of its headers; headers may not exceed `max_header_bytes`.
    Past a deadline the client gets 408 (when it sent something and no response has started) and the
    connection is closed; the app sees a disconnect. Idle keep-alive connections are uvicorn's
    `timeout_keep_alive`. With `max_connections` connections (or requests in progress) open, a request gets a
    JSON 503 (uvicorn's `limit_concurrency`, whose answer is plain text)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    max_header_bytes = 64 * 1024
    max_connections = 4096

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = "headers"  # headers -> body -> done (the app answers; keep-alive idles) -> headers ...
        self._header_bytes = 0
        self._begun = False  # a request's first byte has been parsed (its headers are not complete yet)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout_s, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase != "body":
            self._header_bytes += len(data)
        super().data_received(data)
        if self._phase == "headers" and self._header_bytes > self.max_header_bytes:
            self._refuse("headers_too_large", 431, "REQUEST_HEADERS_TOO_LARGE",
                         f"request line and headers exceed {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        if self._phase != "headers":
            self._phase = "headers"
            self._arm(self.header_timeout_s, "header_timeout")

    def on_headers_complete(self) -> None:
        self._phase, self._header_bytes, self._begun = "body", 0, False
        self._arm(self.body_timeout_s, "body_timeout")
        if len(self.connections) > self.max_connections or len(self.tasks) >= self.max_connections:
            app, self.app = self.app, _too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = "done"
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        what = "request headers" if reason == "header_timeout" else "request body"
        seconds = self.header_timeout_s if reason == "header_timeout" else self.body_timeout_s
        self._refuse(reason, 408, "REQUEST_TIMEOUT", f"{what} not received within {seconds:g} s")

    def _refuse(self, reason: str, status: int, code: str, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        HTTP_REFUSED.labels(reason).inc()
        cycle = self.cycle if self._phase == "body" else None
        answered = cycle is not None and cycle.response_started
        if not answered and (self._phase == "body" or self._begun):
            body = json.dumps({"status": "error", "error": message, "code": code}).encode()
            head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
            self.transport.write(head.encode() + body)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app reads http.disconnect; what it sends next is dropped
            cycle.message_event.set()
        self._phase = "closed"
        self.transport.close()


def server(app: Any, host: str, port: int, settings: Settings | None = None) -> Server:
    """uvicorn bound to host:port with the HTTP_* limits of `settings` (the environment's when None)."""
    limits = settings or Settings()
    protocol = type("GuardedHttpTools", (GuardedHttpTools,), {
        "header_timeout_s": limits.http_header_timeout_s,
        "body_timeout_s": limits.http_body_timeout_s,
        "max_header_bytes": limits.http_max_header_bytes,
        "max_connections": limits.http_max_connections,
    })  # fmt: skip
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", loop="none",
        log_config=None,  # uvicorn's loggers propagate to the root handler: JSON (observability.py)
        http=protocol, timeout_keep_alive=limits.http_keep_alive_s,  # type: ignore[arg-type]
    )  # fmt: skip
    return Server(config)

"""The one HTTP client factory over real sockets: answers, and each failure as the httpx error callers
handle (a refused connection must not look like a timeout: callers would retry it until their deadline)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from pipeline.adapters.http import async_client


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _server(handler) -> tuple[asyncio.AbstractServer, str]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_a_json_answer_and_a_form_post() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        body = await reader.readexactly(length)
        payload = b'{"echo": "%s"}' % body
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        await writer.drain()
        writer.close()

    server, url = await _server(handler)
    async with server, async_client(timeout=5) as client:
        response = await client.post(url, content=b"query=up", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json() == {"echo": "query=up"}


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    async with async_client(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{_closed_port()}/")


async def test_a_server_that_closes_without_answering_is_a_transport_error_not_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server, url = await _server(handler)
    async with server, async_client(timeout=5) as client:
        with pytest.raises(httpx.TransportError) as error:
            await client.get(url)
    assert not isinstance(error.value, httpx.TimeoutException)


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server, url = await _server(handler)
    async with server, async_client(timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)

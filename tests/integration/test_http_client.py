"""The one HTTP client factory over real sockets: answers, and each failure as the httpx error callers
handle (a refused connection must not look like a timeout: callers would retry it until their deadline);
the settings' user agent, proxy and CA bundles on every client it makes."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import certifi
import httpx
import pytest

from pipeline.adapters.http import async_client
from pipeline.config import Settings

SETTINGS = Settings()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _server(handler, tls: ssl.SSLContext | None = None) -> tuple[asyncio.AbstractServer, str]:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    return server, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


def _recording(seen: list[bytes]):  # type: ignore[no-untyped-def]
    """A server handler that keeps each request's head and answers 200 with an empty JSON object."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    return handler


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
    async with server, async_client(SETTINGS, timeout=5) as client:
        response = await client.post(url, content=b"query=up", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json() == {"echo": "query=up"}


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    async with async_client(SETTINGS, timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{_closed_port()}/")


async def test_a_server_that_closes_without_answering_is_a_transport_error_not_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server, url = await _server(handler)
    async with server, async_client(SETTINGS, timeout=5) as client:
        with pytest.raises(httpx.TransportError) as error:
            await client.get(url)
    assert not isinstance(error.value, httpx.TimeoutException)


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server, url = await _server(handler)
    async with server, async_client(SETTINGS, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_every_request_carries_the_settings_user_agent() -> None:
    seen: list[bytes] = []
    server, url = await _server(_recording(seen))
    settings = Settings(http_user_agent="pipeline-test/9.9")
    async with server, async_client(settings, timeout=5, headers={"Accept": "application/json"}) as client:
        assert (await client.get(f"{url}/api/v1/query")).status_code == 200
    assert b"\r\nuser-agent: pipeline-test/9.9\r\n" in seen[0].lower()


async def test_calls_go_through_the_configured_proxy_and_never_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    proxy, proxy_url = await _server(_recording(seen))
    decoy_seen: list[bytes] = []
    decoy, decoy_url = await _server(_recording(decoy_seen))
    monkeypatch.setenv("HTTP_PROXY", decoy_url)
    monkeypatch.setenv("http_proxy", decoy_url)
    target = f"http://prometheus.monitoring.svc:{_closed_port()}/api/v1/query"
    async with proxy, decoy, async_client(Settings(http_proxy_url=proxy_url), timeout=5) as client:
        assert (await client.get(target)).status_code == 200
    # A forward proxy gets the absolute URL in the request line.
    assert seen[0].startswith(f"GET {target} HTTP/1.1".encode())
    assert decoy_seen == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with openssl (the CA bundle is the certificate itself)."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "server.crt", root / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-noenc",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


async def _tls_server(certificate: tuple[Path, Path], seen: list[bytes]) -> tuple[asyncio.AbstractServer, str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return await _server(_recording(seen), tls=context)


async def test_tls_is_checked_against_the_dependencys_ca_then_the_pipelines_then_the_systems(
    certificate: tuple[Path, Path],
) -> None:
    seen: list[bytes] = []
    server, url = await _tls_server(certificate, seen)
    ca = str(certificate[0])
    async with server:
        # The system trust store does not know a private CA: the call fails, as a connection error.
        async with async_client(SETTINGS, timeout=5) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
        async with async_client(SETTINGS, timeout=5, ca_file=ca) as client:
            assert (await client.get(url)).status_code == 200
        async with async_client(Settings(http_ca_file=ca), timeout=5) as client:
            assert (await client.get(url)).status_code == 200
        # The dependency's own bundle (here the public CAs only) wins over the pipeline's.
        async with async_client(Settings(http_ca_file=ca), timeout=5, ca_file=certifi.where()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
        async with async_client(SETTINGS, timeout=5, tls_verify=False) as client:
            assert (await client.get(url)).status_code == 200
    assert len(seen) == 3

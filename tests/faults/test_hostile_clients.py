"""Hostile input and hostile clients against one real `pipeline run` process (all stages, ingest and gateway in
it, on the session's broker with topics of its own, HTTP_HEADER_TIMEOUT_S=1 and HTTP_BODY_TIMEOUT_S=2).

What a user sees: an oversized alert is refused whole with 413 naming the field (nothing of that webhook is
stored), JSON nested 10,000 deep is a 400, and the same process goes on serving, its later alerts become incidents
(no partition stalled behind the refused input); connections that never finish their headers and bodies that
drip are cut by the server while normal requests are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator

import httpx
import psutil
import pytest

from pipeline.config import Settings
from tests.faults.helpers import (
    PipelineProcess,
    Processes,
    alert,
    all_incidents,
    eventually,
    figures,
    own_settings,
    signal_pods,
    webhook,
)

pytestmark = pytest.mark.timeout(300)

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 1.0, 2.0
GENEROUS_S = 60.0  # a connection the server still holds after this long was not cut (the limits are 1-2 s)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def run_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return own_settings(kafka_bootstrap, tmp_path_factory.mktemp("pipeline-run"))


@pytest.fixture(scope="module")
def run(run_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineProcess]:
    """`pipeline run` as a process of its own (topics applied by it), shared by this module's tests."""
    procs = Processes(run_settings, tmp_path_factory.mktemp("logs"), HTTP_HEADER_TIMEOUT_S=HEADER_TIMEOUT_S,
                      HTTP_BODY_TIMEOUT_S=BODY_TIMEOUT_S)
    try:
        process = procs.add("run", ["run"])
        asyncio.run(process.wait_ready("/api/v1/health", timeout=180))
        yield process
    finally:
        procs.close()


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def test_oversized_and_deeply_nested_input_is_refused_and_the_process_keeps_serving(
    run: PipelineProcess, run_settings: Settings
) -> None:
    ns = "hostile"
    rss_before = _rss_mb(run.pid)
    answers: dict[str, object] = {}
    async with httpx.AsyncClient(base_url=run.url, timeout=30, trust_env=False) as http:
        # A label past INGEST_MAX_LABEL_VALUE_BYTES: the whole webhook is refused, naming the alert's field.
        huge = await http.post("/api/v1/alerts", json=webhook(alert(ns, "fine-0"), alert(ns, "p" * 150_000)))
        assert huge.status_code == 413, huge.text
        assert "retry-after" not in huge.headers  # Alertmanager must not retry it forever
        refusal = huge.json()
        assert refusal["code"] == "LIMIT_EXCEEDED" and refusal["field"] == "alerts[1].labels.pod", refusal
        assert refusal["limit"] == run_settings.ingest_max_label_value_bytes and refusal["size"] > refusal["limit"]
        answers["label_150000_bytes"] = [huge.status_code, refusal["field"]]

        # A body past INGEST_MAX_BODY_BYTES.
        big = await http.post("/api/v1/alerts", content=b'{"alerts":["' + b"x" * (2 << 20) + b'"]}', headers=JSON)
        assert big.status_code == 413, big.text
        answers["body_2MiB"] = [big.status_code, big.json()["code"]]

        # JSON nested 10,000 deep, as arrays, as objects, and inside the labels of a webhook.
        for name, nested in (("arrays", "[" * 10_000 + "]" * 10_000),
                             ("objects", '{"a":' * 10_000 + "1" + "}" * 10_000),
                             ("in_labels", '{"alerts":[{"labels":' + '{"x":' * 10_000 + "1" + "}" * 10_000 + "}]}")):
            deep = await http.post("/api/v1/alerts", content=nested.encode(), headers=JSON)
            assert deep.status_code == 400, (name, deep.status_code, deep.text)
            assert deep.json()["field"] == "body", deep.text
            answers[f"depth_10000_{name}"] = [deep.status_code, deep.json()["code"]]

        # The same keep-alive connection, then the pipeline behind it: later alerts become incidents, on every
        # partition (60 resources spread over the signals topic's partitions).
        after = await http.post("/api/v1/alerts", json=webhook(*(alert(ns, f"after-{i}") for i in range(60))))
        assert after.status_code == 200 and after.json()["accepted"] == 60, after.text

        async def sixty() -> list[dict] | None:
            found = await all_incidents(http, ns)
            return found if len(found) >= 60 else None

        found = await eventually(sixty, "the later alerts as incidents", timeout=90, on_fail=run.tail)
        health = await http.get("/api/v1/health")
    assert {i["resource"] for i in found} == {f"Pod/after-{i}" for i in range(60)}  # nothing refused got in
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text  # nothing stuck
    stored = await signal_pods(run_settings, ns)
    assert set(stored) == {f"after-{i}" for i in range(60)}  # not even fine-0 of the refused webhook
    assert run.alive and run.starts == 1
    figures("hostile-input", {
        "answers": answers, "later_alerts": 60, "later_incidents": len(found), "refused_alerts_stored": 0,
        "health_after": health.json()["status"], "rss_mb_before": rss_before, "rss_mb_after": _rss_mb(run.pid),
    })


async def _held_until_closed(reader: asyncio.StreamReader, opened: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (EOF or reset) and what it sent; GENEROUS_S at most."""
    received = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(GENEROUS_S):
            while chunk := await reader.read(65536):
                received += chunk
    return time.monotonic() - opened, received


def _established(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


async def test_half_open_headers_and_slow_drip_bodies_are_cut_while_normal_requests_are_served(
    run: PipelineProcess,
) -> None:
    idle, drips = 300, 5
    host, port = "127.0.0.1", run.port
    baseline = _established(run.pid, port)
    opened_at = time.monotonic()
    half_open = []
    for n in range(idle):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n" if n % 2 else b"POST /api/v1/al")
        half_open.append((reader, writer))
    dripping = []
    for _ in range(drips):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{")
        dripping.append((reader, writer))

    async def drip(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(int(GENEROUS_S / 0.25)):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.25)

    drippers = [asyncio.create_task(drip(w)) for _, w in dripping]
    watching = [asyncio.create_task(_held_until_closed(r, opened_at)) for r, _ in half_open + dripping]
    try:
        await asyncio.sleep(0.3)
        held_during = _established(run.pid, port)
        # Meanwhile a normal client is answered: a webhook and the liveness probe.
        async with httpx.AsyncClient(base_url=run.url, timeout=30, trust_env=False) as http:
            started = time.monotonic()
            ok = await http.post("/api/v1/alerts", json=webhook(alert("slow", f"web-{uuid.uuid4().hex[:6]}")))
            normal_s = time.monotonic() - started
            assert ok.status_code == 200, ok.text
            closed = await asyncio.gather(*watching)
            assert (await http.get("/health")).status_code == 200  # and after
        held_after = _established(run.pid, port)
    finally:
        for task in drippers:
            task.cancel()
        for _, writer in half_open + dripping:
            writer.close()
    idle_closed, drip_closed = closed[:idle], closed[idle:]
    assert all(seconds < GENEROUS_S for seconds, _ in closed), "a slow connection was never cut by the server"
    assert all(answer == b"" or answer.startswith(b"HTTP/1.1 408 ") for _, answer in closed)
    assert all(answer.startswith(b"HTTP/1.1 408 ") for _, answer in idle_closed), idle_closed[:3]
    assert run.alive
    figures("slow-clients", {
        "half_open_header_connections": idle, "slow_drip_bodies": drips,
        "header_timeout_s": HEADER_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S,
        "server_connections": {"before": baseline, "held": held_during, "after": held_after},
        "freed": sum(1 for s, _ in closed if s < GENEROUS_S),
        "answered_408": sum(1 for _, a in closed if a.startswith(b"HTTP/1.1 408 ")),
        "half_open_cut_after_s": [round(min(s for s, _ in idle_closed), 2), round(max(s for s, _ in idle_closed), 2)],
        "drips_cut_after_s": [round(min(s for s, _ in drip_closed), 2), round(max(s for s, _ in drip_closed), 2)],
        "normal_webhook_meanwhile_s": round(normal_s, 3), "rss_mb": _rss_mb(run.pid),
    })

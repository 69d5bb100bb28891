#!/usr/bin/env python3
"""Slowloris and slow-drip bodies against `pipeline run` (its embedded broker), on 127.0.0.1 only.

Opens N connections that send half a request line and never finish it, plus M POSTs whose bodies drip one
byte every 2 s, then reports at each checkpoint how many of them the server still holds, the server's RSS
and whether a normal request succeeds. Bounded: every connection is closed at the end, the server stopped.

    .venv/bin/python scripts/measure-slow-clients.py --idle 2000 --drip 40 --seconds 45
    .venv/bin/python scripts/measure-slow-clients.py --no-limits   # the same with deadlines of a day

Ports: PORT (default 18700) for the API, 18701 for the embedded broker, 18702 for the reference ML service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Held:
    """One client connection; `open` until the server closes it (EOF or reset)."""

    def __init__(self) -> None:
        self.open = False
        self.writer: asyncio.StreamWriter | None = None

    async def watch(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while await reader.read(65536):
                pass
        self.open = False


async def half_line(port: int, held: Held) -> asyncio.Task[None]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/v1/al")
    held.open, held.writer = True, writer
    return asyncio.create_task(held.watch(reader))


async def drip(port: int, held: Held, seconds: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    held.open, held.writer = True, writer
    watcher = asyncio.create_task(held.watch(reader))
    writer.write(b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{")
    deadline = time.monotonic() + seconds
    with contextlib.suppress(ConnectionError):
        while held.open and time.monotonic() < deadline:
            await asyncio.sleep(2)
            writer.write(b" ")
            await writer.drain()
    await asyncio.wait({watcher}, timeout=1)


async def measure(args: argparse.Namespace, pid: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{args.port}"
    idle = [Held() for _ in range(args.idle)]
    dripping = [Held() for _ in range(args.drip)]
    started = time.monotonic()
    watchers = [await half_line(args.port, h) for h in idle]
    drips = [asyncio.create_task(drip(args.port, h, args.seconds)) for h in dripping]
    await asyncio.sleep(0.5)
    rows = []
    async with httpx.AsyncClient(base_url=base, timeout=10, trust_env=False) as http:
        for at in sorted({1.0, *args.checkpoints, args.seconds}):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - started)))
            t0 = time.monotonic()
            try:
                status = (await http.get("/health")).status_code
            except httpx.HTTPError as exc:
                status = repr(exc)
            rows.append({
                "t_s": round(time.monotonic() - started, 1),
                "idle_held": sum(h.open for h in idle), "drip_held": sum(h.open for h in dripping),
                "server_rss_mb": round(rss_mb(pid), 1), "health": status,
                "health_ms": round((time.monotonic() - t0) * 1000, 1),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    for h in idle + dripping:
        if h.writer is not None:
            h.writer.close()
    for task in watchers + drips:
        task.cancel()
    await asyncio.gather(*watchers, *drips, return_exceptions=True)
    return {"idle": args.idle, "drip": args.drip, "no_limits": args.no_limits, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--drip", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--checkpoints", type=float, nargs="*", default=[5.0, 12.0, 25.0, 33.0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "18700")))
    parser.add_argument("--no-limits", action="store_true", help="deadlines of a day: the behaviour before")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as tmp:
        env = {**os.environ, "PORT": str(args.port), "EMBEDDED_KAFKA_PORT": "18701", "EMBEDDED_ML_PORT": "18702",
               "DATA_DIR": tmp, "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}  # fmt: skip
        if args.no_limits:
            env |= {"HTTP_HEADER_TIMEOUT_S": "86400", "HTTP_BODY_TIMEOUT_S": "86400", "HTTP_MAX_CONNECTIONS": "100000"}
        pipeline = Path(sys.executable).with_name("pipeline")
        server = subprocess.Popen([str(pipeline), "run"], env=env, stderr=open(Path(tmp) / "log", "w"))  # noqa: SIM115
        try:
            deadline = time.monotonic() + 180
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{args.port}/health", timeout=2, trust_env=False).is_success:
                        break
                if server.poll() is not None or time.monotonic() > deadline:
                    print((Path(tmp) / "log").read_text()[-3000:], file=sys.stderr)
                    return 1
                time.sleep(0.5)
            print(json.dumps({"server_rss_mb_before": round(rss_mb(server.pid), 1)}), flush=True)
            print(json.dumps(asyncio.run(measure(args, server.pid))["rows"][-1] | {"final": True}))
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared bench plumbing: a broker, subprocesses of the pipeline, percentiles, and the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from pipeline.config import Settings


@dataclass
class Row:
    """One measured line: a name, figures, and the baseline it is compared with."""

    name: str
    figures: dict[str, Any]
    ratio: float | None = None
    ratio_of: str = ""


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, **figures: Any) -> Row:
        row = Row(name, figures)
        self.rows.append(row)
        return row

    def print(self, as_json: bool) -> None:
        if as_json:
            for row in self.rows:
                print(json.dumps({"bench": self.title, "name": row.name, **row.figures,
                                  "ratio": row.ratio, "ratio_of": row.ratio_of}))
            return
        print(f"\n== {self.title} ==")
        for row in self.rows:
            figures = "  ".join(f"{k}={_fmt(v)}" for k, v in row.figures.items())
            ratio = f"  ratio={row.ratio:.3f} ({row.ratio_of})" if row.ratio is not None else ""
            print(f"  {row.name:34} {figures}{ratio}")
        for note in self.notes:
            print(f"  note: {note}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 100 else f"{value:.3f}"
    return str(value)


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def latency_figures(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "mean_ms": statistics.fmean(ms) if ms else 0}


@contextlib.contextmanager
def bench_broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a fresh embedded Apache Kafka for the run."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from pipeline.embedded.kafka import LocalKafka, ensure_kafka

    ensure_kafka()
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        broker = LocalKafka(Path(tmp) / "kafka")
        try:
            yield broker.start()
        finally:
            broker.stop()


def bench_settings(bootstrap: str, **overrides: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        host="127.0.0.1",
        **overrides,
    )


class Child:
    """A `pipeline` subprocess with its own environment; RSS sampled while it runs."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, argv: list[str] | None = None) -> None:
        """`pipeline <args>`, or the command `argv`."""
        self.log = log
        self.started = time.perf_counter()
        full_env = {**os.environ, "LOG_LEVEL": "INFO", **env}
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "pipeline.cli", *args], env=full_env, stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0

    def sample_rss(self) -> int:
        with contextlib.suppress(psutil.Error):
            rss = int(self.ps.memory_info().rss)
            self.peak_rss = max(self.peak_rss, rss)
            return rss
        return 0

    def wait_http(self, url: str, timeout: float = 120, method: str = "GET") -> float:
        """Seconds from spawn until `url` answers 200."""
        deadline = time.perf_counter() + timeout
        # One client for the whole wait: `httpx.get` makes a client, and an SSL context, per call (~22 ms of CPU),
        # which polled every 10 ms took most of a core from the child it was timing.
        with httpx.Client(timeout=1, trust_env=False) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"child exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.request(method, url).status_code == 200:
                        return time.perf_counter() - self.started
                time.sleep(0.01)
        raise RuntimeError(f"{url} not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def wait_log(self, marker: str, timeout: float = 120) -> float:
        """Seconds from spawn until a log line contains `marker`."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if marker in self.log.read_text(errors="replace"):
                return time.perf_counter() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"child exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            time.sleep(0.01)
        raise RuntimeError(f"{marker!r} not logged in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "HOST": "127.0.0.1",
        **extra,
    }


def run(args: argparse.Namespace) -> int:
    import importlib

    from pipeline.observability import configure_logging

    configure_logging("WARNING")
    chosen = ["ingest", "e2e", "stage", "growth", "startup", "enrich", "score", "arbitrate", "watch", "remediate", "analyze", "readmodel", "scale"] if args.what == "all" else [args.what]
    chosen = ["readmodel" if name == "rebuild" else name for name in chosen]  # its earlier name
    needs_broker = [name for name in chosen if name not in ("enrich", "score", "analyze")]
    with bench_broker() if needs_broker else contextlib.nullcontext("") as bootstrap:
        for name in chosen:
            report = importlib.import_module(f"pipeline.bench.{name}").bench(bootstrap, args)
            report.print(args.json)
    return 0

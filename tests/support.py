"""Helpers for tests: run the pipeline in-process, read topics, poll with a deadline."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.compose.process import Plan, Process
from pipeline.config import Settings
from pipeline.embedded.process import free_port
from pipeline.events import Event
from pipeline.stages import stage_classes

T = TypeVar("T")



def settings_for(kafka_bootstrap: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings with a test's own topics (a unique prefix) on the session broker, loopback only, fast timeouts."""
    values: dict[str, Any] = dict(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", host="127.0.0.1",
        port=free_port(), data_dir=data_dir, kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=500,
        ingest_produce_timeout_s=3.0, gateway_write_timeout_s=10.0, stage_batch_timeout_ms=20,
    )
    return Settings(**{**values, **overrides})


# What a Schemathesis run allows beyond its defaults, operation by operation, and why.
SCHEMATHESIS_CONFIG = Path(__file__).parent / "integration" / "schemathesis.toml"


async def schemathesis(url: str, workdir: Path, *options: str) -> tuple[int, str]:
    """Schemathesis' CLI against the `/openapi.json` of a live server: every check, a bounded number of generated
    requests per operation (examples, coverage, fuzzing and stateful phases); its exit code and output.

    One worker: with two threads, Hypothesis' `ast.parse` of the source of its filter lambdas failed in 3 runs
    of 7 with CPython 3.11's `SystemError: AST constructor recursion depth mismatch` (a Schemathesis "Runtime
    Error" on some operation; see CPython gh-106905), never in the runs with one."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(SCHEMATHESIS_CONFIG),
        "run", f"{url}/openapi.json",
        "--max-examples", "8", "--seed", "20261206", "--workers", "1",
        "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "20",
        "--report", "ndjson", "--report-ndjson-path", str(workdir / "schemathesis.json"), *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=workdir)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


# every stage, ingest, the gateway and the reference ML model: `pipeline run` on an existing broker
EVERYTHING = Plan(stages=list(stage_classes()), ingest=True, gateway=True, apply_topics=True, embedded_ml=True)


def sample(name: str) -> dict[str, Any]:
    """A captured Alertmanager 0.25 webhook payload from shared/samples (checked into tests/data too)."""
    local = Path(__file__).parent / "data" / name
    return json.loads(local.read_text())  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 20.0, every: float = 0.05, *,
                     what: str = "condition", on_fail: Callable[[], str] | None = None) -> T:
    """Poll until `check` returns something truthy; fail naming `what` with the last value (and what `on_fail`
    gives, e.g. the logs of the processes involved) when the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    extra = f"\n{on_fail()}" if on_fail is not None else ""
    raise AssertionError(f"{what} not met within {timeout}s; last value: {last!r}{extra}")


class PipelineUnderTest:
    """A Process running ingest + correlate + gateway (topics applied), like `pipeline run`."""

    def __init__(self, settings: Settings, plan: Plan | None = None) -> None:
        self.settings = settings
        self.plan = plan or Plan(stages=list(stage_classes()), ingest=True, gateway=True, apply_topics=True)
        self.process: Process | None = None

    async def start(self) -> PipelineUnderTest:
        self.process = Process(self.settings, self.plan)
        await self.process.start()
        return self

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop()
            self.process = None

    @property
    def url(self) -> str:
        assert self.process is not None and self.process.url is not None
        return self.process.url

    async def __aenter__(self) -> PipelineUnderTest:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def read_topic(settings: Settings, logical: str, timeout_ms: int = 1000) -> list[Any]:
    """Every record currently on a topic (all partitions, from the beginning)."""
    topic = settings.topic(logical)
    parts = (await kafka.partitions(settings, topic))[topic]
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for batch in (await consumer.getmany(timeout_ms=timeout_ms)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def incidents(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/incidents", params={"status": "all", "severity": "all", **params})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class Clock:
    """A clock the tests move instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def publish(settings: Settings, logical: str, events: list[Event]) -> None:
    """Produce events to a topic, acknowledged, with a producer of their own."""
    producer = EventProducer(settings)
    await producer.start()
    try:
        await producer.publish([Output.event(settings.topic(logical), e) for e in events])
    finally:
        await producer.stop()


async def set_max_message_bytes(settings: Settings, limits: dict[str, int]) -> None:
    """Set `max.message.bytes` of topics (logical names), as an operator would with kafka-configs."""
    client = kafka.admin(settings)
    await client.start()
    try:
        await client.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, settings.topic(t), configs={"max.message.bytes": str(n)})
                for t, n in limits.items()
            ]
        )

        # The broker applies a topic's new config after acknowledging the change: wait until it describes it.
        async def applied() -> bool:
            described = await client.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, settings.topic(t)) for t in limits])
            values = {
                resource[3]: {entry[0]: entry[1] for entry in resource[4]}
                for response in described for resource in response.resources
            }
            return all(values.get(settings.topic(t), {}).get("max.message.bytes") == str(n) for t, n in limits.items())

        await eventually(applied, timeout=20, what="max.message.bytes applied")
    finally:
        await client.close()


async def consumed(settings: Settings, stage: str, logical: str) -> bool:
    """Whether the stage's consumer group has committed every record now on the topic (all partitions)."""
    topic = settings.topic(logical)
    tps = [TopicPartition(topic, p) for p in (await kafka.partitions(settings, topic))[topic]]
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = kafka.admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{settings.topic_prefix}{stage}")
    finally:
        await admin.close()
    return all(end[tp] == 0 or (tp in committed and committed[tp].offset >= end[tp]) for tp in tps)


# Run by the interpreter of an installed package (a fresh venv, the container image): where the package is,
# the data it finds by default (Settings' topics_dir and rules path, both loaded), and the data files its
# wheel installed (the RECORD) with their hashes. Prints one JSON object.
INSTALLED_PACKAGE_PROBE = """
import hashlib, json, pathlib, importlib.metadata as metadata
import pipeline
from pipeline.adapters.rules import load_rules
from pipeline.bus.topics import load_specs
from pipeline.config import Settings

settings = Settings()
dist = metadata.distribution("pipeline")
data = {str(f): hashlib.sha256(pathlib.Path(dist.locate_file(f)).read_bytes()).hexdigest()
        for f in dist.files or () if f.parts[:2] in (("pipeline", "topics"), ("pipeline", "rules"))}
print(json.dumps({
    "package": str(pathlib.Path(pipeline.__file__).resolve().parent),
    "topics_dir": str(settings.topics_dir),
    "rules_path": str(settings.remediation_rules_path),
    "topics": sorted(spec.name for spec in load_specs(settings.topics_dir)),
    "actions": sorted(load_rules(settings.remediation_rules_path).actions),
    "data": data,
}))
"""


def repository_data() -> dict[str, str]:
    """The repository's topics/*.yaml and rules/*.yaml as a wheel installs them (pipeline/topics/..., via the
    package's symlinks), with their sha256: what INSTALLED_PACKAGE_PROBE must find."""
    root = Path(__file__).resolve().parents[1]
    return {f"pipeline/{p.relative_to(root)}": hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("topics", "rules") for p in sorted((root / d).glob("*.yaml"))}


def start_run(data_dir: Path, port: int, kafka_port: int, log: Path, *, stderr: int = subprocess.STDOUT,
              **env: str | None) -> subprocess.Popen[bytes]:
    """`pipeline run` (embedded broker) in a child process, its stdout appended to `log` and its stderr too (or
    `subprocess.PIPE`); `env` adds variables, None removes one."""
    child = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    child.update(PORT=str(port), DATA_DIR=str(data_dir), EMBEDDED_KAFKA_PORT=str(kafka_port), HOST="127.0.0.1")
    for name, value in env.items():
        if value is None:
            child.pop(name, None)
        else:
            child[name] = value
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run"], env=child, stdout=log.open("ab"),
                            stderr=stderr)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pipeline run exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"pipeline run not healthy in {timeout}s:\n{log.read_text()[-4000:]}")


def interrupt(proc: subprocess.Popen[bytes], log: Path) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    broker_pids = [c.pid for c in children]
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p for p in broker_pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert leftovers == [], f"stray processes after Ctrl-C: {leftovers}"

"""Shared by the fault tests: pipeline processes started through the CLI, a broker of a test's own, webhook
load, topic reads and the FIGURES lines.

Every process here is a real OS process that a test signals with `os.kill` (SIGKILL, SIGSTOP, SIGCONT); each is
registered with a `Processes` group whose `close()` (always called from a `finally` or a fixture teardown) ends
it by its own pid, continuing it first if it was stopped. Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pipeline.config import Settings
from pipeline.embedded.kafka import LocalKafka
from pipeline.embedded.process import free_port
from tests import support
from tests.support import read_topic

ROOT = Path(__file__).resolve().parents[2]
FIGURES: list[tuple[str, dict[str, Any]]] = []  # printed again at the end of the session (conftest.py)
_STARTED: list[subprocess.Popen[bytes]] = []


@atexit.register
def _kill_leftovers() -> None:
    """Last resort if a teardown never ran (the test process interrupted): SIGKILL our children by pid."""
    for proc in _STARTED:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def figures(name: str, values: dict[str, Any]) -> None:
    """One `FIGURES <name>: {...}` line on stdout (shown with -s) and in the session's closing summary."""
    FIGURES.append((name, values))
    print(f"FIGURES {name}:", json.dumps(values, sort_keys=True), flush=True)


def base_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment of a pipeline process on `settings`' broker and topics, loopback, fast consumer groups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "INGEST_", "HTTP_", "STAGE_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        TOPIC_PREFIX=settings.topic_prefix,
        HOST="127.0.0.1",
        DATA_DIR=str(settings.data_dir),
        KAFKA_SESSION_TIMEOUT_MS="6000",
        KAFKA_HEARTBEAT_INTERVAL_MS="500",
        STAGE_BATCH_TIMEOUT_MS="20",
        LOG_LEVEL="WARNING",
        BROKER_WATCH_INTERVAL_S="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class PipelineProcess:
    """`python -m pipeline.cli <args>` on its own port, output to a log file; signalled by its pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path, port: int | None = None) -> None:
        self.name, self.args = name, args
        self.port = port if port is not None else free_port()
        # a stage alone serves no API: its metrics on the same port tell that it is up
        self.env = {**env, "PORT": str(self.port), "METRICS_PORT": str(self.port)}
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> PipelineProcess:
        assert not self.alive, f"{self.name} is already running"
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts + 1}: pipeline {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *self.args], cwd=ROOT, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _STARTED.append(self.proc)
        self.starts += 1
        return self

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the process dies without running any of its shutdown code."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGCONT (it may be stopped), SIGTERM, and SIGKILL after `grace` seconds; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        try:
            return f"--- {self.log} ---\n" + self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"--- {self.log}: {exc}"

    async def wait_ready(self, path: str = "/health", timeout: float = 120.0) -> None:
        """Until `path` answers 200; fails with the log tail if the process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=5, trust_env=False) as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode if self.proc else None}"
                                         f"\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(path)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready on {path} within {timeout}s\n{self.tail()}")


class Processes:
    """The processes one test started; `close()` stops every one of them (also on failure)."""

    def __init__(self, settings: Settings, log_dir: Path, **env: object) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.env = base_env(settings, **env)
        self.all: list[PipelineProcess] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, args: list[str], **env: object) -> PipelineProcess:
        proc = PipelineProcess(name, args, {**self.env, **{k: str(v) for k, v in env.items()}}, self.log_dir)
        self.all.append(proc)
        return proc.start()

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.all)

    def close(self) -> None:
        for proc in self.all:
            proc.stop()

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


async def apply_topics(settings: Settings) -> None:
    """`pipeline topics apply` for `settings`' prefix (the CLI, as an operator would)."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "pipeline.cli", "topics", "apply"], cwd=ROOT,
        env=base_env(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def own_settings(bootstrap: str, tmp: Path) -> Settings:
    """Settings on a broker of a test's own, with a unique topic prefix."""
    return Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=f"f{uuid.uuid4().hex[:10]}.",
                    host="127.0.0.1", port=free_port(), data_dir=tmp / "data")


class OwnBroker:
    """A `LocalKafka` on a data dir of its own, signalled by the pid of its JVM (no wrapper in between)."""

    def __init__(self, data_dir: Path) -> None:
        self.kafka = LocalKafka(data_dir, heap="384m")
        self.stopped = False

    def start(self) -> str:
        return self.kafka.start()

    @property
    def pid(self) -> int:
        pid = self.kafka.pid
        assert pid is not None and self.kafka.running, "the broker is not running"
        return pid

    def kill(self) -> None:
        """SIGKILL the JVM and wait until it is gone (its data dir is kept as the crash left it)."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.kafka.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.kafka.running, "the broker JVM survived SIGKILL"

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        if self.stopped and self.kafka.running:
            os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def close(self) -> None:
        self.resume()
        self.kafka.stop()


# --------------------------------------------------------------------------- webhooks


STARTS_AT = "2026-12-01T10:00:00Z"


def alert(namespace: str, pod: str, *, status: str = "firing", fingerprint: str | None = None,
          **labels: str) -> dict[str, Any]:
    """One Alertmanager alert about `namespace/Pod/pod` (its own fingerprint unless given)."""
    return {
        "status": status,
        "labels": {"alertname": "PodCrashLooping", "namespace": namespace, "pod": pod, "severity": "warning",
                   **labels},
        "annotations": {"summary": f"{pod} restarts"},
        "startsAt": STARTS_AT,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-01T11:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint or uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{pod}").hex[:16],
    }


def webhook(*alerts: dict[str, Any], group: str = "faults") -> dict[str, Any]:
    return {"version": "4", "receiver": "pipeline", "status": "firing", "groupKey": group, "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager.example",
            "truncatedAlerts": 0, "alerts": list(alerts)}


def burst(namespace: str, alerts: int, per_request: int = 2) -> list[dict[str, Any]]:
    """`alerts` alerts, each about a pod of its own, `per_request` to a webhook."""
    return [webhook(*(alert(namespace, f"pod-{i + j}") for j in range(per_request) if i + j < alerts))
            for i in range(0, alerts, per_request)]


def pods_of(body: dict[str, Any]) -> list[str]:
    return [a["labels"]["pod"] for a in body["alerts"]]


@dataclass
class Answer:
    """What one webhook request got: status, Retry-After, JSON body (or None), when it started and ended."""

    index: int
    status: int  # 0: no HTTP answer (connection error)
    retry_after: str | None
    body: Any
    started: float
    ended: float
    error: str = ""


@dataclass
class Load:
    """Sends the webhooks from `clients` concurrent clients (each its own connection pool), no retries."""

    url: str
    bodies: list[dict[str, Any]]
    clients: int = 8
    answers: list[Answer] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    async def run(self) -> list[Answer]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(self.bodies)):
            queue.put_nowait(i)

        async def client() -> None:
            async with httpx.AsyncClient(base_url=self.url, timeout=60, trust_env=False) as http:
                while not queue.empty():
                    i = queue.get_nowait()
                    self.answers.append(await send(http, i, self.bodies[i], self.t0))

        await asyncio.gather(*(client() for _ in range(self.clients)))
        return sorted(self.answers, key=lambda a: a.index)

    @property
    def ok(self) -> int:
        return sum(1 for a in self.answers if 200 <= a.status < 300)


async def send(http: httpx.AsyncClient, index: int, body: dict[str, Any], t0: float) -> Answer:
    started = time.monotonic() - t0
    try:
        response = await http.post("/api/v1/alerts", json=body)
    except httpx.HTTPError as exc:
        return Answer(index, 0, None, None, started, time.monotonic() - t0, repr(exc))
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    return Answer(index, response.status_code, response.headers.get("retry-after"), parsed, started,
                  time.monotonic() - t0)


# --------------------------------------------------------------------------- reading what was stored


def ce(record: Any, name: str) -> str:
    return dict(record.headers).get(name, b"").decode()


async def signal_pods(settings: Settings, namespace: str) -> Counter[str]:
    """How many signal records each pod of `namespace` has on the signals topic."""
    counts: Counter[str] = Counter()
    for record in await read_topic(settings, "signals"):
        value = json.loads(record.value)
        resource = value.get("resource", {})
        if resource.get("namespace") == namespace:
            counts[resource.get("name", "")] += 1
    return counts


async def all_incidents(http: httpx.AsyncClient, namespace: str) -> list[dict[str, Any]]:
    """Every incident of `namespace` (any status and severity), paged through the gateway."""
    found: list[dict[str, Any]] = []
    while True:
        response = await http.get("/api/v1/incidents", params={"status": "all", "severity": "all", "limit": 1000,
                                                                "offset": len(found), "namespace": namespace})
        assert response.status_code == 200, response.text
        page = response.json()["incidents"]
        found.extend(page)
        if len(page) < 1000:
            return found


def duplicates(values: Iterable[str]) -> dict[str, int]:
    return {v: n for v, n in Counter(values).items() if n > 1}


async def eventually(check: Any, what: str, timeout: float = 90.0, every: float = 0.3, on_fail: Any = None) -> Any:
    """`tests.support.eventually` with the fault suite's patience (processes restart, brokers recover)."""
    return await support.eventually(check, timeout, every, what=what, on_fail=on_fail)


@dataclass
class Opened:
    """The incident-opened records on the incidents topic: how many, and the distinct events per incident id."""

    records: int
    events: dict[str, set[str]]  # incident id -> ids of the opened events about it

    @property
    def opened_twice(self) -> dict[str, int]:
        return {i: len(ids) for i, ids in self.events.items() if len(ids) > 1}

    @property
    def redelivered(self) -> int:
        """Records of an opened event already on the topic (same event id: at-least-once, harmless by design)."""
        return self.records - sum(len(ids) for ids in self.events.values())


async def opened_incidents(settings: Settings, namespace: str) -> Opened:
    records, events = 0, {}
    for record in await read_topic(settings, "incidents"):
        if not ce(record, "ce_type").endswith("incident.opened.v1"):
            continue
        incident = json.loads(record.value)["incident"]
        if incident.get("namespace") != namespace:
            continue
        records += 1
        events.setdefault(incident["id"], set()).add(ce(record, "ce_id"))
    return Opened(records, events)

"""The broker process: one KRaft broker+controller node on 127.0.0.1, run from the cached jars, with a
persistent data directory (cluster id and ports kept, so a restart comes back on the same address)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

import psutil

from pipeline.embedded.kafka.distribution import (
    KAFKA_VERSION,
    ensure_kafka,
    file_tail,
    major,
    progress,
    require,
)
from pipeline.embedded.kafka.logs import CLASSIC_PATTERN, LOG4J2_PATTERN, LogRelay

HOST = "127.0.0.1"
NODE_ID = 1
_STATE_FILE = "kafka.json"
_PID_FILE = "kafka.pid"


def _free_port(avoid: object = None) -> int:
    """Let the kernel pick an unused loopback port (closed again before Kafka binds it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port != avoid:
            return port


def _port_free(port: int) -> bool:
    """True if nothing listens on the port; SO_REUSEADDR like the JVM, so TIME_WAIT does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _new_cluster_id() -> str:
    """Kafka's Uuid text form (22 chars); ids starting with '-' are rejected by its CLI parsing."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _server_properties(log_dirs: Path, port: int, cport: int, version: str) -> str:
    """Single-node settings: RF 1 internals, fast groups, few threads, small buffers, working compaction."""
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{cport}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dirs),
        # one node: internal topics must not ask for 3 replicas / min ISR 2
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        # fast consumer groups (clients may ask for session timeouts below the 6 s default minimum)
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # topics are created explicitly by the pipeline; an auto-created topic is a bug
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        # small and quick on a shared 2-core machine
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.index.size.max.bytes": "1048576",
        # compaction: 4 MiB dedupe buffer instead of 128 MiB of heap; check often; segments small enough
        # (and rolled hourly) that compacted topics actually get non-active segments to clean
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": "4194304",
        "log.cleaner.backoff.ms": "1000",
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.roll.ms": str(60 * 60 * 1000),
    }
    if major(version) >= 4:
        props.update({
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.coordinator.threads": "1",
            "share.coordinator.threads": "1",
        })
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _log_config(version: str) -> str:
    """Quiet logging (WARN) except the two INFO loggers whose lines mark readiness in the log file. 4.x writes one
    JSON object per event (logs.LOG4J2_PATTERN: a stack trace stays on its line), which `relay_log` parses."""
    ready = ("kafka.server.BrokerLifecycleManager", "kafka.server.KafkaRaftServer")
    if major(version) >= 4:
        lines = ["status = warn", "name = pipeline-embedded-kafka", "shutdownHook = disable",
                 "appender.out.type = Console", "appender.out.name = OUT",
                 "appender.out.layout.type = PatternLayout",
                 "appender.out.layout.alwaysWriteExceptions = false",  # the pattern writes it, escaped
                 f"appender.out.layout.pattern = {LOG4J2_PATTERN}",
                 "rootLogger.level = WARN", "rootLogger.appenderRef.out.ref = OUT"]
        for i, name in enumerate(ready):
            lines += [f"logger.r{i}.name = {name}", f"logger.r{i}.level = INFO"]
    else:
        lines = ["log4j.rootLogger=WARN, stdout",
                 "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
                 "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
                 f"log4j.appender.stdout.layout.ConversionPattern={CLASSIC_PATTERN}"]
        lines += [f"log4j.logger.{name}=INFO" for name in ready]
    return "\n".join(lines) + "\n"


def _heap_opts(heap: str) -> list[str]:
    """-Xmx from ``heap``; a small fixed -Xms keeps idle RSS low, but never above -Xmx (JVM refuses)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    try:
        size = int(heap[:-1]) * units[heap[-1].lower()] if heap[-1].isalpha() else int(heap)
    except (KeyError, ValueError, IndexError):
        size = 0
    return [f"-Xms{'64m' if size >= 64 << 20 else heap}", f"-Xmx{heap}"]


async def _metadata_ok(bootstrap: str) -> bool:
    """Definitive readiness: a real client gets metadata listing our broker."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        info = await admin.describe_cluster()
        return any(b.get("node_id") == NODE_ID for b in info.get("brokers", []))
    finally:
        await admin.close()


def _check_metadata(bootstrap: str) -> bool:
    """Run the async check on a private loop/thread so ``start()`` also works inside an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            return pool.submit(asyncio.run, _metadata_ok(bootstrap)).result(timeout=20)
        except Exception:  # noqa: BLE001 - any client failure just means "not ready yet"
            return False


class _PortInUse(RuntimeError):
    """The broker died because a chosen port was taken meanwhile (retryable for fresh ports)."""


class LocalKafka:
    """One KRaft broker+controller on loopback whose data survives ``stop()``/``start()``.

    ``data_dir`` holds the Kafka log dirs, ``kafka.json`` (cluster id and ports, so a restart
    comes back on the same bootstrap address), the generated configs, the PID file and the log.
    ``cache_dir`` is where the jars are resolved (``ensure_kafka``); None: ``Settings.cache_dir``.
    ``relay_log``: also write the broker's log events through the pipeline's logging (``logs.LogRelay``), as
    ``pipeline run`` does; the log file keeps them all the same.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, controller_port: int | None = None,
                 heap: str = "512m", version: str = KAFKA_VERSION, cache_dir: Path | None = None,
                 relay_log: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.version = version
        self.cache_dir = cache_dir  # where the jars are cached; None: Settings.cache_dir
        self.heap = heap
        self._want_port = port
        self._want_cport = controller_port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._log_start = 0
        self.relay_log = relay_log
        self._relay: LogRelay | None = None

    # ----------------------------------------------------------------- properties

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:P`` for clients; known once ``start()`` has chosen the port."""
        if self._port is None:
            raise RuntimeError("LocalKafka has not been started; call start() first")
        return f"{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM started by this object, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        """Broker stdout+stderr (appended across restarts); shown in error messages."""
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        """True while the JVM this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 120.0) -> str:
        """Resolve jars, format if new, launch and wait until a client gets metadata; return bootstrap.

        ``timeout`` bounds launch-to-ready only, not the one-time Maven download in ``ensure_kafka``.
        Raises RuntimeError with the broker log tail if the JVM dies or is not ready in time.
        """
        if self.running:
            return self.bootstrap
        libs = ensure_kafka(self.version, cache_dir=self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_leftover()
        state = self._load_state()
        fresh_ports = self._choose_ports(state)
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            self._write_configs(state)
            self._format_if_needed(libs, state["cluster_id"])
            try:
                self._launch(libs)
                self._wait_ready(deadline)
                return self.bootstrap
            except _PortInUse:
                if not fresh_ports or attempt == 2:
                    raise
                progress(f"port {state['port']}/{state['controller_port']} was taken; retrying with new ports", "warning")
                state["port"] = _free_port()
                state["controller_port"] = _free_port(avoid=state["port"])
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our own JVM (Kafka's shutdown hook flushes and closes logs), SIGKILL only if stuck."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                progress(f"broker pid {proc.pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL", "warning")
                proc.kill()
                proc.wait(timeout=10)
        if proc is not None:
            (self.data_dir / _PID_FILE).unlink(missing_ok=True)
        self._close_log()

    def __enter__(self) -> LocalKafka:
        """Start (if needed) for ``with LocalKafka(dir) as kafka:``."""
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Always stop the JVM, also when the body raised."""
        self.stop()

    # ----------------------------------------------------------------- helpers

    @property
    def _properties_file(self) -> Path:
        """Generated each start; its path in the JVM's argv also identifies leftover brokers."""
        return self.data_dir / "server.properties"

    @property
    def _meta_file(self) -> Path:
        """Written by the formatter; its presence means "formatted, never format again"."""
        return self.data_dir / "kraft-logs" / "meta.properties"

    def _load_state(self) -> dict[str, object]:
        """kafka.json, or a new state; a formatted dir without it keeps its cluster id from meta.properties."""
        path = self.data_dir / _STATE_FILE
        state: dict[str, object] = json.loads(path.read_text()) if path.is_file() else {}
        if "cluster_id" not in state:
            state["cluster_id"] = self._meta_cluster_id() or _new_cluster_id()
        if state.get("version") not in (None, self.version):
            progress(f"{self.data_dir} was last run with Kafka {state['version']}, now {self.version}", "warning")
        state["version"] = self.version
        return state

    def _meta_cluster_id(self) -> str | None:
        """Cluster id recorded by a previous format, if any."""
        if not self._meta_file.is_file():
            return None
        for line in self._meta_file.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def _choose_ports(self, state: dict[str, object]) -> bool:
        """Explicit ports win, then the stored ones (same address after restart), else free ones.

        Returns True when the ports are freshly picked, i.e. may be re-picked if they get taken.
        """
        stored = isinstance(state.get("port"), int) and isinstance(state.get("controller_port"), int)
        port = self._want_port or (state["port"] if stored else None) or _free_port()
        cport = self._want_cport or (state["controller_port"] if stored else None) or _free_port(avoid=port)
        for p in (port, cport):
            if not _port_free(int(p)):  # type: ignore[call-overload]
                raise RuntimeError(f"port {p} for the Kafka broker in {self.data_dir} is in use by another "
                                   "process; stop it, pass port=/controller_port=, or delete kafka.json")
        state["port"], state["controller_port"] = port, cport
        return not stored and self._want_port is None and self._want_cport is None

    def _write_configs(self, state: dict[str, object]) -> None:
        """Regenerate server.properties and the log config each start; persist kafka.json."""
        self._port = int(state["port"])  # type: ignore[call-overload]
        self._properties_file.write_text(_server_properties(
            self.data_dir / "kraft-logs", self._port, int(state["controller_port"]),  # type: ignore[call-overload]
            self.version))
        (self.data_dir / self._log_config_name).write_text(_log_config(self.version))
        (self.data_dir / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @property
    def _log_config_name(self) -> str:
        """4.x reads log4j2 config, 3.x reload4j (log4j 1) config."""
        return "log4j2.properties" if major(self.version) >= 4 else "log4j.properties"

    def _log_opts(self) -> list[str]:
        """log4j2 (4.x) or reload4j (3.x) configuration flags."""
        cfg = self.data_dir / self._log_config_name
        flag = (f"-Dlog4j2.configurationFile={cfg}" if major(self.version) >= 4
                else f"-Dlog4j.configuration=file:{cfg}")
        return [flag, f"-Dkafka.logs.dir={self.data_dir}"]

    def _java(self, libs: Path, heap_opts: list[str], main: list[str]) -> list[str]:
        """JVM command line: small serial-GC heap, C1 only, die on OOM rather than wedge."""
        return [require("java"), *heap_opts, "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=192m",
                "-XX:+ExitOnOutOfMemoryError", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
                "-Djava.awt.headless=true", *self._log_opts(), "-cp", f"{libs}/*", *main]

    def _format_if_needed(self, libs: Path, cluster_id: object) -> None:
        """Format storage only once: reformatting would refuse (or destroy) existing data."""
        if self._meta_file.is_file():
            return
        cmd = self._java(libs, ["-Xmx128m"], ["kafka.tools.StorageTool", "format", "-t", str(cluster_id),
                                               "-c", str(self._properties_file)])
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError(f"Kafka storage format failed (exit {res.returncode}):\n"
                               f"{(res.stdout + res.stderr)[-3000:]}")

    def _launch(self, libs: Path) -> None:
        """Start the JVM in its own session, output appended to the log file, PID recorded."""
        self._close_log()
        fh = self.log_file.open("ab")
        self._log_start = fh.seek(0, os.SEEK_END)
        self._log_fh = fh
        cmd = self._java(libs, _heap_opts(self.heap), ["kafka.Kafka", str(self._properties_file)])
        self._proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=self.data_dir, start_new_session=True)
        (self.data_dir / _PID_FILE).write_text(f"{self._proc.pid}\n")
        if self.relay_log:
            self._relay = LogRelay(self.log_file, self._log_start)
            self._relay.start()

    def _wait_ready(self, deadline: float) -> None:
        """Alive, then TCP on the client port (opened only after unfencing), then a metadata call."""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                self._fail("exited during startup")
            if self._tcp_open() and _check_metadata(self.bootstrap):
                return
            time.sleep(0.2)
        self._fail("did not become ready in time")

    def _tcp_open(self) -> bool:
        """Cheap pre-check: the client listener only accepts once the broker is unfenced."""
        try:
            with socket.create_connection((HOST, int(self._port or 0)), timeout=1):
                return True
        except OSError:
            return False

    def _fail(self, what: str) -> NoReturn:
        """Stop whatever is left and raise with the log tail, the only useful diagnostic."""
        rc = self._proc.poll() if self._proc is not None else None
        self.stop(timeout=10)
        tail = file_tail(self.log_file, self._log_start)
        msg = f"Kafka broker in {self.data_dir} {what} (exit code {rc}); log {self.log_file}:\n{tail}"
        if rc is not None and "Address already in use" in tail:
            raise _PortInUse(msg)
        raise RuntimeError(msg)

    def _close_log(self) -> None:
        """Release our handle on the broker log (the JVM keeps its own until it exits); the relay, if any, writes
        what is left of it and ends."""
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()
        fh, self._log_fh = self._log_fh, None
        if fh is not None:
            fh.close()

    def _kill_leftover(self) -> None:
        """A crashed run may have left its broker running on our data dir: stop it by its PID only."""
        pid_file = self.data_dir / _PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
            proc = psutil.Process(pid)
            ours = "java" in proc.name() and str(self._properties_file) in proc.cmdline()
        except (OSError, ValueError, psutil.Error):
            ours = False
        if ours:
            progress(f"stopping leftover broker pid {pid} for {self.data_dir}", "warning")
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        pid_file.unlink(missing_ok=True)

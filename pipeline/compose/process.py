"""The one way to start parts of the pipeline in a process: `pipeline run`, `stage NAME` and `gateway`.

Start order: embedded broker (only when no bootstrap servers are configured), topics, producer, stages,
projection (caught up before serving), HTTP. Stop is the reverse, on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ML_EXTRA, ConfigError, Settings, ml_installed
from pipeline.observability import configure_logging, get_logger, log_uncaught

log = get_logger("pipeline.compose.process")


@dataclass
class Plan:
    """What one process runs."""

    stages: list[str] = field(default_factory=list)
    ingest: bool = False
    gateway: bool = False
    embedded_broker: bool = False
    apply_topics: bool = False
    embedded_ml: bool = False  # serve the reference ML service when no ML dependency is configured
    watch: bool = False  # the Kubernetes watcher (under leader election)
    demo: bool = False  # `pipeline run --demo`: Prometheus, a test cluster and a scripted story (compose/demo/)


STOP_STEP_TIMEOUT_S = 20.0


# The cyclic collector's thresholds once the start-up heap is frozen. With the defaults (700, 10, 10) a stage
# holding a batch of a few hundred decoded events ran a young collection every ~700 allocations, promoted the
# batch it was working on, and a full collection every tenth time: ~15 µs of every decision's ~150 µs
# (`pipeline bench arbitrate`); the pipeline makes little cyclic garbage, so collecting it less often costs a
# little memory and no correctness.
GC_THRESHOLDS = (20_000, 10, 100)


def settle_heap() -> None:
    """What start-up made (imported modules, clients, restored state) lives as long as the process: frozen, the
    cyclic collector need not walk it again at every full collection (a stage's throughput fell by a quarter
    with a large heap left to it); then the collector runs at `GC_THRESHOLDS`."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _reference_service(settings: Settings) -> Any:
    """The reference ML service's app over the cached (or newly trained) model; run in a thread."""
    from pipeline.ml.api import create_app
    from pipeline.ml.model import train_or_load

    return create_app(train_or_load(None, settings=settings))


def _log_reference_service(loading: asyncio.Future[Any]) -> None:
    if loading.cancelled():
        return
    if (exc := loading.exception()) is not None:
        log.warning("reference ML model unavailable; scores will be rules only", error=repr(exc))
    else:
        log.info("reference ML model loaded", model_version=loading.result().version)


class Process:
    """Owns every part started in this process, and stops them in reverse order."""

    def __init__(self, settings: Settings, plan: Plan) -> None:
        self.settings = settings
        self.plan = plan
        self._stops: list[Any] = []
        self._after_ready: list[Callable[[], None]] = []  # started once the process is ready
        self.ready = asyncio.Event()
        self.url: str | None = None
        self.broker: Any = None
        self.watch: Any = None  # WatchService when the plan watches Kubernetes
        self.projection: Any = None  # the gateway's ProjectionRunner when the plan serves the gateway

    async def start(self) -> None:
        started = time.perf_counter()
        demo = self._start_demo() if self.plan.demo else None  # beside the broker; the stages are pointed at it
        if self.plan.embedded_broker:
            await self._start_embedded_broker()
        if self.plan.apply_topics:
            from pipeline.bus.topics import apply

            for report in await apply(self.settings):
                if report.action != "ok":
                    log.info("topic", topic=report.topic, action=report.action, drift=report.drift)
        if demo is not None:
            self.settings = self.settings.model_copy(update=await demo)
            self.plan.watch = self.plan.watch or self.settings.kube_watch
        if self.plan.embedded_ml:
            await self._start_embedded_ml()
        await self._start_stages()
        await self._start_watch()
        await self._start_http()
        self._start_broker_watch()
        self.ready.set()
        settle_heap()
        for step in self._after_ready:
            step()
        log.info("ready", seconds=round(time.perf_counter() - started, 3), url=self.url, plan=self.plan.__dict__)

    async def _start_embedded_broker(self) -> None:
        from pipeline.embedded.kafka import LocalKafka, ensure_kafka

        cache_dir = self.settings.cache_dir
        await asyncio.to_thread(ensure_kafka, cache_dir=cache_dir)
        broker = LocalKafka(self.settings.data_dir / "kafka", port=self.settings.embedded_kafka_port or None,
                            cache_dir=cache_dir, relay_log=True)
        bootstrap = await asyncio.to_thread(broker.start)
        self.broker = broker
        self._stops.append(lambda: asyncio.to_thread(broker.stop))
        self.settings = self.settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
        log.info("embedded kafka started", bootstrap=bootstrap, data_dir=str(self.settings.data_dir / "kafka"))

    def _start_demo(self) -> asyncio.Future[dict[str, Any]]:
        """The demo's Prometheus and cluster, started in a thread while the broker starts; stopped last. Its script
        plays once the process is ready."""
        from pipeline.compose.demo import Demo

        demo = Demo(self.settings)
        self._stops.append(demo.stop)
        self._after_ready.append(lambda: demo.after_ready(self.url or "", self.settings.kafka_bootstrap_servers))
        starting = asyncio.ensure_future(demo.start())
        starting.add_done_callback(lambda f: f.cancelled() or f.exception())  # a failed start is raised when awaited
        return starting

    def _start_broker_watch(self) -> None:
        """Every process checks the broker every BROKER_WATCH_INTERVAL_S and logs one line when it becomes
        unreachable and one when it is back (observability.BrokerState), while the Kafka clients' own
        per-attempt errors are rate-limited."""
        from pipeline.compose.health import KafkaProbe
        from pipeline.observability import BrokerState

        probe, state = KafkaProbe(self.settings), BrokerState()

        async def watch() -> None:
            while True:
                status = await probe.check()
                state.update(status.status == "ok", status.message)
                await asyncio.sleep(self.settings.broker_watch_interval_s)

        task = asyncio.create_task(watch(), name="broker-watch")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await probe.close()

        self._stops.append(stop)

    async def _start_embedded_ml(self) -> None:
        """The reference model as the embedded default's KServe `anomaly-detector` (trained once, cached). Its
        URL is served at once and the model loads in a thread once the process is ready (~1.2 s: scikit-learn's
        import and the cached model; the first time on a machine, training ~20 s), not competing with the start
        for the interpreter; a score request that comes first starts the load and waits for it. Without a model,
        requests get a 503 saying why and scores are rules only (degraded), as designed."""
        from pipeline.adapters.ml import ModelRegistry
        from pipeline.adapters.scorer import ANOMALY_MODEL
        from pipeline.web.server import Deferred

        if self.settings.ml_service_url or ANOMALY_MODEL in ModelRegistry.from_settings(self.settings):
            return  # a real ML dependency is configured
        if not ml_installed():
            log.warning("reference ML model unavailable; scores will be rules only", error=ML_EXTRA,
                        fix="install pipeline[ml], or configure KServe (KSERVE_*) or ML_SERVICE_URL")
            return
        settings = self.settings
        deferred = Deferred(lambda: asyncio.to_thread(_reference_service, settings), "reference ML model")
        url = await self._serve(deferred, self.settings.embedded_ml_port, "EMBEDDED_ML_PORT")
        self.settings = self.settings.model_copy(update={"embedded_ml_url": url})
        log.info("reference ML service serving; its model loads once the process is ready", url=url)

        def load() -> None:
            deferred.start().add_done_callback(_log_reference_service)

        self._after_ready.append(load)

    async def _start_stages(self) -> None:
        if not self.plan.stages:
            return  # FastStream is a third of a second to import: only stage processes pay for it
        from pipeline.bus.stage import StageRuntime
        from pipeline.compose.stages import SINKS, build_sink, build_stage

        parts = [build_sink(self.settings, name) if name in SINKS else StageRuntime(
            self.settings, build_stage(self.settings, name)) for name in self.plan.stages]
        # Together: each start is mostly round trips to the broker (metadata, a group join), which overlap.
        started = await asyncio.gather(*(part.start() for part in parts), return_exceptions=True)
        for part, outcome in zip(parts, started, strict=True):
            if not isinstance(outcome, BaseException):
                self._stops.append(part.stop)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _start_watch(self) -> None:
        if not self.plan.watch:
            return
        from pipeline.bus.producer import EventProducer
        from pipeline.ingest.kube import WatchService

        producer = EventProducer(self.settings)
        await producer.start()
        self._stops.append(producer.stop)
        self.watch = WatchService(self.settings, producer)
        await self.watch.start()
        self._stops.append(self.watch.stop)

    async def _start_http(self) -> None:
        if not (self.plan.ingest or self.plan.gateway):
            await self._serve_probes()
            return
        from pipeline.bus.producer import EventProducer
        from pipeline.compose.app import Parts, build_app
        from pipeline.compose.health import KafkaProbe

        probe = KafkaProbe(self.settings)
        self._stops.append(probe.close)
        producer = EventProducer(self.settings)
        await producer.start()
        self._stops.append(producer.stop)
        parts = Parts(self.settings, probe, producer, watch=self.watch)
        if self.plan.ingest:
            from pipeline.ingest.alerts import AlertIngest
            from pipeline.ingest.dedup import RecentIds, SignalIdTail

            recent = RecentIds(self.settings.ingest_dedup_size)
            tail = None
            if recent.size:  # redeliveries recognised across instances and restarts (pipeline/ingest/dedup.py)
                tail = SignalIdTail(self.settings, recent)
                self._stops.append(tail.stop)
                await tail.start()  # waits for the recent ids, at most INGEST_DEDUP_SEED_TIMEOUT_S
            parts.ingest = AlertIngest(self.settings, producer, recent, written=tail.written if tail else None)
        if self.plan.gateway:
            from pipeline.gateway.projection import ProjectionRunner

            runner = ProjectionRunner(self.settings)
            await runner.start()
            self._stops.append(runner.stop)
            await runner.ready.wait()
            parts.projection = self.projection = runner
            parts.detector = await self._detector()
            if self.settings.prometheus_url:
                from pipeline.adapters.prometheus import PrometheusClient

                parts.prometheus = PrometheusClient(self.settings)
                self._stops.append(parts.prometheus.aclose)

            from pipeline.adapters.ml import KServeClient, MLServiceClient
            from pipeline.adapters.scorer import model_registry

            parts.kserve = KServeClient(self.settings, model_registry(self.settings))
            self._stops.append(parts.kserve.aclose)
            if self.settings.ml_service_url:
                parts.ml_service = MLServiceClient(self.settings)
                self._stops.append(parts.ml_service.aclose)
        self.url = await self._serve(build_app(parts), self.settings.port)
        if self.projection is not None:
            self.projection.list_incidents()  # serving: the read model's list indexes are built between requests
        if self.settings.metrics_port != self.settings.port:
            await self._serve_probes()
        if parts.ingest is not None and self.settings.alertmanager_url:
            from pipeline.ingest.reconcile import reconcile

            await reconcile(parts.ingest)

    async def _serve_probes(self) -> None:
        """METRICS_PORT (when set): `/metrics`, `/healthz`, `/readyz` (compose/health.py `probe_app`)."""
        if self.settings.metrics_port:
            from pipeline.compose.health import probe_app

            await self._serve(probe_app(), self.settings.metrics_port, "METRICS_PORT")

    async def _detector(self) -> Any:
        """Deployment-method detection for the gateway's routes, when a cluster is configured."""
        if not self.settings.cluster_configured:
            return None
        from pipeline.adapters.detection import Detector
        from pipeline.adapters.kube import api_client

        try:
            api = await api_client(self.settings)
        except Exception as exc:  # noqa: BLE001 - the detect routes answer 503 and say why
            log.warning("no Kubernetes client for detection", error=repr(exc))
            return None
        self._stops.append(api.close)
        return Detector(api, application_namespaces=self.settings.argocd_namespaces)

    async def _serve(self, app: Any, port: int, variable: str = "PORT") -> str:
        from pipeline.web.server import server

        host = self.settings.host
        # The socket is bound here, not by uvicorn (which logs and exits the process on a clash): a port in use
        # is a one-line error naming the variable that chose it.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {host}:{port} ({variable}, HOST): {exc.strerror or exc}; set "
                              f"{variable} to a free port (0 picks one) or stop what listens there") from None
        srv = server(app, host, port, self.settings)
        task = asyncio.create_task(srv.serve(sockets=[sock]), name="http")
        while not srv.started:
            if task.done():
                task.result()
                raise RuntimeError(f"HTTP server on {self.settings.host}:{port} did not start")
            await asyncio.sleep(0.02)
        bound = srv.servers[0].sockets[0].getsockname()[1] if srv.servers else port

        async def stop() -> None:
            srv.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

        self._stops.append(stop)
        return f"http://{self.settings.host}:{bound}"

    async def stop(self) -> None:
        """Stop every part, last started first. Each step is bounded by STOP_STEP_TIMEOUT_S: a client that
        hangs while closing (a Kafka admin client cancelled mid-connect, a connection that never drains) is
        logged by name and left behind, so SIGTERM always ends the process."""
        while self._stops:
            stop = self._stops.pop()
            name = getattr(stop, "__qualname__", repr(stop))
            try:
                await asyncio.wait_for(stop(), STOP_STEP_TIMEOUT_S)
            except TimeoutError:
                log.error("stop step timed out; left behind", step=name, timeout_s=STOP_STEP_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                log.warning("stop failed", step=name, error=repr(exc))
        log.info("stopped")


async def serve_until_signal(settings: Settings, plan: Plan) -> int:
    """Start the plan, run until SIGINT/SIGTERM, stop cleanly. Returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    process = Process(settings, plan)
    try:
        starting = asyncio.create_task(process.start())
        waiting = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()
            await waiting
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        return 0
    except Exception as exc:
        fix = _fix(exc, settings)
        log.error("failed", error=str(exc) if isinstance(exc, ConfigError) else repr(exc), **({"fix": fix} if fix else {}))
        return 1
    finally:
        await process.stop()


def _fix(exc: Exception, settings: Settings) -> str | None:
    """What to do about a start-up failure an operator can fix, naming the variable (None: no advice)."""
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, ConfigError):
        return None  # its message says it
    if isinstance(exc, KafkaConnectionError):
        return (f"no Kafka broker answers at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS): start it "
                "or correct the address; `pipeline run` with KAFKA_BOOTSTRAP_SERVERS unset starts an embedded one")
    return None


def configure_logs(settings: Settings) -> None:
    """LOG_LEVEL, LOG_FORMAT, LOG_REPEAT_WINDOW_S and NO_COLOR for this process's log lines, its uncaught exceptions
    and warnings included (observability.py)."""
    configure_logging(settings.log_level, settings.log_format, settings.log_repeat_window_s, settings.no_color)
    log_uncaught()


def run(settings: Settings, plan: Plan) -> int:
    configure_logs(settings)
    try:
        import uvloop

        return uvloop.run(serve_until_signal(settings, plan))
    except ImportError:
        return asyncio.run(serve_until_signal(settings, plan))

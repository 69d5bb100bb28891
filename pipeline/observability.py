"""Logs and metrics: one log line format for everything a process writes on stderr (JSON, or the console renderer
on a terminal) with the handled message's ids, and the Prometheus metrics of every part."""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import MutableMapping, Sequence
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import structlog
from prometheus_client import Counter, Gauge, Histogram

_SECRET_KEYS = ("password", "token", "secret", "authorization", "credentials")


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    """Whether a field's name looks like a secret's; remembered per name (looking cost ~1 µs a field, every line)."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEYS)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Secrets never reach a log line, whatever a caller binds."""
    for key in [key for key in event if _secret_key(key)]:
        event[key] = "[redacted]"
    return event


class _Stderr:
    """Whatever sys.stderr is at write time (test runners and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class RepeatLimiter:
    """The same logger + level + message (its template, for stdlib records) at most once per `window_s`;
    the next line that is let through says how many were suppressed (`repeats_suppressed`). Only warnings
    and above are limited: info lines carry distinct facts under one event name."""

    MAX_KEYS = 10_000

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, str, str], list[float]] = {}  # key -> [last line's monotonic time, suppressed]
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, str, str]) -> int | None:
        """None: drop this line; otherwise how many repeats were suppressed since the key's last line."""
        now = time.monotonic()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                entry[1] += 1
                return None
            if len(self._seen) >= self.MAX_KEYS:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            self._seen[key] = [now, 0]
            return int(entry[1]) if entry is not None else 0


_LIMITED_LEVELS = {"warning", "error", "critical", "exception"}
_repeats = RepeatLimiter(10.0)


def _limit_repeats(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog's own events: drop a repeated warning or error inside the window (see RepeatLimiter)."""
    level = str(event.get("level", ""))
    if level in _LIMITED_LEVELS:
        suppressed = _repeats.admit((str(event.get("logger_name", "")), level, str(event.get("event", ""))))
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event["repeats_suppressed"] = suppressed
    return event


# aiokafka logs at ERROR a coordinator lookup it then retries: on every fresh start (the broker is still electing
# the group coordinator) and during a broker restart. Nothing is lost and nobody must act, so it is a warning; a
# coordinator that stays away shows in /readyz and the stage-stuck alert.
_RETRIED = {("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s")}
_TRANSIENT_ERRORS = ("GroupCoordinatorNotAvailableError", "NotCoordinatorForGroupError",
                     "CoordinatorLoadInProgressError", "NotCoordinatorError")


def _retried_as_warning(record: logging.LogRecord) -> None:
    if (record.levelno >= logging.ERROR and (record.name, record.msg) in _RETRIED
            and any(name in repr(record.args) for name in _TRANSIENT_ERRORS)):
        record.levelno, record.levelname = logging.WARNING, "WARNING"


class _RepeatFilter(logging.Filter):
    """The same for stdlib records (aiokafka, uvicorn), keyed by the unformatted message template, so that
    "Unable connect to node with id 1: ..." with a new error text each time is still one repeated line."""

    def filter(self, record: logging.LogRecord) -> bool:
        _retried_as_warning(record)
        if record.levelno < logging.WARNING:
            return True
        suppressed = _repeats.admit((record.name, record.levelname.lower(), str(record.msg)))
        if suppressed is None:
            return False
        if suppressed:
            record.repeats_suppressed = suppressed
        return True


def _stdlib_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A stdlib record's logger name and suppressed-repeat count, under the names structlog's lines use."""
    record = event.get("_record")
    if record is not None and not event.get("_from_structlog"):
        event.setdefault("logger_name", record.name)
        suppressed = getattr(record, "repeats_suppressed", 0)
        if suppressed:
            event["repeats_suppressed"] = suppressed
    return event


# The message a stage is handling (pipeline/bus/stage.py): (stage name, the event's envelope or None for a batch
# as a whole). One context variable set per message costs ~0.2 µs; the ids are read from the envelope only when a
# line is written (`_message_ids`), so a message that logs nothing pays nothing more.
_MESSAGE: ContextVar[tuple[str, Any] | None] = ContextVar("pipeline_message", default=None)


def bind_message(stage: str, envelope: Any = None) -> Token[tuple[str, Any] | None]:
    """Every line logged in this context from now on carries `stage` and the ids of `envelope` (a CloudEvents
    envelope: `id`, `incidentid`, `workflowid`, `traceparent`), until `unbind_message(token)`."""
    return _MESSAGE.set((stage, envelope))


def unbind_message(token: Token[tuple[str, Any] | None]) -> None:
    _MESSAGE.reset(token)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<flags>`); None if malformed."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    trace = parts[1].lower() if len(parts) >= 4 else ""
    if len(trace) != 32 or trace.strip("0123456789abcdef") or trace == "0" * 32:
        return None
    return trace


def _message_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The bound message's stage and ids (what the caller passed itself wins)."""
    bound = _MESSAGE.get()
    if bound is None:
        return event
    stage, envelope = bound
    event.setdefault("stage", stage)
    if envelope is not None:
        event.setdefault("event_id", envelope.id)
        if envelope.incidentid:
            event.setdefault("incident_id", envelope.incidentid)
        if envelope.workflowid:
            event.setdefault("workflow_id", envelope.workflowid)
        if envelope.traceparent and (trace := trace_id(envelope.traceparent)):
            event.setdefault("trace_id", trace)
    return event


def _first_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """`timestamp`, `level`, `logger` and `event` first, on every line. The logger's name is bound as `logger_name`
    (structlog keeps `logger` for itself); a line whose caller named none is the application's (`pipeline`)."""
    return {"timestamp": event.pop("timestamp", None), "level": event.pop("level", None),
            "logger": event.pop("logger_name", None) or "pipeline", "event": event.pop("event", None), **event}


_HANDLER_NAME = "pipeline-structlog"
_level: int = logging.NOTSET  # the level configure_logging chose (unconfigured: structlog writes every level)


def resolve_format(fmt: str) -> Literal["json", "console"]:
    """LOG_FORMAT `auto`: the console renderer when stderr is a terminal, JSON lines otherwise."""
    if fmt == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return "console" if fmt == "console" else "json"


def configure_logging(level: str = "INFO", fmt: str = "auto", repeat_window_s: float = 10.0,
                      no_color: str = "") -> None:
    """Configure structlog and route the stdlib loggers (aiokafka, uvicorn, faststream) through the same renderer,
    whoever logs: one JSON object per line on stderr (`fmt` json, or auto and stderr not a terminal) with
    `timestamp`, `level`, `logger` and `event` first, or the console renderer (coloured on a terminal unless
    `no_color`). Repeated warnings and errors are limited to one line per `repeat_window_s` per logger and message.
    `log_uncaught` adds what else a process writes on stderr."""
    global _level
    _repeats.window_s = repeat_window_s
    _level = logging.getLevelName(level.upper())
    chosen = resolve_format(fmt)
    renderer: Any
    if chosen == "json":
        renderer, exceptions = structlog.processors.JSONRenderer(), [structlog.processors.format_exc_info]
    else:  # renders exc_info itself; colours only on a terminal (none written into a redirected file)
        renderer, exceptions = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty() and not no_color), []
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _message_ids,
        _redact,
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, _limit_repeats, *exceptions, _first_fields,
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=structlog.PrintLoggerFactory(_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_Stderr())
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_RepeatFilter())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, *shared, _stdlib_fields, *exceptions],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _first_fields, renderer],
    ))  # fmt: skip
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME or type(h) is logging.StreamHandler]:
        root.removeHandler(old)  # ours from an earlier call, or basicConfig's plain-text one
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def log_uncaught() -> None:
    """The rest of what a process would write on stderr, as log lines: `warnings` (logger `py.warnings`), the
    exception that ends the process, one that ends a thread, one Python cannot raise (in `__del__`), each with its
    traceback in `exception`. For a process's entry point (`pipeline` commands); tests that configure logging in
    process keep the test runner's own hooks."""
    logging.captureWarnings(True)
    sys.excepthook, threading.excepthook, sys.unraisablehook = _uncaught, _uncaught_in_thread, _unraisable


_crash_log = structlog.get_logger(logger_name="pipeline.crash")


def _uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook: the exception that ends the process, as one line (its traceback in `exception`)."""
    if issubclass(kind, KeyboardInterrupt):
        _crash_log.warning("interrupted")
        return
    _crash_log.critical("uncaught exception", error=repr(value), exc_info=(kind, value, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as the default hook: a thread that exits is not an error
    thread = args.thread.name if args.thread is not None else None
    _crash_log.error("uncaught exception in a thread", thread=thread, error=repr(args.exc_value),
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _unraisable(args: Any) -> None:
    """sys.unraisablehook: an exception Python could not raise (in `__del__`, a finalizer, a closed generator)."""
    try:
        where = args.err_msg or f"Exception ignored in: {args.object!r}"
    except Exception:  # noqa: BLE001 - an object whose repr fails
        where = "Exception ignored"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_type is not None else None
    _crash_log.warning(where, error=repr(args.exc_value), exc_info=exc_info)


_broker_log = structlog.get_logger(logger_name="pipeline.broker")


class BrokerState:
    """One line per change of the broker's reachability, never one per failed attempt: "broker unavailable
    since <time>" when it goes away (or is away at start), "broker recovered after <duration>" when it is
    back. Fed by whatever notices (compose/process.py's periodic probe; a producer or consumer may call it too)."""

    def __init__(self) -> None:
        self.down_since: datetime | None = None
        self._down_monotonic = 0.0

    def update(self, reachable: bool, reason: str = "") -> None:
        if not reachable and self.down_since is None:
            self.down_since, self._down_monotonic = datetime.now(UTC), time.monotonic()
            since = self.down_since.isoformat().replace("+00:00", "Z")
            _broker_log.error(f"broker unavailable since {since}", since=since, reason=reason)
        elif reachable and self.down_since is not None:
            seconds = round(time.monotonic() - self._down_monotonic, 1)
            since = self.down_since.isoformat().replace("+00:00", "Z")
            self.down_since = None
            _broker_log.warning(f"broker recovered after {seconds} s", since=since, down_seconds=seconds)


def get_logger(name: str, **bound: Any) -> Any:
    """A lazy logger: safe to create at import time, before `configure_logging` runs."""
    return structlog.get_logger(logger_name=name, **bound)


def bind_context(**fields: Any) -> None:
    """Bind fields (None values left out) to every line logged from here on in this context: the current task and
    the tasks it creates. For long-lived tasks (a workflow's execution); a stage's messages use `bind_message`."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


class Journal:
    """INFO lines about what a stage did ("incident opened", "decision made"), written only once the batch's outputs
    are acknowledged. `note` keeps a line with the message bound when it was noted (its ids); the stage runtime
    `flush`es the lines after the batch's commit and `clear`s them when the batch is rolled back, so a retried
    batch never logs a decision twice, nor one that was not published. Nothing is kept when INFO is off.

    `limit`: at most one line per LOG_REPEAT_WINDOW_S with this event and key, the next one carrying
    `repeats_suppressed` (for facts that may come once per alert, e.g. a score falling back to rules)."""

    def __init__(self, logger_name: str) -> None:
        self.name = logger_name
        self._log = get_logger(logger_name)
        self._lines: list[tuple[str, str | None, dict[str, Any], tuple[str, Any] | None]] = []

    @property
    def enabled(self) -> bool:
        """Whether INFO lines are written (a hot handler builds a line's fields only then). Read from the level
        configure_logging chose: asking the lazy logger costs ~2 µs (a failed attribute lookup first)."""
        return _level <= logging.INFO

    def note(self, event: str, *, limit: str | None = None, **fields: Any) -> None:
        if self.enabled:
            self._lines.append((event, limit, fields, _MESSAGE.get()))

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        for event, limit, fields, bound in lines:
            if limit is not None:
                suppressed = _repeats.admit((self.name, event, limit))
                if suppressed is None:
                    continue
                if suppressed:
                    fields["repeats_suppressed"] = suppressed
            token = _MESSAGE.set(bound)
            try:
                self._log.info(event, **fields)
            finally:
                _MESSAGE.reset(token)

    def clear(self) -> None:
        self._lines.clear()


# Stage runtime.
STAGE_CONSUMED = Counter("pipeline_stage_consumed_total", "Records consumed", ["stage", "topic"])
STAGE_PRODUCED = Counter("pipeline_stage_produced_total", "Events produced and acknowledged", ["stage", "topic"])
STAGE_FAILED = Counter("pipeline_stage_failed_total", "Handler attempts that raised", ["stage"])
STAGE_DEAD_LETTERED = Counter("pipeline_stage_dead_lettered_total", "Records sent to the dead-letter topic", ["stage"])
STAGE_DUPLICATES = Counter("pipeline_stage_duplicates_total", "Records skipped as already handled", ["stage"])
STAGE_HANDLER_SECONDS = Histogram(
    "pipeline_stage_handler_seconds",
    "Time to handle one batch, outputs acknowledged and offsets committed",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STAGE_LAG = Gauge("pipeline_stage_lag", "Records behind the high-water mark", ["stage", "topic", "partition"])
STAGE_STUCK_SECONDS = Gauge(
    "pipeline_stage_stuck_seconds",
    "Seconds a partition has been held on the same offset while input waits (0 when it moves)",
    ["stage", "topic", "partition"],
)

# Ingest.
# Audit trail (pipeline/forensics/audit.py).
AUDIT_LINES = Counter("pipeline_audit_lines_total", "Lines written and synced to the audit trail")
AUDIT_DUPLICATES = Counter("pipeline_audit_duplicates_total", "Records not written again: already in the trail")
AUDIT_WRITE_SECONDS = Histogram(
    "pipeline_audit_write_seconds", "Writing, syncing and heading one batch of the audit trail",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
AUDIT_LAST_SEQ = Gauge("pipeline_audit_last_seq", "Seq of the last line synced to the audit trail")


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for each of `amounts`, as one increment per bucket touched and one of the sum (a
    stage observes each decision's resolution time: per observation, two locked increments and a bucket scan).
    Reads prometheus_client's bucket bounds and values, as `observe` itself does; where they are not there (a
    later client), it observes one by one."""
    if not amounts:
        return
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = {}
    for amount in amounts:  # the first bound >= amount: the bucket `observe` increments
        index = bisect_left(bounds, amount)
        counts[index] = counts.get(index, 0) + 1
    total.inc(sum(amounts))
    for index, count in counts.items():
        buckets[index].inc(count)


INGEST_REQUESTS = Counter("pipeline_ingest_requests_total", "Webhook requests by outcome", ["route", "code"])
INGEST_SIGNALS = Counter("pipeline_ingest_signals_total", "Signals acknowledged by the broker", ["source"])
INGEST_DUPLICATES = Counter("pipeline_ingest_duplicates_total", "Alert instances already delivered", ["source"])
INGEST_DEDUP_READ = Counter(
    "pipeline_ingest_dedup_ids_read_total", "Signal ids ingest read from the signals topic (seed and tail)", ["topic"]
)
INGEST_DEDUP_SKIPPED = Counter(
    "pipeline_ingest_dedup_ids_skipped_total",
    "Signal records the tail sought past unread: this ingest instance stored them and knows their ids", ["topic"]
)
INGEST_DEDUP_SEED_IDS = Gauge("pipeline_ingest_dedup_seed_ids", "Signal ids read from the signals topic at start")
INGEST_DEDUP_SEED_SECONDS = Gauge(
    "pipeline_ingest_dedup_seed_seconds", "Seconds from start until the recent signal ids were read"
)
INGEST_IN_FLIGHT = Gauge("pipeline_ingest_in_flight", "Webhook requests waiting for broker acks")
INGEST_SECONDS = Histogram(
    "pipeline_ingest_request_seconds",
    "Webhook request time including broker acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

INCIDENTS_TRUNCATED = Counter(
    "pipeline_incidents_truncated_total",
    "Incidents that received alerts from a webhook Alertmanager truncated (truncatedAlerts > 0): alerts of their "
    "group were cut; counted by correlate when an incident records a larger truncatedAlerts",
)

# Gateway projection.
PROJECTION_EVENTS = Counter("pipeline_projection_events_total", "Events applied to the read model", ["type"])
PROJECTION_INCIDENTS = Gauge("pipeline_projection_incidents", "Incidents in the read model", ["status"])

# Circuit breakers (one per outbound dependency) and calls to ML dependencies (KServe models, ML service).
CIRCUIT_BREAKER_STATE = Gauge(
    "pipeline_circuit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["dependency"]
)
CIRCUIT_BREAKER_OPENS = Counter("pipeline_circuit_breaker_opens_total", "Times a circuit breaker opened", ["dependency"])
ML_REQUESTS = Counter(
    "pipeline_ml_requests_total",
    "Calls to ML dependencies by outcome (ok, unavailable, circuit_open, rejected, invalid_response)",
    ["dependency", "operation", "outcome"],
)
ML_REQUEST_SECONDS = Histogram(
    "pipeline_ml_request_seconds",
    "Time of one call to an ML dependency, retries included",
    ["dependency", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# Arbitration: the Python coordination engine's metric names, kept.
COORDINATION_ACTIONS = Counter(
    "coordination_actions_total", "Remediation proposals decided", ["source", "action", "outcome"]
)
COORDINATION_CONFLICTS = Counter(
    "coordination_conflicts_total", "Proposals that lost a conflict, by conflict kind and resolution rule",
    ["conflict", "resolution"],
)
COORDINATION_RESOLUTION_SECONDS = Histogram(
    "coordination_resolution_time_seconds", "From a proposal's event time to its decision",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
COORDINATION_ACTIVE = Gauge("coordination_active_actions", "Approved actions holding their target, by this instance")
REMEDIATE_WORKFLOWS = Counter("pipeline_remediate_workflows_total", "Workflows by transition (created and how they ended)",
                              ["status"])
REMEDIATE_STEPS = Counter("pipeline_remediate_steps_total", "Workflow steps carried out, by action and outcome",
                          ["action", "outcome"])
REMEDIATE_RUNNING = Gauge("pipeline_remediate_executing_workflows", "Workflows this instance is executing or gating")
REMEDIATE_FIRST_CALL_SECONDS = Histogram(
    "pipeline_remediate_decision_to_first_call_seconds", "From the decision event to the first step's API call",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
COORDINATION_REDECIDED = Counter(
    "pipeline_arbitrate_already_decided_total", "Proposals skipped because their id was already decided"
)

# The Kubernetes watcher.
WATCH_EVENTS = Counter("pipeline_watch_events_total", "Watch events received", ["collection", "type"])
WATCH_SIGNALS = Counter("pipeline_watch_signals_total", "Signals published by the watcher", ["name", "status"])
WATCH_RELISTS = Counter("pipeline_watch_relists_total", "Re-lists after 410 Gone", ["collection"])
WATCH_STREAM_ERRORS = Counter(
    "pipeline_watch_stream_errors_total", "Lists or watches that failed and were retried", ["collection"]
)
WATCH_LEADER = Gauge("pipeline_watch_leader", "1 while this instance holds the watch Lease")

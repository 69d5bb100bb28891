"""The broker's log as the pipeline's own lines: the JVM's output parsed and written again through structlog.

Kafka 4.x logs through log4j2, configured (`LOG4J2_PATTERN`) to write one JSON object per event: time, level,
logger, message and exception, each escaped by `%enc{…}{JSON}`, so a stack trace stays on its event's line.
Kafka 3.x (reload4j) writes the classic `[time] LEVEL message (logger)`, parsed as well. A line the JVM writes
outside log4j (its own warnings, a crash's `Exception in thread …`) is kept as it is, at warning, logger
`kafka.jvm`; the indented lines after a line (`\tat …`, `Caused by: …`) are its exception.

`LineParser` is pure (lines in, records out); `LogRelay` follows the broker's log file on a thread and writes each
record with its own level and the Java logger's name, so `pipeline run` has one format on stderr.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.observability import get_logger

LOG4J2_PATTERN = (
    '{"time":"%d{yyyy-MM-dd\'T\'HH:mm:ss.SSS\'Z\'}{UTC}","level":"%p","logger":"%enc{%c}{JSON}",'
    '"message":"%enc{%m}{JSON}","exception":"%enc{%throwable}{JSON}"}%n'
)
CLASSIC_PATTERN = "[%d] %p %m (%c)%n"  # reload4j (Kafka 3.x): no JSON escaping there

LEVELS = {"TRACE": "debug", "DEBUG": "debug", "INFO": "info", "WARN": "warning", "WARNING": "warning",
          "ERROR": "error", "FATAL": "critical"}
JVM_LOGGER = "kafka.jvm"
_CLASSIC = re.compile(r"^\[(?P<time>[^\]]+)\] (?P<level>[A-Z]+) (?P<message>.*) \((?P<logger>[^()\s]+)\)$")
_LEVEL_NUMBERS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
                  "critical": logging.CRITICAL}


@dataclass(frozen=True, slots=True)
class BrokerLine:
    """One event of the broker's log: its level (the pipeline's names: debug … critical), the Java logger, the
    message, the exception's stack trace if any, and the broker's own timestamp as written."""

    level: str
    logger: str
    message: str
    exception: str = ""
    time: str = ""


def parse_line(line: str) -> BrokerLine:
    """One physical line: a log4j2 JSON event, a classic reload4j line, or the JVM's own text (warning)."""
    if line.startswith("{"):
        try:
            fields = json.loads(line)
        except ValueError:
            fields = None
        if isinstance(fields, dict) and {"level", "logger", "message"} <= fields.keys():
            return BrokerLine(LEVELS.get(str(fields["level"]).upper(), "warning"), str(fields["logger"]),
                              str(fields["message"]), str(fields.get("exception") or "").strip(),
                              str(fields.get("time") or ""))
    classic = _CLASSIC.match(line)
    if classic is not None:
        return BrokerLine(LEVELS.get(classic["level"], "warning"), classic["logger"], classic["message"],
                          time=classic["time"])
    return BrokerLine("warning", JVM_LOGGER, line)


def _continues(line: str) -> bool:
    """A stack trace's next line: indented (`\tat …`, `\t... 3 more`) or a cause."""
    return line[:1].isspace() or line.startswith(("Caused by: ", "Suppressed: "))


class LineParser:
    """Lines in, events out. An event is held until the next line shows it is complete (a line that does not
    continue it) or `flush` says no more is coming for now."""

    def __init__(self) -> None:
        self._pending: BrokerLine | None = None

    def feed(self, line: str) -> list[BrokerLine]:
        line = line.rstrip("\r\n")
        if not line.strip():
            return []
        pending = self._pending
        if pending is not None and _continues(line):
            trace = f"{pending.exception}\n{line}" if pending.exception else line
            self._pending = replace(pending, exception=trace)
            return []
        self._pending = parse_line(line)
        return [pending] if pending is not None else []

    def flush(self) -> list[BrokerLine]:
        pending, self._pending = self._pending, None
        return [pending] if pending is not None else []


_log = get_logger("kafka")


def write(line: BrokerLine) -> None:
    """One broker event as a pipeline log line: its level, the Java logger as `logger`, the message as `event`."""
    extra = {key: value for key, value in (("exception", line.exception), ("broker_time", line.time)) if value}
    _log.log(_LEVEL_NUMBERS[line.level], line.message, logger_name=line.logger, **extra)


class LogRelay:
    """Follows the broker's log file from `offset` on, on a daemon thread (every `interval` seconds), and writes
    every event through `write`. `stop` reads what is left first, so a broker's last words are not lost."""

    def __init__(self, path: Path, offset: int, interval: float = 0.2) -> None:
        self.path = path
        self.offset = offset
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="kafka-log-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _follow(self) -> None:
        parser, rest = LineParser(), b""
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            while True:
                stopping = self._stopping.is_set()  # checked before reading: what was written before stop is read
                chunk = fh.read()
                if chunk:
                    *lines, rest = (rest + chunk).split(b"\n")
                    for line in lines:
                        for event in parser.feed(line.decode("utf-8", "replace")):
                            write(event)
                    continue
                if stopping:
                    for event in [*parser.feed(rest.decode("utf-8", "replace")), *parser.flush()]:
                        write(event)
                    return
                for event in parser.flush():
                    write(event)
                self._stopping.wait(self.interval)

"""Progress of slow first-run steps: a bar on a terminal; on a log, a line at the start, at every 10 % crossed or
after 5 s without one, and at the end; and what Maven's log says it fetched."""

from __future__ import annotations

import io
import json
from typing import Any

import structlog

from pipeline.embedded.kafka.distribution import downloads
from pipeline.observability import configure_logging, get_logger
from pipeline.progress import Progress, Schedule
from tests.support import Clock


class Terminal(io.StringIO):
    """What a terminal gets written: a stream that says it is one."""

    def isatty(self) -> bool:
        return True


class Lines:
    """A logger keeping what it is told."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


def test_a_known_total_is_reported_at_every_tenth_crossed_and_no_more_often() -> None:
    schedule = Schedule(total=200)
    assert schedule.due(0, now=0.0)
    assert [d for d in range(1, 201) if schedule.due(d, now=1.0)] == list(range(20, 201, 20))


def test_without_progress_across_a_tenth_a_line_comes_every_five_seconds() -> None:
    schedule = Schedule(total=1000)
    assert schedule.due(0, now=0.0)
    assert not schedule.due(5, now=4.9)
    assert schedule.due(6, now=5.0)
    assert not schedule.due(7, now=9.9)
    assert schedule.due(100, now=10.0)  # a tenth crossed: at once
    unknown = Schedule(total=None)
    assert unknown.due(0, now=0.0) and not unknown.due(50, now=4.0) and unknown.due(60, now=5.0)


def test_on_a_log_the_step_writes_its_start_its_tenths_and_its_end() -> None:
    clock, log = Clock(), Lines()
    with Progress("training the reference ML model", 5, unit="steps", out=io.StringIO(), clock=clock.__call__,
                  logger=log) as progress:
        for _ in range(4):
            clock.advance(1)
            progress.advance(0.25)  # a history's vectors, a quarter at a time
        progress.note("fitting")
        for _ in range(16):
            clock.advance(1)
            progress.advance(0.25)
    assert [line["percent"] for line in log.lines] == [*range(0, 101, 10), 100]
    assert log.lines[0] == {"event": "training the reference ML model", "done": 0.0, "total": 5, "unit": "steps",
                            "elapsed_s": 0.0, "percent": 0}
    assert log.lines[-1]["finished"] is True and log.lines[-1]["elapsed_s"] == 20.0
    assert log.lines[-1]["detail"] == "fitting"


def test_an_unknown_total_is_a_count_without_a_percentage() -> None:
    clock, log = Clock(), Lines()
    progress = Progress("resolving jars", unit="files", out=io.StringIO(), clock=clock.__call__, logger=log)
    for _ in range(12):
        clock.advance(1)
        progress.advance(10)
    progress.close()
    progress.close()  # once
    assert [(line["done"], "percent" in line) for line in log.lines] == [(0, False), (50, False), (100, False),
                                                                       (120, False)]


def test_the_lines_are_json_like_every_other_log_line() -> None:
    out = io.StringIO()
    configure_logging("INFO")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))
    try:
        logger = get_logger("pipeline.progress")  # a fresh proxy: bound, and cached, with this configuration
        with Progress("collecting vectors", 3, unit="scopes", out=io.StringIO(), logger=logger) as progress:
            progress.advance(3)
    finally:
        configure_logging("WARNING")  # as tests/conftest.py left it
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["event"], line["percent"], line.get("finished")) for line in lines] == [
        ("collecting vectors", 0, None), ("collecting vectors", 100, None), ("collecting vectors", 100, True)]
    assert {line["logger"] for line in lines} == {"pipeline.progress"}


def test_on_a_terminal_a_bar_is_drawn_in_place_and_nothing_is_logged() -> None:
    terminal, log = Terminal(), Lines()
    with Progress("training the reference ML model", 5, unit="steps", out=terminal, logger=log) as progress:
        progress.note("history 1/4: 460 vectors")
        progress.advance(5)
    drawn = terminal.getvalue()
    assert log.lines == []
    assert "\r" in drawn and drawn.endswith("\n")
    last = drawn.rstrip("\n").split("\r")[-1]
    assert last.startswith("training the reference ML model: 100%")
    assert "5/5" in last and "history 1/4: 460 vectors" in last


def test_maven_downloads_are_counted_with_their_sizes() -> None:
    log = """[INFO] Downloading from central: https://repo.maven.apache.org/maven2/org/ow2/asm/asm/9.7/asm-9.7.jar
[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/org/apache/apache/33/apache-33.pom (24 kB at 2.7 MB/s)
[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/com/github/luben/zstd-jni/1.5.6-3/zstd-jni-1.5.6-3.jar (6.7 MB at 36 MB/s)
[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/x/y/1/y-1.pom (950 B at 9.5 kB/s)
[INFO] BUILD SUCCESS
"""
    assert downloads(log) == (3, 24_000 + 6_700_000 + 950)
    assert downloads("") == (0, 0)

"""`pipeline replay`: show a part of the log as a readable, coloured timeline or as JSON lines.

Three ways to choose the part:

* `--incident ID`: the incident's timeline, the same read as `GET /api/v1/incidents/{id}/timeline`
  (`bus.timeline`): every event of the incident on every topic, in causal order. Without `--from` the scan starts
  where the incident's first change on the `incidents` topic says it was received, minus `TIMELINE_MARGIN_S`.
* `--from T [--to T]`: every record of the timeline topics (or `--topics`) with a broker time in [from, to), in
  causal order (times are turned into offsets with the broker's time index).
* `--topic T [--partition P] [--from-offset A] [--to-offset B]`: the records at offsets [A, B) of one topic (of
  every partition, or of P), in log order.

The reader is a `bus.log.LogReader`: its own consumer, no group, nothing committed, so it disturbs no stage and
can run against a live cluster. `--json` prints one JSON object per record (`LoggedRecord.as_dict`: position,
key, CloudEvents attributes and payload); the terminal rendering is coloured when stdout is a terminal (or with
`--color`; `--no-color` or `NO_COLOR` turn it off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from pipeline.bus.log import LoggedRecord, LogReader, Window
from pipeline.bus.timeline import TIMELINE_TOPICS, first_change, incident_timeline, unknown_topics
from pipeline.config import Settings
from pipeline.domain.timeline import causal_order, depths, summary, timeline_start
from pipeline.domain.times import parse_when
from pipeline.events import iso_z

USAGE = "give --incident ID, --from T [--to T], or --topic T [--partition P] [--from-offset A] [--to-offset B]"


class ReplayError(Exception):
    """A request `pipeline replay` cannot answer: the message says why; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Request:
    """What to replay, validated."""

    incident: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    topic: str | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    topics: tuple[str, ...] = ()

    @classmethod
    def of(cls, args: argparse.Namespace, now: datetime) -> Request:
        offsets = (args.partition, args.from_offset, args.to_offset)
        if args.topic is None and any(v is not None for v in offsets):
            raise ReplayError("--partition, --from-offset and --to-offset need --topic")
        if args.incident is not None and args.topic is not None:
            raise ReplayError("--incident and --topic do not go together (--topics restricts an incident's topics)")
        if args.incident is None and args.topic is None and args.start is None:
            raise ReplayError(USAGE)
        if any(v is not None and v < 0 for v in offsets):
            raise ReplayError("--partition, --from-offset and --to-offset are never negative")
        topics = tuple(t.strip() for t in (args.topics or "").split(",") if t.strip())
        if args.topic is not None and topics:
            raise ReplayError("--topic and --topics do not go together")
        bad = unknown_topics(topics)
        if bad:
            raise ReplayError(f"--topics: unknown topic(s) {', '.join(bad)}; known: {', '.join(TIMELINE_TOPICS)}")
        try:
            start = parse_when(args.start, now) if args.start else None
            end = parse_when(args.end, now) if args.end else None
        except ValueError as exc:
            raise ReplayError(f"--from/--to: {exc}") from None
        if start is not None and end is not None and end <= start:
            raise ReplayError("--to must be after --from")
        return cls(args.incident, start, end, args.topic, args.partition, args.from_offset, args.to_offset, topics)


async def collect(settings: Settings, request: Request) -> list[LoggedRecord]:
    """The records the request asks for, in the order they are shown."""
    if request.incident is not None:
        start = request.start
        if start is None:
            incident = await first_change(settings, request.incident)
            if incident is None:
                raise ReplayError(f"incident {request.incident} not found on {settings.topic('incidents')}", 1)
            start = timeline_start(incident, timedelta(seconds=settings.timeline_margin_s))
        return await incident_timeline(settings, request.incident, start, request.end, request.topics)
    async with LogReader(settings) as reader:
        if request.topic is not None:
            topic = settings.topic(request.topic)
            window = _offsets(await reader.partitions([topic]), request)
            records = [r async for r in reader.read([topic], window)]
            return sorted(records, key=lambda r: (r.position.partition, r.position.offset))
        topics = [settings.topic(t) for t in request.topics or TIMELINE_TOPICS]
        return causal_order([r async for r in reader.read(topics, Window(request.start, request.end))])


def _offsets(partitions: Sequence[TopicPartition], request: Request) -> Window:
    """The window of `--topic`: the offset range in each chosen partition (the others get an empty range)."""
    chosen = [tp for tp in partitions if request.partition is None or tp.partition == request.partition]
    if not chosen:
        raise ReplayError(f"partition {request.partition} of {request.topic} does not exist "
                          f"(it has {len(partitions)})", 1)
    to_offsets = {tp: 0 for tp in partitions if tp not in chosen}
    if request.to_offset is not None:
        to_offsets.update({tp: request.to_offset for tp in chosen})
    from_offsets = {tp: request.from_offset for tp in chosen} if request.from_offset is not None else None
    return Window(request.start, request.end, from_offsets=from_offsets, to_offsets=to_offsets)


# --- rendering ------------------------------------------------------------------------------------------------------

_COLOURS = {"signals": "36", "incidents": "33", "features": "34", "scores": "35", "remediation": "32",
            "decisions": "1;32", "workflows": "1;34", "control": "31"}


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def render(records: Sequence[LoggedRecord], settings: Settings, out: TextIO, colour: bool) -> None:
    """The terminal timeline: time, position, indentation by causal depth, type, what the event says, its id."""
    prefix = settings.topic_prefix
    for record, depth in zip(records, depths(records), strict=True):
        p = record.position
        name = p.topic.removeprefix(prefix)
        code = _COLOURS.get(name, "")
        where = _paint(f"{name}[{p.partition}]@{p.offset}".ljust(18), code, colour)
        indent = "  " * min(depth, 8) + ("└ " if depth else "")
        if record.event is None:
            line = f"{iso_z(p.timestamp)}  {where} {indent}{_paint('not an event', '31', colour)}: {record.invalid}"
        else:
            env = record.event.envelope
            kind = env.type.removeprefix("pipeline.").removesuffix(".v1")
            line = (f"{iso_z(env.time)}  {where} {indent}{_paint(kind, '1', colour)}  {summary(record.event.payload)}"
                    f"  {_paint('#' + env.id[:8], '2', colour)}")
        out.write(line + "\n")


def use_colour(flag: bool | None, tty: bool, no_color: str) -> bool:
    """`--color`/`--no-color` decide; else colour on a terminal unless NO_COLOR is set (no-color.org)."""
    return flag if flag is not None else tty and not no_color


def main(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """`pipeline replay`: 0 when the records were shown (none is a valid answer for a window), 1 when the log
    could not be read or the incident is unknown, 2 for a request that does not make sense. With `--what-if`:
    `forensics.whatif.main`."""
    if args.what_if:
        return _what_if(args, settings)
    if args.rules or args.confidence_threshold is not None:
        print("pipeline replay: --rules and --confidence-threshold go with --what-if", file=sys.stderr)
        return 2
    try:
        request = Request.of(args, datetime.now(UTC))
        records = asyncio.run(collect(settings, request))
    except ReplayError as exc:
        print(f"pipeline replay: {exc}", file=sys.stderr)
        return exc.code
    except (LookupError, KafkaError, OSError) as exc:  # a missing topic, the broker away
        print(f"pipeline replay: the log could not be read: {exc!r}", file=sys.stderr)
        return 1
    try:
        if args.json:
            for record in records:
                out.write(json.dumps(record.as_dict()) + "\n")
        else:
            colour = use_colour(args.color, out.isatty(), settings.no_color)
            render(records, settings, out, colour)
        out.flush()
    except BrokenPipeError:  # `pipeline replay ... | head`: the reader has seen enough
        return 0
    topics = len({r.position.topic for r in records})
    print(f"{len(records)} record(s) from {topics} topic(s)", file=sys.stderr)
    return 0


def _what_if(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.forensics.whatif import main as what_if

    if args.start is None:
        print("pipeline replay --what-if: --from is required", file=sys.stderr)
        return 2
    if args.incident is not None or args.topic is not None:
        print("pipeline replay --what-if: a time window only (--from T1 [--to T2]), not --incident or --topic",
              file=sys.stderr)
        return 2
    return what_if(settings, args)

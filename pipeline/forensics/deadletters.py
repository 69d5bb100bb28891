"""Dead letters: list, show and replay the records a stage could not handle (`pipeline dlq list|show|replay`).

A dead letter (`Output.dead_letter`, pipeline/bus/producer.py) is the original record — key, value and
headers, unchanged — plus `dlq_*` headers: `dlq_origin_topic`/`_partition`/`_offset`, `dlq_stage`,
`dlq_error`, `dlq_attempts`, `dlq_time`, and `dlq_truncated` when its payload was cut to fit.

**ID.** A dead letter is named by `<partition>:<offset>` of its record in the dead-letter topic (`1:42`):
stable (a record never moves or changes), short enough to type, and read back with one offset range.

**Replay** produces the original key, value and headers (every `dlq_*` header removed) to the origin topic,
keyed as before (so to the partition its key maps to; a record without a key to its origin partition), with
`dlq_replay_of=<ID>` and `dlq_replay_origin=<topic>:<partition>:<offset>`. The stage then handles it as it
handles any record. **Processed once** rests on the stages' idempotence, not on the replay: the replayed record
keeps its event id (`ce_id`), a stage skips ids it has already handled (in memory, `SEEN_IDS`), a stateful
stage's changelog remembers what it applied (correlate: the last signal ids per resource; arbitrate: the
decided proposal ids), and every output id is derived from the input id (`Event.caused`) so a consumer drops
a duplicate output. On top of that, replay refuses a dead letter already replayed (a record on its origin
topic carries `dlq_replay_of=<ID>`) unless forced, and `--all` skips those.

Refused unless forced (the caller exits 2): a dead letter whose origin topic is not one of this pipeline's
topics, or whose payload was truncated (`dlq_truncated`: replaying would inject a damaged record).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from aiokafka import TopicPartition

from pipeline.bus.log import LoggedRecord, LogReader, Position, Window
from pipeline.bus.producer import REPLAY_OF, REPLAY_ORIGIN, EventProducer, Output
from pipeline.bus.topics import load_specs
from pipeline.config import Settings
from pipeline.events import iso_z

# Replays of a dead letter are looked for on its origin topic from this long before the dead letter was written
# (the replaying machine's clock may be behind the stage's).
CLOCK_SKEW = timedelta(hours=1)
ERROR_COLUMN = 100  # characters of an error's first line in `list`

_ID = re.compile(r"^([0-9]{1,9}):([0-9]{1,18})$")
_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Refused(Exception):
    """The command cannot do what was asked (unknown ID, a replay refused): the CLI prints it and exits 2."""


def parse_id(text: str) -> tuple[int, int]:
    """`<partition>:<offset>` of a dead letter -> (partition, offset)."""
    match = _ID.match(text.strip())
    if not match:
        raise Refused(f"a dead letter ID is <partition>:<offset> of the dead-letter topic, e.g. 1:42; got {text!r}")
    return int(match.group(1)), int(match.group(2))



def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, its `dlq_*` headers read."""

    record: LoggedRecord
    dlq: Mapping[str, str] = field(default_factory=dict)  # the dlq_* headers (the last of a name wins)

    @classmethod
    def of(cls, record: LoggedRecord) -> DeadLetter:
        return cls(record, {k: _text(v) for k, v in record.headers if k.startswith("dlq_") and v is not None})

    @property
    def id(self) -> str:
        return f"{self.position.partition}:{self.position.offset}"

    @property
    def position(self) -> Position:
        return self.record.position

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers of the record as it was consumed, without any dlq_* header."""
        return [(k, v) for k, v in self.record.headers if not k.startswith("dlq_")]

    @property
    def origin_topic(self) -> str | None:
        return self.dlq.get("dlq_origin_topic") or None

    @property
    def origin_partition(self) -> int | None:
        return _int(self.dlq.get("dlq_origin_partition"))

    @property
    def origin(self) -> str | None:
        """`topic:partition:offset` where the stage read the record."""
        if self.origin_topic is None:
            return None
        return f"{self.origin_topic}:{self._or_unknown('partition')}:{self._or_unknown('offset')}"

    def _or_unknown(self, part: str) -> str:
        return self.dlq.get(f"dlq_origin_{part}") or "?"

    @property
    def time(self) -> datetime:
        """When the stage dead-lettered it (`dlq_time`; the record's timestamp if that header is missing)."""
        try:
            return datetime.fromisoformat(self.dlq["dlq_time"])
        except (KeyError, ValueError):
            return self.position.timestamp

    @property
    def stage(self) -> str | None:
        return self.dlq.get("dlq_stage")

    @property
    def error(self) -> str | None:
        return self.dlq.get("dlq_error")

    @property
    def truncated(self) -> str | None:
        return self.dlq.get("dlq_truncated")

    def summary(self) -> dict[str, Any]:
        """What `list --json` prints: the fields the dead letter carries (a missing header is left out)."""
        out: dict[str, Any] = {"id": self.id, "time": iso_z(self.time), "stage": self.stage}
        if self.origin_topic is not None:
            origin = {"topic": self.origin_topic, "partition": self.origin_partition,
                      "offset": _int(self.dlq.get("dlq_origin_offset"))}
            out["origin"] = {k: v for k, v in origin.items() if v is not None}
        out["error"] = (self.error or "").splitlines()[0] if self.error else None
        out["attempts"] = _int(self.dlq.get("dlq_attempts"))
        out["truncated"] = self.truncated
        out["replay_of"] = self.dlq.get(REPLAY_OF)
        return {k: v for k, v in out.items() if v is not None}

    def detail(self, replayed_as: Position | None) -> dict[str, Any]:
        """What `show --json` prints: everything, the record decoded."""
        out = {**self.summary(), "error": self.error}
        out["deadletter"] = self.position.as_dict()
        out["replayed_as"] = replayed_as.as_dict() if replayed_as else None
        out["key"] = None if self.record.key is None else _text(self.record.key)
        out["headers"] = [[k, None if v is None else _text(v)] for k, v in self.original_headers]
        event = self.record.event
        if event is not None:
            env = event.envelope
            out["event"] = {"id": env.id, "type": env.type, "source": env.source, "time": iso_z(env.time),
                            "causationid": env.causationid, "incidentid": env.incidentid}
        else:
            out["not_an_event"] = self.record.invalid
        out["record"] = payload(self.record.value)
        return {k: v for k, v in out.items() if v is not None}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def payload(value: bytes | None) -> dict[str, Any]:
    """A record's value as something to print: `json` (parsed), `text`, or `base64` for other bytes; `none` for
    a tombstone."""
    if value is None:
        return {"none": "the record has no value (a tombstone)"}
    try:
        return {"json": json.loads(value)}
    except ValueError:
        pass
    try:
        return {"text": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}


# ----------------------------------------------------------------------------- reading


async def read_dead_letters(settings: Settings, *, stage: str | None = None,
                            since: datetime | None = None) -> list[DeadLetter]:
    """The dead letters written since `since` (broker time of the dead-letter record), of `stage` if given,
    oldest first."""
    async with LogReader(settings) as reader:
        letters = [DeadLetter.of(r) async for r in reader.read([settings.topic("deadletter")], Window(start=since))]
    chosen = [letter for letter in letters if stage is None or letter.stage == stage]
    return sorted(chosen, key=lambda d: (d.time, d.position.partition, d.position.offset))


async def find(settings: Settings, ids: Sequence[str]) -> list[DeadLetter]:
    """The dead letters with these IDs, in the order given (each once); an unknown ID is `Refused`."""
    wanted = list(dict.fromkeys(parse_id(i) for i in ids))
    topic = settings.topic("deadletter")
    async with LogReader(settings) as reader:
        tps = await reader.partitions([topic])
        first: dict[TopicPartition, int] = {tp: 0 for tp in tps}
        end: dict[TopicPartition, int] = {tp: 0 for tp in tps}  # partitions not asked for: an empty range
        for partition, offset in wanted:
            tp = TopicPartition(topic, partition)
            if tp in first:
                first[tp] = offset if end[tp] == 0 else min(first[tp], offset)
                end[tp] = max(end[tp], offset + 1)
        found = {(r.position.partition, r.position.offset): DeadLetter.of(r)
                 async for r in reader.read([topic], Window(from_offsets=first, to_offsets=end))}
    missing = [f"{p}:{o}" for p, o in wanted if (p, o) not in found]
    if missing:
        raise Refused(f"no dead letter {', '.join(missing)} in {topic} (IDs are <partition>:<offset>; "
                      "see `pipeline dlq list`)")
    return [found[w] for w in wanted]


async def replays(settings: Settings, letters: Iterable[DeadLetter]) -> dict[str, Position]:
    """Where each of these dead letters was already replayed (its first replay), by ID: records on the origin
    topics (those that exist) carrying `dlq_replay_of`, read from CLOCK_SKEW before the oldest dead letter."""
    by_topic: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        if letter.origin_topic is not None:
            by_topic.setdefault(letter.origin_topic, []).append(letter)
    found: dict[str, Position] = {}
    async with LogReader(settings) as reader:
        for topic, group in by_topic.items():
            ids = {letter.id for letter in group}
            since = min(letter.position.timestamp for letter in group) - CLOCK_SKEW
            try:
                await reader.partitions([topic])
            except LookupError:
                continue  # the origin topic is gone: nothing was replayed there
            async for record in reader.read([topic], Window(start=since)):
                of = _replay_of(record)
                if of in ids and (of not in found or _before(record.position, found[of])):
                    found[of] = record.position
    return found


def _replay_of(record: LoggedRecord) -> str | None:
    values = [v for k, v in record.headers if k == REPLAY_OF and v is not None]
    return _text(values[-1]) if values else None


def _before(a: Position, b: Position) -> bool:
    return (a.timestamp, a.partition, a.offset) < (b.timestamp, b.partition, b.offset)


def our_topics(settings: Settings) -> set[str]:
    """The topics a dead letter may be replayed to: this pipeline's (topics/*.yaml under TOPIC_PREFIX), except the
    dead-letter topic itself."""
    return {settings.topic(s.name) for s in load_specs(settings.topics_dir)} - {settings.topic("deadletter")}


# ----------------------------------------------------------------------------- replay


def refusal(letter: DeadLetter, ours: set[str]) -> str | None:
    """Why replaying this dead letter needs `--force` (None: it does not)."""
    if letter.origin_topic not in ours:
        return (f"{letter.id}: its origin topic {letter.origin_topic!r} is not one of this pipeline's topics "
                "(topics/*.yaml under TOPIC_PREFIX)")
    if letter.truncated:
        return f"{letter.id}: its payload was truncated ({letter.truncated}); replaying it would inject a damaged record"
    return None


def replay_output(letter: DeadLetter) -> Output:
    """The record a replay produces: the original key, value and headers (no dlq_* header) to the origin topic,
    with `dlq_replay_of` and `dlq_replay_origin`. Keyed as before; a record without a key goes to its origin
    partition."""
    if letter.origin_topic is None:
        raise Refused(f"{letter.id}: not a dead letter (no dlq_origin_topic header): nowhere to replay it to")
    headers = [*letter.original_headers, (REPLAY_OF, letter.id.encode()),
               (REPLAY_ORIGIN, (letter.origin or "").encode())]
    partition = letter.origin_partition if letter.record.key is None else None
    return Output(letter.origin_topic, letter.record.key, letter.record.value, headers, partition)


@dataclass
class ReplayPlan:
    """What a replay will do: `replay` these; `skipped` (already replayed, `--all`); `refused` (reasons)."""

    replay: list[DeadLetter] = field(default_factory=list)
    skipped: list[tuple[DeadLetter, Position]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


async def plan_replay(settings: Settings, letters: Sequence[DeadLetter], *, force: bool,
                      skip_replayed: bool) -> ReplayPlan:
    """Check every dead letter before replaying any. Already replayed: skipped with `skip_replayed` (`--all`),
    else refused; `force` replays anyway (but never a record without an origin: it has nowhere to go)."""
    ours = our_topics(settings)
    done = await replays(settings, letters)
    plan = ReplayPlan()
    for letter in letters:
        if letter.origin_topic is None:  # nowhere to replay it to, forced or not
            plan.refused.append(f"{letter.id}: not a dead letter (no dlq_origin_topic header)")
            continue
        reason = refusal(letter, ours)
        earlier = done.get(letter.id)
        if earlier is not None and not force and skip_replayed:
            plan.skipped.append((letter, earlier))
            continue
        if earlier is not None and reason is None:
            reason = (f"{letter.id}: already replayed as {earlier.topic}:{earlier.partition}:{earlier.offset} "
                      f"at {iso_z(earlier.timestamp)}")
        if reason is not None and not force:
            plan.refused.append(reason)
        else:
            plan.replay.append(letter)
    return plan


async def replay(settings: Settings, letters: Sequence[DeadLetter]) -> None:
    """Produce the replays, acknowledged by the broker (acks=all, idempotent producer)."""
    producer = EventProducer(settings)
    await producer.start()
    try:
        await producer.publish([replay_output(letter) for letter in letters])
    finally:
        await producer.stop()


# ----------------------------------------------------------------------------- commands


async def list_command(settings: Settings, out: TextIO, *, stage: str | None, since: datetime | None,
                       as_json: bool) -> int:
    letters = await read_dead_letters(settings, stage=stage, since=since)
    if as_json:
        for letter in letters:
            print(json.dumps(letter.summary()), file=out)
        return 0
    if not letters:
        print(f"no dead letters in {settings.topic('deadletter')}" + (f" of stage {stage}" if stage else "")
              + (f" since {iso_z(since)}" if since else ""), file=out)
        return 0
    rows = [("ID", "TIME", "STAGE", "ORIGIN", "ATTEMPTS", "NOTE", "ERROR")]
    for letter in letters:
        summary = letter.summary()
        note = "truncated" if letter.truncated else f"replay of {summary['replay_of']}" if "replay_of" in summary else ""
        rows.append((letter.id, summary["time"], letter.stage or "?", letter.origin or "?",
                     str(summary.get("attempts", "?")), note, summary.get("error", "?")[:ERROR_COLUMN]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1],
              file=out)
    return 0


async def show_command(settings: Settings, out: TextIO, dead_letter_id: str, *, as_json: bool) -> int:
    [letter] = await find(settings, [dead_letter_id])
    detail = letter.detail((await replays(settings, [letter])).get(letter.id))
    if as_json:
        print(json.dumps(detail, indent=2), file=out)
        return 0
    for line in show_lines(letter, detail):
        print(line, file=out)
    return 0


def show_lines(letter: DeadLetter, detail: Mapping[str, Any]) -> list[str]:
    """`show` as text: the dead letter's fields, its error, key and headers, the event and the record."""
    where = detail["deadletter"]
    origin = detail.get("origin")
    replayed = detail.get("replayed_as")
    lines = [
        f"dead letter {letter.id}: {where['topic']} partition {where['partition']} offset {where['offset']}, "
        f"written {where['timestamp']}",
        f"  stage       {detail.get('stage', '? (no dlq_stage header)')}",
        "  origin      " + (f"{origin['topic']} partition {origin.get('partition', '?')} offset "
                            f"{origin.get('offset', '?')}"
                            if origin else "? (no dlq_origin_topic header)"),
        f"  time        {detail['time']}",
        f"  attempts    {detail.get('attempts', '? (no dlq_attempts header)')}",
        f"  truncated   {detail.get('truncated', 'no')}",
        "  replayed    " + (f"as {replayed['topic']}:{replayed['partition']}:{replayed['offset']} at "
                            f"{replayed['timestamp']}" if replayed else "not yet"),
    ]
    if "replay_of" in detail:
        lines.append(f"  replay of   {detail['replay_of']} (this record was itself a replay)")
    lines.append("  error")
    lines.extend(f"    {line}" for line in (detail.get("error") or "? (no dlq_error header)").splitlines())
    lines.append(f"  key         {detail.get('key', '(none)')}")
    lines.append("  headers")
    lines.extend(f"    {k}: {v}" for k, v in detail["headers"])
    if "event" in detail:
        event = detail["event"]
        lines.append(f"  event       {event['type']} id {event['id']} from {event['source']} at {event['time']}")
    else:
        lines.append(f"  event       none: {detail.get('not_an_event')}")
    lines.append("  record")
    [(kind, value)] = detail["record"].items()
    text = json.dumps(value, indent=2) if kind == "json" else f"({kind}) {value}"
    lines.extend(f"    {line}" for line in text.splitlines())
    return lines


async def replay_command(settings: Settings, out: TextIO, ids: Sequence[str], *, stage: str | None,
                         since: datetime | None, force: bool) -> int:
    """Replay the dead letters named, or (no IDs) every dead letter of `stage` since `since`. Refusals are
    raised before anything is produced."""
    if ids:
        letters = await find(settings, ids)
    else:
        if stage is None:
            raise Refused("--all needs --stage: say which stage's dead letters to replay")
        letters = await read_dead_letters(settings, stage=stage, since=since)
    plan = await plan_replay(settings, letters, force=force, skip_replayed=not ids)
    if plan.refused:
        raise Refused("nothing replayed:\n  " + "\n  ".join(plan.refused) + "\n(--force replays anyway)")
    await replay(settings, plan.replay)
    for letter, earlier in plan.skipped:
        print(f"{letter.id}  skipped: already replayed as {earlier.topic}:{earlier.partition}:{earlier.offset}",
              file=out)
    for letter in plan.replay:
        print(f"{letter.id}  replayed to {letter.origin_topic} (from {letter.origin}, stage {letter.stage})",
              file=out)
    if not plan.replay and not plan.skipped:
        print("no dead letters to replay", file=out)
    return 0

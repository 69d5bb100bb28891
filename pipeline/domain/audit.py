"""The audit trail's line format and chain rule, and the check of a chain: pure (bytes in, findings out).

One line per record, JSON (UTF-8, no whitespace, no newline inside), members in this order:

    {"seq":N,"topic":...,"partition":P,"offset":O,"timestamp":"...Z","key":...,"headers":[[name,value],...],
     "id":...,"value":...,"prev":"<64 hex>","hash":"<64 hex>"}

* `seq`: the line's number in the whole trail (1, 2, ... across files);
* `topic`, `partition`, `offset`, `timestamp`: where the record was in the log and the broker's timestamp;
* `key`: the record key as text, `{"base64": ...}` when it is not UTF-8, null when absent;
* `headers`: every header in order as `[name, text]` (`[name, {"base64": ...}]` when not UTF-8): the
  CloudEvents attributes (`ce_id`, `ce_type`, `ce_source`, `ce_time`, ...) and, on dead letters, `dlq_*`;
* `id`: the event id (the `ce_id` header), null for a record that has none;
* `value`: the value decoded when it is JSON, `{"base64": ...}` when it is not, null for a tombstone;
* `prev`: the previous line's `hash` (64 zeros before the first line of a trail);
* `hash`: SHA-256 (hex) of the line's own bytes without its hash member, i.e. of `<line up to ,"hash":...>}`.

So every line carries the SHA-256 chain link to the one before it: altering a line changes its hash;
inserting, deleting or moving one breaks the `prev` link (and the `seq` run) where it happened.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
_HASH_MEMBER = re.compile(rb',"hash":"([0-9a-f]{64})"}$')


@dataclass(frozen=True, slots=True)
class Entry:
    """What one audit line says about one record (everything but the chain members)."""

    topic: str
    partition: int
    offset: int
    timestamp: str
    key: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    value: bytes | None

    @property
    def event_id(self) -> str | None:
        for name, value in self.headers:
            if name == "ce_id" and value is not None:
                try:
                    return value.decode()
                except UnicodeDecodeError:
                    return None
        return None

    @property
    def dedup_key(self) -> str:
        """What makes a record the same record again: its event id on its topic (a dead letter keeps its
        original's id, on another topic), or its position when it carries no id."""
        return dedup_key(self.topic, self.event_id, self.partition, self.offset)


def dedup_key(topic: str, event_id: str | None, partition: int, offset: int) -> str:
    return f"{topic}\n{event_id}" if event_id else f"{topic}\n@{partition}/{offset}"


def _text(raw: bytes) -> Any:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def _value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not UTF-8 or not JSON
        return {"base64": base64.b64encode(raw).decode()}


def line_hash(body: bytes) -> str:
    """The hash of a line whose hash member is left out (`body` ends with `}`)."""
    return hashlib.sha256(body).hexdigest()


def render(entry: Entry, seq: int, prev: str) -> tuple[bytes, str]:
    """The line (without its newline) for `entry` as line `seq` after a line hashed `prev`, and its hash."""
    body = {
        "seq": seq,
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "timestamp": entry.timestamp,
        "key": None if entry.key is None else _text(entry.key),
        "headers": [[name, None if value is None else _text(value)] for name, value in entry.headers],
        "id": entry.event_id,
        "value": _value(entry.value),
        "prev": prev,
    }
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    digest = line_hash(raw)
    return raw[:-1] + b',"hash":"' + digest.encode() + b'"}', digest


@dataclass(frozen=True, slots=True)
class Parsed:
    """A line read back: its members and whether its bytes still match its hash."""

    seq: int
    prev: str
    hash: str
    intact: bool
    fields: dict[str, Any]


class Unreadable(ValueError):
    """A line that is not an audit line at all."""


def parse(raw: bytes) -> Parsed:
    """Read one line (without its newline). Raises `Unreadable` for anything that is not an audit line."""
    found = _HASH_MEMBER.search(raw)
    if found is None:
        raise Unreadable("no hash member at the end of the line")
    try:
        fields = json.loads(raw)
    except ValueError as exc:
        raise Unreadable(f"not JSON: {exc}") from exc
    if not isinstance(fields, dict) or not isinstance(fields.get("seq"), int) or not isinstance(fields.get("prev"),
                                                                                              str):
        raise Unreadable("no seq or prev member")
    body = raw[: found.start()] + b"}"
    digest = found.group(1).decode()
    return Parsed(fields["seq"], fields["prev"], digest, line_hash(body) == digest, fields)


@dataclass(frozen=True, slots=True)
class Break:
    """The first broken link: where (file and 1-based line), which kind, and what is wrong, in words."""

    file: str
    line: int
    kind: str  # unreadable | modified | missing | out_of_order | relinked | truncated | anchor
    problem: str
    expected_seq: int | None = None  # for a seq that does not follow: the one that should have come

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}"


class ChainCheck:
    """Feed the lines of a trail in order (`feed`), then `finish`: the first broken link, or None.

    `first_seq`/`first_prev` are where the trail starts (1 and GENESIS, or later when old files were pruned);
    `head_seq`/`head_hash` are the last line the writer recorded as written and synced (None: not checked).
    After a seq that jumps ahead, the rest is still read to tell a deletion from a reordering.
    """

    def __init__(self, first_seq: int = 1, first_prev: str = GENESIS, head_seq: int | None = None,
                 head_hash: str | None = None) -> None:
        self.expected, self.prev = first_seq, first_prev
        self.head = (head_seq, head_hash)
        self.lines = 0
        self.before_anchor = 0
        self.broken: Break | None = None
        self.first_time: str | None = None
        self.last_time: str | None = None
        self.where = ("", 0)  # the last intact line: file and line number

    @property
    def last_seq(self) -> int:
        return self.expected - 1

    def feed(self, file: str, number: int, raw: bytes) -> None:
        if self.broken is None:
            self.broken = self._check(file, number, raw)
        elif self.broken.kind == "missing" and self.broken.expected_seq is not None:
            self._look_for_missing(file, number, raw, self.broken.expected_seq)

    def _look_for_missing(self, file: str, number: int, raw: bytes, wanted: int) -> None:
        try:
            seq = parse(raw).seq
        except Unreadable:
            return
        if seq == wanted:
            b = self.broken
            assert b is not None
            self.broken = Break(b.file, b.line, "out_of_order",
                                f"{b.problem.split(':')[0]}: seq {wanted} is at {file}:{number}: lines reordered")

    def _check(self, file: str, number: int, raw: bytes) -> Break | None:
        try:
            line = parse(raw)
        except Unreadable as exc:
            return Break(file, number, "unreadable", f"not an audit line ({exc}): inserted or modified")
        if self.lines == 0 and line.intact and line.seq < self.expected:
            self.before_anchor += 1  # before the first kept line: left by a prune stopped before deleting its files
            return None
        if not line.intact:
            return Break(file, number, "modified", f"seq {line.seq}: the line's content does not match its hash "
                                                   "(modified)")
        if line.seq > self.expected:
            return Break(file, number, "missing", f"seq {line.seq} where seq {self.expected} was expected: "
                         f"{_span(self.expected, line.seq - 1)} deleted", self.expected)
        if line.seq < self.expected:
            return Break(file, number, "out_of_order", f"seq {line.seq} where seq {self.expected} was expected: "
                         "an inserted copy, or lines reordered", self.expected)
        if line.prev != self.prev:
            before = "the start of the trail" if self.lines == 0 else \
                f"the line before ({self.where[0]}:{self.where[1]})"
            return Break(file, number, "relinked", f"seq {line.seq}: prev is not the hash of {before}: that line "
                         "was altered and re-hashed, or this one was inserted")
        if line.seq == self.head[0] and line.hash != self.head[1]:
            return Break(file, number, "relinked", f"seq {line.seq}: not the hash the head records (re-written)")
        self.expected, self.prev, self.lines, self.where = line.seq + 1, line.hash, self.lines + 1, (file, number)
        stamp = line.fields.get("timestamp")
        if isinstance(stamp, str):
            self.first_time = stamp if self.first_time is None else min(self.first_time, stamp)
            self.last_time = stamp if self.last_time is None else max(self.last_time, stamp)
        return None

    def finish(self) -> Break | None:
        """All lines fed: the trail must also reach the head recorded after the last synced write."""
        head_seq = self.head[0]
        if self.broken is None and head_seq is not None and self.last_seq < head_seq:
            self.broken = Break(self.where[0], self.where[1] + 1, "truncated",
                                f"the trail ends at seq {self.last_seq} but the head records seq {head_seq}: "
                                f"{_span(self.last_seq + 1, head_seq)} deleted from the end")
        return self.broken


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"

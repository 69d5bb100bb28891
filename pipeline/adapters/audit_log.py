"""The audit trail on disk: rotating JSON-lines files, a SHA-256 hash chain, fsync before anything is
acknowledged, and `verify`.

A directory holds `audit-00000001.jsonl`, `audit-00000002.jsonl`, ... (one chain across them, in name order;
the line format and the chain rule are in `pipeline/domain/audit.py`) and `head.json`:

    {"first_seq": 1, "first_prev": "000…", "last_seq": N, "last_hash": "…"}

`append` writes a batch's new lines with one write, fsyncs the file, then replaces `head.json` (written to a
temporary file, fsynced, renamed, directory fsynced): so when it returns, the lines and the head that vouches
for them are on disk, and only then may the caller commit its offsets. A batch that fails is cut off the file
again (ftruncate) and the writer's state is as before, so a retry writes it once.

`head.json` is what makes deleting lines at the end detectable (the trail must reach `last_seq` with
`last_hash`); `first_seq`/`first_prev` are where the trail starts once old files were pruned
(AUDIT_RETAIN_FILES). A file is rotated before a batch when it holds AUDIT_FILE_MAX_BYTES or more.

Each record is written once: `open` reads every kept line back and remembers its dedup key (its event id on
its topic, or its position for a record without one; the last `remember` of them), and `append` skips those.
A line cut short by a crash (no newline at the end of the last file) is cut off on open: it was never synced,
so its offsets were never committed and it comes again. One writer per directory: `open` takes an exclusive
`flock` on `.lock` (released when the process ends, however it ends) and a second writer gets `TrailBusy`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.domain.audit import GENESIS, Break, ChainCheck, Entry, Unreadable, dedup_key, parse, render

HEAD = "head.json"
PREFIX, SUFFIX = "audit-", ".jsonl"


class TrailBusy(RuntimeError):
    """Another writer holds the trail (its lock file): one chain has one writer."""


class TrailDamaged(RuntimeError):
    """The trail on disk ends before the line its head vouches for: appending would hide that."""


@dataclass
class Appended:
    written: int
    duplicates: int


@dataclass
class Report:
    """What `verify` found: the files and lines read, the seq range and record times, and the first break."""

    directory: str
    files: list[str] = field(default_factory=list)
    lines: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_time: str | None = None
    last_time: str | None = None
    broken: Break | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"directory": self.directory, "files": len(self.files), "lines": self.lines,
                                  "first_seq": self.first_seq, "last_seq": self.last_seq,
                                  "first_time": self.first_time, "last_time": self.last_time, "intact": not self.broken}
        if self.broken is not None:
            out["broken"] = {"file": self.broken.file, "line": self.broken.line, "kind": self.broken.kind,
                             "problem": self.broken.problem}
        return out


def trail_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())


@dataclass(frozen=True)
class Head:
    """`head.json`: where the kept trail starts, and the last line synced."""

    first_seq: int
    first_prev: str
    last_seq: int
    last_hash: str


def read_head(directory: Path) -> Head | None:
    """The trail's head; None when there is none; ValueError when the file is not a head record."""
    try:
        raw = (directory / HEAD).read_bytes()
    except FileNotFoundError:
        return None
    try:
        head = json.loads(raw)
        return Head(int(head["first_seq"]), str(head["first_prev"]), int(head["last_seq"]), str(head["last_hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{HEAD} is not a head record: {raw[:200]!r}") from exc


def lines_of(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based number, bytes without newline) of every line; a last line without newline is included."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\n")


def verify(directory: Path) -> Report:
    """Check the whole trail in `directory`: the first broken link, or none."""
    report = Report(str(directory), [p.name for p in trail_files(directory)])
    try:
        head = read_head(directory)
    except ValueError as exc:
        report.broken = Break(HEAD, 1, "anchor", str(exc))
        return report
    if head is None:
        report.broken = Break(HEAD, 0, "anchor", f"{HEAD} is missing: the trail's start and end cannot be checked")
        return report
    check = ChainCheck(head.first_seq, head.first_prev, head.last_seq, head.last_hash)
    for path in trail_files(directory):
        for number, raw in lines_of(path):
            check.feed(path.name, number, raw)
            report.lines += 1
    report.broken = check.finish()
    if check.lines:
        report.first_seq, report.last_seq = check.last_seq - check.lines + 1, check.last_seq
    report.first_time, report.last_time = check.first_time, check.last_time
    return report


class AuditLog:
    """The writer of one trail directory (one writer at a time: the audit stage runs one replica)."""

    def __init__(self, directory: Path, *, max_file_bytes: int, retain_files: int = 0, remember: int = 200_000) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.retain_files = retain_files
        self.remember = remember
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seq, self.prev = 0, GENESIS
        self.first_seq, self.first_prev = 1, GENESIS
        self.cut_bytes = 0  # of a torn last line, cut off on open
        self._fd: int | None = None
        self._path: Path | None = None
        self._lock: int | None = None

    # ------------------------------------------------------------------ open: recover from what is on disk

    def open(self) -> None:
        """Take the trail's lock, recover its state from the files, and be ready to append."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._recover_all()
        except BaseException:
            self.close()
            raise

    def _recover_all(self) -> None:
        head = read_head(self.directory)
        if head is not None:
            self.first_seq, self.first_prev = head.first_seq, head.first_prev
            self.seq, self.prev = self.first_seq - 1, self.first_prev
        files = trail_files(self.directory)
        if files:
            self._cut_torn_tail(files[-1])
        for path in files:
            for _, raw in lines_of(path):
                self._recover(raw)
        if head is not None and self.seq < head.last_seq:
            raise TrailDamaged(f"{self.directory}: the trail ends at seq {self.seq} but {HEAD} records seq "
                               f"{head.last_seq}: lines were deleted. Run `pipeline audit verify "
                               f"{self.directory}` and move the directory aside to start a new trail.")
        self._write_head()  # a trail always has its head, from its first moment
        if files:
            self._open_file(files[-1])

    def _recover(self, raw: bytes) -> None:
        try:
            line = parse(raw)
        except Unreadable:
            return  # `verify` reports it; the writer goes on from the last good line
        f = line.fields
        self._remember(dedup_key(str(f.get("topic")), f.get("id"), int(f.get("partition", -1)),
                                 int(f.get("offset", -1))))
        if line.seq > self.seq:
            self.seq, self.prev = line.seq, line.hash

    def _cut_torn_tail(self, path: Path) -> None:
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            self.cut_bytes = len(data) - keep
            with path.open("r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())

    # ------------------------------------------------------------------ append

    def append(self, entries: Sequence[Entry]) -> Appended:
        """Write the entries not written before, fsync, update the head; all or nothing."""
        fresh: list[Entry] = []
        keys: set[str] = set()
        for entry in entries:
            key = entry.dedup_key
            if key not in self.seen and key not in keys:
                keys.add(key)
                fresh.append(entry)
        if not fresh:
            return Appended(0, len(entries))
        self._rotate_if_full()
        fd = self._require()
        size = os.fstat(fd).st_size
        seq, prev = self.seq, self.prev
        lines: list[bytes] = []
        for entry in fresh:
            seq += 1
            line, prev = render(entry, seq, prev)
            lines.append(line + b"\n")
        try:
            _write_all(fd, b"".join(lines))
            os.fsync(fd)
            self._write_head(seq, prev)
        except BaseException:
            os.ftruncate(fd, size)  # all or nothing: the retry writes the batch once
            raise
        self.seq, self.prev = seq, prev
        for key in keys:
            self._remember(key)
        return Appended(len(fresh), len(entries) - len(fresh))

    def close(self) -> None:
        self._close_file()
        if self._lock is not None:
            os.close(self._lock)  # releases the lock (so does the process dying)
            self._lock = None

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._path = None, None

    def _take_lock(self) -> None:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise TrailBusy(f"{self.directory} is being written by another process (one writer per trail)") from exc
        self._lock = fd

    # ------------------------------------------------------------------ files and head

    def _require(self) -> int:
        if self._fd is None:
            self._open_file(self.directory / f"{PREFIX}{1:08d}{SUFFIX}")
        assert self._fd is not None
        return self._fd

    def _open_file(self, path: Path) -> None:
        self._close_file()
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._path = path
        if created:
            _fsync_dir(self.directory)

    def _rotate_if_full(self) -> None:
        if self._fd is None or self._path is None or os.fstat(self._fd).st_size < self.max_file_bytes:
            return
        number = int(self._path.name[len(PREFIX):-len(SUFFIX)]) + 1
        self._open_file(self.directory / f"{PREFIX}{number:08d}{SUFFIX}")
        self._prune()

    def _prune(self) -> None:
        """Keep the newest `retain_files` files (0: all). The head moves its start first, then files go."""
        files = trail_files(self.directory)
        if self.retain_files <= 0 or len(files) <= self.retain_files:
            return
        doomed, kept = files[: -self.retain_files], files[-self.retain_files]
        first = next((parse(raw) for _, raw in lines_of(kept)), None)
        self.first_seq, self.first_prev = (first.seq, first.prev) if first else (self.seq + 1, self.prev)
        self._write_head()
        for path in doomed:
            path.unlink()
        _fsync_dir(self.directory)

    def _write_head(self, seq: int | None = None, last: str | None = None) -> None:
        head = {"first_seq": self.first_seq, "first_prev": self.first_prev,
                "last_seq": self.seq if seq is None else seq, "last_hash": self.prev if last is None else last}
        tmp = self.directory / f".{HEAD}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            _write_all(fd, json.dumps(head).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / HEAD)
        _fsync_dir(self.directory)

    def _remember(self, key: str) -> None:
        self.seen[key] = None
        if len(self.seen) > self.remember:
            self.seen.popitem(last=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The audit trail without servers: the line format and chain rule (pure), and the writer and `verify` on files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.adapters.audit_log import HEAD, AuditLog, TrailBusy, TrailDamaged, trail_files, verify
from pipeline.domain.audit import GENESIS, ChainCheck, Entry, parse, render
from tests.audit_support import copy_trail, delete, insert_copy, modify, swap, verify_cli


def _entry(n: int, *, topic: str = "p.signals", event: bool = True, value: bytes | None = None) -> Entry:
    headers = [("ce_id", f"id-{n}".encode()), ("ce_type", b"pipeline.signal.observed.v1")] if event else [
        ("dlq_error", b"\xff\xfe")]
    return Entry(topic, n % 3, n, f"2026-12-01T10:00:{n % 60:02d}.000Z", f"ns/Pod/p-{n}".encode(), headers,
                 json.dumps({"n": n}).encode() if value is None else value)


def _trail(tmp_path: Path, count: int = 20, **kwargs: int) -> Path:
    trail = AuditLog(tmp_path / "trail", max_file_bytes=kwargs.pop("max_file_bytes", 1 << 20), **kwargs)
    trail.open()
    for start in range(0, count, 5):
        trail.append([_entry(n) for n in range(start, min(count, start + 5))])
    trail.close()
    return tmp_path / "trail"


def test_a_line_carries_the_record_and_the_sha256_of_its_own_bytes_and_of_the_line_before() -> None:
    entry = Entry("p.deadletter", 2, 7, "2026-12-01T10:00:00.000Z", b"\xff", [("ce_id", b"e-1"), ("dlq_error", b"x")],
                  b"\x00not json")
    first, first_hash = render(entry, 1, GENESIS)
    second, _ = render(Entry("p.incidents", 0, 1, "2026-12-01T10:00:01.000Z", None, [], None), 2, first_hash)
    record = json.loads(first)
    assert record["key"] == {"base64": "/w=="} and record["value"] == {"base64": "AG5vdCBqc29u"}
    assert record["headers"] == [["ce_id", "e-1"], ["dlq_error", "x"]] and record["id"] == "e-1"
    assert record["prev"] == GENESIS and json.loads(second)["prev"] == record["hash"]
    # The documented rule: SHA-256 of the line without its hash member.
    assert record["hash"] == hashlib.sha256(first[: first.index(b',"hash":')] + b"}").hexdigest()
    assert json.loads(second)["key"] is None and json.loads(second)["value"] is None and json.loads(second)["id"] is None
    assert parse(first).intact and not parse(first.replace(b"e-1", b"e-2")).intact


def test_a_written_trail_verifies_with_its_summary(tmp_path: Path) -> None:
    report = verify(_trail(tmp_path, 20))
    assert report.broken is None
    assert (report.lines, report.first_seq, report.last_seq) == (20, 1, 20)
    assert (report.first_time, report.last_time) == ("2026-12-01T10:00:00.000Z", "2026-12-01T10:00:19.000Z")


def test_each_record_is_written_once_within_a_batch_across_batches_and_after_reopening(tmp_path: Path) -> None:
    trail = AuditLog(tmp_path / "t", max_file_bytes=1 << 20)
    trail.open()
    assert trail.append([_entry(1), _entry(1), _entry(2)]).written == 2
    assert trail.append([_entry(2), _entry(3)]).written == 1
    # A dead letter keeps its original's event id: on another topic it is another record.
    assert trail.append([_entry(3, topic="p.deadletter")]).written == 1
    # Records without an event id are the same record at the same position.
    assert trail.append([_entry(9, event=False), _entry(9, event=False)]).written == 1
    trail.close()
    again = AuditLog(tmp_path / "t", max_file_bytes=1 << 20)
    again.open()
    assert again.append([_entry(n) for n in range(1, 5)]).written == 1  # only id-4 is new
    assert again.append([_entry(9, event=False), _entry(3, topic="p.deadletter")]).written == 0
    again.close()
    report = verify(tmp_path / "t")
    assert report.broken is None and report.lines == 6


def test_files_rotate_and_old_ones_are_pruned_without_breaking_the_chain(tmp_path: Path) -> None:
    directory = _trail(tmp_path, 40, max_file_bytes=1024, retain_files=3)
    files = trail_files(directory)
    assert len(files) == 3 and files[0].name != "audit-00000001.jsonl"
    report = verify(directory)
    assert report.broken is None and report.last_seq == 40 and report.first_seq is not None and report.first_seq > 1


def test_a_line_torn_by_a_crash_is_cut_off_on_open_and_written_again(tmp_path: Path) -> None:
    directory = _trail(tmp_path, 5)
    last = trail_files(directory)[-1]
    line, _ = render(_entry(5), 6, json.loads(last.read_bytes().splitlines()[-1])["hash"])
    with last.open("ab") as f:
        f.write(line[:40])  # the crash came mid-write, before fsync and before the head
    assert verify(directory).broken is not None
    trail = AuditLog(directory, max_file_bytes=1 << 20)
    trail.open()
    assert trail.cut_bytes == 40
    assert trail.append([_entry(5)]).written == 1
    trail.close()
    assert verify(directory).broken is None and verify(directory).lines == 6


@pytest.mark.parametrize(
    ("tamper", "line", "kind", "words"),
    [
        (lambda p: insert_copy(p, of=3, at=8), 8, "out_of_order", "seq 3 where seq 8 was expected"),
        (lambda p: delete(p, 8), 8, "missing", "seq 9 where seq 8 was expected: seq 8 deleted"),
        (lambda p: modify(p, 8), 8, "modified", "does not match its hash"),
        (lambda p: swap(p, 8), 8, "out_of_order", "seq 8 is at audit-00000001.jsonl:9: lines reordered"),
    ],
    ids=["insertion", "deletion", "modification", "reordering"],
)
def test_each_kind_of_tampering_is_reported_at_its_line(tmp_path: Path, tamper, line: int, kind: str,
                                                         words: str) -> None:
    directory, first = copy_trail(_trail(tmp_path, 20), tmp_path / "copy")
    tamper(first)
    broken = verify(directory).broken
    assert broken is not None and (broken.file, broken.line, broken.kind) == ("audit-00000001.jsonl", line, kind)
    assert words in broken.problem
    code, out, err = verify_cli(directory)
    assert code == 1 and f"audit-00000001.jsonl:{line}:" in err, (out, err)


def test_lines_deleted_from_the_end_and_a_rehashed_forgery_are_reported(tmp_path: Path) -> None:
    directory, first = copy_trail(_trail(tmp_path, 20), tmp_path / "copy")
    first.write_bytes(b"".join(first.read_bytes().splitlines(keepends=True)[:17]))
    broken = verify(directory).broken
    assert broken is not None and (broken.line, broken.kind) == (18, "truncated")
    with pytest.raises(TrailDamaged):
        AuditLog(directory, max_file_bytes=1 << 20).open()  # appending would hide the deletion

    forged_dir, forged = copy_trail(_trail(tmp_path / "b", 20), tmp_path / "forged")
    content = forged.read_bytes().splitlines(keepends=True)
    previous = json.loads(content[4])
    fake, _ = render(_entry(99), previous["seq"] + 1, previous["hash"])  # made with the rule, in place of line 6
    content[5] = fake + b"\n"
    forged.write_bytes(b"".join(content))
    broken = verify(forged_dir).broken
    assert broken is not None and (broken.line, broken.kind) == (7, "relinked")


def test_verify_cli_summarises_an_intact_trail_and_refuses_a_trail_without_head(tmp_path: Path) -> None:
    directory = _trail(tmp_path, 10)
    code, out, _ = verify_cli(directory)
    assert code == 0 and "intact: 1 file(s), 10 line(s), seq 1..10" in out
    (directory / HEAD).unlink()
    code, _, err = verify_cli(directory)
    assert code == 1 and "head.json is missing" in err


def test_the_chain_check_alone_needs_no_files() -> None:
    check = ChainCheck()
    prev = GENESIS
    for seq in range(1, 4):
        line, prev = render(_entry(seq), seq, prev)
        check.feed("mem", seq, line)
    assert check.finish() is None and check.last_seq == 3


def test_one_trail_has_one_writer(tmp_path: Path) -> None:
    first = AuditLog(tmp_path / "t", max_file_bytes=1 << 20)
    first.open()
    with pytest.raises(TrailBusy):
        AuditLog(tmp_path / "t", max_file_bytes=1 << 20).open()
    first.close()
    second = AuditLog(tmp_path / "t", max_file_bytes=1 << 20)
    second.open()  # free again once the first writer is gone
    second.close()

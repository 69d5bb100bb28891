"""Dead letters without a broker: IDs, `--since`, what a replay produces and when it is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.bus.log import LoggedRecord, Position
from pipeline.config import Settings
from pipeline.forensics.deadletters import (
    DeadLetter,
    Refused,
    our_topics,
    parse_id,
    payload,
    refusal,
    replay_output,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ORIGINAL = [("ce_id", b"e-1"), ("ce_type", b"pipeline.signal.observed.v1")]


def _letter(*dlq: tuple[str, bytes], key: bytes | None = b"ns/Pod/p", headers: list | None = None) -> DeadLetter:
    record = LoggedRecord(Position("pipeline.deadletter", 2, 17, NOW), key, b'{"a": 1}',
                          (*(ORIGINAL if headers is None else headers), *dlq), None, "not decoded here")
    return DeadLetter.of(record)


ORIGIN = (("dlq_origin_topic", b"pipeline.signals"), ("dlq_origin_partition", b"4"), ("dlq_origin_offset", b"9"),
          ("dlq_stage", b"correlate"), ("dlq_error", b"ValueError: bad\nsecond line"), ("dlq_attempts", b"1"),
          ("dlq_time", b"2026-12-01T11:59:00+00:00"))


def test_an_id_is_partition_and_offset() -> None:
    assert parse_id("2:17") == (2, 17) and parse_id(" 0:0 ") == (0, 0)
    for bad in ("2", "2:", ":3", "a:1", "1:-1", "1:2:3"):
        with pytest.raises(Refused, match="<partition>:<offset>"):
            parse_id(bad)



def test_a_dead_letter_reads_its_headers_and_lists_its_first_error_line() -> None:
    letter = _letter(*ORIGIN)
    assert letter.id == "2:17" and letter.origin == "pipeline.signals:4:9"
    assert letter.original_headers == ORIGINAL
    assert letter.time == datetime(2026, 12, 1, 11, 59, tzinfo=UTC)
    assert letter.summary() == {"id": "2:17", "time": "2026-12-01T11:59:00Z", "stage": "correlate",
                                "origin": {"topic": "pipeline.signals", "partition": 4, "offset": 9},
                                "error": "ValueError: bad", "attempts": 1}
    bare = _letter(("dlq_origin_topic", b"pipeline.signals"))
    # Missing headers are left out (not zero), the time is the record's own.
    assert bare.summary() == {"id": "2:17", "time": "2026-12-01T12:00:00Z",
                              "origin": {"topic": "pipeline.signals"}}
    assert bare.origin == "pipeline.signals:?:?"


def test_a_replay_is_the_original_record_with_its_replay_headers() -> None:
    # The record was itself a replay once: its old replay headers go too.
    previous = [*ORIGINAL, ("dlq_replay_of", b"0:3"), ("dlq_replay_origin", b"pipeline.signals:4:2")]
    out = replay_output(_letter(*ORIGIN, headers=previous))
    assert (out.topic, out.key, out.value, out.partition) == ("pipeline.signals", b"ns/Pod/p", b'{"a": 1}', None)
    assert out.headers == [*ORIGINAL, ("dlq_replay_of", b"2:17"), ("dlq_replay_origin", b"pipeline.signals:4:9")]
    assert replay_output(_letter(*ORIGIN, key=None)).partition == 4  # no key: back to its partition
    with pytest.raises(Refused, match="no dlq_origin_topic"):
        replay_output(_letter())


def test_replay_is_refused_for_a_foreign_topic_or_a_truncated_payload() -> None:
    ours = our_topics(Settings(topic_prefix="pipeline."))
    assert "pipeline.signals" in ours and "pipeline.deadletter" not in ours
    assert refusal(_letter(*ORIGIN), ours) is None
    cut = refusal(_letter(*ORIGIN, ("dlq_truncated", b"payload cut from 90000 to 65536 bytes")), ours)
    assert cut == ("2:17: its payload was truncated (payload cut from 90000 to 65536 bytes); replaying it would "
                   "inject a damaged record")
    foreign = refusal(_letter(("dlq_origin_topic", b"other.signals")), ours)
    assert foreign is not None and "'other.signals' is not one of this pipeline's topics" in foreign


def test_a_payload_is_shown_as_json_text_or_base64() -> None:
    assert payload(b'{"a": [1]}') == {"json": {"a": [1]}}
    assert payload(b"plain") == {"text": "plain"}
    assert payload(b"\xff\x00") == {"base64": "/wA="}
    assert "tombstone" in payload(None)["none"]

"""Ingest's memory of recent signal ids, and how the start-up read shares its budget between partitions."""

from __future__ import annotations

from pipeline.ingest.dedup import RecentIds, window_starts


def test_recent_ids_forget_the_least_recently_seen_first() -> None:
    ids = RecentIds(3)
    for signal_id in ("a", "b", "c"):
        ids.add(signal_id)
    assert ids.seen("a")  # a redelivered alert counts as just seen: it outlives b
    ids.add("d")
    assert "b" not in ids
    assert [s for s in "abcd" if s in ids] == ["a", "c", "d"]
    assert not ids.seen("b")
    assert len(ids) == 3


def test_recent_ids_of_size_zero_remember_nothing() -> None:
    ids = RecentIds(0)
    ids.add("a")
    assert "a" not in ids and not ids.seen("a") and len(ids) == 0


def test_window_reads_everything_when_the_topic_holds_less_than_the_budget() -> None:
    begin, end = {0: 0, 1: 5, 2: 0}, {0: 10, 1: 20, 2: 0}
    assert window_starts(begin, end, 100) == {0: 0, 1: 5, 2: 0}


def test_window_shares_the_budget_and_gives_what_a_quiet_partition_leaves_to_the_others() -> None:
    begin = {0: 0, 1: 0, 2: 0}
    end = {0: 2, 1: 1000, 2: 500}
    starts = window_starts(begin, end, 300)
    read = {p: end[p] - starts[p] for p in end}
    assert read == {0: 2, 1: 149, 2: 149}  # the newest records of each partition
    assert sum(read.values()) <= 300


def test_window_never_starts_before_the_first_offset_still_stored() -> None:
    begin, end = {0: 900, 1: 0}, {0: 1000, 1: 1000}
    starts = window_starts(begin, end, 1000)
    assert starts == {0: 900, 1: 100}
    assert window_starts(begin, end, 0) == {0: 1000, 1: 1000}

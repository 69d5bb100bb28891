"""The compressed record store (pipeline/domain/record_store.py) against a plain dict, through random puts,
replacements, reads and removals: every read returns the bytes put, every key is there or not as in the dict,
and memory stays bounded while records are replaced over and over. No broker."""

from __future__ import annotations

import json
import random

from pipeline.domain.record_store import RecordStore


def record(rng: random.Random, n: int) -> bytes:
    """A JSON record like an incident's: repeated field names, a few varying values."""
    return json.dumps({"id": f"inc-{n:06d}", "namespace": rng.choice(["shop", "pay", "ops"]),
                       "status": rng.choice(["active", "resolved"]), "alerts": [{"name": "PodCrashLooping",
                       "labels": {"pod": f"web-{rng.randrange(50)}"}}] * rng.randrange(4)}).encode()


def test_reads_and_membership_agree_with_a_dict_through_random_changes() -> None:
    rng = random.Random(7)
    for block in (1, 4, 64):
        store, plain = RecordStore(block=block), {}
        for step in range(3000):
            key = f"k{rng.randrange(400)}"
            roll = rng.random()
            if roll < 0.55:
                store[key] = plain[key] = record(rng, step)
            elif roll < 0.75:
                assert store.pop(key) == plain.pop(key, None)
            elif roll < 0.85 and key in plain:
                del store[key], plain[key]
            else:
                assert store.get(key) == plain.get(key)
            assert (key in store) == (key in plain)
            if step % 250 == 0:
                assert len(store) == len(plain)
                assert sorted(store) == sorted(plain)
                assert all(store.get(k) == v for k, v in plain.items())
        assert all(store.get(k) == v for k, v in plain.items())


def test_records_are_held_compressed_and_replacing_them_does_not_grow_the_store() -> None:
    rng = random.Random(3)
    store = RecordStore()
    values = {f"k{n}": record(rng, n) for n in range(5000)}
    for key, value in values.items():
        store[key] = value
    raw = sum(map(len, values.values()))
    first = store.compressed_bytes
    assert first < raw / 4  # blocks of similar records compress several-fold
    keys = list(values)
    for _ in range(10):  # a random half replaced ten times: blocks keep some live records, dead slots are reclaimed
        for key in rng.sample(keys, len(keys) // 2):
            store[key] = values[key]
    assert store.compressed_bytes < first * 2.5
    assert all(store.get(k) == v for k, v in values.items())


def test_a_missing_key_is_reported_as_missing() -> None:
    store = RecordStore()
    assert store.get("nope") is None and store.pop("nope", b"x") == b"x"
    try:
        del store["nope"]
    except KeyError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("deleting a missing key must raise KeyError")

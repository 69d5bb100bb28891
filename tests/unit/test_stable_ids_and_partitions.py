"""Ids and partitions must not change with how they are computed: a signal id that changed across an upgrade
would make every redelivered alert a new signal, and a key that moved partition would break per-key order."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from pipeline.bus.kafka import KeyPartitioner
from pipeline.events.base import uuid5_str


@given(st.uuids(), st.text())
def test_uuid5_str_is_the_standard_libraries_uuid5(namespace: uuid.UUID, name: str) -> None:
    try:
        expected = str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        return
    assert uuid5_str(namespace, name) == expected


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=50), st.integers(min_value=1, max_value=64))
def test_the_key_partitioner_places_every_key_as_kafka_s_default_partitioner(keys: list[bytes], count: int) -> None:
    partitions = list(range(count))
    remembering = KeyPartitioner(size=8)  # small: its memory starts over while the keys repeat
    for key in keys * 2:
        assert remembering(key, partitions, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2

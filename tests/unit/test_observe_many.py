"""Observing a batch of amounts at once reads on /metrics exactly as observing them one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pipeline.observability import observe_many

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)
AMOUNTS = st.lists(st.one_of(st.sampled_from(BUCKETS), st.floats(min_value=0, max_value=100)), max_size=50)


def _exposition(amounts: list[float], batched: bool) -> bytes:
    registry = CollectorRegistry()
    histogram = Histogram("resolution_seconds", "test", buckets=BUCKETS, registry=registry)
    if batched:
        observe_many(histogram, amounts)
    else:
        for amount in amounts:
            histogram.observe(amount)
    lines = generate_latest(registry).splitlines()
    return b"\n".join(line for line in lines if b"_created" not in line)  # the creation time differs


@given(AMOUNTS)
def test_a_batch_reads_as_one_by_one(amounts: list[float]) -> None:
    assert _exposition(amounts, True) == _exposition(amounts, False)

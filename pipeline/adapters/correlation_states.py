"""The correlate stage's state of every resource, read back from its compacted changelog (header and alert records,
tombstones), for the stage's restore and for reconcile at ingest start."""

from __future__ import annotations

from pipeline.bus.stage import ChangelogReader
from pipeline.domain.correlation import StateAssembly
from pipeline.events import CorrelationState


async def read_states(
    reader: ChangelogReader, topic: str, partitions: list[int]
) -> dict[int, dict[str, CorrelationState]]:
    """The correlate states of the resources of some changelog partitions, by partition and resource key."""
    assemblies = {partition: StateAssembly() for partition in partitions}
    for record, event in await reader.read(topic, partitions):
        if record.value is None or event is not None:  # a tombstone, or one of ours
            key = record.key.decode() if record.key else ""
            assemblies[record.partition].add(key, event.payload if event is not None else None)
    return {partition: assembly.result() for partition, assembly in assemblies.items()}

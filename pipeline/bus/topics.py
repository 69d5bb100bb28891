"""Declarative topic specs (`topics/*.yaml`): load them, create what is missing, report drift, list."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import BaseModel, Field

from pipeline.bus import kafka
from pipeline.config import Settings, read_yaml


class TopicSpec(BaseModel):
    """One topic as declared in `topics/NAME.yaml`; `name` is logical (the prefix is added per cluster)."""

    name: str
    description: str = ""
    partitions: int = Field(ge=1)
    replication: int = Field(ge=1)
    key: str
    value_types: list[str]
    co_partitioned_with: str | None = None
    config: dict[str, str] = Field(default_factory=dict)


@dataclass
class TopicReport:
    """What `apply` found and did for one topic."""

    topic: str
    action: str  # created | ok | drift
    drift: list[str] = field(default_factory=list)


def load_specs(directory: Path) -> list[TopicSpec]:
    specs = [TopicSpec.model_validate(read_yaml(p)) for p in sorted(directory.glob("*.yaml"))]
    by_name = {s.name: s for s in specs}
    for spec in specs:
        peer = by_name.get(spec.co_partitioned_with or "")
        if spec.co_partitioned_with and (peer is None or peer.partitions != spec.partitions):
            raise ValueError(f"topic {spec.name} must have as many partitions as {spec.co_partitioned_with}")
    return specs


def effective_config(spec: TopicSpec, replication: int) -> dict[str, str]:
    """The spec's config, with min.insync.replicas chosen so acks=all survives one broker loss."""
    return {"min.insync.replicas": str(max(1, min(2, replication - 1))), **spec.config}


async def apply(settings: Settings) -> list[TopicReport]:
    """Create every missing topic; report partitions or config that differ from the spec. Idempotent."""
    specs = load_specs(settings.topics_dir)
    client = kafka.admin(settings)
    await client.start()
    try:
        brokers = len((await client.describe_cluster())["brokers"])
        existing = set(await client.list_topics())
        reports: list[TopicReport] = []
        missing = []
        for spec in specs:
            name = settings.topic(spec.name)
            rf = min(spec.replication, settings.topic_replication_factor, brokers) if brokers else 1
            if name in existing:
                reports.append(await _compare(client, name, spec, rf))
            else:
                missing.append(NewTopic(name, spec.partitions, rf, topic_configs=effective_config(spec, rf)))
                reports.append(TopicReport(name, "created"))
        if missing:
            response = await client.create_topics(missing)
            for topic, code, *_ in getattr(response, "topic_errors", ()):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS, a concurrent apply won the race
                    raise RuntimeError(f"creating topic {topic} failed with Kafka error code {code}")
        return reports
    finally:
        await client.close()


async def _compare(client: Any, name: str, spec: TopicSpec, rf: int) -> TopicReport:
    drift = []
    (described,) = await client.describe_topics([name])
    partitions = len(described["partitions"])
    if partitions != spec.partitions:
        drift.append(f"partitions: spec {spec.partitions}, cluster {partitions}")
    configs = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    actual = {entry[0]: entry[1] for response in configs for res in response.resources for entry in res[4]}
    for key, want in effective_config(spec, rf).items():
        if actual.get(key) != want:
            drift.append(f"{key}: spec {want}, cluster {actual.get(key)}")
    return TopicReport(name, "drift" if drift else "ok", drift)


async def describe(settings: Settings) -> list[dict[str, Any]]:
    """Each spec'd topic with its partitions and high-water marks (None when the topic is missing)."""
    specs = load_specs(settings.topics_dir)
    found = await kafka.partitions(settings, *(settings.topic(s.name) for s in specs))
    consumer = kafka.consumer(settings)
    await consumer.start()
    try:
        rows: list[dict[str, Any]] = []
        for spec in specs:
            name = settings.topic(spec.name)
            parts = found.get(name)
            if not parts:
                rows.append({"topic": name, "partitions": None, "high_water": None, "messages": None})
                continue
            tps = [TopicPartition(name, p) for p in parts]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            rows.append(
                {
                    "topic": name,
                    "partitions": len(tps),
                    "high_water": [ends[tp] for tp in tps],
                    "messages": sum(ends[tp] - starts[tp] for tp in tps),
                }
            )
        return rows
    finally:
        await consumer.stop()

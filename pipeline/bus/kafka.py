"""One place that turns Settings into Kafka client arguments (plaintext, TLS, SASL)."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner, murmur2

from pipeline.config import Settings


class BrokerNotConfigured(RuntimeError):
    """No bootstrap servers: only `pipeline run` starts an embedded broker."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def client_args(settings: Settings) -> dict[str, Any]:
    """Arguments every aiokafka client takes: where the cluster is and how to authenticate."""
    if not settings.kafka_bootstrap_servers:
        raise BrokerNotConfigured("KAFKA_BOOTSTRAP_SERVERS is not set")
    args: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        args["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        args["sasl_mechanism"] = settings.kafka_sasl_mechanism
        args["sasl_plain_username"] = settings.kafka_sasl_username
        args["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return args


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as every Kafka client) with each key's hash remembered:
    aiokafka's murmur2 is pure Python, a few µs per record, and the pipeline's keys (resources, namespaces,
    incidents) repeat. At most `size` keys are remembered; past that the memory starts over."""

    def __init__(self, size: int = 65_536) -> None:
        self._hashes: dict[bytes, int] = {}
        self._size = size
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """acks=all and idempotence on: a send is acknowledged only once the in-sync replicas have it."""
    args = client_args(settings)
    args.pop("request_timeout_ms")
    return AIOKafkaProducer(
        **args,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        max_batch_size=1 << 20,
        max_request_size=2 << 20,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        partitioner=KeyPartitioner(),
        **overrides,
    )


# For reads of whole topics (snapshots at start-up, forensic reads): large fetches, since the default 1 MiB per
# partition is a round trip per ~800 records of ~1 KB.
BULK_READ: dict[str, Any] = {"max_partition_fetch_bytes": 16 << 20, "fetch_max_bytes": 64 << 20}


def consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that never commits by itself."""
    defaults: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
    }
    return AIOKafkaConsumer(*topics, **client_args(settings), **{**defaults, **overrides})


def admin(settings: Settings) -> AIOKafkaAdminClient:
    args = client_args(settings)
    return AIOKafkaAdminClient(**args)


async def partitions(settings: Settings, *topics: str) -> dict[str, list[int]]:
    """Partition numbers of each topic; a missing topic maps to an empty list."""
    client = admin(settings)
    await client.start()
    try:
        described = await client.describe_topics(list(topics))
    finally:
        await client.close()
    return {
        d["topic"]: sorted(p["partition"] for p in d["partitions"]) if d["error_code"] == 0 else []
        for d in described
    }

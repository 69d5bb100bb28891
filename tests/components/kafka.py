"""The session's Kafka broker for tests, chosen in this order:

1. `KAFKA_BOOTSTRAP_SERVERS`: an external cluster (its SASL/TLS settings come from the same env vars);
2. a Docker engine that answers: testcontainers' Kafka (KRaft);
3. otherwise the project's embedded Apache Kafka, fetched from Maven Central (`pipeline.embedded.kafka`).

`PIPELINE_TEST_BROKER=embedded|testcontainers` forces one of the last two.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.6.0"


def docker_engine_available() -> bool:
    """True only when a Docker engine answers a ping (a docker CLI alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "not available"
        return False


@contextlib.contextmanager
def session_broker(workdir: Path) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    choice = os.environ.get("PIPELINE_TEST_BROKER", "auto")
    if choice == "testcontainers" or (choice == "auto" and docker_engine_available()):
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(TESTCONTAINERS_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    from pipeline.embedded.kafka import LocalKafka, ensure_kafka

    ensure_kafka()
    broker = LocalKafka(workdir)
    try:
        yield broker.start()
    finally:
        broker.stop()

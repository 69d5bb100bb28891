"""A real Apache Kafka broker (KRaft, one combined broker+controller node) on 127.0.0.1.

Nothing on PyPI ships the broker, but Maven Central publishes its jars. ``ensure_kafka`` resolves
the runtime jar closure once into the cache directory (``distribution``); ``LocalKafka`` formats a
persistent data directory and runs ``kafka.Kafka`` from those jars (``broker``). Recipe and reasoning:
shared/infra/KAFKA-FROM-MAVEN.md.
"""

from pipeline.embedded.kafka.broker import LocalKafka
from pipeline.embedded.kafka.distribution import KAFKA_VERSION, ensure_kafka

__all__ = ["KAFKA_VERSION", "LocalKafka", "ensure_kafka"]

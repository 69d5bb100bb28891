"""Embedded real components (a local Kafka broker) for development and tests."""

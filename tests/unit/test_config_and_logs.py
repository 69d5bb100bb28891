"""Settings for an external cluster, and secrets kept out of reprs and logs."""

from __future__ import annotations

import json
import logging
import ssl

import pytest
import structlog

from pipeline.bus.kafka import BrokerNotConfigured, client_args
from pipeline.bus.stage import faststream_security
from pipeline.config import Settings
from pipeline.observability import configure_logging, get_logger, trace_id


def test_sasl_ssl_settings_reach_the_kafka_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "pipeline")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    settings = Settings()
    args = client_args(settings)
    assert args["bootstrap_servers"] == "broker-1:9093,broker-2:9093"
    assert args["security_protocol"] == "SASL_SSL" and args["sasl_mechanism"] == "SCRAM-SHA-512"
    assert args["sasl_plain_username"] == "pipeline" and args["sasl_plain_password"] == "hunter2"
    assert isinstance(args["ssl_context"], ssl.SSLContext)
    security = faststream_security(settings)
    assert type(security).__name__ == "SASLScram512"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_no_bootstrap_servers_is_a_clear_error() -> None:
    with pytest.raises(BrokerNotConfigured, match="KAFKA_BOOTSTRAP_SERVERS"):
        client_args(Settings(kafka_bootstrap_servers=""))


def test_bad_topic_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="topic_prefix"):
        Settings(topic_prefix="bad prefix/")


def test_secrets_bound_to_a_log_line_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        get_logger("test").info("connecting", sasl_password="hunter2", api_token="abc", user="pipeline")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    finally:
        structlog.reset_defaults()
        configure_logging("WARNING")
    assert line["sasl_password"] == "[redacted]" and line["api_token"] == "[redacted]"
    assert line["user"] == "pipeline" and line["event"] == "connecting"


def test_the_trace_id_of_a_log_line_is_read_from_a_w3c_traceparent() -> None:
    assert trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736"
    for malformed in (None, "", "00-4bf92f35-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"):
        assert trace_id(malformed) is None, malformed


def test_a_coordinator_lookup_aiokafka_retries_is_a_warning_other_errors_stay(
        capsys: pytest.CaptureFixture[str]) -> None:
    """aiokafka logs `GroupCoordinatorNotAvailableError` at ERROR on every fresh start, then retries: a warning."""
    from aiokafka import errors

    configure_logging("INFO", "json")
    try:
        coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
        coordinator.error("Group Coordinator Request failed: %s", errors.GroupCoordinatorNotAvailableError())
        coordinator.error("Group Coordinator Request failed: %s", errors.GroupAuthorizationFailedError())
        lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    finally:
        structlog.reset_defaults()
        configure_logging("WARNING")
    assert [(line["level"], "GroupCoordinatorNotAvailable" in line["event"]) for line in lines] == [
        ("warning", True), ("error", False)]

"""The embedded broker's output read back as events: log4j2's JSON lines (Kafka 4.x), reload4j's classic lines
(3.x) and the JVM's own text, with stack traces kept with their event."""

from __future__ import annotations

import json

from pipeline.embedded.kafka.logs import JVM_LOGGER, BrokerLine, LineParser, parse_line


def parsed(*lines: str) -> list[BrokerLine]:
    parser = LineParser()
    out = [event for line in lines for event in parser.feed(line)]
    return out + parser.flush()


def test_a_log4j2_json_line_is_one_event_with_its_level_logger_message_and_stack_trace() -> None:
    trace = ("org.apache.kafka.common.network.InvalidReceiveException: Invalid receive (size = 1195725856)\n"
             "\tat org.apache.kafka.common.network.NetworkReceive.readFrom(NetworkReceive.java:95)")
    line = json.dumps({"time": "2026-12-06T17:54:42.569Z", "level": "WARN",
                       "logger": "org.apache.kafka.common.network.Selector",
                       "message": 'Unexpected error from /127.0.0.1; closing "connection"',
                       "exception": f" {trace}\n"})
    assert parse_line(line) == BrokerLine("warning", "org.apache.kafka.common.network.Selector",
                                          'Unexpected error from /127.0.0.1; closing "connection"', trace,
                                          "2026-12-06T17:54:42.569Z")
    assert parsed(line) == [parse_line(line)]


def test_levels_become_the_pipelines_names() -> None:
    def level(name: str) -> str:
        return parse_line(json.dumps({"level": name, "logger": "kafka.x", "message": "m", "exception": ""})).level

    assert [level(n) for n in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")] == [
        "debug", "debug", "info", "warning", "error", "critical"]
    assert parse_line(json.dumps({"level": "INFO", "logger": "kafka.x", "message": "m", "exception": ""})).exception == ""


def test_a_classic_reload4j_line_is_parsed_too() -> None:
    line = ("[2026-12-06 17:46:31,954] INFO [BrokerLifecycleManager id=1] Incarnation 4Dy of broker 1 is now STARTING. "
            "(kafka.server.BrokerLifecycleManager)")
    assert parse_line(line) == BrokerLine(
        "info", "kafka.server.BrokerLifecycleManager",
        "[BrokerLifecycleManager id=1] Incarnation 4Dy of broker 1 is now STARTING.", "", "2026-12-06 17:46:31,954")


def test_the_jvms_own_text_is_a_warning_and_its_stack_trace_stays_with_it() -> None:
    events = parsed(
        "OpenJDK 64-Bit Server VM warning: Sharing is only supported for boot loader classes",
        'Exception in thread "main" java.lang.IllegalStateException: boom',
        "\tat kafka.Kafka$.main(Kafka.scala:112)",
        "Caused by: java.io.IOException: disk full",
        "\t... 3 more",
        "",
        '{"level":"ERROR","logger":"kafka.server.KafkaRaftServer","message":"exiting","exception":""}',
    )
    assert events == [
        BrokerLine("warning", JVM_LOGGER, "OpenJDK 64-Bit Server VM warning: Sharing is only supported for boot "
                                          "loader classes"),
        BrokerLine("warning", JVM_LOGGER, 'Exception in thread "main" java.lang.IllegalStateException: boom',
                   "\tat kafka.Kafka$.main(Kafka.scala:112)\nCaused by: java.io.IOException: disk full\n\t... 3 more"),
        BrokerLine("error", "kafka.server.KafkaRaftServer", "exiting"),
    ]


def test_an_event_is_held_until_the_next_line_or_a_flush() -> None:
    parser = LineParser()
    assert parser.feed("[2026-12-06 17:46:31,954] WARN disk slow (kafka.log.LogManager)\n") == []
    assert parser.feed("\tat kafka.log.LogManager.run(LogManager.scala:1)\n") == []
    (event,) = parser.flush()
    assert event.level == "warning" and event.exception == "\tat kafka.log.LogManager.run(LogManager.scala:1)"
    assert parser.flush() == []


def test_a_line_that_only_looks_like_json_is_kept_as_text() -> None:
    assert parse_line('{"not": "a log event"}') == BrokerLine("warning", JVM_LOGGER, '{"not": "a log event"}')
    assert parse_line("{truncated") == BrokerLine("warning", JVM_LOGGER, "{truncated")

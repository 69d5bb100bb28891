"""The envelope: CloudEvents binary-mode headers round-trip; anything else is refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.events import Event, InvalidEvent, Resource, Severity, Signal, decode

SIGNAL = Signal(
    signal_id="s-1", source="alertmanager", resource=Resource(namespace="ns", kind="Pod", name="p"),
    name="A", status="firing", severity=Severity.HIGH, fingerprint="f",
    starts_at=datetime(2026, 1, 1, tzinfo=UTC), observed_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def test_event_round_trips_through_key_value_and_headers() -> None:
    event = Event.of(SIGNAL, source="test", id="e-1", traceparent="00-abc-def-01", incidentid="inc-1")
    key, value, headers = event.encode()
    assert key == b"ns/Pod/p"
    back = decode(value, headers)
    assert back.payload == SIGNAL and back.envelope == event.envelope
    assert dict(headers)["ce_type"] == b"pipeline.signal.observed.v1"


@pytest.mark.parametrize(
    ("value", "headers", "message"),
    [
        (b"{}", [], "missing CloudEvents header"),
        (b"{}", [("ce_id", b"1"), ("ce_type", b"nope.v1"), ("ce_source", b"x"), ("ce_specversion", b"1.0")], "unknown event type"),
        (b"{}", [("ce_id", b"1"), ("ce_type", b"pipeline.signal.observed.v1"), ("ce_source", b"x"), ("ce_specversion", b"1.0")], "payload invalid"),
        (None, [("ce_id", b"1"), ("ce_type", b"pipeline.signal.observed.v1"), ("ce_source", b"x"), ("ce_specversion", b"1.0")], "no value"),
    ],
)
def test_records_that_are_not_our_events_are_refused_with_a_reason(value, headers, message) -> None:
    with pytest.raises(InvalidEvent, match=message):
        decode(value, headers)

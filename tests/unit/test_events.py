"""The envelope: CloudEvents binary-mode headers round-trip; anything else is refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.events import Event, InvalidEvent, Resource, Severity, Signal, decode, derived_id

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


def _headers(event_type: str) -> list[tuple[str, bytes]]:
    return [("ce_id", b"1"), ("ce_type", event_type.encode()), ("ce_source", b"x"), ("ce_specversion", b"1.0")]


def test_records_written_before_the_alert_semantics_fields_still_decode() -> None:
    """Signals and incidents on the topics from before truncated_alerts, inferred_by, received_at, firing_seen and
    resolved_by: they decode, nothing cut, no inference, receive time unknown (null), firing seen."""
    old_signal = (b'{"signal_id":"s-1","source":"alertmanager","resource":{"namespace":"ns","kind":"Pod","name":"p"},'
                  b'"name":"A","status":"firing","severity":"high","fingerprint":"f",'
                  b'"starts_at":"2026-01-01T00:00:00Z","observed_at":"2026-01-01T00:00:05Z"}')
    signal = decode(old_signal, _headers("pipeline.signal.observed.v1")).payload
    assert isinstance(signal, Signal) and (signal.truncated_alerts, signal.inferred_by) == (0, None)
    old_incident = (b'{"incident":{"id":"inc-1","title":"A on ns/Pod/p","severity":"high","source":"alertmanager",'
                    b'"signals":{"f":{"fingerprint":"f","name":"A","source":"alertmanager","status":"firing",'
                    b'"severity":"high","starts_at":"2026-01-01T00:00:00Z","last_signal_id":"s-1"}},'
                    b'"created_at":"2026-01-01T00:00:05Z","updated_at":"2026-01-01T00:00:05Z","signal_count":1},'
                    b'"signal_id":"s-1"}')
    incident = decode(old_incident, _headers("pipeline.incident.opened.v1")).payload.incident  # type: ignore[attr-defined]
    assert (incident.received_at, incident.truncated_alerts) == (None, 0)
    assert (incident.signals["f"].firing_seen, incident.signals["f"].resolved_by) == (True, None)


def test_a_caused_event_has_a_stable_derived_id_its_cause_and_the_cause_s_trace() -> None:
    cause = Event.of(SIGNAL, source="test", id="e-1", traceparent="00-abc-def-01")
    first = cause.caused(SIGNAL, source="pipeline/x", subject="ns/Pod/p")
    third = cause.caused(SIGNAL, source="pipeline/x", index=2, traceparent=None)
    # the same ids as before the helper existed: a redelivered input yields events consumers already have
    assert first.envelope.id == "2d8f1089-4f19-5bd9-b6d6-ae4d638a8cdc" == derived_id("e-1")
    assert third.envelope.id == "3aef0e62-f145-5466-95e8-2e811aa071b5" == derived_id("e-1", 2)
    assert first.envelope.causationid == third.envelope.causationid == "e-1"
    assert first.envelope.traceparent == "00-abc-def-01" and third.envelope.traceparent is None
    assert first.envelope.subject == "ns/Pod/p" and first.envelope.source == "pipeline/x"

"""The envelope: CloudEvents binary-mode headers round-trip; anything else is refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.events import (
    Event,
    FeaturesComputed,
    InvalidEvent,
    Resource,
    Severity,
    Signal,
    decode,
    derived_id,
)

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
    # stable: a redelivered input yields events consumers already have
    assert first.envelope.id == cause.caused(SIGNAL, source="pipeline/x").envelope.id
    assert first.envelope.id == derived_id("e-1", kind=SIGNAL.event_type)
    assert third.envelope.id == derived_id("e-1", 2, kind=SIGNAL.event_type) != first.envelope.id
    assert first.envelope.causationid == third.envelope.causationid == "e-1"
    assert first.envelope.traceparent == "00-abc-def-01" and third.envelope.traceparent is None
    assert first.envelope.subject == "ns/Pod/p" and first.envelope.source == "pipeline/x"


def test_two_stages_deriving_from_one_event_never_share_an_id() -> None:
    """enrich and propose both derive their first output from the same incident change: the gateway's read
    model, which keeps one set of applied ids across topics, would drop whichever it read second."""
    cause = Event.of(SIGNAL, source="test", id="e-1")
    features = FeaturesComputed.model_construct(incident_id="i-1")
    by_enrich = cause.caused(features, source="http://prometheus:9090")
    by_correlate = cause.caused(SIGNAL, source="pipeline/correlate")
    assert by_enrich.envelope.id != by_correlate.envelope.id
    # the source is not part of it: a stage whose source is configuration keeps its ids across a change of it
    assert by_enrich.envelope.id == cause.caused(features, source="https://thanos:9091").envelope.id


def test_an_incident_snapshot_record_carries_its_row_for_readers_that_do_not_decode_it() -> None:
    """The gateway lists incidents loaded from snapshots by the INDEX_HEADER alone: the row it carries is the one
    the decoded incident gives, and a header that is not a row is refused, not misread."""
    from pipeline.domain.incidents import new_manual_incident
    from pipeline.events import INDEX_HEADER, IncidentRow, IncidentSnapshot

    incident = new_manual_incident(incident_id="inc-7", title="t", description="d", severity=Severity.CRITICAL,
                                   now=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
                                   target="pay|ments \"x\"", labels={"namespace": "shop"})
    key, value, headers = Event.of(IncidentSnapshot(incident=incident), source="t").encode()
    (raw,) = [v for k, v in headers if k == INDEX_HEADER]
    row = IncidentRow.from_header(key.decode(), raw)
    assert row == IncidentRow.of(IncidentSnapshot.model_validate_json(value).incident)
    assert (row.id, row.severity, row.namespace, row.target) == ("inc-7", Severity.CRITICAL, "shop", 'pay|ments "x"')
    assert row.created == 1772366400123456  # 2026-03-01T12:00:00.123456Z, exact to the microsecond
    for bad in (b"{}", b"[1]", b'[1.5,"active","high","","",""]', b'[1,"asleep","high","","",""]', b"\xff"):
        with pytest.raises(InvalidEvent):
            IncidentRow.from_header("inc-7", bad)

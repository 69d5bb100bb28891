"""The operator CLI's rendering, pure: aligned columns, values cut with `…` (the terminal's width taken from the
flexible columns, last first, never below their title), `-` for what is absent, ages as `kubectl get` says them,
the views of an incident, its timeline and the status; and the workflow list's query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.bus.log import LoggedRecord, Position
from pipeline.domain.decisions import WorkflowQuery
from pipeline.domain.incidents import InvalidQuery, new_manual_incident, to_api
from pipeline.domain.remediation_view import Entry
from pipeline.events import Decision, Event, IncidentOpened, Proposal, Severity
from pipeline.operator import views
from pipeline.operator.client import FAILED, USAGE, refusal
from pipeline.operator.tables import Column, age, cut, details, duration, field, stamp, table, text, when

NOW = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def test_columns_are_aligned_under_their_titles_counts_to_the_right() -> None:
    rows = [{"id": "inc-1", "n": 3, "title": "short"}, {"id": "inc-22222", "n": 120, "title": None}]
    lines = table(rows, [field("id"), field("n", right=True, title="ALERTS"), field("title")])
    assert lines == ["ID         ALERTS  TITLE",
                     "inc-1           3  short",
                     "inc-22222     120  -"]


def test_a_long_value_is_cut_with_an_ellipsis_at_its_column_maximum() -> None:
    lines = table([{"id": "anom-" + "a" * 40}], [field("id", max=20)])
    assert lines[1] == "anom-aaaaaaaaaaaaaa…" and len(lines[1]) == 20
    assert cut("abc", 3) == "abc" and cut("abcd", 3) == "ab…" and cut("abcd", 0) == ""


def test_the_terminal_width_is_taken_from_the_flexible_columns_last_first_never_below_their_title() -> None:
    row = {"resource": "Pod/" + "r" * 30, "title": "t" * 50, "id": "inc-1"}
    columns = [field("id"), field("resource", flexible=True), field("title", flexible=True)]
    full = table([row], columns)
    assert len(full[1]) == 5 + 2 + 34 + 2 + 50
    fitted = table([row], columns, width=60)
    assert all(len(line) <= 60 for line in fitted)
    assert fitted[1].split()[1] == "Pod/" + "r" * 30  # the last flexible column gave way first
    assert fitted[1].endswith("…")
    narrow = table([row], columns, width=10)  # cannot fit: each flexible column keeps its title's width
    assert narrow[0] == "ID     RESOURCE  TITLE"
    assert narrow[1] == "inc-1  Pod/rrr…  tttt…"


def test_cells_say_absent_and_booleans_in_words_on_one_line() -> None:
    assert [text(v) for v in (None, "", True, False, 0, "two\nlines")] == ["-", "-", "yes", "no", "0", "two lines"]


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (312, "5m12s"), (599, "9m59s"), (600, "10m"),
    (2 * 3600 + 59 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 5 * 60, "3h5m"), (8 * 3600, "8h"),
    (26 * 3600, "26h"), (48 * 3600, "2d"), (3 * 86400 + 4 * 3600, "3d4h"), (12 * 86400, "12d"),
    (800 * 86400, "2y"), (-30, "0s"),
])
def test_ages_read_like_kubectl(seconds: int, said: str) -> None:
    assert duration(seconds) == said


def test_api_times_become_ages_and_readable_instants() -> None:
    assert age("2026-12-06T17:55:00Z", NOW) == "5m"
    assert age("2026-12-06T18:59:00+01:00", NOW) == "60s"
    assert age(None, NOW) == age("not a time", NOW) == "-"
    assert when("2026-12-06T17:55:00.5Z", NOW) == "2026-12-06 17:55:00Z (4m59s ago)"
    assert stamp("2026-12-06T17:53:21.864656Z") == "2026-12-06T17:53:21.864Z"


def test_details_align_their_values_and_leave_out_empty_optional_ones() -> None:
    lines = details([("id", "wf-1"), ("status", None)], optional=[("reason", ""), ("error", "boom")])
    assert lines == ["id:     wf-1", "status: -", "error:  boom"]
    assert details([("title", "x" * 50)], width=20) == ["title: xxxxxxxxxxxx…"]


def _incident() -> dict[str, object]:
    incident = new_manual_incident(incident_id="inc-0123456789ab", title="Disk filling on node-a",
                                   description="90 % used", severity=Severity.HIGH, now=NOW - timedelta(minutes=7),
                                   target="shop", labels={"namespace": "shop"})
    return to_api(incident)


def test_an_incident_row_shows_id_age_severity_status_and_title() -> None:
    item = _incident()
    lines = table([item], views.incident_columns(NOW))
    assert lines[0].split() == ["ID", "AGE", "SEVERITY", "STATUS", "NAMESPACE", "RESOURCE", "ISSUE", "ALERTS",
                                "REMEDIATION", "TITLE"]
    cells = lines[1].split(maxsplit=8)
    assert cells[:5] == ["inc-0123456789ab", "7m", "high", "active", "shop"]
    assert lines[1].endswith("0/0  none         Disk filling on node-a")
    shown = views.incident(item, NOW)
    assert "id:          inc-0123456789ab" in shown and "severity:    high (priority 2)" in shown
    assert "labels:      namespace=shop" in shown


def test_a_remediation_names_its_action_once_one_is_chosen() -> None:
    assert views._remediation({"remediation_status": "running", "action_type": "restart_pod"}) == \
        "running: restart_pod"
    assert views._remediation({"remediation_status": "awaiting_approval", "action_type": "awaiting_approval"}) == \
        "awaiting_approval"
    assert views._remediation({"remediation_status": "none", "action_type": "none"}) == "none"


def _records(n: int) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        incident = new_manual_incident(incident_id="inc-1", title=f"t{i}", description="d", severity=Severity.LOW,
                                       now=NOW)
        event = Event.of(IncidentOpened(incident=incident), source="test", id=f"e{i:07d}", time=NOW,
                         incidentid="inc-1")
        key, value, headers = event.encode()
        out.append(LoggedRecord(Position("t9.incidents", 1, i, NOW), key, value, tuple(headers), event).as_dict())
    return out


def test_a_timeline_line_says_what_the_event_says_as_replay_does() -> None:
    body = {"incident_id": "inc-1", "window": {"from": "2026-12-06T17:55:00Z"}, "count": 1, "events": _records(1)}
    lines = views.timeline(body)
    assert lines[1].split(maxsplit=3)[:3] == ["2026-12-06T18:00:00.000Z", "incidents[1]@0", "incident.opened"]
    assert "active low 't0' (0/0 alerts firing)" in lines[1] and lines[1].endswith("e0000000")
    foreign = {"position": {"topic": "t9.control", "partition": 0, "offset": 3, "timestamp": "2026-12-06T18:00:00Z"},
               "key": None, "invalid": "missing headers", "value": "x"}
    assert "not an event: missing headers" in views.timeline({"events": [foreign]})[1]


def test_a_long_timeline_is_summarised_by_its_first_and_last_events() -> None:
    body = {"incident_id": "inc-1", "window": {"from": "2026-12-06T17:55:00Z"}, "events": _records(25)}
    lines = views.timeline_summary(body, shown=6)
    assert lines[0] == "Timeline: 25 event(s) read from 2026-12-06T17:55:00Z (25 incidents)"
    assert [line.split()[1] for line in lines[2:5]] == ["incidents[1]@0", "incidents[1]@1", "incidents[1]@2"]
    assert lines[5] == "  … 19 more event(s): pipeline incidents timeline inc-1"
    assert [line.split()[1] for line in lines[6:]] == ["incidents[1]@22", "incidents[1]@23", "incidents[1]@24"]
    assert len(views.timeline_summary({"events": _records(6)}, shown=6)) == 8  # short: every event


def test_status_says_the_switches_the_parts_and_what_did_not_answer() -> None:
    health = {"status": "degraded", "version": "0.1.0", "uptime_seconds": 12,
              "dependencies": {"kafka": {"status": "ok", "message": "1 broker(s) reachable"},
                               "prometheus": {"status": "down", "message": "not ready"}},
              "components": {"projection": {"ready": True, "incidents": 3},
                             "stages": {"status": "stuck", "running": ["correlate"],
                                        "stuck": [{"stage": "correlate", "topic": "p.signals", "partition": 4,
                                                   "offset": 9, "held_seconds": 75.3}]},
                             "remediation": {"kill_switch": {"enabled": True, "by": "alice", "reason": "drill"},
                                             "pause": {"enabled": False}}}}
    engine = {"engine_status": "stopped", "engine": {"remediation_mode": "auto"},
              "queue": {"pending": 1, "awaiting_approval": 2, "active": 0}, "actions": {"total": 4, "failed": 1}}
    models = [{"model": "anomaly-detector", "status": "ready", "circuit_breaker": "closed"}]
    lines = views.status(health, engine, None, models, {"/api/v1/cluster/status": "503 KAFKA_UNAVAILABLE: x"})
    said = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines}
    assert said["gateway"] == "degraded, version 0.1.0, up 12 s"
    assert said["prometheus"] == "down: not ready"
    assert said["stages"] == "stuck: correlate; stuck: correlate p.signals/4 for 75.3 s"
    assert said["kill switch"] == "ON by alice: drill" and said["pause"] == "off"
    assert said["engine"] == "stopped, remediation mode auto"
    assert said["queue"] == "1 pending, 2 awaiting approval, 0 running"
    assert said["actions"] == "4 in all (1 failed)"
    assert said["model anomaly-detector"] == "ready, circuit closed"
    assert said["/api/v1/cluster/status"] == "unavailable: 503 KAFKA_UNAVAILABLE: x"


@pytest.mark.parametrize(("status", "body", "token", "said", "code"), [
    (401, {"error": "missing or invalid bearer token", "code": "UNAUTHORIZED"}, False,
     "the gateway refused the request (401 UNAUTHORIZED): set API_TOKEN to the gateway's API_TOKEN", FAILED),
    (401, {"error": "missing or invalid bearer token", "code": "UNAUTHORIZED"}, True,
     "the gateway refused the request (401 UNAUTHORIZED): API_TOKEN is set but is not the gateway's token: "
     "set API_TOKEN to the gateway's API_TOKEN", FAILED),
    (404, {"error": "Workflow not found", "code": "NOT_FOUND"}, False, "workflow wf-1 not found (404 NOT_FOUND)",
     FAILED),
    (400, {"error": "outcome must be one of: all, approved", "code": "INVALID_QUERY", "field": "outcome"}, False,
     "the gateway refused the request: outcome must be one of: all, approved (field outcome)", USAGE),
    (503, {"error": "the log could not be read", "code": "BROKER_UNAVAILABLE"}, False,
     "the gateway answered 503 BROKER_UNAVAILABLE: the log could not be read", FAILED),
])
def test_an_error_answer_is_one_line_that_says_what_to_do(status: int, body: dict[str, str], token: bool,
                                                         said: str, code: int) -> None:
    assert refusal(status, body, "workflow wf-1", token) == (said, code)


def _entry(n: int, ns: str, outcome: str | None, minutes: int) -> tuple[str, Entry]:
    p = Proposal(id=f"prop-{n}", target=f"{ns}/Pod/x{n}", namespace=ns, action="restart_pod", source="manual",
                 priority=50, incident_id=f"inc-{n}", workflow_id=f"wf-{n}")
    entry = Entry(p, NOW + timedelta(minutes=minutes))
    if outcome is not None:
        entry.decision = Decision(proposal=p, outcome=outcome, reasons=(), decided_at=entry.submitted_at)
    return f"wf-{n}", entry


def test_workflows_are_filtered_by_namespace_and_status_newest_first() -> None:
    made = [_entry(0, "shop", "approved", 0), _entry(1, "shop", "rejected", 1), _entry(2, "pay", None, 2),
            _entry(3, "shop", "awaiting_approval", 3)]
    assert WorkflowQuery.parse(None, "all", None, None).select(made) == (4, made[::-1])
    assert WorkflowQuery.parse("shop", "rejected", None, None).select(made) == (1, [made[1]])
    assert WorkflowQuery.parse(None, "pending", None, None).select(made) == (2, [made[2], made[0]])
    assert WorkflowQuery.parse(None, None, "1", "1").select(made) == (4, [made[2]])
    with pytest.raises(InvalidQuery) as caught:
        WorkflowQuery.parse(None, "done", None, None)
    assert caught.value.field == "status" and "awaiting_approval" in str(caught.value)


def test_a_column_of_its_own_text() -> None:
    column = Column("CHECKS", lambda row: ",".join(row["checks"]), max=8)
    assert table([{"checks": ["a", "bb", "ccc", "dddd"]}], [column]) == ["CHECKS", "a,bb,cc…"]

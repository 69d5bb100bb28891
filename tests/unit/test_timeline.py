"""An incident's timeline, pure: which events belong to it (incident id, causation chains, workflow ids) and their
causal order (every event after its cause whatever the clocks say, ties by time and position); the scan's start;
the times `pipeline replay` and `GET /api/v1/decisions` accept."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.bus.log import LoggedRecord, Position
from pipeline.domain.decisions import DecisionQuery
from pipeline.domain.incidents import InvalidQuery, new_manual_incident
from pipeline.domain.timeline import (
    Node,
    causal_order,
    depths,
    members,
    timeline_start,
)
from pipeline.events import ControlChanged, Decision, Event, Proposal, Severity
from pipeline.forensics.replay import use_colour

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class R:
    node: Node


_offsets: dict[str, int] = {}


def ev(id: str, *, cause: str | None = None, incident: str | None = None, workflow: str | None = None,
       t: float = 0.0, topic: str = "incidents", logged: float | None = None) -> R:
    offset = _offsets[topic] = _offsets.get(topic, -1) + 1
    at = T0 + timedelta(seconds=t)
    return R(Node(id, cause, incident, workflow, at, T0 + timedelta(seconds=logged if logged is not None else t),
                  topic, 0, offset))


def ids(items: list[R]) -> list[str | None]:
    return [i.node.id for i in items]


def full_run(x: str, t: float = 0.0) -> list[R]:
    """What the stages write for one incident: signal → incident → features → score → proposal → decision →
    workflow created (caused) → later transitions (incident and workflow ids only) → release; an approval with
    only the workflow id."""
    return [
        ev(f"{x}-sig", t=t, topic="signals"),
        ev(f"{x}-open", cause=f"{x}-sig", incident=x, t=t + 1),
        ev(f"{x}-feat", cause=f"{x}-open", incident=x, t=t + 2, topic="features"),
        ev(f"{x}-score", cause=f"{x}-feat", incident=x, t=t + 3, topic="scores"),
        ev(f"{x}-prop", cause=f"{x}-open", incident=x, t=t + 2.5, topic="remediation"),
        ev(f"{x}-dec", cause=f"{x}-prop", incident=x, t=t + 4, topic="decisions"),
        ev(f"{x}-wf1", cause=f"{x}-dec", incident=x, workflow=f"wf-{x}", t=t + 5, topic="workflows"),
        ev(f"{x}-ok", workflow=f"wf-{x}", t=t + 6, topic="control"),
        ev(f"{x}-wf2", workflow=f"wf-{x}", t=t + 7, topic="workflows"),
        ev(f"{x}-rel", incident=x, workflow=f"wf-{x}", t=t + 8, topic="remediation"),
    ]


def test_every_event_of_an_incident_is_found_and_no_other() -> None:
    a, b = full_run("a"), full_run("b", t=0.5)
    unrelated = [ev("kill", t=3, topic="control"), ev("other-sig", t=2, topic="signals"), R(Node(
        None, None, None, None, T0, T0, "signals", 0, 99))]  # a record that is not an event
    log = [*a, *b, *unrelated]
    random.Random(7).shuffle(log)
    found = members(log, "a")
    assert sorted(ids(found)) == sorted(ids(a))  # the signal (upwards), the approval and wf2 (workflow id) included
    assert members(log, "nope") == []


def test_an_event_naming_another_incident_never_belongs_even_when_caused_by_a_member() -> None:
    log = [ev("s"), ev("open", cause="s", incident="a"), ev("elsewhere", cause="open", incident="b"),
           ev("child", cause="elsewhere")]
    assert ids(members(log, "a")) == ["s", "open"]


def test_causes_are_followed_upwards_only() -> None:
    """A signal behind the incident is shown; what else that signal caused is not pulled in through it."""
    log = [ev("s"), ev("open", cause="s", incident="a"), ev("sibling", cause="s")]
    assert ids(members(log, "a")) == ["s", "open"]


def test_every_event_comes_after_its_cause_even_when_its_clock_says_earlier() -> None:
    log = [ev("child", cause="parent", t=0), ev("parent", t=5), ev("loner", t=1), ev("grandchild", cause="child", t=-3)]
    assert ids(causal_order(log)) == ["loner", "parent", "child", "grandchild"]


def test_ties_by_time_then_broker_time_then_position() -> None:
    log = [ev("b", t=1, topic="scores"), ev("a", t=1, topic="features"), ev("late", t=1, logged=2),
           ev("first", t=0)]
    assert ids(causal_order(log)) == ["first", "a", "b", "late"]


def test_a_redelivered_duplicate_is_kept_and_children_follow_every_record_of_their_causes_id() -> None:
    log = [ev("p", t=0), ev("c", cause="p", t=1), ev("p", t=2)]
    assert ids(causal_order(log)) == ["p", "p", "c"]
    # Two stages derive the same id from one input (features and a proposal from one incident event): the decision
    # caused by the proposal comes after both, even when the features' clock is later than the decision's.
    same_id = [ev("open", t=0), ev("x", cause="open", t=1, topic="remediation"),
               ev("x", cause="open", t=5, topic="features"), ev("decided", cause="x", t=2, topic="decisions")]
    assert [(r.node.id, r.node.topic) for r in causal_order(same_id)] == [
        ("open", "incidents"), ("x", "remediation"), ("x", "features"), ("decided", "decisions")]


def test_a_causation_cycle_loses_nothing() -> None:
    log = [ev("x", cause="y", t=1), ev("y", cause="x", t=0), ev("z", t=2)]
    assert ids(causal_order(log)) == ["z", "y", "x"]


def test_depths_follow_the_causation_chain() -> None:
    ordered = causal_order(full_run("a"))
    depth = dict(zip(ids(ordered), depths(ordered), strict=True))
    assert (depth["a-sig"], depth["a-open"], depth["a-feat"], depth["a-score"]) == (0, 1, 2, 3)
    assert (depth["a-dec"], depth["a-wf1"], depth["a-wf2"]) == (3, 4, 0)


@st.composite
def forests(draw: st.DrawFn) -> list[R]:
    n = draw(st.integers(1, 40))
    out: list[R] = []
    for i in range(n):
        cause = draw(st.one_of(st.none(), st.integers(0, i - 1) if i else st.none()))
        out.append(ev(f"e{i}", cause=f"e{cause}" if cause is not None else None, t=draw(st.integers(0, 20)),
                      topic=draw(st.sampled_from(["signals", "incidents", "decisions"]))))
    return out


@given(forests(), st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_causal_order_is_a_topological_order_whatever_order_the_log_gives(log: list[R], rnd: random.Random) -> None:
    shuffled = list(log)
    rnd.shuffle(shuffled)
    ordered = causal_order(shuffled)
    assert sorted(ids(ordered)) == sorted(ids(log))
    place = {r.node.id: i for i, r in enumerate(ordered)}
    assert all(place[r.node.causation] < place[r.node.id] for r in log if r.node.causation)
    assert ordered == causal_order(log)  # the same records give the same timeline, whichever order they came in


def test_the_scan_starts_at_the_first_signal_received_minus_the_margin() -> None:
    incident = new_manual_incident(incident_id="inc-1", title="t", description="d", severity=Severity.HIGH,
                                   now=T0 + timedelta(hours=1))
    assert timeline_start(incident, timedelta(minutes=5)) == T0 + timedelta(minutes=55)
    unknown_receipt = incident.model_copy(update={"received_at": None, "created_at": T0})
    assert timeline_start(unknown_receipt, timedelta(0)) == T0


def test_a_logged_record_gives_its_links_and_its_cloudevents_json() -> None:
    change = ControlChanged(key="approval/wf-1", kind="approve", workflow_id="wf-1", at=T0)
    event = Event.of(change, source="pipeline/gateway", id="e1", time=T0, incidentid="inc-1", workflowid="wf-1")
    key, value, headers = event.encode()
    record = LoggedRecord(Position("p.control", 0, 4, T0), key, value, tuple(headers), event)
    assert record.node == Node("e1", None, "inc-1", "wf-1", T0, T0, "p.control", 0, 4)
    body = record.as_dict()
    assert body["position"] == {"topic": "p.control", "partition": 0, "offset": 4, "timestamp": "2026-12-01T12:00:00Z"}
    assert body["key"] == "approval/wf-1"
    assert body["event"] == {"specversion": "1.0", "id": "e1", "type": "pipeline.control.changed.v1",
                             "source": "pipeline/gateway", "time": "2026-12-01T12:00:00Z",
                             "datacontenttype": "application/json", "incidentid": "inc-1", "workflowid": "wf-1",
                             "data": change.model_dump(mode="json")}
    foreign = LoggedRecord(Position("p.control", 0, 5, T0), None, b"\xffnot ours", (), None, "missing headers")
    assert foreign.as_dict()["invalid"] == "missing headers" and foreign.node.id is None


def decision(n: int, ns: str, outcome: str, minutes: int) -> Decision:
    p = Proposal(id=f"p{n}", target=f"{ns}/Pod/x{n}", namespace=ns, action="restart_pod", source="deterministic",
                 priority=50, incident_id=f"inc-{n}")
    return Decision(proposal=p, outcome=outcome, reasons=(), decided_at=T0 + timedelta(minutes=minutes))


def test_decisions_are_filtered_by_namespace_outcome_and_time_newest_first() -> None:
    made = [decision(0, "shop", "approved", 0), decision(1, "shop", "rejected", 1), decision(2, "pay", "approved", 2),
            decision(3, "shop", "approved", 3)]
    every = DecisionQuery.parse(None, "all", "", None, None)
    assert every.select(made, lambda d: d) == (4, [made[3], made[2], made[1], made[0]])
    shop = DecisionQuery.parse("shop", "approved", "2026-12-01T12:00:30Z", None, None)
    assert shop.select(made, lambda d: d) == (1, [made[3]])
    paged = DecisionQuery.parse(None, None, None, "1", "1")
    assert paged.select(made, lambda d: d) == (4, [made[2]])


@pytest.mark.parametrize(("args", "field"), [
    ((None, "maybe", None, None, None), "outcome"),
    ((None, None, "yesterday", None, None), "since"),
    ((None, None, "2026-12-01T12:00:00", None, None), "since"),
    ((None, None, None, "0", None), "limit"),
    ((None, None, None, None, "x"), "offset"),
])
def test_a_bad_decision_query_names_its_field(args: tuple[str | None, ...], field: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        DecisionQuery.parse(*args)
    assert caught.value.field == field


def test_colour_on_a_terminal_unless_no_color_and_the_flags_decide_first() -> None:
    assert use_colour(None, True, "") and not use_colour(None, True, "1") and not use_colour(None, False, "")
    assert use_colour(True, False, "1") and not use_colour(False, True, "")

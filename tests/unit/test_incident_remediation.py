"""What an incident shows the MCP server about its remediation (`action_type`, `remediation_status`, status) and
how sure it is (`confidence`), as pure functions of the read models; Go-style durations. No broker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipeline.domain.arbitration import ApprovalRule, Policy, resolve
from pipeline.domain.correlation import correlate
from pipeline.domain.incident_index import IncidentIndex
from pipeline.domain.incidents import (
    IncidentQuery,
    Remediation,
    action_type,
    new_manual_incident,
    shown_status,
    to_api,
    with_remediation,
)
from pipeline.events import (
    DecisionMade,
    IncidentRow,
    IncidentStatus,
    RemediationProposed,
    Severity,
    TargetState,
)
from pipeline.gateway.remediation_view import RemediationView, go_duration
from tests.unit.test_proposals_and_view import NOW, incident, proposal


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (0.25, "250ms"), (45, "45s"), (120, "2m0s"), (3723.5, "1h2m3.5s"), (3600, "1h0m0s"),
    (90061, "25h1m1s"), (1.0004, "1s"),
])  # fmt: skip
def test_go_duration_is_what_go_prints(seconds: float, shown: str) -> None:
    assert go_duration(seconds) == shown


def test_the_action_type_vocabulary() -> None:
    assert action_type(None) == "none"
    for state in ("pending", "running", "completed", "failed"):
        assert action_type(Remediation(state, "restart_pod")) == "restart_pod"
    assert action_type(Remediation("pending_decision", "restart_pod")) == "pending_decision"
    assert action_type(Remediation("awaiting_approval", "restart_pod")) == "awaiting_approval"
    for state in ("rejected", "superseded", "skipped", "cancelled"):
        assert action_type(Remediation(state, "restart_pod")) == "none"


def test_an_incident_follows_its_approved_action_but_not_a_dry_run() -> None:
    open_ = incident()
    running = with_remediation(open_, Remediation("running", "restart_pod", "wf-1"))
    assert (running.status, running.action_type, running.workflow_id) == (IncidentStatus.RUNNING, "restart_pod", "wf-1")
    done_at = NOW + timedelta(minutes=3)
    failed = to_api(with_remediation(open_, r := Remediation("failed", "restart_pod", "wf-1", done_at)), r)
    assert (failed["status"], failed["completed_at"], failed["duration_seconds"]) == ("failed", "2026-11-22T12:03:00Z",
                                                                                       180.0)
    assert failed["remediation_status"] == "failed"
    dry = with_remediation(open_, Remediation("completed", "restart_pod", "wf-2", done_at, dry_run=True))
    assert dry.status == IncidentStatus.ACTIVE and dry.action_type == "restart_pod"  # changed nothing in the cluster
    resolved = incident(status=IncidentStatus.COMPLETED, resolved_at=done_at)
    assert with_remediation(resolved, Remediation("running", "restart_pod")).status == IncidentStatus.COMPLETED
    shown = to_api(open_)
    assert (shown["action_type"], shown["remediation_status"], shown["completed_at"]) == ("none", "none", None)


def test_confidence_is_observed_for_signals_and_as_stated_otherwise() -> None:
    from tests.unit.test_correlation import signal

    opened = correlate(None, signal("a", "firing")).change
    assert opened is not None and opened.incident.confidence == 1.0
    legacy = incident(confidence=None)  # an incident event written before the field was set
    assert to_api(legacy)["confidence"] == 1.0
    kw: dict[str, Any] = {"incident_id": "inc-manual", "title": "t", "description": "d", "severity": Severity.LOW, "now": NOW}
    assert to_api(new_manual_incident(**kw, confidence=0.4))["confidence"] == 0.4
    assert to_api(new_manual_incident(**kw))["confidence"] == 1.0


def test_the_view_picks_the_proposal_that_speaks_for_the_incident() -> None:
    view = RemediationView()
    assert view.remediation("inc-1") is None
    first = proposal("p1", target="shop/Deployment/db", action="restart_deployment", workflow_id="wf-1")
    view.apply("e1", RemediationProposed(namespace="shop", proposal=first), NOW)
    assert view.remediation("inc-1") == Remediation("pending_decision", "restart_deployment", "wf-1")
    later = proposal("p2", target="shop/Deployment/db", action="scale_resources", workflow_id="wf-2")
    decisions = {d.outcome: d for d in resolve([first, later], TargetState(), Policy(approval=()), NOW)}
    assert set(decisions) == {"approved", "superseded"}
    winner = decisions["approved"].proposal.id
    view.apply("e2", DecisionMade(namespace="shop", decision=decisions["approved"], resolution_seconds=0.0), NOW)
    view.apply("e3", DecisionMade(namespace="shop", decision=decisions["superseded"], resolution_seconds=0.0), NOW)
    chosen = view.remediation("inc-1")
    assert chosen is not None and chosen.state == "pending"  # the approved one, not the later superseded one
    assert chosen.workflow_id == ("wf-1" if winner == "p1" else "wf-2")
    human = proposal("p3", target="shop/Pod/other", workflow_id="wf-3")
    (waiting,) = resolve([human], TargetState(), Policy(approval=(ApprovalRule(name="all"),)), NOW)
    view.apply("e4", DecisionMade(namespace="shop", decision=waiting, resolution_seconds=0.0), NOW)
    assert view.remediation("inc-1").state == "pending"  # type: ignore[union-attr]  # approved beats waiting


def test_a_skipped_workflow_still_speaks_for_its_incident_after_a_later_rejected_proposal() -> None:
    """Without a cluster an approved action's workflow ends `skipped`; a later proposal for the same incident (the
    AI's, after scoring) rejected by arbitration must not take the incident's workflow id away."""
    from pipeline.domain.workflows import Detected, finish, plan
    from pipeline.events import WorkflowChanged

    view = RemediationView()
    rule = proposal("p1", target="shop/Pod/web-1", action="restart_pod", workflow_id="wf-1")
    view.apply("e1", RemediationProposed(namespace="shop", proposal=rule), NOW)
    (approved,) = resolve([rule], TargetState(), Policy(approval=()), NOW)
    view.apply("e2", DecisionMade(namespace="shop", decision=approved, resolution_seconds=0.0), NOW)
    w = plan(approved, workflow_id="wf-1", mode="auto", now=NOW, detected={"shop/Pod/web-1": Detected("manual")})
    skipped = finish(w, "skipped", NOW, reason="no cluster configured")
    view.apply("w1", WorkflowChanged(namespace="shop", transition="created", sequence=1, workflow=w), NOW)
    view.apply("w2", WorkflowChanged(namespace="shop", transition="skipped", sequence=2, workflow=skipped), NOW)
    ai = proposal("p2", target="shop/Pod/web-1", action="restart_pod", source="ai", confidence=0.4)
    view.apply("e3", RemediationProposed(namespace="shop", proposal=ai), NOW)
    (rejected,) = resolve([ai], TargetState(), Policy(approval=()), NOW)
    assert rejected.outcome == "rejected"  # below the confidence threshold
    view.apply("e4", DecisionMade(namespace="shop", decision=rejected, resolution_seconds=0.0), NOW)
    shown = to_api(with_remediation(incident(), found := view.remediation("inc-1")), found)
    assert (shown["workflow_id"], shown["remediation_status"], shown["action_type"]) == ("wf-1", "skipped", "none")


def test_lists_filter_and_count_the_status_an_action_shows() -> None:
    """The gateway lists incidents from an index of rows (pipeline/domain/incident_index.py), told for each active
    incident the status its action shows (`shown_status`): every filter, page and count must be what listing
    the incidents `with_remediation` shows would give, or `?status=running` would miss an incident whose action
    runs -- and a dry run, or a finished incident, shows its own status."""
    done_at = NOW + timedelta(minutes=3)
    remediations = [None, Remediation("running", "restart_pod"), Remediation("completed", "restart_pod", "wf", done_at),
                    Remediation("failed", "restart_pod", "wf", done_at), Remediation("awaiting_approval", "restart_pod"),
                    Remediation("completed", "restart_pod", "wf", done_at, dry_run=True)]
    index, as_shown = IncidentIndex(), IncidentIndex()
    for n in range(24):
        status = (IncidentStatus.ACTIVE, IncidentStatus.COMPLETED)[n % 2]
        one = incident(status=status, resolved_at=done_at if n % 2 else None).model_copy(
            update={"id": f"inc-{n:02d}", "created_at": NOW + timedelta(seconds=n),
                    "severity": (Severity.HIGH, Severity.CRITICAL)[n % 3 == 0]})
        found = remediations[n % len(remediations)]
        index.put(IncidentRow.of(one))
        shown = shown_status(IncidentStatus.ACTIVE, found)
        index.act(one.id, None if shown == IncidentStatus.ACTIVE else shown)
        as_shown.put(IncidentRow.of(with_remediation(one, found)))
    assert {s for s in index.acting.values()} == {IncidentStatus.RUNNING, IncidentStatus.COMPLETED, IncidentStatus.FAILED}
    for status in (None, "active", "running", "completed", "failed"):
        for severity in (None, "critical"):
            q = IncidentQuery.parse(None, severity, status, "5", "1")
            expected = as_shown.query(q.namespace, q.severity, q.status, q.offset, q.limit)
            got = index.query(q.namespace, q.severity, q.status, q.offset, q.limit)
            assert (got[0], [r.id for r in got[1]], got[2]) == (expected[0], [r.id for r in expected[1]],
                                                                 expected[2]), (status, severity)

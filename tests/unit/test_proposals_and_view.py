"""The propose stage's mapping (incidents and scores to proposals, resolutions to releases) and the gateway's
remediation read model, as pure functions of their events: no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.adapters.rules import load_rules
from pipeline.bus.stage import Origin
from pipeline.config import Settings
from pipeline.domain.arbitration import Policy, resolve
from pipeline.events import (
    ActionReleased,
    AttachedSignal,
    DecisionMade,
    Event,
    Incident,
    IncidentOpened,
    IncidentResolved,
    IncidentStatus,
    IncidentUpdated,
    Proposal,
    RecommendedAction,
    RemediationProposed,
    ScoreComputed,
    Severity,
    TargetState,
    decode,
)
from pipeline.gateway.remediation_view import RemediationView, layer_of, workflow_view
from pipeline.stages.propose import ProposeStage

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SETTINGS = Settings(kafka_bootstrap_servers="127.0.0.1:1")
STAGE = ProposeStage(SETTINGS, load_rules(SETTINGS.remediation_rules_path))
ORIGIN = Origin("t", 0, 0, 0)


def signal(name: str, last: str, status: str = "firing") -> AttachedSignal:
    return AttachedSignal(fingerprint=name, name=name, source="alertmanager", status=status,  # type: ignore[arg-type]
                          severity=Severity.HIGH, starts_at=NOW, last_signal_id=last)


def incident(**kw: Any) -> Incident:
    base: dict[str, Any] = {
        "id": "inc-1", "title": "t", "severity": Severity.HIGH, "source": "alertmanager", "namespace": "shop",
        "resource": "Pod/web-1", "resource_key": "shop/Pod/web-1", "issue_type": "KubePodCrashLooping",
        "signals": {"a": signal("KubePodCrashLooping", "s1")}, "created_at": NOW, "updated_at": NOW,
    }
    return Incident.model_validate({**base, **kw})


def outputs(payload: Any) -> list[Event]:
    event = Event.of(payload, source="test", id="e-1", incidentid="inc-1")
    produced = STAGE.handle(event, ORIGIN)
    assert all(out.topic == STAGE.topic and out.key == decode(out.value, out.headers).key.encode() for out in produced)
    return [decode(out.value, out.headers) for out in produced]


def test_an_opened_incident_proposes_every_matching_rule_keyed_by_namespace() -> None:
    inc = incident(signals={"a": signal("KubePodCrashLooping", "s1"), "b": signal("PodOOMKilled", "s2")})
    events = outputs(IncidentOpened(incident=inc))
    assert [(e.payload.proposal.rule_id, e.key) for e in events] == [  # type: ignore[attr-defined]
        ("crashloop-pod", "shop"), ("oom-killed", "shop")]
    assert len({e.envelope.id for e in events}) == 2 and events[0].envelope.causationid == "e-1"
    assert outputs(IncidentOpened(incident=inc))[0].envelope.id == events[0].envelope.id  # replay: same ids


def test_an_update_proposes_only_for_the_signal_that_changed() -> None:
    inc = incident(signals={"a": signal("KubePodCrashLooping", "s1"), "b": signal("PodOOMKilled", "s2")})
    events = outputs(IncidentUpdated(incident=inc, signal_id="s2"))
    assert [e.payload.proposal.rule_id for e in events] == ["oom-killed"]  # type: ignore[attr-defined]
    resolved_signal = inc.model_copy(update={"signals": {"b": signal("PodOOMKilled", "s3", "resolved")}})
    assert outputs(IncidentUpdated(incident=resolved_signal, signal_id="s3")) == []


def test_a_resolved_incident_releases_its_action() -> None:
    inc = incident(status=IncidentStatus.COMPLETED, resolved_at=NOW)
    (event,) = outputs(IncidentResolved(incident=inc))
    assert isinstance(event.payload, ActionReleased)
    assert (event.key, event.payload.target, event.payload.incident_id, event.payload.reason) == (
        "shop", "shop/Pod/web-1", "inc-1", "incident_resolved")


def test_an_incident_without_a_resource_proposes_nothing() -> None:
    assert outputs(IncidentOpened(incident=incident(resource="", resource_key=""))) == []


def score(**kw: Any) -> ScoreComputed:
    base: dict[str, Any] = {
        "incident_id": "inc-1", "verdict": "anomaly", "model": "anomaly-detector", "score": 0.9, "confidence": 0.8,
        "features_event_id": "f", "target": "shop/Deployment/web", "namespace": "shop", "severity": "high",
        "recommended_actions": [RecommendedAction(action="scale_resources", confidence=0.8, reason="memory")],
    }
    return ScoreComputed.model_validate({**base, **kw})


def test_anomaly_scores_from_a_model_become_ai_proposals() -> None:
    (event,) = outputs(score())
    p = event.payload.proposal  # type: ignore[attr-defined]
    assert (p.source, p.action, p.target, p.confidence, p.severity) == (
        "ai", "scale_resources", "shop/Deployment/web", 0.8, Severity.HIGH)
    assert outputs(score(verdict="normal")) == []
    assert outputs(score(verdict="degraded", model=None)) == []  # rules only: no model proposed anything
    assert outputs(score(target="")) == []  # nothing to act on


# --- the gateway's read model ---------------------------------------------------------------------------------


def proposal(pid: str, target: str = "shop/Pod/web-1", **kw: Any) -> Proposal:
    return Proposal.model_validate({"id": pid, "target": target, "namespace": target.split("/")[0],
                                    "action": "restart_pod", "source": "manual", "priority": 50,
                                    "incident_id": "inc-1", "risk": "low", **kw})


def test_the_view_follows_a_proposal_through_decision_and_release() -> None:
    view = RemediationView()
    p = proposal("p1", workflow_id="wf-1", parameters={"request_key": "key:k", "issue_type": "pod_crash"})
    assert view.apply("e1", RemediationProposed(namespace="shop", proposal=p), NOW)
    assert not view.apply("e1", RemediationProposed(namespace="shop", proposal=p), NOW)  # at least once
    assert view.workflow("wf-1").status == "pending" and [e.proposal.id for e in view.pending()] == ["p1"]
    assert view.by_request("key:k").proposal.id == "p1"  # type: ignore[union-attr]
    (decision,) = resolve([p], TargetState(), Policy(approval=()), NOW)
    view.apply("e2", DecisionMade(namespace="shop", decision=decision, resolution_seconds=0.004), NOW)
    entry = view.workflow("wf-1")
    # approved, but nothing runs it until a remediator publishes its workflow: never "running"
    assert entry is not None and entry.status == "pending" and view.pending() == []
    shown = workflow_view("wf-1", entry)
    assert shown["steps"] == [] and shown["remediator"] is None
    assert (shown["resource_kind"], shown["resource_name"], shown["issue_type"]) == ("Pod", "web-1", "pod_crash")
    assert shown["decision"]["outcome"] == "approved" and shown["decision"]["reasons"][0]["code"] == "manual"
    other = ActionReleased(namespace="shop", target="shop/Pod/web-1", incident_id="inc-9", reason="completed",
                           released_at=NOW)
    view.apply("e3", other, NOW)
    assert entry.status == "pending"  # another incident's release does not end this action
    view.apply("e4", other.model_copy(update={"incident_id": "inc-1", "reason": "failed"}), NOW)
    assert entry.status == "failed"
    counts = view.counts(NOW)
    assert counts["statuses"] == {"failed": 1} and counts["layers"]["application"]["failed"] == 1


def test_the_view_counts_conflicts_and_expires_silent_actions() -> None:
    view = RemediationView(action_timeout=timedelta(minutes=30))
    a, b = proposal("a"), proposal("b", action="scale_resources", source="deterministic", priority=90)
    decisions = resolve([a, b], TargetState(), Policy(approval=()), NOW)
    for n, d in enumerate(decisions):
        view.apply(f"d{n}", DecisionMade(namespace="shop", decision=d, resolution_seconds=0.0), NOW)
    counts = view.counts(NOW)
    assert counts["statuses"] == {"pending": 1, "superseded": 1} and counts["conflicts"] == {"target": 1}
    assert view.counts(NOW + timedelta(minutes=31))["statuses"] == {"expired": 1, "superseded": 1}


def test_layers() -> None:
    assert layer_of(proposal("n", target="/Node/worker-1", namespace="")) == "infrastructure"
    assert layer_of(proposal("o", target="openshift-monitoring/Pod/p")) == "platform"
    assert layer_of(proposal("s", target="shop/Deployment/web")) == "application"


def test_the_view_shows_the_remediators_workflow() -> None:
    from pipeline.domain.workflows import Detected, plan, start, step_started
    from pipeline.events import WorkflowChanged

    view = RemediationView()
    p = proposal("p1", target="shop/Deployment/web", action="restart_deployment", workflow_id="wf-9")
    (decision,) = resolve([p], TargetState(), Policy(approval=()), NOW)
    w = plan(decision, workflow_id="wf-9", mode="auto", now=NOW, detected={"shop/Deployment/web": Detected("manual")})
    view.apply("w1", WorkflowChanged(namespace="shop", transition="created", sequence=1, workflow=w), NOW)
    assert view.workflow("wf-9").status == "pending"  # type: ignore[union-attr]
    running = step_started(start(w, NOW), w.steps[0], NOW)
    view.apply("w2", WorkflowChanged(namespace="shop", transition="step_started", sequence=2, workflow=running), NOW)
    view.apply("w1b", WorkflowChanged(namespace="shop", transition="created", sequence=1, workflow=w), NOW)  # late
    entry = view.workflow("wf-9")
    assert entry is not None and entry.status == "running" and view.for_incident("inc-1") is entry
    shown = workflow_view("wf-9", entry)
    assert shown["remediator"] == "manual" and [s["action"] for s in shown["steps"]] == ["rollout_restart",
                                                                                         "rollback_revision"]
    assert shown["steps"][0]["status"] == "running" and shown["checkpoints"][0]["checks"] == ["deployment_available"]
    assert view.counts(NOW)["statuses"] == {"running": 1}

"""What-if re-decisions as pure functions: a window recorded the way the stages record it (`decide_batch`,
`proposed_by`), decided again under a stricter threshold or other rules: exactly the decisions that change
are listed, with both sides' reasons; the same policy lists nothing; state at the window start counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.adapters.rules import load_rules
from pipeline.domain.arbitration import Policy, Rules
from pipeline.domain.remediation_flow import decide_batch, proposed_by
from pipeline.domain.whatif import (
    Change,
    Recorded,
    Seed,
    killed_at,
    merge_seeds,
    rerun,
    seed_from_changelog,
    seed_from_decisions,
)
from pipeline.events import (
    ActionReleased,
    ArbitrationState,
    ControlChanged,
    DecisionMade,
    Event,
    Incident,
    IncidentOpened,
    Proposal,
    RecommendedAction,
    RemediationProposed,
    ScoreComputed,
)
from pipeline.forensics.whatif import UsageError, parse_time

RULES = load_rules(Path(__file__).resolve().parents[2] / "rules" / "remediation.yaml")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(approval=(), protected_namespaces=frozenset(), namespace_budget=100, cooldown_seconds=600)
STRICT = POLICY.model_copy(update={"confidence_threshold": 0.8})


def score(n: int, confidence: float, target: str | None = None) -> Event:
    return Event.of(ScoreComputed(
        incident_id=f"inc-{n}", verdict="anomaly", model="iforest", score=0.9, confidence=confidence,
        features_event_id=f"f{n}", target=target or f"shop/Pod/web-{n}", namespace="shop",
        recommended_actions=[RecommendedAction(action="scale_resources", confidence=confidence, reason="anomalous")],
    ), source="test", id=f"score-{n}")


def opened(n: int, issue: str = "CrashLoopBackOff", resource: str | None = None) -> Event:
    incident = Incident.model_validate({
        "id": f"inc-{n}", "title": issue, "severity": "medium", "source": "test", "namespace": "shop", "resource": resource or f"Pod/web-{n}",
        "issue_type": issue, "created_at": T0.isoformat(), "updated_at": T0.isoformat(),
    })
    return Event.of(IncidentOpened(incident=incident), source="test", id=f"open-{n}")


class Recorder:
    """Records a window the way propose and arbitrate do: each source event proposed under `rules`, each batch
    decided under `policy` at its instant, with the records' broker times."""

    def __init__(self, rules: Rules = RULES, policy: Policy = POLICY, state: ArbitrationState | None = None) -> None:
        self.rules, self.policy = rules, policy
        self.state = state or ArbitrationState(namespace="shop")
        self.records: list[Recorded] = []

    def batch(self, at: datetime, sources: Sequence[Event], releases: Sequence[ActionReleased] = ()) -> None:
        inputs: list[Proposal | ActionReleased] = []
        for release in releases:
            self.records.append(Recorded("remediation", at - timedelta(milliseconds=2),
                                         Event.of(release, source="test")))
            inputs.append(release)
        for source in sources:
            self.records.append(Recorded("incidents" if isinstance(source.payload, IncidentOpened) else "scores",
                                         at - timedelta(milliseconds=2), source))
            for i, out in enumerate(proposed_by(source.payload, self.rules, at)):
                self.records.append(Recorded("remediation", at - timedelta(milliseconds=1),
                                             source.caused(out, source="pipeline/propose", index=i)))
                if isinstance(out, RemediationProposed):
                    inputs.append(out.proposal)
        done = decide_batch(self.state, inputs, self.policy, at, 2000)
        self.state = done.state
        for d in done.decisions:
            self.records.append(Recorded("decisions", at, Event.of(
                DecisionMade(namespace="shop", decision=d, resolution_seconds=0.0), source="pipeline/arbitrate")))


def mixed_window() -> Recorder:
    rec = Recorder()
    rec.batch(T0, [score(1, 0.65), score(2, 0.72), opened(3)])
    rec.batch(T0 + timedelta(seconds=5), [score(4, 0.78), score(5, 0.9)])
    return rec


def test_the_same_policy_reports_no_difference() -> None:
    rec = mixed_window()
    report = rerun(rec.records, Seed(), Change(POLICY))
    assert (report.rerun, report.differences) == (5, [])
    same_rules = rerun(rec.records, Seed(), Change(POLICY, rules=RULES))  # re-proposed: the same ids
    assert (same_rules.rerun, same_rules.differences, same_rules.kept_as_recorded) == (5, [], [])


def test_a_stricter_threshold_lists_exactly_the_decisions_between_the_thresholds() -> None:
    report = rerun(mixed_window().records, Seed(), Change(STRICT))
    assert report.rerun == 5
    changed = {d.target: d.outcomes for d in report.differences}
    assert changed == {"shop/Pod/web-2": ("approved", "rejected"), "shop/Pod/web-4": ("approved", "rejected")}
    for d in report.differences:
        assert d.recorded is not None and d.new is not None
        below = [r for r in d.new.reasons if r.code == "below_confidence_threshold"]
        assert below and below[0].values["threshold"] == 0.8
        assert not any(r.code == "below_confidence_threshold" for r in d.recorded.reasons)
        assert d.as_dict()["new"]["reasons"][-1]["code"] == "below_confidence_threshold"  # type: ignore[index]


def test_a_decision_that_no_longer_holds_a_target_changes_the_next_one_too() -> None:
    rec = Recorder()
    rec.batch(T0, [score(1, 0.75, "shop/Pod/web")])
    rec.batch(T0 + timedelta(seconds=5), [opened(2, resource="Pod/web")])  # busy: the AI action holds it
    report = rerun(rec.records, Seed(), Change(STRICT))
    assert [(d.source, d.outcomes) for d in report.differences] == [
        ("ai", ("approved", "rejected")), ("deterministic", ("rejected", "approved"))]
    assert {r.code for r in report.differences[1].recorded.reasons} >= {"target_busy"}  # type: ignore[union-attr]


def test_a_release_is_applied_where_it_was_recorded() -> None:
    rec = Recorder()
    rec.batch(T0, [opened(1, resource="Pod/web")])
    release = ActionReleased(namespace="shop", target="shop/Pod/web", incident_id="inc-1", reason="completed",
                             released_at=T0 + timedelta(seconds=10))
    rec.batch(T0 + timedelta(seconds=20), [score(2, 0.95, "shop/Pod/web")], [release])
    (second,) = [r.event.payload.decision for r in rec.records
                 if isinstance(r.event.payload, DecisionMade) and r.event.payload.decision.proposal.source == "ai"]
    assert second.outcome == "rejected" and second.reasons[-1].code == "cooldown"  # recorded: released, cooling
    assert rerun(rec.records, Seed(), Change(POLICY)).differences == []
    no_cooldown = rerun(rec.records, Seed(), Change(POLICY.model_copy(update={"cooldown_seconds": 0})))
    assert [d.outcomes for d in no_cooldown.differences] == [("rejected", "approved")]


def test_state_at_the_window_start_comes_from_the_seed() -> None:
    before = Recorder()
    before.batch(T0 - timedelta(minutes=1), [opened(1, resource="Pod/web")])  # holds the target
    window = Recorder(state=before.state)
    window.batch(T0, [score(2, 0.95, "shop/Pod/web")])
    changelog = [Recorded("arbitrate.state", T0 - timedelta(seconds=59), Event.of(before.state, source="a"))]
    seeded = seed_from_changelog(changelog)
    assert "arbitrate.state changelog" in seeded.how["shop"]
    assert rerun(window.records, seeded, Change(POLICY)).differences == []
    # From the decisions before the window instead: the same held target.
    rebuilt = seed_from_decisions([r for r in before.records if r.topic == "decisions"], T0 - timedelta(hours=1))
    assert rebuilt.states["shop"].state.active.keys() == {"shop/Pod/web"}
    assert rerun(window.records, rebuilt, Change(POLICY)).differences == []
    # Without it the target looks free: the one difference says so.
    (diff,) = rerun(window.records, Seed(), Change(POLICY)).differences
    assert diff.outcomes == ("rejected", "approved")
    assert merge_seeds(seeded, rebuilt).how["shop"] == seeded.how["shop"]


def test_new_rules_propose_again_and_list_what_they_change() -> None:
    rec = mixed_window()
    manual = RULES.model_copy(update={"rules": tuple(
        r.model_copy(update={"action": "manual_intervention"}) if r.id == "crashloop-pod" else r
        for r in RULES.rules)})
    report = rerun(rec.records, Seed(), Change(POLICY, rules=manual))
    assert sorted((d.action, d.outcomes) for d in report.differences) == [
        ("manual_intervention", ("not decided", "approved")), ("restart_pod", ("approved", "not decided"))]
    assert report.rerun == 6 and report.kept_as_recorded == []


def test_a_proposal_whose_source_is_outside_the_window_is_kept_as_recorded() -> None:
    rec = mixed_window()
    window = [r for r in rec.records if r.event.envelope.id != "open-3"]  # its incident opened before the window
    report = rerun(window, Seed(), Change(POLICY, rules=RULES))
    assert report.differences == [] and len(report.kept_as_recorded) == 1


def test_a_proposal_decided_after_the_window_is_left_out() -> None:
    rec = mixed_window()
    window = [r for r in rec.records if r.at < T0 + timedelta(seconds=5)]  # the second batch's decisions are later
    report = rerun(window, Seed(), Change(STRICT))
    assert len(report.undecided) == 2 and [d.target for d in report.differences] == ["shop/Pod/web-2"]


def test_the_runtime_kill_switch_is_followed() -> None:
    on = ControlChanged(key="kill-switch", kind="kill_switch", enabled=True, at=T0 + timedelta(seconds=1))
    off = on.model_copy(update={"enabled": False, "at": T0 + timedelta(seconds=3)})
    assert [killed_at([on, off], T0 + timedelta(seconds=s)) for s in (0, 2, 4)] == [False, True, False]
    report = rerun(mixed_window().records, Seed(), Change(POLICY), kill_switch=[on])
    assert {d.target for d in report.differences} == {"shop/Pod/web-4", "shop/Pod/web-5"}
    assert all(d.new and d.new.reasons[-1].code == "kill_switch" for d in report.differences)


def test_a_bad_window_time_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="neither a duration"):
        parse_time("yesterday", T0)


def test_the_replay_command_says_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached: the arguments are refused first
    assert cli.main(["replay", "--rules", "x.yaml", "--from", "15m"]) == 2
    assert "go with --what-if" in capsys.readouterr().err
    assert cli.main(["replay", "--what-if"]) == 2
    assert "--from is required" in capsys.readouterr().err
    assert cli.main(["replay", "--what-if", "--from", "yesterday"]) == 2
    assert "'yesterday' is neither" in capsys.readouterr().err
    assert cli.main(["replay", "--what-if", "--from", "5m", "--incident", "i-1"]) == 2
    assert "a time window only" in capsys.readouterr().err
    assert cli.main(["replay", "--what-if", "--from", "5m", "--to", "10m"]) == 2
    assert "is not before --to" in capsys.readouterr().err

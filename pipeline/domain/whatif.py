"""What-if: the decisions of a recorded window decided again under other rules or another policy, and exactly
those that would differ, with the reasons of each side. Pure: the forensics tool reads the log and prints.

The re-run is the stages' own code (`pipeline.domain.remediation_flow`) over the recorded events, in order:

* **Batches.** The arbitrate stage decides a consumed batch at one instant (`decided_at`), so the recorded
  decisions of a namespace grouped by `decided_at` are its batches; each is decided again at that instant.
* **Proposals.** Without new rules, the recorded proposals. With new rules, every incident change and score
  in the window is proposed again (ids are deterministic, so an unchanged rule proposes the same id) and its
  proposals replace those it caused; a proposal whose source is outside the window (or manual) is kept as
  recorded. A re-proposal goes to the batch that decided its id, else its siblings' (same source event), else
  to a batch of its own at the source event's time.
* **Releases** (a workflow finished, an incident resolved) are taken as recorded, each applied before the
  first batch decided at or after its record's time.
* **State** at the window start comes in as a `Seed` (from the arbitrate.state changelog or the decisions
  before the window: `seed_from_changelog`, `seed_from_decisions`), the kill switch from the control topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.domain.arbitration import Policy, Rules, apply, release
from pipeline.domain.remediation_flow import decide_batch, proposed_by
from pipeline.events import (
    ActionReleased,
    ArbitrationState,
    ControlChanged,
    Decision,
    DecisionMade,
    Event,
    IncidentOpened,
    IncidentUpdated,
    Proposal,
    RemediationProposed,
    ScoreComputed,
    iso_z,
)

SOURCE_TOPICS = ("incidents", "scores")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded event and where it was: its logical topic and its record's broker timestamp."""

    topic: str
    at: datetime
    event: Event


@dataclass(frozen=True, slots=True)
class Seed:
    """Arbitration state per namespace at the window start, and how each namespace's was found."""

    states: Mapping[str, ArbitrationState] = field(default_factory=dict)
    how: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """What the re-run changes: new rules (None: the recorded proposals as they are) and the policy."""

    policy: Policy
    rules: Rules | None = None
    decided_memory: int = 2000


@dataclass(frozen=True, slots=True)
class Difference:
    """One proposal decided differently (None on a side where it was not decided at all)."""

    proposal_id: str
    target: str
    action: str
    source: str
    recorded: Decision | None
    new: Decision | None

    @property
    def outcomes(self) -> tuple[str, str]:
        return (self.recorded.outcome if self.recorded else "not decided",
                self.new.outcome if self.new else "not decided")

    def as_dict(self) -> dict[str, object]:
        def side(d: Decision | None) -> dict[str, object] | None:
            if d is None:
                return None
            return {"outcome": d.outcome, "decided_at": iso_z(d.decided_at),
                    "reasons": [r.model_dump(mode="json", exclude_defaults=True) for r in d.reasons]}

        return {"proposal_id": self.proposal_id, "target": self.target, "action": self.action,
                "source": self.source, "recorded": side(self.recorded), "new": side(self.new)}


@dataclass(frozen=True, slots=True)
class Report:
    rerun: int  # proposals compared: decided in the window by the record or by the re-run
    differences: list[Difference]
    kept_as_recorded: list[str]  # proposal ids whose source is outside the window (new rules could not apply)
    undecided: list[str]  # proposal ids in the window decided after it: left out


@dataclass
class _Batch:
    now: datetime
    releases: list[ActionReleased] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)


def _signature(d: Decision) -> tuple[str, tuple[tuple[object, ...], ...]]:
    """What makes two decisions the same: the outcome and each reason's code, rule, rival and conflict (not the
    messages, whose numbers are the same facts)."""
    return d.outcome, tuple((r.code, r.rule, r.other, r.conflict) for r in d.reasons)


def killed_at(changes: Sequence[ControlChanged], now: datetime) -> bool:
    """Whether the runtime kill switch was on at `now`, by the last switch at or before it."""
    latest = None
    for change in changes:
        if change.kind == "kill_switch" and change.at <= now and (latest is None or change.at >= latest.at):
            latest = change
    return bool(latest and latest.enabled)


def rerun(records: Sequence[Recorded], seed: Seed, change: Change,
          kill_switch: Sequence[ControlChanged] = ()) -> Report:
    """Decide the window's batches again under `change` and compare with the recorded decisions."""
    recorded = _recorded_decisions(records)
    proposed = {r.event.payload.proposal.id for r in records
                if r.topic == "remediation" and isinstance(r.event.payload, RemediationProposed)}
    decided_before = {pid for s in seed.states.values() for pid in s.decided}
    undecided = sorted(proposed - set(recorded) - decided_before)
    batches, kept = _batches(records, recorded, change.rules, set(undecided))
    again = _decide(batches, seed, change, kill_switch)
    ids = sorted(set(recorded) | set(again))
    differences = [
        Difference(pid, d.proposal.target, d.proposal.action, d.proposal.source, recorded.get(pid), again.get(pid))
        for pid in ids
        for d in [recorded.get(pid) or again[pid]]
        if pid not in recorded or pid not in again or _signature(recorded[pid]) != _signature(again[pid])
    ]
    return Report(len(ids), differences, kept, undecided)


def _batches(records: Sequence[Recorded], recorded: Mapping[str, Decision], rules: Rules | None,
             undecided: set[str]) -> tuple[dict[str, dict[datetime, _Batch]], list[str]]:
    """The batches to decide again per namespace and instant, and the proposals kept as recorded although new
    rules were given."""
    batches: dict[str, dict[datetime, _Batch]] = {}

    def batch(namespace: str, now: datetime) -> _Batch:
        return batches.setdefault(namespace, {}).setdefault(now, _Batch(now))

    replaced = _replaced(records, rules)
    kept = []
    for pid, d in recorded.items():
        if pid not in replaced:
            batch(d.proposal.namespace, d.decided_at).proposals.append(d.proposal)
            if rules is not None:
                kept.append(pid)
    for source, proposals in _reproposed(records, rules):
        siblings = [recorded[pid] for pid, cause in replaced.items()
                    if cause == source.event.envelope.id and pid in recorded]
        for p in proposals:
            if p.id not in undecided:
                placed = recorded.get(p.id) or (siblings[0] if siblings else None)
                batch(p.namespace, placed.decided_at if placed else source.at).proposals.append(p)
    for r in records:
        if r.topic == "remediation" and isinstance(r.event.payload, ActionReleased):
            _place_release(batches.setdefault(r.event.payload.namespace, {}), r.at, r.event.payload)
    return batches, kept


def _recorded_decisions(records: Iterable[Recorded]) -> dict[str, Decision]:
    out: dict[str, Decision] = {}
    for r in records:
        if r.topic == "decisions" and isinstance(r.event.payload, DecisionMade):
            out.setdefault(r.event.payload.decision.proposal.id, r.event.payload.decision)
    return out


def _replaced(records: Sequence[Recorded], rules: Rules | None) -> dict[str, str]:
    """With new rules, the recorded proposal ids whose source event is in the window, with that event's id."""
    out: dict[str, str] = {}
    if rules is None:
        return out
    sources = {r.event.envelope.id for r in records if r.topic in SOURCE_TOPICS}
    for r in records:
        cause = r.event.envelope.causationid
        if r.topic == "remediation" and isinstance(r.event.payload, RemediationProposed) and cause in sources:
            out[r.event.payload.proposal.id] = cause or ""
    return out


def _reproposed(records: Sequence[Recorded], rules: Rules | None) -> list[tuple[Recorded, list[Proposal]]]:
    if rules is None:
        return []
    out = []
    for r in records:
        if r.topic in SOURCE_TOPICS and isinstance(r.event.payload, IncidentOpened | IncidentUpdated | ScoreComputed):
            new = [p.proposal for p in proposed_by(r.event.payload, rules, r.at) if isinstance(p, RemediationProposed)]
            out.append((r, new))
    return out


def _place_release(batches: dict[datetime, _Batch], at: datetime, released: ActionReleased) -> None:
    """Before the first batch decided at or after the release was recorded (none: it changes nothing here)."""
    later = [now for now in batches if now >= at]
    if later:
        batches[min(later)].releases.append(released)


def _decide(batches: Mapping[str, Mapping[datetime, _Batch]], seed: Seed, change: Change,
            kill_switch: Sequence[ControlChanged]) -> dict[str, Decision]:
    out: dict[str, Decision] = {}
    for namespace, by_time in sorted(batches.items()):
        current = seed.states.get(namespace) or ArbitrationState(namespace=namespace)
        for now in sorted(by_time):
            policy = (change.policy.model_copy(update={"kill_switch": True})
                      if killed_at(kill_switch, now) else change.policy)
            b = by_time[now]
            done = decide_batch(current, [*b.releases, *b.proposals], policy, now, change.decided_memory)
            current = done.state
            out.update((d.proposal.id, d) for d in done.decisions)
    return out


def seed_from_changelog(records: Iterable[Recorded]) -> Seed:
    """Each namespace's latest arbitrate.state record before the window (`records`: the changelog before it)."""
    latest: dict[str, Recorded] = {}
    for r in records:
        payload = r.event.payload
        if isinstance(payload, ArbitrationState) and (payload.namespace not in latest
                                                      or r.at >= latest[payload.namespace].at):
            latest[payload.namespace] = r
    return Seed({ns: r.event.payload for ns, r in latest.items() if isinstance(r.event.payload, ArbitrationState)},
                {ns: f"arbitrate.state changelog as of {iso_z(r.at)}" for ns, r in latest.items()})


def seed_from_decisions(records: Sequence[Recorded], since: datetime) -> Seed:
    """Each namespace's state rebuilt from the recorded decisions and releases before the window (from
    `since`): the approved and awaiting ones hold their targets until released. Actions started before `since`
    are unknown; the decided ids are those decisions'."""
    states: dict[str, ArbitrationState] = {}
    for r in sorted(records, key=lambda r: r.at):
        payload = r.event.payload
        if isinstance(payload, DecisionMade):
            s = states.get(payload.namespace) or ArbitrationState(namespace=payload.namespace)
            states[payload.namespace] = ArbitrationState(
                namespace=s.namespace, state=apply(s.state, [payload.decision]),
                decided={**s.decided, payload.decision.proposal.id: payload.decision.outcome})
        elif isinstance(payload, ActionReleased) and payload.namespace in states:
            s = states[payload.namespace]
            states[payload.namespace] = s.model_copy(update={"state": release(
                s.state, payload.target, payload.released_at, incident_id=payload.incident_id,
                proposal_id=payload.proposal_id)})
    how = f"decisions recorded since {iso_z(since)} (actions started earlier unknown)"
    return Seed(states, dict.fromkeys(states, how))


def merge_seeds(first: Seed, fallback: Seed) -> Seed:
    """`first`'s namespaces, and `fallback`'s for the others."""
    return Seed({**fallback.states, **first.states}, {**fallback.how, **first.how})


def namespaces(records: Iterable[Recorded]) -> set[str]:
    """The namespaces the window's proposals, releases and decisions are about."""
    out = set()
    for r in records:
        payload = r.event.payload
        if isinstance(payload, RemediationProposed | ActionReleased | DecisionMade):
            out.add(payload.namespace)
    return out


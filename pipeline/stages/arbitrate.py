"""Arbitrate stage: proposals -> decisions, one namespace per owner.

`remediation` is keyed by the target's namespace, so one instance owns every target of a namespace and all
that can conflict with it. The proposals of a consumed batch are resolved together (`resolve` does not
depend on their order); each proposal id is decided once, even when it is proposed again or the batch is
redelivered; the namespace's state (running actions, cooldowns, recently decided ids) goes to a compacted,
co-partitioned changelog before offsets are committed and is rebuilt from it on assignment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.bus.control import ControlFollower
from pipeline.bus.producer import Output
from pipeline.bus.stage import ChangelogReader, Origin, Stage
from pipeline.config import Settings
from pipeline.domain.arbitration import policy_from_settings
from pipeline.domain.remediation_flow import decide_batch
from pipeline.events import (
    ActionReleased,
    ArbitrationState,
    Decision,
    DecisionMade,
    Event,
    Proposal,
    ReasonCode,
    RemediationProposed,
)
from pipeline.observability import (
    COORDINATION_ACTIONS,
    COORDINATION_ACTIVE,
    COORDINATION_CONFLICTS,
    COORDINATION_REDECIDED,
    COORDINATION_RESOLUTION_SECONDS,
    observe_many,
)

# Conflict reasons, compared by identity: reading an enum member and hashing one are Python-level calls, per reason
_LOST, _DUPLICATE = ReasonCode.LOST_CONFLICT, ReasonCode.DUPLICATE
_INPUTS = (RemediationProposed, ActionReleased)  # a tuple: `A | B` in `isinstance` builds a union at every call


@dataclass(frozen=True, slots=True)
class _Decided:
    decision: Decision
    seconds: float


class ArbitrateStage(Stage):
    """Consumes `remediation`, produces `decisions`; keeps each namespace's state in `arbitrate.state`."""

    name = "arbitrate"
    inputs = ("remediation",)

    def __init__(self, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(settings)
        self.decisions_topic = settings.topic("decisions")
        self.changelog_topic = settings.topic("arbitrate.state")
        self.policy = policy_from_settings(settings)
        self.memory = settings.remediation_decided_memory
        self.clock = clock or (lambda: datetime.now(UTC))
        self._state: dict[str, ArbitrationState] = {}
        self._partition_of: dict[str, int] = {}
        self._pending: dict[str, ArbitrationState] = {}
        self._decided: dict[str, _Decided] = {}  # by the proposal's event id, for `handle`
        self.control = ControlFollower(settings)

    async def start(self) -> None:
        await self.control.start()

    async def close(self) -> None:
        await self.control.stop()

    def _current(self, namespace: str) -> ArbitrationState:
        return self._pending.get(namespace) or self._state.get(namespace) or ArbitrationState(namespace=namespace)

    async def prepare(self, events: list[Event]) -> None:
        """Resolve the batch per namespace: releases first, then every new proposal together. Pure; it runs
        here rather than in `handle` because a batch's proposals are decided as one."""
        now = self.clock()
        # the kill switch is configuration, or switched at runtime through the control topic
        policy = self.policy.model_copy(update={"kill_switch": True}) if self.control.state.killed else self.policy
        by_namespace: dict[str, list[Event]] = {}
        for event in events:
            if isinstance(event.payload, _INPUTS):
                by_namespace.setdefault(event.payload.namespace, []).append(event)
        for namespace, batch in sorted(by_namespace.items()):
            first: dict[str, Event] = {}  # the event that carried each proposal first in the batch
            inputs: list[Proposal | ActionReleased] = []
            for event in batch:
                payload = event.payload
                if isinstance(payload, RemediationProposed):
                    first.setdefault(payload.proposal.id, event)
                    inputs.append(payload.proposal)
                elif isinstance(payload, ActionReleased):
                    inputs.append(payload)
            done = decide_batch(self._current(namespace), inputs, policy, now, self.memory)
            COORDINATION_REDECIDED.inc(len(done.skipped))
            for decision in done.decisions:
                event = first[decision.proposal.id]
                seconds = max((now - event.envelope.time).total_seconds(), 0.0)
                self._decided[event.envelope.id] = _Decided(decision, seconds)
            self._pending[namespace] = done.state

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        payload = event.payload
        if isinstance(payload, _INPUTS):
            self._partition_of[payload.namespace] = origin.partition
        done = self._decided.get(event.envelope.id)
        if done is None:
            return []
        proposal = done.decision.proposal
        out = event.caused(
            DecisionMade(namespace=proposal.namespace, decision=done.decision,
                         resolution_seconds=round(done.seconds, 6)),
            source="pipeline/arbitrate",
            subject=proposal.target,
            incidentid=proposal.incident_id,
            workflowid=proposal.workflow_id,
        )
        if self.journal.enabled:
            self._note(done.decision)
        return [Output.event(self.decisions_topic, out)]

    def _note(self, decision: Decision) -> None:
        """One INFO line per decision: its outcome, the action and target, and why (each reason's code and text)."""
        p = decision.proposal
        reasons = "; ".join(f"{r.code.value}: {r.message}" if r.message else r.code.value for r in decision.reasons)
        self.journal.note("decision made", outcome=decision.outcome, action=p.action, namespace=p.namespace,
                          target=p.target, source=p.source, proposal_id=p.id, incident_id=p.incident_id,
                          reasons=reasons)

    def changelog(self) -> list[Output]:
        return [
            Output.event(self.changelog_topic, Event.of(state, source="pipeline/arbitrate"),
                         partition=self._partition_of.get(namespace))
            for namespace, state in self._pending.items()
        ]

    def commit(self) -> None:
        self._state.update(self._pending)
        self._pending.clear()
        actions: Counter[tuple[str, str, str]] = Counter()
        conflicts: Counter[tuple[str, str]] = Counter()
        seconds: list[float] = []
        for done in self._decided.values():
            decision = done.decision
            p = decision.proposal
            actions[p.source, p.action, decision.outcome] += 1
            seconds.append(done.seconds)
            for reason in decision.reasons:
                if reason.code is _LOST or reason.code is _DUPLICATE:
                    conflicts[reason.conflict or "target", reason.rule or ""] += 1
        for (source, action, outcome), count in actions.items():  # one increment per label set and batch
            COORDINATION_ACTIONS.labels(source, action, outcome).inc(count)
        for (conflict, rule), count in conflicts.items():
            COORDINATION_CONFLICTS.labels(conflict, rule).inc(count)
        observe_many(COORDINATION_RESOLUTION_SECONDS, seconds)
        self._decided.clear()
        COORDINATION_ACTIVE.set(self.active_actions)

    def rollback(self) -> None:
        self._pending.clear()
        self._decided.clear()

    async def restore(self, reader: ChangelogReader, partitions: list[int]) -> None:
        for record, event in await reader.read(self.changelog_topic, partitions):
            if event is not None and isinstance(event.payload, ArbitrationState):
                self._state[event.payload.namespace] = event.payload
                self._partition_of[event.payload.namespace] = record.partition
        COORDINATION_ACTIVE.set(self.active_actions)

    def release(self, partitions: list[int]) -> None:
        gone = {ns for ns, p in self._partition_of.items() if p in partitions}
        for namespace in gone:
            self._state.pop(namespace, None)
            self._partition_of.pop(namespace, None)
        COORDINATION_ACTIVE.set(self.active_actions)

    @property
    def active_actions(self) -> int:
        return sum(len(s.state.active) for s in self._state.values())

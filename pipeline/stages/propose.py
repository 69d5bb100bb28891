"""Propose stage: incidents and scores -> remediation proposals, re-keyed by the target's namespace.

Incidents give deterministic proposals from the rules file (on open: every matching rule; on update: the
rules matching the signals that just changed); anomaly scores from a model give AI proposals; a resolved
incident releases the action started for it. Stateless: the arbitrate stage decides each proposal once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.bus.producer import Output
from pipeline.bus.stage import Origin, Stage
from pipeline.config import Settings
from pipeline.domain.arbitration import Rules
from pipeline.domain.remediation_flow import proposed_by
from pipeline.events import ActionReleased, Event, Payload, RemediationProposed


class ProposeStage(Stage):
    """Consumes `incidents` and `scores`, produces `remediation` (keyed by namespace)."""

    name = "propose"
    inputs = ("incidents", "scores")

    def __init__(self, settings: Settings, rules: Rules) -> None:
        super().__init__(settings)
        self.topic = settings.topic("remediation")
        self.rules = rules

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        payloads = proposed_by(event.payload, self.rules, datetime.now(UTC))
        if payloads and self.journal.enabled:
            for payload in payloads:
                if isinstance(payload, RemediationProposed):
                    p = payload.proposal
                    self.journal.note("proposal made", proposal_id=p.id, action=p.action, target=p.target,
                                      source=p.source, rule=p.rule_id, priority=p.priority, confidence=p.confidence,
                                      incident_id=p.incident_id)
        return [
            Output.event(self.topic, event.caused(payload, source="pipeline/propose", index=index,
                                                  subject=_target_of(payload),
                                                  incidentid=event.envelope.incidentid))
            for index, payload in enumerate(payloads)
        ]


def _target_of(payload: Payload) -> str | None:
    if isinstance(payload, RemediationProposed):
        return payload.proposal.target
    return payload.target if isinstance(payload, ActionReleased) else None

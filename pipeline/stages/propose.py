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
from pipeline.domain.arbitration import Rules, Target, propose_from_incident, propose_from_score
from pipeline.events import (
    ActionReleased,
    Event,
    IncidentOpened,
    IncidentResolved,
    IncidentUpdated,
    Payload,
    RemediationProposed,
    ScoreComputed,
)


class ProposeStage(Stage):
    """Consumes `incidents` and `scores`, produces `remediation` (keyed by namespace)."""

    name = "propose"
    inputs = ("incidents", "scores")

    def __init__(self, settings: Settings, rules: Rules) -> None:
        super().__init__(settings)
        self.topic = settings.topic("remediation")
        self.rules = rules

    def handle(self, event: Event, origin: Origin) -> list[Output]:
        payloads: list[Payload] = []
        change = event.payload
        if isinstance(change, IncidentOpened):
            payloads = [RemediationProposed(namespace=p.namespace, proposal=p)
                        for p in propose_from_incident(change.incident, self.rules)]
        elif isinstance(change, IncidentUpdated) and change.signal_id:
            changed = [s.name for s in change.incident.signals.values()
                       if s.last_signal_id == change.signal_id and s.status == "firing"]
            payloads = [RemediationProposed(namespace=p.namespace, proposal=p)
                        for p in propose_from_incident(change.incident, self.rules, names=changed)]
        elif isinstance(change, IncidentResolved) and change.incident.resource:
            target = Target.of_incident(change.incident)
            payloads = [ActionReleased(namespace=target.namespace, target=target.key, incident_id=target.incident_id,
                                       reason="incident_resolved",
                                       # when the pipeline learnt of it (resolved_at is the alert's endsAt,
                                       # which after a backlog would start the cooldown in the past)
                                       released_at=change.incident.updated_at or datetime.now(UTC))]
        elif isinstance(change, ScoreComputed) and change.verdict == "anomaly" and change.model:
            scored = Target.of_score(change)
            if scored is not None:
                payloads = [RemediationProposed(namespace=p.namespace, proposal=p)
                            for p in propose_from_score(change, scored, self.rules)]
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

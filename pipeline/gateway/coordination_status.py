"""The coordination status bodies: `GET /api/v1/status` (the Python engine's fields and ours) and
`GET /api/v1/cluster/status` (what the MCP server reads), both read from the remediation view."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from pipeline.bus.control import ControlState
from pipeline.config import Settings
from pipeline.domain.arbitration import Policy
from pipeline.gateway.remediation_view import LAYERS, RemediationView, go_duration

_ACTION_STATUSES = ("pending", "approved", "awaiting_approval", "running", "completed", "failed", "rejected",
                    "superseded", "skipped", "cancelled", "expired")


class CoordinationStatus:
    """The engine's state as the status routes show it: kill switch, pause, queue, actions and conflicts."""

    def __init__(self, settings: Settings, view: RemediationView, control: ControlState, policy: Policy,
                 started: float) -> None:
        self.settings, self.view, self.control, self.policy, self.started = settings, view, control, policy, started

    @property
    def killed(self) -> bool:
        return self.policy.kill_switch or self.control.killed

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def today(self, now: datetime) -> tuple[int, int]:
        """Conflicts detected and resolved since midnight UTC (the Python engine's daily counters)."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        detected = sum(1 for e in self.view.entries.values()
                       if e.decision is not None and e.decision.decided_at >= midnight
                       and any(r.code in ("lost_conflict", "duplicate") for r in e.decision.reasons))
        return detected, detected

    def _finished_by_source(self) -> dict[str, int]:
        return {src: sum(1 for e in self.view.entries.values() if e.proposal.source == src and e.workflow is not None
                         and e.workflow.status in ("completed", "failed"))
                for src in ("deterministic", "ai", "manual")}

    def engine(self, now: datetime) -> dict[str, Any]:
        """`GET /api/v1/status`."""
        c = self.view.counts(now)
        s = c["statuses"]
        conflicts = sum(c["conflicts"].values())
        killed, control, policy = self.killed, self.control, self.policy
        detected, resolved = self.today(now)
        by_source = self._finished_by_source()
        return {
            "status": "running",
            "timestamp": now.isoformat(),
            # the Python engine's fields
            "engine_status": "stopped" if killed else ("paused" if control.paused else "running"),
            "active_actions": s.get("running", 0),
            "queued_actions": s.get("pending", 0) + s.get("awaiting_approval", 0),
            "conflicts_detected_today": detected,
            "conflicts_resolved_today": resolved,
            "layers": {
                **{name: c["layers"].get(name, {}) for name in LAYERS},
                "deterministic": {"status": "stopped" if killed else "active",
                                  "actions_processed": by_source["deterministic"] + by_source["manual"]},
                "ai_driven": {"status": "stopped" if killed else "active", "actions_processed": by_source["ai"]},
            },
            # ours
            "engine": {"running": not killed, "mode": "event-log", "version": self.settings.version,
                       "uptime_seconds": self.uptime(), "kill_switch": killed, "paused": control.paused,
                       "remediation_mode": self.settings.remediation_mode},
            "queue": {"pending": s.get("pending", 0), "awaiting_approval": s.get("awaiting_approval", 0),
                      "active": s.get("running", 0)},
            "actions": {"total": c["total"], **{k: s.get(k, 0) for k in _ACTION_STATUSES},
                        "by_source": c["by_source"]},
            "conflicts": {"total": conflicts, "resolved": conflicts, "by_kind": c["conflicts"]},
            "controls": control.view(),
            "policy": {"confidence_threshold": policy.confidence_threshold, "cooldown_seconds": policy.cooldown_seconds,
                       "namespace_budget": policy.namespace_budget,
                       "protected_namespaces": sorted(policy.protected_namespaces), "kill_switch": killed,
                       "approval": [r.model_dump(mode="json", exclude_defaults=True) for r in policy.approval]},
        }

    def cluster(self, now: datetime, workers_count: int) -> dict[str, Any]:
        """`GET /api/v1/cluster/status`, given how many remediate workers there are."""
        c = self.view.counts(now)
        s = c["statuses"]
        conflicts = sum(c["conflicts"].values())
        pending = s.get("pending", 0) + s.get("awaiting_approval", 0)
        killed = self.killed
        reasons = [why for why, yes in (("kill switch on: every proposal is rejected", killed),
                                        ("paused: no workflow starts", self.control.paused),
                                        ("no remediate worker: approved actions wait", workers_count == 0)) if yes]
        up = self.uptime()
        return {
            "status": "degraded" if reasons else "healthy",
            "reasons": reasons,
            "timestamp": now.isoformat(),
            "actions": {"total": c["total"], "pending": pending, "running": s.get("running", 0),
                        "completed": s.get("completed", 0), "failed": s.get("failed", 0),
                        "rejected": s.get("rejected", 0) + s.get("superseded", 0), "skipped": s.get("skipped", 0)},
            "conflicts": {"total": conflicts, "resolved": conflicts},
            "engine": {"running": not killed, "queue_length": pending, "workers_count": workers_count,
                       "uptime": go_duration(int(up)), "uptime_seconds": up},
        }

"""`GET /api/v1/decisions` and `GET /api/v1/workflows`: the arbitration decisions and the workflows of the
remediation read model, filtered and paged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, get_args

from pipeline.domain.incidents import DEFAULT_LIMIT, MAX_LIMIT, InvalidQuery, int_param, no_filter
from pipeline.domain.remediation_view import Entry
from pipeline.domain.times import parse_rfc3339
from pipeline.events import Decision, Outcome

OUTCOMES: tuple[str, ...] = get_args(Outcome)
# what a workflow's `status` can be (`remediation_view.Entry.status`): the remediator's, or the decision's before it
WORKFLOW_STATUSES = ("pending", "awaiting_approval", "running", "completed", "failed", "rejected", "superseded",
                     "skipped", "cancelled")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DecisionQuery:
    """Filters (None: none): the proposal's namespace, the outcome, decided at or after `since`."""

    namespace: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, namespace: str | None, outcome: str | None, since: str | None, limit: str | None,
              offset: str | None) -> DecisionQuery:
        """Validate raw query strings; raise InvalidQuery naming the parameter."""
        wanted = no_filter(outcome)
        if wanted is not None and wanted.lower() not in OUTCOMES:
            raise InvalidQuery("outcome", f"outcome must be one of: all, {', '.join(OUTCOMES)}")
        when = no_filter(since)
        try:
            start = parse_rfc3339(when) if when is not None else None
        except ValueError as exc:
            raise InvalidQuery("since", f"since: {exc}") from None
        return cls(namespace=no_filter(namespace), outcome=wanted.lower() if wanted else None, since=start,
                   limit=int_param("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT),
                   offset=int_param("offset", offset, 0, 0, 10**9))

    def matches(self, decision: Decision) -> bool:
        return ((self.namespace is None or decision.proposal.namespace == self.namespace)
                and (self.outcome is None or decision.outcome == self.outcome)
                and (self.since is None or decision.decided_at >= self.since))

    def select(self, items: Iterable[T], decision_of: Callable[[T], Decision]) -> tuple[int, list[T]]:
        """How many items match, and the page of them, newest decision first (ties by proposal id)."""
        matching: Sequence[T] = sorted(
            (i for i in items if self.matches(decision_of(i))),
            key=lambda i: (decision_of(i).decided_at, decision_of(i).proposal.id), reverse=True)
        return len(matching), list(matching[self.offset:self.offset + self.limit])


@dataclass(frozen=True, slots=True)
class WorkflowQuery:
    """Filters (None: none): the proposal's namespace, the workflow's status."""

    namespace: str | None = None
    status: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, namespace: str | None, status: str | None, limit: str | None,
              offset: str | None) -> WorkflowQuery:
        """Validate raw query strings; raise InvalidQuery naming the parameter."""
        wanted = no_filter(status)
        if wanted is not None and wanted.lower() not in WORKFLOW_STATUSES:
            raise InvalidQuery("status", f"status must be one of: all, {', '.join(WORKFLOW_STATUSES)}")
        return cls(namespace=no_filter(namespace), status=wanted.lower() if wanted else None,
                   limit=int_param("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT),
                   offset=int_param("offset", offset, 0, 0, 10**9))

    def select(self, items: Iterable[tuple[str, Entry]]) -> tuple[int, list[tuple[str, Entry]]]:
        """How many (workflow id, entry) pairs match, and the page of them, newest submitted first."""
        matching = sorted(
            ((workflow_id, e) for workflow_id, e in items
             if (self.namespace is None or e.proposal.namespace == self.namespace)
             and (self.status is None or e.status == self.status)),
            key=lambda item: (item[1].order, item[0]), reverse=True)
        return len(matching), matching[self.offset:self.offset + self.limit]

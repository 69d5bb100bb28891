"""`GET /api/v1/decisions`: the arbitration decisions of the remediation read model, filtered and paged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, get_args

from pipeline.domain.incidents import DEFAULT_LIMIT, MAX_LIMIT, InvalidQuery, int_param, no_filter
from pipeline.domain.times import parse_rfc3339
from pipeline.events import Decision, Outcome

OUTCOMES: tuple[str, ...] = get_args(Outcome)
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

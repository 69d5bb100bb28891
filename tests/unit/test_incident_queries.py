"""Incident queries as the MCP server sends them: `all`, aliases, paging, the summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.domain.incident_index import IncidentIndex
from pipeline.domain.incidents import (
    IncidentQuery,
    InvalidQuery,
    new_manual_incident,
    to_api,
)
from pipeline.events import IncidentRow, IncidentStatus, Severity

T0 = datetime(2026, 11, 22, tzinfo=UTC)


def make(n: int, severity: Severity, status: IncidentStatus = IncidentStatus.ACTIVE, ns: str = "shop"):
    incident = new_manual_incident(
        incident_id=f"inc-{n}",
        title=f"i{n}", description="d", severity=severity, now=T0 + timedelta(minutes=n), labels={"namespace": ns}
    )
    return incident.model_copy(update={"status": status})


INCIDENTS = [
    IncidentRow.of(make(0, Severity.LOW)),
    IncidentRow.of(make(1, Severity.HIGH, IncidentStatus.COMPLETED)),
    IncidentRow.of(make(2, Severity.CRITICAL, ns="payments")),
    IncidentRow.of(make(3, Severity.HIGH, IncidentStatus.FAILED)),
]


def listed(query: IncidentQuery) -> tuple[int, list[IncidentRow], dict[str, object]]:
    index = IncidentIndex()
    for row in INCIDENTS:
        index.put(row)
    return index.query(query.namespace, query.severity, query.status, query.offset, query.limit)


def test_all_and_empty_mean_no_filter() -> None:
    for value in ("all", "", None, "ALL"):
        query = IncidentQuery.parse(None, value, value, None, None)
        total, page, _ = listed(query)
        assert total == len(page) == 4


def test_filters_combine_and_results_are_newest_first() -> None:
    _, matching, _ = listed(IncidentQuery.parse("shop", "high", None, None, None))
    assert [i.id for i in matching] == ["inc-3", "inc-1"]
    _, matching, _ = listed(IncidentQuery.parse(None, None, "resolved", None, None))
    assert [i.id for i in matching] == ["inc-1"]


def test_page_and_summary_count_all_matches() -> None:
    total, page, s = listed(IncidentQuery.parse(None, None, None, "2", "1"))
    assert [i.id for i in page] == ["inc-2", "inc-1"] and total == 4
    assert (s["total"], s["active"], s["completed"], s["failed"]) == (4, 2, 1, 1)
    assert s["by_severity"] == {"low": 1, "medium": 0, "high": 2, "critical": 1}


@pytest.mark.parametrize(
    ("args", "field"),
    [((None, "urgent", None, None, None), "severity"), ((None, None, "asleep", None, None), "status"),
     ((None, None, None, "0", None), "limit"), ((None, None, None, "1001", None), "limit"),
     ((None, None, None, None, "-1"), "offset"), ((None, None, None, "ten", None), "limit")],
)
def test_invalid_values_name_their_parameter(args: tuple, field: str) -> None:
    with pytest.raises(InvalidQuery) as error:
        IncidentQuery.parse(*args)
    assert error.value.field == field


def test_api_shape_has_the_fields_the_mcp_server_decodes() -> None:
    view = to_api(make(9, Severity.CRITICAL))
    assert isinstance(view["priority"], int) and view["priority"] == 1
    for field in ("id", "title", "description", "severity", "status", "target", "action_type", "source",
                  "confidence", "parameters", "created_at", "started_at", "completed_at", "duration_seconds", "tags"):
        assert field in view
    assert view["created_at"].endswith("Z")

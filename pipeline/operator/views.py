"""What each operator command shows of the API's JSON, pure: the columns of the lists, the fields of one incident or
workflow, an incident's timeline and the pipeline's status. Every function takes the route's JSON (and `now`, for
ages) and returns lines; nothing here does I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.domain.timeline import summary
from pipeline.events import EVENT_TYPES
from pipeline.operator.tables import NONE, Column, Row, age, cut, details, field, stamp, table, text, when

# an incident's timeline topics, as `pipeline replay` names them (docs/api.md, GET /api/v1/incidents/{id}/timeline)
TIMELINE_TOPICS = ("signals", "incidents", "features", "scores", "remediation", "decisions", "workflows", "control")
TIMELINE_SHOWN = 20  # `incidents show`: a longer timeline shows its first and last halves of this

Json = Mapping[str, Any]


def _aged(name: str, now: datetime, title: str = "AGE") -> Column:
    return Column(title, lambda row: age(row.get(name), now), right=True)


def _remediation(row: Row) -> str:
    """What is being done about an incident: its remediation status, and the action when one is chosen."""
    status, action = text(row.get("remediation_status")), row.get("action_type")
    return status if action in (None, "", "none", status) else f"{status}: {action}"


def _alerts(row: Row) -> str:
    return f"{row.get('alerts_firing', 0)}/{row.get('alerts_total', 0)}"


def _target(row: Row) -> str:
    kind, name = row.get("resource_kind"), row.get("resource_name")
    return "/".join(text(v) for v in (row.get("namespace"), kind, name) if v) or NONE


def _workflow_note(row: Row) -> str:
    """Why a workflow is where it is: its reason, error, what it waits for, or the gateway's message."""
    for key in ("reason", "error_message", "waiting_for", "message"):
        if row.get(key):
            return text(row[key])
    return NONE


def incident_columns(now: datetime) -> list[Column]:
    return [
        field("id", max=20),
        _aged("created_at", now),
        field("severity"),
        field("status"),
        field("namespace", max=24),
        field("resource", max=40, flexible=True),
        field("issue_type", max=28, title="ISSUE"),
        Column("ALERTS", _alerts, right=True),
        Column("REMEDIATION", _remediation, max=36),
        field("title", flexible=True),
    ]


def decision_columns(now: datetime) -> list[Column]:
    return [
        _aged("decided_at", now),
        field("outcome"),
        field("action", max=28),
        field("target", max=48, flexible=True),
        field("source"),
        field("status"),
        field("workflow_id", max=20, title="WORKFLOW"),
        field("incident_id", max=20, title="INCIDENT"),
        Column("REASONS", lambda row: ",".join(r.get("code", "?") for r in row.get("reasons") or []) or NONE,
               flexible=True),
    ]


def workflow_columns(now: datetime) -> list[Column]:
    return [
        field("workflow_id", max=20, title="WORKFLOW"),
        _aged("created_at", now),
        field("status"),
        field("action", max=28),
        Column("TARGET", _target, max=48, flexible=True),
        field("deployment_method", title="METHOD"),
        field("dry_run", title="DRY RUN"),
        field("incident_id", max=20, title="INCIDENT"),
        Column("NOTE", _workflow_note, flexible=True),
    ]


def page_note(body: Json, noun: str) -> str:
    """`3 of 12 incidents (from 0)` for a list answer's `count`, `total` and `offset`."""
    count, total, offset = body.get("count", 0), body.get("total", 0), body.get("offset", 0)
    if not total:
        return f"no {noun}"
    shown = f"{offset + 1}-{offset + count}" if count else "none"
    return f"{shown} of {total} {noun}" + ("" if count >= total else "; --offset/--limit page through them")


def incident_summary_note(body: Json) -> str:
    """The list's `summary`: counts by status and severity of every matching incident."""
    s = body.get("summary") or {}
    statuses = ", ".join(f"{k} {s[k]}" for k in ("active", "running", "completed", "failed", "cancelled") if s.get(k))
    severities = ", ".join(f"{k} {v}" for k, v in (s.get("by_severity") or {}).items() if v)
    return "; ".join(part for part in (statuses, severities) if part)


def incident(item: Json, now: datetime, width: int | None = None) -> list[str]:
    """One incident: what, where, when, its alerts and what is being done about it."""
    lines = details([
        ("id", item.get("id")),
        ("title", item.get("title")),
        ("status", item.get("status")),
        ("severity", f"{text(item.get('severity'))} (priority {text(item.get('priority'))})"),
        ("namespace", item.get("namespace")),
        ("resource", item.get("resource")),
        ("issue", item.get("issue_type")),
        ("source", item.get("source")),
        ("confidence", item.get("confidence")),
        ("created", when(item.get("created_at"), now)),
        ("updated", when(item.get("updated_at"), now)),
        ("alerts", f"{_alerts(item)} firing, {item.get('alerts_listed', 0)} listed, "
                   f"{item.get('signal_count', 0)} signal(s)"
                   + (f", {item['truncated_alerts']} cut by Alertmanager" if item.get("truncated_alerts") else "")),
        ("remediation", _remediation(item)),
    ], width, optional=[
        ("received", when(item.get("received_at"), now)),
        ("resolved", when(item.get("resolved_at"), now)),
        ("duration", item.get("duration_seconds") is not None and f"{item['duration_seconds']:g} s" or None),
        ("workflow", item.get("workflow_id")
         and f"{item['workflow_id']}" + (" (dry run)" if item.get("remediation_dry_run") else "")),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted((item.get("labels") or {}).items()))),
        ("description", item.get("description")),
    ])
    alerts = item.get("alerts") or []
    if alerts:
        lines += ["", "Alerts"]
        lines += table(alerts, [
            field("name", max=40),
            field("status"),
            field("severity"),
            Column("STARTED", lambda a: age(a.get("starts_at"), now), right=True),
            Column("ENDED", lambda a: age(a.get("ends_at"), now), right=True),
            field("summary", flexible=True),
        ], width)
    return lines


def _topic(name: str) -> str:
    """A topic's logical name (`t1a2b.signals` → `signals`): the timeline's topics, whatever the prefix."""
    return next((t for t in TIMELINE_TOPICS if name == t or name.endswith("." + t)), name)


def _kind(event: Json) -> str:
    return str(event.get("type", "?")).removeprefix("pipeline.").removesuffix(".v1")


def event_text(record: Json) -> str:
    """What one timeline record says (the same words as `pipeline replay`), or why it is not an event."""
    event = record.get("event")
    if not isinstance(event, Mapping):
        return f"not an event: {text(record.get('invalid'))}"
    model = EVENT_TYPES.get(str(event.get("type")))
    if model is None:
        return _kind(event)
    try:
        return summary(model.model_validate(event.get("data")))
    except ValueError:  # a payload of another version than this CLI's: name the type, say nothing false
        return _kind(event)


def timeline_rows(records: Sequence[Json]) -> list[dict[str, str]]:
    rows = []
    for record in records:
        position, event = record.get("position") or {}, record.get("event") or {}
        rows.append({"time": stamp(event.get("time") or position.get("timestamp")),
                     "topic": f"{_topic(str(position.get('topic', '?')))}[{position.get('partition')}]"
                              f"@{position.get('offset')}",
                     "type": _kind(event) if event else "-", "says": event_text(record),
                     "id": text(event.get("id"))[:8]})
    return rows


TIMELINE_COLUMNS = [field("time"), field("topic"), field("type"), field("says", flexible=True, title="WHAT"),
                    field("id", title="EVENT")]


def timeline(body: Json, width: int | None = None) -> list[str]:
    """Every event of an incident's timeline (`GET /api/v1/incidents/{id}/timeline`), one line each."""
    return table(timeline_rows(body.get("events") or []), TIMELINE_COLUMNS, width)


def timeline_summary(body: Json, width: int | None = None, shown: int = TIMELINE_SHOWN) -> list[str]:
    """`incidents show`: how many events on which topics, and the events themselves -- the first and the last
    `shown // 2` of a longer timeline, with how many are left out between them."""
    records = list(body.get("events") or [])
    per_topic = Counter(_topic(str((r.get("position") or {}).get("topic", "?"))) for r in records)
    counts = ", ".join(f"{per_topic[t]} {t}" for t in (*TIMELINE_TOPICS, *sorted(set(per_topic) - set(TIMELINE_TOPICS)))
                       if per_topic[t])
    window = body.get("window") or {}
    head = [f"Timeline: {len(records)} event(s) read from {text(window.get('from'))}"
            + (f" ({counts})" if counts else "")]
    if not records:
        return head
    rows = timeline_rows(records)
    if len(rows) <= shown:
        return [*head, *table(rows, TIMELINE_COLUMNS, width)]
    half = shown // 2
    lines = table([*rows[:half], *rows[-half:]], TIMELINE_COLUMNS, width)
    left_out = len(rows) - 2 * half
    gap = f"  … {left_out} more event(s): pipeline incidents timeline {text(body.get('incident_id'))}"
    return [*head, *lines[: half + 1], gap, *lines[half + 1:]]


def workflow(item: Json, now: datetime, width: int | None = None) -> list[str]:
    """One workflow: what it does to which target and why, its decision, steps and checkpoints."""
    decision = item.get("decision") or {}
    lines = details([
        ("workflow", item.get("workflow_id") or item.get("id")),
        ("status", item.get("status")),
        ("action", item.get("action")),
        ("target", _target(item)),
        ("incident", item.get("incident_id")),
        ("issue", item.get("issue_type")),
        ("dry run", item.get("dry_run")),
        ("deployment method", item.get("deployment_method")),
        ("created", when(item.get("created_at"), now)),
    ], width, optional=[
        ("mode", item.get("mode")),
        ("remediator", item.get("remediator")),
        ("started", when(item.get("started_at"), now)),
        ("completed", when(item.get("completed_at"), now)),
        ("duration", item.get("duration")),
        ("waiting for", item.get("waiting_for")),
        ("approved by", item.get("approved_by")),
        ("reason", item.get("reason")),
        ("error", item.get("error_message")),
        ("message", item.get("message")),
    ])
    lines += ["", "Decision"]
    if not decision:
        lines.append("  not decided yet")
    else:
        lines += details([
            ("outcome", decision.get("outcome")),
            ("decided", when(decision.get("decided_at"), now)),
            ("proposal", decision.get("proposal_id")),
            ("source", decision.get("source")),
        ], width, optional=[
            ("rule", decision.get("rule_id")),
            ("priority", decision.get("priority")),
            ("confidence", decision.get("confidence")),
        ])
        lines += [cut(f"  {r.get('code', '?')}: {text(r.get('message'))}", width or 10**6)
                  for r in decision.get("reasons") or []]
    steps = item.get("steps") or []
    if steps:
        lines += ["", "Steps"]
        lines += table(steps, [
            field("order", right=True, title="#"),
            field("layer"),
            field("action", max=28),
            field("target", max=48),
            field("status"),
            Column("STARTED", lambda s: age(s.get("started_at"), now), right=True),
            Column("NOTE", lambda s: text(s.get("error_message") or s.get("description")), flexible=True),
        ], width)
    checkpoints = item.get("checkpoints") or []
    if checkpoints:
        lines += ["", "Checkpoints"]
        lines += table(checkpoints, [
            field("after_step", right=True, title="AFTER"),
            Column("CHECKS", lambda c: ",".join(c.get("checks") or []) or NONE, max=40),
            field("status"),
            Column("CHECKED", lambda c: age(c.get("checked_at"), now), right=True),
            field("message", flexible=True),
        ], width)
    return lines


def _switch(state: Json | None) -> str:
    if not state or not state.get("enabled"):
        return "off"
    by = f" by {state['by']}" if state.get("by") else ""
    reason = f": {state['reason']}" if state.get("reason") else ""
    return f"ON{by}{reason}"


def _dependency(dep: Json) -> str:
    return f"{text(dep.get('status'))}: {text(dep.get('message'))}"


def status(health: Json | None, engine: Json | None, cluster: Json | None, models: Iterable[Json],
           errors: Mapping[str, str], width: int | None = None) -> list[str]:
    """`pipeline status`: the gateway's health, its dependencies and parts, the remediation engine and the
    models. A route that did not answer is named with its error (`errors`: route → line)."""
    pairs: list[tuple[str, Any]] = []
    if health is not None:
        deps, parts = health.get("dependencies") or {}, health.get("components") or {}
        pairs += [("gateway", f"{text(health.get('status'))}, version {text(health.get('version'))}, "
                              f"up {text(health.get('uptime_seconds'))} s")]
        pairs += [(f"  {name}", _dependency(dep)) for name, dep in deps.items() if name not in ("kserve",)]
        projection = parts.get("projection")
        if projection:
            pairs.append(("  read model", f"{'ready' if projection.get('ready') else 'catching up'}, "
                                          f"{projection.get('incidents', 0)} incident(s)"))
        stages = parts.get("stages")
        if stages:
            stuck = ", ".join(f"{s['stage']} {s['topic']}/{s['partition']} for {s['held_seconds']:g} s"
                              for s in stages.get("stuck") or [])
            pairs.append(("  stages", f"{text(stages.get('status'))}: {', '.join(stages.get('running') or [])}"
                                      + (f"; stuck: {stuck}" if stuck else "")))
        if "ingest" in parts:
            pairs.append(("  ingest", f"{parts['ingest'].get('in_flight', 0)} request(s) in flight"))
        if parts.get("watch"):
            pairs.append(("  watch", text(parts["watch"].get("status") or parts["watch"])))
        remediation = parts.get("remediation") or {}
        pairs += [("kill switch", _switch(remediation.get("kill_switch"))),
                  ("pause", _switch(remediation.get("pause")))]
        for name, r in (remediation.get("remediators") or {}).items():
            cluster_note = "cluster" if r.get("cluster") else text(r.get("no_cluster") or "no cluster")
            denied = f", denied: {', '.join(map(str, r['denied']))}" if r.get("denied") else ""
            pairs.append((f"  remediator {name}", f"mode {text(r.get('mode'))}, {cluster_note}{denied}"))
    if engine is not None:
        e, q = engine.get("engine") or {}, engine.get("queue") or {}
        pairs += [("engine", f"{text(engine.get('engine_status'))}, remediation mode "
                             f"{text(e.get('remediation_mode'))}"),
                  ("  queue", f"{q.get('pending', 0)} pending, {q.get('awaiting_approval', 0)} awaiting approval, "
                              f"{q.get('active', 0)} running")]
        actions = engine.get("actions") or {}
        done = ", ".join(f"{actions[k]} {k}" for k in ("completed", "failed", "rejected", "skipped", "cancelled")
                         if actions.get(k))
        pairs.append(("  actions", f"{actions.get('total', 0)} in all" + (f" ({done})" if done else "")))
    if cluster is not None:
        e = cluster.get("engine") or {}
        reasons = "; ".join(map(str, cluster.get("reasons") or []))
        pairs.append(("  workers", f"{e.get('workers_count', 0)} remediate worker(s); cluster "
                                   f"{text(cluster.get('status'))}" + (f" ({reasons})" if reasons else "")))
    for m in models:  # GET /api/v1/models/{m}/health
        breaker = m.get("circuit_breaker")
        state = breaker.get("state") if isinstance(breaker, Mapping) else breaker
        pairs.append((f"model {text(m.get('model'))}", f"{text(m.get('status'))}"
                      + (f", circuit {state}" if state else "") + (f": {m['message']}" if m.get("message") else "")))
    pairs += [(route, f"unavailable: {line}") for route, line in errors.items()]
    return details(pairs, width)

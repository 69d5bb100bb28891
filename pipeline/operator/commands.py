"""`pipeline incidents | decisions | workflows | status`: the operator commands (their flags: `arguments`).

Each asks the gateway (`client.Gateway`) and prints a table (`views`) or, with `--json`, the route's body as the
gateway sent it. Exit status: 0 shown (an empty list is an answer), 1 the gateway could not answer as asked
(unreachable, 401, 404, 409, 5xx; one line on stderr saying which and what to do), 2 a request that does not make
sense (argparse, or the gateway's 400 naming the parameter).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

from pipeline.config import Settings, load_settings
from pipeline.operator import views
from pipeline.operator.client import FAILED, OK, USAGE, Gateway, GatewayError, Reply
from pipeline.operator.tables import table

HEALTH, MODELS = "/api/v1/health", "/api/v1/models"
STATUS_ROUTES = (HEALTH, "/api/v1/status", "/api/v1/cluster/status", MODELS)


def _terminal_width(out: TextIO) -> int | None:
    """The terminal's width when `out` is one; None (no cutting to fit) for a pipe or a file."""
    try:
        return shutil.get_terminal_size().columns if out.isatty() else None
    except (AttributeError, ValueError):
        return None


class Command:
    """One run of a command: the gateway, where to print, and when it is (for ages)."""

    def __init__(self, args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> None:
        self.args, self.out, self.err = args, out, err
        self.gateway = Gateway(settings, args.url)
        self.now = datetime.now(UTC)
        self.width = _terminal_width(out)

    def lines(self, lines: list[str]) -> None:
        self.out.write("".join(line + "\n" for line in lines))

    def raw(self, reply: Reply) -> None:
        """`--json`: the body exactly as the gateway sent it."""
        self.out.write(reply.text.rstrip("\n") + "\n")

    def note(self, line: str) -> None:
        """A summary (`3 of 3 incidents`) on stderr, so stdout holds only the table."""
        self.err.write(line + "\n")

    def listing(self, path: str, params: dict[str, Any], key: str, noun: str,
                columns: list[Any], extra: Callable[[Any], str] | None = None) -> int:
        reply = self.gateway.get(path, params)
        if self.args.json:
            self.raw(reply)
            return OK
        self.lines(table(reply.data.get(key) or [], columns, self.width))
        note = views.page_note(reply.data, noun)
        more = extra(reply.data) if extra else ""
        self.note(f"{note} ({more})" if more else note)
        return OK


def _incidents(cmd: Command) -> int:
    a = cmd.args
    if a.action == "list":
        return cmd.listing("/api/v1/incidents", {"namespace": a.namespace, "severity": a.severity,
                                                 "status": a.status, "limit": a.limit, "offset": a.offset},
                           "incidents", "incidents", views.incident_columns(cmd.now), views.incident_summary_note)
    path = f"/api/v1/incidents/{quote(a.id, safe='')}"
    if a.action == "timeline":
        reply = cmd.gateway.get(f"{path}/timeline", what=f"incident {a.id}")
        if a.json:
            cmd.raw(reply)
        else:
            cmd.lines(views.timeline(reply.data, cmd.width))
            cmd.note(f"{reply.data.get('count', 0)} event(s) from {reply.data.get('window', {}).get('from')}")
        return OK
    reply = cmd.gateway.get(path, what=f"incident {a.id}")
    if a.json:
        cmd.raw(reply)
        return OK
    cmd.lines(views.incident(reply.data, cmd.now, cmd.width))
    try:
        timeline = cmd.gateway.get(f"{path}/timeline", what=f"incident {a.id}")
    except GatewayError as exc:  # the incident is shown; its timeline needs the log, which may be away
        cmd.lines(["", "Timeline: not available (see stderr)"])
        cmd.err.write(f"pipeline incidents show: the timeline could not be read: {exc}\n")
        return FAILED
    cmd.lines(["", *views.timeline_summary(timeline.data, cmd.width)])
    return OK


def _decisions(cmd: Command) -> int:
    a = cmd.args
    since = a.since.isoformat().replace("+00:00", "Z") if a.since else None
    return cmd.listing("/api/v1/decisions", {"namespace": a.namespace, "outcome": a.outcome, "since": since,
                                             "limit": a.limit, "offset": a.offset},
                       "decisions", "decisions", views.decision_columns(cmd.now))


def _workflows(cmd: Command) -> int:
    a = cmd.args
    if a.action == "list":
        return cmd.listing("/api/v1/workflows", {"namespace": a.namespace, "status": a.status, "limit": a.limit,
                                                 "offset": a.offset},
                           "workflows", "workflows", views.workflow_columns(cmd.now))
    path = f"/api/v1/workflows/{quote(a.id, safe='')}"
    if a.action == "show":
        reply = cmd.gateway.get(path, what=f"workflow {a.id}")
        if a.json:
            cmd.raw(reply)
        else:
            cmd.lines(views.workflow(reply.data, cmd.now, cmd.width))
        return OK
    body = {k: v for k, v in (("by", a.by), ("reason", a.reason)) if v}
    reply = cmd.gateway.post(f"{path}/{a.action}", body, what=f"workflow {a.id}")
    if a.json:
        cmd.raw(reply)
    answer = reply.data
    if not answer.get("accepted"):
        cmd.err.write(f"pipeline workflows {a.action}: workflow {a.id} was already {answer.get('decision')} by "
                      f"{answer.get('by')}; this answer does not count\n")
        return FAILED
    if not a.json:
        cmd.lines([f"workflow {a.id} {answer.get('decision')} by {answer.get('by')} (status {answer.get('status')})"])
    return OK


def _status(cmd: Command) -> int:
    """Health, engine, workers and models; exit 1 when the gateway is unhealthy or a route did not answer."""
    answers = dict(zip(STATUS_ROUTES, cmd.gateway.get_all(STATUS_ROUTES, accept=(200, 503)), strict=True))
    health = answers[HEALTH]
    if isinstance(health, GatewayError) and all(isinstance(a, GatewayError) and a.status is None
                                                for a in answers.values()):
        raise health  # nothing answered: the gateway is away, and one line says where it was looked for
    models = answers[MODELS]
    if isinstance(models, GatewayError) and models.status == 404:
        del answers[MODELS]  # no KServe model registered: the route is not mounted
    names = models.data.get("models", []) if isinstance(models, Reply) and models.status == 200 else []
    model_routes = [f"/api/v1/models/{quote(str(n), safe='')}/health" for n in names]
    answers.update(zip(model_routes, cmd.gateway.get_all(model_routes), strict=True))
    shown = {route: a for route, a in answers.items() if isinstance(a, Reply)}
    failed = {route: str(a) for route, a in answers.items() if isinstance(a, GatewayError)}
    if cmd.args.json:
        cmd.out.write(json.dumps({route: a.data for route, a in shown.items()}, indent=2) + "\n")
        for route, line in failed.items():
            cmd.err.write(f"pipeline status: {route}: {line}\n")
    else:
        # a 503 body is the answer of the health route (what is unhealthy); of another route, why it has none
        usable = {route: a.data for route, a in shown.items() if a.status == 200 or route == HEALTH}
        refused = {route: f"{a.status} {a.data.get('code', '')}: {a.data.get('error', '')}"
                   for route, a in shown.items() if route not in usable}
        cmd.lines([f"gateway {cmd.gateway.url}",
                   *views.status(usable.get(HEALTH), usable.get("/api/v1/status"),
                                 usable.get("/api/v1/cluster/status"),
                                 [usable[r] for r in model_routes if r in usable], {**refused, **failed}, cmd.width)])
    return OK if isinstance(health, Reply) and health.status == 200 and not failed else FAILED


COMMANDS: dict[str, tuple[Callable[[Command], int], tuple[str, ...], tuple[str, ...]]] = {
    # command: (what runs it, the actions that take an ID, the flags that go with `list` only)
    "incidents": (_incidents, ("show", "timeline"), ("namespace", "severity", "status", "limit", "offset")),
    "decisions": (_decisions, (), ()),
    "workflows": (_workflows, ("show", "approve", "reject"), ("namespace", "status", "limit", "offset")),
    "status": (_status, (), ()),
}


def main(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run `args.command`: arguments checked, settings read, a GatewayError as one line and its exit status."""
    command, needs_id, list_only = COMMANDS[args.command]
    name = f"pipeline {args.command}" + (f" {args.action}" if args.command != "status" else "")
    wrong = _misuse(args, needs_id, list_only)
    if wrong:
        err.write(f"{name}: {wrong}\n")
        return USAGE
    try:
        return command(Command(args, load_settings(), out, err))
    except GatewayError as exc:
        err.write(f"{name}: {exc}\n")
        return exc.code
    except BrokenPipeError:  # `pipeline incidents | head`: the reader has seen enough
        return OK


def _misuse(args: argparse.Namespace, needs_id: tuple[str, ...], list_only: tuple[str, ...]) -> str | None:
    """What is wrong with the arguments' combination, None when nothing."""
    if args.command == "status":
        return None
    given_id = getattr(args, "id", None)
    if args.action in needs_id and not given_id:
        return f"{args.action} needs an ID"
    if args.action not in needs_id and given_id:
        return f"{args.action} takes no ID (got {given_id!r})"
    if args.action != "list":
        extra = [f"--{name}" for name in list_only if getattr(args, name, None) is not None]
        if extra:
            return f"{', '.join(extra)} go(es) with list, not {args.action}"
    return None

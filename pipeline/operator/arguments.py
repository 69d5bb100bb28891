"""The flags of `pipeline incidents | decisions | workflows | status`, apart from the commands themselves
(`commands`) so that building the CLI's parser imports no HTTP client."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.domain.times import parse_when

INCIDENT_STATUSES = "active|running|completed|failed|cancelled (resolved = completed, open = active)|all"


def run(args: argparse.Namespace) -> int:
    """The command's entry: its module is imported only when an operator command runs."""
    from pipeline.operator.commands import main

    return main(args)


def _since(text: str) -> datetime:
    try:
        return parse_when(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--since: {exc}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the gateway's base URL (default: $PIPELINE_URL, else http://127.0.0.1:8080); "
                                      "API_TOKEN, when set, is sent as its bearer token")
    parser.add_argument("--json", action="store_true", help="print the route's JSON as the gateway sent it")


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="at most this many rows (the gateway's default 100, at most 1000)")
    parser.add_argument("--offset", type=int, help="skip this many rows (newest first)")


EPILOG = ("exit status: 0 shown, 1 the gateway could not answer (unreachable, 401, 404, 5xx: one line on stderr), "
          "2 a bad argument. Tables go to stdout, their `N of M` summary to stderr.")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `incidents`, `decisions`, `workflows` and `status` on the CLI's subparsers."""
    incidents = sub.add_parser("incidents", help="incidents from the gateway: a table, one with its timeline",
                               epilog=EPILOG)
    incidents.add_argument("action", nargs="?", choices=["list", "show", "timeline"], default="list",
                           help="list (default); show ID: the incident and a summary of its timeline; timeline ID: "
                                "every event of it, in causal order")
    incidents.add_argument("id", nargs="?", help="the incident's id (show, timeline)")
    incidents.add_argument("--namespace", help="list: only this namespace's (or target's) incidents")
    incidents.add_argument("--severity", help="list: low|medium|high|critical|all (default all)")
    incidents.add_argument("--status", help=f"list: {INCIDENT_STATUSES} (default all)")
    _paging(incidents)
    _common(incidents)
    incidents.set_defaults(func=run)

    decisions = sub.add_parser("decisions", help="the arbitration decisions, newest first", epilog=EPILOG)
    decisions.add_argument("action", nargs="?", choices=["list"], default="list")
    decisions.add_argument("--namespace", help="only proposals in this namespace")
    decisions.add_argument("--outcome", help="approved|rejected|awaiting_approval|superseded|all")
    decisions.add_argument("--since", type=_since, metavar="WHEN",
                           help="decided since: a duration ago (30m, 6h, 2d) or an RFC 3339 time")
    _paging(decisions)
    _common(decisions)
    decisions.set_defaults(func=run)

    workflows = sub.add_parser("workflows", help="remediation workflows: a table, one in full, approve or reject",
                               epilog=EPILOG)
    workflows.add_argument("action", nargs="?", choices=["list", "show", "approve", "reject"], default="list",
                           help="list (default); show ID: steps, checkpoints and decision; approve ID / reject ID: "
                                "answer a workflow awaiting approval (needs API_TOKEN when the gateway has one)")
    workflows.add_argument("id", nargs="?", help="the workflow's id (show, approve, reject)")
    workflows.add_argument("--namespace", help="list: only this namespace's workflows")
    workflows.add_argument("--status", help="list: pending|awaiting_approval|running|completed|failed|rejected|"
                                            "superseded|skipped|cancelled|all")
    workflows.add_argument("--by", help="approve/reject: who answers (default: api)")
    workflows.add_argument("--reason", help="approve/reject: why")
    _paging(workflows)
    _common(workflows)
    workflows.set_defaults(func=run)

    status = sub.add_parser("status", help="the gateway's health, its broker, stages and models, the remediation "
                                           "engine, kill switch and pause",
                            epilog="exit status: 0 healthy or degraded, 1 unhealthy or a route did not answer. "
                                   "--json: each route's JSON under its path.")
    _common(status)
    status.set_defaults(func=run, action="status")



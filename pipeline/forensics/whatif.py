"""`pipeline replay --what-if`: the decisions of a recorded window decided again under other rules or a
stricter confidence threshold, and exactly those that would differ, with why. Reads the log with `LogReader`
(no group, nothing committed, nothing produced); the re-decision is `pipeline.domain.whatif`.

Besides the what-if, the window is re-run once with the recorded proposals and the current settings (the
baseline): a difference the baseline has too is not caused by the change (the configuration differed when it
was recorded, or state at the window start could not be rebuilt), and is marked so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from pipeline.adapters.rules import load_rules
from pipeline.bus.log import LoggedRecord, LogReader, Window
from pipeline.config import Settings
from pipeline.domain.arbitration import Policy, RulesError, policy_from_settings
from pipeline.domain.times import parse_when
from pipeline.domain.whatif import (
    SOURCE_TOPICS,
    Change,
    Difference,
    Recorded,
    Report,
    Seed,
    merge_seeds,
    namespaces,
    rerun,
    seed_from_changelog,
    seed_from_decisions,
)
from pipeline.events import ControlChanged, Reason, iso_z

WINDOW_TOPICS = (*SOURCE_TOPICS, "remediation", "decisions")


class UsageError(ValueError):
    """A bad argument: said on stderr, exit 2."""


def parse_time(text: str, now: datetime) -> datetime:
    """`--from`/`--to`: `bus.log.parse_when`, a bad one a UsageError."""
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(settings, args))
    except (UsageError, RulesError, LookupError) as exc:
        print(f"pipeline replay --what-if: {exc}", file=sys.stderr)
        return 2


async def run(settings: Settings, args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    now = datetime.now(UTC)
    start = parse_time(args.start, now)
    end = parse_time(args.end, now) if args.end else now
    if start >= end:
        raise UsageError(f"--from {iso_z(start)} is not before --to {iso_z(end)}")
    rules = load_rules(args.rules) if args.rules else None
    recorded_policy = policy_from_settings(settings)
    policy = recorded_policy
    if args.confidence_threshold is not None:
        policy = policy.model_copy(update={"confidence_threshold": args.confidence_threshold})
    records, seed, kill_switch = await read_window(settings, start, end, recorded_policy)
    memory = settings.remediation_decided_memory
    report = rerun(records, seed, Change(policy, rules, memory), kill_switch)
    baseline = rerun(records, seed, Change(recorded_policy, None, memory), kill_switch)
    unexplained = {d.proposal_id for d in baseline.differences}
    thresholds = (recorded_policy.confidence_threshold, policy.confidence_threshold)
    header = _header(args, start, end, thresholds, records, seed)
    if args.json:
        _print_json(out, header, report, unexplained)
    else:
        _print_table(out, header, report, unexplained)
    return 0


async def read_window(settings: Settings, start: datetime, end: datetime,
                      policy: Policy) -> tuple[list[Recorded], Seed, list[ControlChanged]]:
    """The window's records in time order, the state at its start, and the kill switch's changes up to its end."""
    lookback = timedelta(seconds=max(policy.action_timeout_seconds, policy.cooldown_seconds))
    topics = [settings.topic(t) for t in WINDOW_TOPICS]
    async with LogReader(settings) as reader:
        window = _recorded(settings, [r async for r in reader.read(topics, Window(start, end))])
        changelog = _recorded(settings, [r async for r in reader.read([settings.topic("arbitrate.state")],
                                                                      Window(end=start))])
        before = _recorded(settings, [r async for r in reader.read(
            [settings.topic("remediation"), settings.topic("decisions")], Window(start - lookback, start))])
        control = _recorded(settings, [r async for r in reader.read([settings.topic("control")], Window(end=end))])
    seed = merge_seeds(seed_from_changelog(changelog), seed_from_decisions(before, start - lookback))
    kill_switch = [r.event.payload for r in control if isinstance(r.event.payload, ControlChanged)]
    return window, seed, kill_switch


def _recorded(settings: Settings, logged: Sequence[LoggedRecord]) -> list[Recorded]:
    """Our events (a foreign record cannot be decided again), with their logical topic, in time order."""
    prefix = len(settings.topic_prefix)
    ordered = sorted(logged, key=lambda r: (r.position.timestamp, r.position.topic, r.position.partition,
                                            r.position.offset))
    return [Recorded(r.position.topic[prefix:], r.position.timestamp, r.event) for r in ordered if r.event]


@dataclass(frozen=True, slots=True)
class _Header:
    """What was re-run: the window, the change, and how the state at its start was found."""

    start: datetime
    end: datetime
    rules: str
    thresholds: tuple[float, float]
    state_at_start: dict[str, str]
    running_at_start: list[dict[str, str]]

    def as_dict(self) -> dict[str, object]:
        return {"from": iso_z(self.start), "to": iso_z(self.end), "rules": self.rules,
                "confidence_threshold": {"recorded": self.thresholds[0], "new": self.thresholds[1]},
                "state_at_start": self.state_at_start, "running_at_start": self.running_at_start}


def _header(args: argparse.Namespace, start: datetime, end: datetime, thresholds: tuple[float, float],
            records: Sequence[Recorded], seed: Seed) -> _Header:
    sources = sum(1 for r in records if r.topic in SOURCE_TOPICS)
    seeded = {ns: seed.how.get(ns, "no state recorded before the window: assumed idle")
              for ns in sorted(namespaces(records))}
    running = [{"target": target, "action": a.action, "proposal_id": a.proposal_id, "started_at": iso_z(a.started_at)}
               for ns in seeded if ns in seed.states
               for target, a in sorted(seed.states[ns].state.active.items())]
    rules = (f"{args.rules} (proposed again from {sources} incident changes and scores)" if args.rules
             else "the recorded proposals")
    return _Header(start, end, rules, thresholds, seeded, running)


def _why(d: Difference) -> tuple[list[Reason], list[Reason]]:
    """Each side's reasons the other side lacks."""
    def key(r: Reason) -> tuple[object, ...]:
        return r.code, r.rule, r.other, r.conflict

    old = list(d.recorded.reasons) if d.recorded else []
    new = list(d.new.reasons) if d.new else []
    return ([r for r in old if key(r) not in {key(n) for n in new}],
            [r for r in new if key(r) not in {key(o) for o in old}])


def _summary(report: Report, unexplained: set[str]) -> dict[str, object]:
    return {"rerun": report.rerun, "differ": len(report.differences),
            "differ_without_the_change": len({d.proposal_id for d in report.differences} & unexplained),
            "kept_as_recorded": len(report.kept_as_recorded), "decided_after_the_window": len(report.undecided)}


def _print_json(out: TextIO, header: _Header, report: Report, unexplained: set[str]) -> None:
    print(json.dumps({"what_if": header.as_dict()}), file=out)
    for d in report.differences:
        print(json.dumps({**d.as_dict(), "differs_without_the_change": d.proposal_id in unexplained}), file=out)
    print(json.dumps({"summary": _summary(report, unexplained)}), file=out)


def _print_table(out: TextIO, header: _Header, report: Report, unexplained: set[str]) -> None:
    print(f"what-if over {iso_z(header.start)} .. {iso_z(header.end)}: rules: {header.rules}; "
          f"confidence threshold {header.thresholds[0]} -> {header.thresholds[1]}", file=out)
    for ns, how in header.state_at_start.items():
        print(f"  state at the window start, namespace {ns or '(cluster)'!r}: {how}", file=out)
    for a in header.running_at_start:
        print(f"  running at the window start: {a['action']} on {a['target']} ({a['proposal_id']}, "
              f"since {a['started_at']})", file=out)
    if report.differences:
        print(f"{'PROPOSAL':18} {'TARGET':36} {'ACTION':20} {'SOURCE':13} {'RECORDED -> NEW':32} WHY", file=out)
    for d in report.differences:
        old, new = _why(d)
        why = "; ".join([*(f"was {r.code}: {r.message}" for r in old), *(f"now {r.code}: {r.message}" for r in new)])
        mark = " (differs without the change too)" if d.proposal_id in unexplained else ""
        print(f"{d.proposal_id:18} {d.target:36} {d.action:20} {d.source:13} "
              f"{' -> '.join(d.outcomes):32} {why or 'same outcome, other reasons'}{mark}", file=out)
    s = _summary(report, unexplained)
    print(f"summary: {s['rerun']} decisions re-run, {s['differ']} would differ"
          f" ({s['differ_without_the_change']} of them without the change too); "
          f"{s['kept_as_recorded']} proposals kept as recorded (source before the window), "
          f"{s['decided_after_the_window']} decided after the window (left out)", file=out)

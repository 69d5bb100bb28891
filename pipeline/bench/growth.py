"""`pipeline bench growth`: what the correlate stage writes per signal, and how fast, as incidents grow.

For each incident size k (`--sizes`, default 1, 100, 1,000 and 10,000 alerts per incident) the signals topic
is filled with `--messages` firing signals spread over resources of k alerts each, then the same alerts
resolved; the correlate stage (its runtime, as deployed) consumes them. Figures per k: bytes written to the
`incidents` topic and to the `correlate.state` changelog per signal (key, value and headers of every record),
their ratio to the signal record itself (the baseline: what ingest wrote for that signal), the largest record
written, and the stage's throughput. Bytes per signal must stay flat as k grows; before change records
carried deltas, 1,000 alerts on one resource wrote 620x the webhook.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from pipeline.bench.harness import Report, bench_settings
from pipeline.bench.stage import run_stage
from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import ChangelogReader
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.events import Event, Resource, Severity, Signal, utcnow
from pipeline.stages.correlate import CorrelateStage


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    report = Report("growth: correlate writes per signal as incidents grow (firing, then resolved)")
    sizes = [int(s) for s in str(args.sizes).split(",") if s]
    per_signal: dict[int, float] = {}
    rates: dict[int, float] = {}
    for k in sizes:
        figures = asyncio.run(_one(bootstrap, k, max(args.messages // 2, k)))
        per_signal[k], rates[k] = figures["written_bytes_per_signal"], figures["msgs_per_s"]
        report.add(f"{k} alert(s) per incident", **figures)
    if sizes:
        smallest = per_signal[sizes[0]]
        for k in sizes[1:]:
            row = report.add(f"bytes/signal at {k} / at {sizes[0]}")
            row.ratio, row.ratio_of = per_signal[k] / smallest, "written bytes per signal"
        for k in sizes[1:]:
            row = report.add(f"msgs/s at {k} / at {sizes[0]}")
            row.ratio, row.ratio_of = rates[k] / rates[sizes[0]], "the stage's throughput"
    report.notes.append("written = incidents topic + correlate.state changelog; baseline = the signal record")
    return report


def _signals(alerts: int, per_incident: int) -> list[Event]:
    """`alerts` alerts, `per_incident` on each pod, firing then (after all fired) resolved."""
    now = utcnow()
    out: list[Event] = []
    for status in ("firing", "resolved"):
        for i in range(alerts):
            pod = Resource(namespace="growth", kind="Pod", name=f"pod-{i // per_incident}")
            name = f"Alert{i % 7}"
            signal = Signal(
                signal_id=f"{i}-{status}", source="alertmanager", resource=pod, name=name, status=status,
                severity=Severity.HIGH, fingerprint=f"{i:016x}", starts_at=now - timedelta(minutes=5),
                ends_at=now if status == "resolved" else None, observed_at=now,
                labels={"alertname": name, "namespace": pod.namespace, "pod": pod.name, "instance": f"i-{i}"},
                annotations={"summary": f"{name} on {pod.name}", "description": "bench signal " * 8},
            )
            out.append(Event.of(signal, source="bench", id=signal.signal_id, subject=pod.key))
    return out


def _size(record: object) -> int:
    key, value, headers = record.key, record.value, record.headers  # type: ignore[attr-defined]
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers)


async def _written(settings: Settings, logical: str) -> tuple[int, int, int]:
    """Records, bytes and the largest record of a topic."""
    topic = settings.topic(logical)
    parts = (await kafka.partitions(settings, topic))[topic]
    sizes = [_size(record) for record, _ in await ChangelogReader(settings).read(topic, parts)]
    return len(sizes), sum(sizes), max(sizes, default=0)


async def _one(bootstrap: str, per_incident: int, alerts: int) -> dict[str, float]:
    settings = bench_settings(bootstrap)
    await apply(settings)
    events = _signals(alerts, per_incident)
    producer = EventProducer(settings)
    await producer.start()
    try:
        topic = settings.topic("signals")
        for start in range(0, len(events), 2000):
            await producer.publish([Output.event(topic, e) for e in events[start : start + 2000]])
    finally:
        await producer.stop()
    rate = await run_stage(settings, len(events), CorrelateStage(settings), "signals")
    _, signal_bytes, _ = await _written(settings, "signals")
    incident_records, incident_bytes, incident_max = await _written(settings, "incidents")
    state_records, state_bytes, state_max = await _written(settings, "correlate.state")
    n = len(events)
    written = (incident_bytes + state_bytes) / n
    return {
        "signals": n,
        "incidents_bytes_per_signal": incident_bytes / n,
        "changelog_bytes_per_signal": state_bytes / n,
        "written_bytes_per_signal": written,
        "signal_bytes": signal_bytes / n,
        "written_per_signal_byte": written / (signal_bytes / n),
        "largest_record_bytes": max(incident_max, state_max),
        "records_written": incident_records + state_records,
        "msgs_per_s": rate,
    }

"""`pipeline bench remediate`: approved decisions -> dry-run workflows on a real cluster, against bare
kubernetes-asyncio doing the same Kubernetes calls, in the same run.

A real cluster with controllers (`KubeCluster`: kube-apiserver + etcd, kube-controller-manager, kube-scheduler,
kwok, the ArgoCD Application CRD) and the bench broker. N Deployments (replicas 1, Available) spread over a
few namespaces; one approved `restart_deployment` decision per Deployment, `dry_run` (and
REMEDIATION_MODE=dry-run), published straight on `decisions`: the stage detects how each Deployment is
deployed (GET it; ArgoCD discovery and the Applications list once), plans rollout restart -> rollback, and
runs the first rung (GET + strategic-merge PATCH with `dryRun=All`); the checkpoint is skipped (dry run),
the rollback rung is skipped, the workflow completes. Every transition is acknowledged by the broker.

Measured, stage (wall clock, in this process):

* decision (the DecisionMade event's time) -> the first step's first API call: `KubeRemediator.run` entered,
  the moment `pipeline_remediate_decision_to_first_call_seconds` observes (its mean is printed too);
* decision -> the step's dry-run PATCH admitted, and -> `completed` on `workflows` as a consumer sees it;
* workflows/s: N / (first decision -> last `completed` on the topic).

Burst: the N decisions in one produce call, three rounds; each round runs the baselines first, then the
stage (its detection cache cleared, as for targets it never saw); workflows/s is the median of the rounds and
each ratio the median of the per-round ratios (the machine is noisy; a round's baseline and stage run seconds
apart). Steady: one decision every `--interval-ms`, each its own target. Baseline in the same run, on the same
API server, same kubeconfig, one ApiClient: per workflow GET (detection), GET + PATCH `dryRun=All` (the
step), after the same discovery + Applications list once per round — one workflow at a time, all N at once
(the stage launches every workflow of a batch as a task), and shaped like the stage (every detection one after
the other, then the steps at once). Start time (with its parts) and RSS as the other benches print them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from pipeline.bench.harness import Report, bench_settings, latency_figures, percentile
from pipeline.bench.remediate_cluster import Bare, bare_steady, bare_variant, setup_deployments
from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer, Output
from pipeline.bus.stage import StageRuntime
from pipeline.bus.topics import apply
from pipeline.config import Settings
from pipeline.domain import workflows as wf
from pipeline.events import (
    Decision,
    DecisionMade,
    Event,
    Proposal,
    Reason,
    ReasonCode,
    WorkflowChanged,
    decode,
)
from pipeline.observability import REMEDIATE_FIRST_CALL_SECONDS

FINISH_TIMEOUT_S = 90.0
FINISHED = ("completed", "failed", "skipped", "rejected")
ROUNDS = 3


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    from pipeline.embedded.kube_cluster import KubeCluster

    n = max(int(args.workflows), 5)
    interval = max(float(args.interval_ms), 1.0) / 1000
    report = Report(f"remediate: {n} approved dry-run restart_deployment decisions -> workflows on a real cluster")
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-remediate-") as tmp:
        started = time.perf_counter()
        with KubeCluster(Path(tmp) / "cluster") as cluster:
            cluster_s = time.perf_counter() - started
            f = asyncio.run(_run(bootstrap, cluster, Path(tmp), n, interval))
    rounds: list[dict[str, Any]] = f["rounds"]
    variants = {"bare_seq": "bare, one at a time", "bare_all": "bare, all N at once",
                "bare_shaped": "bare, stage-shaped (detect 1-by-1, steps at once)"}

    def pooled(key: str, field: str) -> list[float]:
        return [x for r in rounds for x in r[key][field]]

    def rate(key: str, field: str = "rate") -> float:
        return float(statistics.median(r[key][field] for r in rounds))

    for key, name in variants.items():
        report.add(f"{name}: start -> step's GET", workflows_per_s=rate(key), **latency_figures(pooled(key, "first_call")),
                   patch_p50_ms=_p(pooled(key, "patched"), 50), patch_p99_ms=_p(pooled(key, "patched"), 99))
    report.add("stage, burst: decision -> first step call", workflows_per_s=rate("stage"),
               **latency_figures(pooled("stage", "first_call")), patch_p50_ms=_p(pooled("stage", "patched"), 50),
               patch_p99_ms=_p(pooled("stage", "patched"), 99))
    report.add("stage, burst: decision -> detection GET", **latency_figures(pooled("stage", "detect")))
    report.add("stage, burst: decision -> completed on topic", **latency_figures(pooled("stage", "completed")),
               to_last_patch_per_s=rate("stage", "rate_patched"),
               histogram_mean_ms=statistics.fmean(r["stage"]["histogram_mean_ms"] for r in rounds))
    for key, name in variants.items():
        ratio = report.add(f"stage burst / {name.split(' (')[0]}")
        ratio.ratio = statistics.median(r["stage"]["rate"] / r[key]["rate"] for r in rounds)
        ratio.ratio_of = f"workflows/s to completed on the topic, median of {len(rounds)} rounds"
    steady, baseline_steady = f["steady"], f["bare_steady"]
    report.add(f"bare, steady (one every {interval * 1000:g} ms): start -> step's GET",
               **latency_figures(baseline_steady["first_call"]),
               patch_p50_ms=_p(baseline_steady["patched"], 50), patch_p99_ms=_p(baseline_steady["patched"], 99))
    report.add(f"stage, steady (one every {interval * 1000:g} ms): decision -> first step call",
               **latency_figures(steady["first_call"]), patch_p50_ms=_p(steady["patched"], 50),
               patch_p99_ms=_p(steady["patched"], 99), histogram_mean_ms=steady["histogram_mean_ms"])
    report.add("stage, steady: decision -> detection GET", **latency_figures(steady["detect"]))
    report.add("stage, steady: detection GET -> first step call", **latency_figures(steady["detect_to_call"]))
    report.add("stage, steady: decision -> completed on topic", **latency_figures(steady["completed"]))
    ratio = report.add("stage steady / bare steady")
    ratio.ratio = _p(steady["first_call"], 50) / max(_p(baseline_steady["first_call"], 50), 1e-6)
    ratio.ratio_of = "p50 to the first step call"
    report.add("bare client start: kubeconfig, ApiClient, first GET", seconds=f["bare_start_s"])
    parts = f["stage_start_parts"]
    report.add("stage start: producer, control, kube client, RBAC self-check, announce", seconds=parts["stage"],
               producer_s=parts.get("producer", 0.0), control_follower_s=parts.get("control", 0.0))
    report.add("bare RBAC self-check alone (14 SelfSubjectAccessReviews, one by one)", seconds=f["self_check_s"])
    report.add("stage start to partitions assigned (group join, workflows read)", seconds=f["stage_ready_s"],
               rss_mb=f["rss_mb"], rss_peak_mb=f["rss_peak_mb"], stage_start_rss_mb=f["rss_start_delta_mb"])
    last = rounds[-1]["stage"]
    report.notes.append(
        f"API calls per workflow (one round): stage {last['calls_per_workflow']:.2f} ({last['calls']}), bare 3 (+2 once); "
        f"transitions per workflow {last['transitions_per_workflow']:.1f}; outcomes {last['outcomes']}")
    report.notes.append(f"{len(rounds)} burst rounds (bare variants then the stage, detection cache cleared between "
                        "rounds); per-round stage workflows/s: "
                        + ", ".join(f"{r['stage']['rate']:.0f}" for r in rounds))
    report.notes.append(f"cluster start {cluster_s:.1f} s, {n} Deployments Available in {f['setup_s']:.1f} s "
                        f"({f['available']}/{n}); kube-apiserver, etcd, controllers, kwok, broker and bench share "
                        "the cores")
    return report


def _p(samples: list[float], q: float) -> float:
    return percentile([s * 1000 for s in samples], q)


# --- the stage -----------------------------------------------------------------------------------------------


def _decision_event(target: str, tag: str, i: int) -> Event:
    ns = wf.split_target(target)[0]
    now = datetime.now(UTC)
    proposal = Proposal(id=f"bench-{tag}-{i}", target=target, namespace=ns, action="restart_deployment",
                        source="deterministic", priority=50, confidence=0.9, incident_id=f"inc-{tag}-{i}",
                        risk="low", groups=("restart",), dry_run=True, reason="bench")
    decision = Decision(proposal=proposal, outcome="approved", decided_at=now,
                        reasons=(Reason(code=ReasonCode.MATCHED_RULE, message="bench", rule="bench"),))
    return Event.of(DecisionMade(namespace=ns, decision=decision, resolution_seconds=0.0), source="bench")


async def _settle(settings: Settings) -> float:
    """Seconds until the new topics' partitions answer offset requests (leaders elected), so the stage's
    start is measured as it is in a running system, not right after the topics were created."""
    from aiokafka import TopicPartition

    started = time.perf_counter()
    consumer = kafka.consumer(settings, group_id=None)
    await consumer.start()
    try:
        for name in ("control", "decisions", "workflows"):
            topic = settings.topic(name)
            parts = (await kafka.partitions(settings, topic))[topic]
            await asyncio.wait_for(consumer.end_offsets([TopicPartition(topic, p) for p in parts]), 30)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def _call_kind(method: str, path: str) -> str:
    if "/deployments/" in path:
        return f"{method} deployment"
    if path.endswith("/applications"):
        return f"{method} applications"
    return f"{method} {path}"


def _histogram() -> tuple[float, float]:
    total = count = 0.0
    for metric in REMEDIATE_FIRST_CALL_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
    return total, count


class _Timed:
    """A running remediate stage with its Kubernetes calls timed (wall clock, per target), and a consumer of
    `workflows` that sees each workflow finish."""

    def __init__(self, settings: Settings) -> None:
        from pipeline.adapters.rules import load_rules
        from pipeline.stages.remediate import RemediateStage

        self.settings = settings
        self.stage = RemediateStage(settings, load_rules(settings.remediation_rules_path))
        self.runtime = StageRuntime(settings, self.stage)
        self.consumer = kafka.consumer(settings, settings.topic("workflows"), group_id=None,
                                       auto_offset_reset="earliest")
        self.producer = EventProducer(settings)
        self.detect: dict[str, float] = {}
        self.first_call: dict[str, float] = {}
        self.patched: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self.parts: dict[str, float] = {}
        self.ready_s = 0.0
        self.waiting: dict[str, str] = {}  # workflow id -> target, until it finishes
        self.finished: dict[str, tuple[str, float]] = {}  # target -> (transition, seen at)
        self.transitions = 0
        self.all_done = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None

    def _time(self, name: str, fn: Any) -> Any:
        async def timed() -> None:
            t = time.perf_counter()
            await fn()
            self.parts[name] = time.perf_counter() - t

        return timed

    async def start(self) -> None:
        await apply(self.settings)
        await _settle(self.settings)
        stage = self.stage
        stage.producer.start = self._time("producer", stage.producer.start)  # type: ignore[method-assign]
        stage.control.start = self._time("control", stage.control.start)  # type: ignore[method-assign]
        stage.start = self._time("stage", stage.start)  # type: ignore[method-assign]
        t = time.perf_counter()
        await self.runtime.start()
        self._instrument()
        await asyncio.wait_for(self.runtime.assigned.wait(), 60)
        self.ready_s = time.perf_counter() - t
        await self.consumer.start()
        await self.producer.start()
        self._collector = asyncio.create_task(self._collect())

    def _instrument(self) -> None:
        stage = self.stage
        if stage.kube is None or stage.detector is None:
            raise RuntimeError(f"the stage has no cluster: {stage.no_cluster}")
        detect, run, call_api = stage.detector.detect, stage.kube.run, stage.api.call_api

        async def timed_detect(namespace: str, kind: str, name: str) -> Any:
            self.detect.setdefault(f"{namespace}/{kind}/{name}", time.time())
            return await detect(namespace, kind, name)

        async def timed_run(step: Any, *, dry_run: bool) -> Any:
            self.first_call.setdefault(step.target, time.time())
            outcome = await run(step, dry_run=dry_run)
            self.patched.setdefault(step.target, time.time())
            return outcome

        def counted_call_api(resource_path: str, method: str, *a: Any, **kw: Any) -> Any:
            self.calls[_call_kind(method, resource_path)] += 1
            return call_api(resource_path, method, *a, **kw)

        stage.detector.detect = timed_detect
        stage.kube.run = timed_run
        stage.api.call_api = counted_call_api

    async def _collect(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for record in records:
                    change = decode(record.value, record.headers).payload
                    if not isinstance(change, WorkflowChanged) or change.workflow.id not in self.waiting:
                        continue
                    self.transitions += 1
                    if change.transition in FINISHED:
                        target = self.waiting.pop(change.workflow.id)
                        self.finished[target] = (change.transition, now)
                        if not self.waiting:
                            self.all_done.set()

    async def round(self, targets: list[str], interval: float | None) -> dict[str, Any]:
        """One decision per target: all in one produce call (`interval` None), or one every `interval`."""
        for d in (self.detect, self.first_call, self.patched, self.finished):
            d.clear()
        self.calls.clear()
        self.transitions = 0
        self.all_done.clear()
        self.stage.detector.clear()  # each round detects again, as for targets never seen
        hist_before = _histogram()
        tag = uuid.uuid4().hex[:6]
        decided: dict[str, float] = {}
        topic = self.settings.topic("decisions")
        events = []
        started = time.perf_counter()
        for i, t in enumerate(targets):
            e = _decision_event(t, tag, i)
            self.waiting[wf.workflow_id_of(e.payload.decision)] = t  # type: ignore[attr-defined]
            decided[t] = e.envelope.time.timestamp()
            if interval is None:
                events.append(e)
                continue
            await self.producer.publish([Output.event(topic, e)])
            delay = started + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if events:
            await self.producer.publish([Output.event(topic, e) for e in events])
        try:
            await asyncio.wait_for(self.all_done.wait(), FINISH_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"{len(self.waiting)} of {len(targets)} workflows not finished in "
                               f"{FINISH_TIMEOUT_S:g} s") from None
        hist_after = _histogram()
        missing = [t for t in targets if t not in self.patched]
        if missing:
            raise RuntimeError(f"{len(missing)} workflows never ran their step: "
                               f"{Counter(s for s, _ in self.finished.values())}")
        first = min(decided.values())
        count = hist_after[1] - hist_before[1]
        return {
            "rate": len(targets) / (max(at for _, at in self.finished.values()) - first),
            "rate_patched": len(targets) / (max(self.patched.values()) - first),
            "first_call": [self.first_call[t] - decided[t] for t in targets],
            "detect": [self.detect[t] - decided[t] for t in targets if t in self.detect],
            "detect_to_call": [self.first_call[t] - self.detect[t] for t in targets if t in self.detect],
            "patched": [self.patched[t] - decided[t] for t in targets],
            "completed": [self.finished[t][1] - decided[t] for t in targets],
            "histogram_mean_ms": (hist_after[0] - hist_before[0]) / count * 1000 if count else float("nan"),
            "calls": dict(self.calls), "calls_per_workflow": sum(self.calls.values()) / len(targets),
            "transitions_per_workflow": self.transitions / len(targets),
            "outcomes": dict(Counter(s for s, _ in self.finished.values())),
        }

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        await self.producer.stop()
        await self.consumer.stop()
        await self.runtime.stop()


# --- the run -----------------------------------------------------------------------------------------------------


async def _run(bootstrap: str, cluster: Any, tmp: Path, n: int, interval: float) -> dict[str, Any]:
    from kubernetes_asyncio import client, config

    from pipeline.adapters.remediation import KubeRemediator

    kubeconfig = cluster.kubeconfig(tmp / "admin.kubeconfig")
    async with cluster.api_client() as admin:
        targets, available, setup_s = await setup_deployments(admin, n)
    process = psutil.Process()
    out: dict[str, Any] = {"available": available, "setup_s": setup_s, "rounds": []}

    t = time.perf_counter()
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg, persist_config=False)
    cfg.client_side_validation = False
    async with client.ApiClient(configuration=cfg) as api:
        bare = Bare(api)
        await bare.get(targets[0])
        out["bare_start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await KubeRemediator(api).self_check()
        out["self_check_s"] = time.perf_counter() - t

        before = process.memory_info().rss
        peak = [before]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], process.memory_info().rss)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        settings = bench_settings(bootstrap, kubeconfig=str(kubeconfig), remediation_mode="dry-run",
                                  remediation_poll_s=0.2, remediation_identity=f"bench-{uuid.uuid4().hex[:6]}")
        stage = _Timed(settings)
        await stage.start()
        out["stage_start_parts"], out["stage_ready_s"] = stage.parts, stage.ready_s
        out["rss_start_delta_mb"] = (process.memory_info().rss - before) / 2**20
        try:
            for _ in range(ROUNDS):
                out["rounds"].append({
                    "bare_seq": await bare_variant(bare, targets, "seq"),
                    "bare_all": await bare_variant(bare, targets, "all"),
                    "bare_shaped": await bare_variant(bare, targets, "shaped"),
                    "stage": await stage.round(targets, None),
                })
            out["bare_steady"] = await bare_steady(bare, targets, interval)
            out["steady"] = await stage.round(targets, interval)
        finally:
            await stage.stop()
            sampler.cancel()
    out["rss_mb"] = process.memory_info().rss / 2**20
    out["rss_peak_mb"] = peak[0] / 2**20
    return out

"""`pipeline bench watch`: a burst of pod status changes on a real kube-apiserver -> signals on Kafka.

The project's kube-apiserver (built by scripts/build-kube-apiserver.sh) and the bench broker; N pods in one
namespace, then every pod's status patched to CrashLoopBackOff at once (16 patches in flight). Measured: the
watcher's signals per second (first patch sent -> last signal on the topic) and the latency from each
patch's response (the API has the change) to its signal on the topic, as a consumer sees it. Baseline in
the same run: a bare watch stream on the same pods (no decoding into conditions, no Kafka), whose events
per second and patch -> event latency bound what any watcher can do here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from pipeline.bench.harness import Report, bench_settings, latency_figures
from pipeline.bus import kafka
from pipeline.bus.producer import EventProducer
from pipeline.bus.topics import apply
from pipeline.embedded.kube import KubeAPIServer

IN_FLIGHT = 16


def bench(bootstrap: str, args: argparse.Namespace) -> Report:
    pods = max(int(args.pods), 10)
    report = Report(f"watch: {pods} pod status changes at once -> signals on Kafka (real kube-apiserver)")
    with tempfile.TemporaryDirectory() as tmp, KubeAPIServer(Path(tmp)) as kube:
        figures = asyncio.run(_run(bootstrap, kube, Path(tmp), pods))
    report.add("bare watch stream: API change -> watch event", events_per_s=figures["raw_rate"],
               **latency_figures(figures["raw_latencies"]))
    report.add("watcher: API change -> signal on the topic", signals_per_s=figures["rate"],
               **latency_figures(figures["latencies"]))
    report.add("watcher, steady (one change every 20 ms): API change -> signal on the topic",
               **latency_figures(figures["steady_latencies"]))
    ratio = report.add("watcher / bare watch stream")
    ratio.ratio, ratio.ratio_of = figures["rate"] / figures["raw_rate"], "per second"
    report.add("watcher start: lease, state read, list, first sync", seconds=figures["sync_seconds"],
               rss_mb=psutil.Process().memory_info().rss / 2**20)
    report.notes.append(f"{IN_FLIGHT} patches in flight; API server, etcd, broker and bench share the cores")
    return report


def _crashloop(restarts: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": "registry.example/app:1", "imageID": "", "ready": False, "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}},
    }]}}


async def _run(bootstrap: str, kube: KubeAPIServer, tmp: Path, pods: int) -> dict[str, Any]:
    from kubernetes_asyncio.client import CoreV1Api, V1Container, V1Namespace, V1ObjectMeta, V1Pod, V1PodSpec

    from pipeline.adapters.kube import Collection, watch
    from pipeline.ingest.kube import WatchService

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    settings = bench_settings(bootstrap, kubeconfig=str(kube.kubeconfig(tmp / "kubeconfig")), kube_watch=True,
                              watch_namespaces=[ns], watch_lease_namespace=ns, watch_event_apis=[])
    await apply(settings)
    async with kube.api_client() as api:
        core = CoreV1Api(api)
        await core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=ns)))
        names = [f"pod-{i}" for i in range(pods)]
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def create(name: str) -> None:
            async with sem:
                pod = V1Pod(metadata=V1ObjectMeta(name=name), spec=V1PodSpec(
                    node_name="node-1", containers=[V1Container(name="app", image="registry.example/app:1")]))
                await core.create_namespaced_pod(ns, pod, _preload_content=False)

        await asyncio.gather(*(create(n) for n in names))

        producer = EventProducer(settings)
        await producer.start()
        service = WatchService(settings, producer)
        started = time.perf_counter()
        await service.start()
        await service.wait_synced(120)
        sync_seconds = time.perf_counter() - started

        # The baseline: a bare watch on the same pods, from now.
        raw_seen: dict[str, float] = {}
        raw: Any = await core.list_namespaced_pod(ns, limit=1, _preload_content=False)  # a raw response
        listed = json.loads(await raw.read())
        collection = Collection("pods", "Pod", lambda **kw: core.list_namespaced_pod(ns, **kw))

        async def bare() -> None:
            async for kind, obj in watch(collection, listed["metadata"]["resourceVersion"], 120):
                if kind == "MODIFIED":
                    raw_seen.setdefault(obj["metadata"]["name"], time.perf_counter())
                    if len(raw_seen) >= pods:
                        return

        signals_seen: dict[str, float] = {}
        consumer = kafka.consumer(settings, settings.topic("signals"), group_id=None, auto_offset_reset="latest")
        await consumer.start()
        await consumer.seek_to_end()

        async def collect() -> None:
            while len(signals_seen) < pods:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for record in records:
                        signal = json.loads(record.value)
                        if signal["name"] == "CrashLoopBackOff":
                            signals_seen.setdefault(signal["resource"]["name"], now)

        bare_task = asyncio.create_task(bare())
        collector = asyncio.create_task(collect())
        await asyncio.sleep(0.5)  # both listeners connected
        patched: dict[str, float] = {}
        first = time.perf_counter()

        async def patch(name: str, body: dict[str, Any]) -> None:
            async with sem:
                response: Any = await core.patch_namespaced_pod_status(name, ns, body, _preload_content=False)
                response.release()
                patched[name] = time.perf_counter()

        await asyncio.gather(*(patch(n, _crashloop(5)) for n in names))
        await asyncio.wait_for(asyncio.gather(bare_task, collector), 120)
        burst = {"rate": pods / (max(signals_seen.values()) - first),
                 "latencies": [max(signals_seen[n] - patched[n], 0.0) for n in names],
                 "raw_rate": pods / (max(raw_seen.values()) - first),
                 "raw_latencies": [max(raw_seen[n] - patched[n], 0.0) for n in names]}

        # Steady: one change every 20 ms (OOMKilled on top of the crash loop), one at a time.
        steady = names[: min(pods, 150)]
        signals_seen.clear()
        want = len(steady)

        async def collect_oom() -> None:
            while len(signals_seen) < want:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for record in records:
                        signal = json.loads(record.value)
                        if signal["name"] == "OOMKilled":
                            signals_seen.setdefault(signal["resource"]["name"], now)

        collector = asyncio.create_task(collect_oom())
        oom = _crashloop(6)
        oom["status"]["containerStatuses"][0]["lastState"]["terminated"].update({"reason": "OOMKilled",
                                                                                  "exitCode": 137})
        for name in steady:
            await patch(name, oom)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(collector, 120)
        burst["steady_latencies"] = [max(signals_seen[n] - patched[n], 0.0) for n in steady]
        await consumer.stop()
        await service.stop()
        await producer.stop()
    return {**burst, "sync_seconds": sync_seconds}

"""`pipeline run --demo`: the embedded default with something to look at in every route.

Besides the broker, the demo starts (`Demo.start`, before the stages, so they are pointed at them):

* a real **Prometheus** (`pipeline/embedded/prometheus.py`) serving the generated scenario cluster
  (`pipeline/embedded/history`: shop — cart x2 and a leaking pod; payments — a crash-looping and a CPU-throttled
  pod) from 3 h ago to `HORIZON_S` ahead, so that for half an hour the analysis routes and the enrich stage see a
  live cluster (`PROMETHEUS_URL`);
* the **test cluster** (`pipeline/embedded/kube_cluster.py`: kube-apiserver, controller-manager, scheduler, kwok)
  when its binaries are cached, with a Deployment per workload of the history; `payments/crashy`'s second release
  crash-loops (`crashloop=true` pods). The cluster's pod names are written into the history, so an alert, a pod's
  watch events and its metrics are about one pod. `KUBECONFIG` points at it and `KUBE_WATCH` is on: the watch stage
  sees the crash loop and the remediate stage really acts. Without the binaries: one log line saying how to build
  them, and workflows end `skipped` (no cluster configured).

Once the process is ready, `Demo.play` sends a scripted story through the real routes — Alertmanager webhooks
(`firing_webhooks`) and an anomaly report (`anomaly_report`), then, once their workflows have ended, the alerts'
resolution (`resolved_webhook`) — waits for incidents, decisions and workflows, and prints where to look
(`where_to_look`) on stdout. Everything the demo points at is its own: its broker, its Prometheus, its cluster;
the user's Kafka, cluster, Alertmanager and ML service settings are set aside (`demo_settings`), and its data is a
fresh temporary directory (removed at exit) unless `--data-dir` is given.

The pure pieces (manifests, history renaming, webhooks, the report, the text) are unit-tested
(tests/unit/test_demo.py); `tests/integration/test_demo.py` runs `pipeline run --demo` as a user would.
"""

from __future__ import annotations

from pipeline.compose.demo.parts import Demo
from pipeline.compose.demo.report import Findings, where_to_look
from pipeline.compose.demo.scenario import (
    FINAL,
    HORIZON_S,
    TEMPORARY_MARK,
    bad_release,
    cast,
    demo_history,
    demo_settings,
    rename_pods,
    workload_manifests,
)
from pipeline.compose.demo.script import anomaly_report, firing_webhooks, resolved_webhook

__all__ = ["FINAL", "HORIZON_S", "TEMPORARY_MARK", "Demo", "Findings", "anomaly_report", "bad_release", "cast",
           "demo_history", "demo_settings", "firing_webhooks", "rename_pods", "resolved_webhook", "where_to_look",
           "workload_manifests"]

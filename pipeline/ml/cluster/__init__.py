"""Train the reference model on a real cluster's history: ``pipeline ml train --prometheus URL [--since
24h] [--every 5m] [--namespace NS ...] [--model-dir DIR]``.

The history is pulled with ``prometheus-api-client`` (synchronous, batch: range queries over the whole
window, a few per scope); the pipeline's hot path keeps its async client. The vectors are the ones the
enrich stage and the gateway compute (``pipeline.domain.features``: the same node lookup, the same base
queries on the same 1-minute grid, the same ``compute``), so the model learns what it will be asked.

Scopes: every pod, deployment (from ``kube_deployment_spec_replicas``; its pods by the same name pattern
the features use), namespace and node that kube-state-metrics shows in the window, and the cluster; with
``--namespace``, only those namespaces' pods, deployments and namespaces (nodes and the cluster hold pods
of others). One vector per scope every ``--every`` (a multiple of one minute) from 15 minutes after the
window's start (the vector's look-back: t-10m..t with 5-minute rates).

What counts as normal, since nothing is labelled (:data:`RULES`): a pod is normal at ``t`` when, over the
vector's look-back, kube-state-metrics knows it and

* none of its containers restarted (``increase(restarts[15m]) == 0``),
* it was throttled in at most 25 % of its CFS periods (pods without a CPU limit are never throttled),
* its working set did not grow by more than 10 % of itself per hour over the last 30 minutes (a leak
  shows as steady growth long before the limit).

A deployment, namespace, node or the cluster is normal at ``t`` when every pod it holds then is. Other
rows are left out: a vector of a crash loop or a leak in the training set would teach the model that it is
normal. Only the shape of normal is learned; a cluster that is never healthy gives no rows, and training
fails rather than fit on nothing.

The package: ``history`` (Prometheus, synchronous), ``scopes`` (what is in the cluster, what is
normal, the vectors), ``train`` (collect, fit, report).
"""

from pipeline.ml.cluster.history import History, TrainingFailed, redact
from pipeline.ml.cluster.scopes import RULES, ClusterScope, Inventory, abnormal_pods, inventory, scope_vectors
from pipeline.ml.cluster.train import (
    DEFAULT_EVERY,
    DEFAULT_SINCE,
    ClusterTrainingSet,
    collect,
    main,
    parse_duration,
    print_report,
    train,
)

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_SINCE",
    "RULES",
    "ClusterScope",
    "ClusterTrainingSet",
    "History",
    "Inventory",
    "TrainingFailed",
    "abnormal_pods",
    "collect",
    "inventory",
    "main",
    "parse_duration",
    "print_report",
    "redact",
    "scope_vectors",
    "train",
]

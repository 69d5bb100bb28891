"""Collect the normal rows of every scope in a window of the cluster's history, fit the reference model on
them, save it, and report what it learned from (``pipeline ml train --prometheus URL``)."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from pipeline.config import Settings, load_settings
from pipeline.domain.features import FEATURE_NAMES, STEP_S
from pipeline.domain.times import parse_duration as duration_seconds
from pipeline.ml.cluster.history import History, TrainingFailed, redact
from pipeline.ml.cluster.scopes import RULES, ClusterScope, abnormal_pods, inventory, scope_vectors
from pipeline.ml.model import ReferenceModel, default_model_dir
from pipeline.ml.training import SCOPE_KINDS, WARMUP_S
from pipeline.progress import Progress

DEFAULT_SINCE = "24h"
DEFAULT_EVERY = "5m"


def parse_duration(text: str, what: str) -> int:
    """``90s``, ``5m``, ``6h``, ``2d``, ``1w`` -> seconds."""
    seconds = duration_seconds(text)
    if seconds is None:
        raise TrainingFailed(f"{what} must be a duration like 30m, 6h or 2d, got {text!r}")
    return seconds



# ----------------------------------------------------------------------------- training
@dataclass
class ClusterTrainingSet:
    vectors: np.ndarray
    rows: list[tuple[str, str, float]]  # (kind, scope name, t)
    start: float
    end: float
    scopes: Counter[str]  # scopes seen per kind
    skipped: Counter[str]  # scopes per kind with no normal time
    queries: int
    seconds: float


def collect(
    url: str,
    *,
    since_s: int,
    every_s: int,
    namespaces: Sequence[str] = (),
    settings: Settings | None = None,
    now: float | None = None,
) -> ClusterTrainingSet:
    """The normal rows of every scope in the window ending at ``now`` (default: the current time)."""
    started = time.perf_counter()
    if every_s % STEP_S:
        raise TrainingFailed(f"--every must be a whole number of minutes, got {every_s} s")
    if since_s < WARMUP_S + every_s:
        raise TrainingFailed(f"--since must be at least {(WARMUP_S + every_s) // 60} minutes")
    settings = settings or load_settings()
    history = History(url, settings)
    end = float(int(time.time() if now is None else now) // every_s * every_s)
    start = end - since_s
    times = [float(t) for t in range(int(start + WARMUP_S), int(end) + 1, every_s)]
    with Progress("finding scopes", 5, unit="steps") as finding:
        inv = inventory(history, times, every_s, namespaces)
        finding.advance(2)
        if not inv.pods_at:
            raise TrainingFailed(f"Prometheus has no kube_pod_info between {_iso(start)} and {_iso(end)}")
        bad = abnormal_pods(history, inv, times, every_s, namespaces)
        finding.advance(3)
    scopes = inv.scopes(whole_cluster=not namespaces)
    plan: list[tuple[ClusterScope, list[float]]] = []
    skipped: Counter[str] = Counter()
    for cs in scopes:
        normal = []
        for t in times:
            members = cs.members(t)
            if members and not members & bad[t]:
                normal.append(t)
        if normal:
            plan.append((cs, normal))
        else:
            skipped[cs.kind] += 1
    rows: list[tuple[str, str, float]] = []
    blocks: list[list[list[float | None]]] = []

    with (Progress("collecting vectors", len(plan), unit="scopes") as collecting,
          ThreadPoolExecutor(max_workers=settings.prometheus_max_concurrency) as pool):

        def one(item: tuple[ClusterScope, list[float]]) -> list[list[float | None]]:
            cs, normal = item
            vectors = scope_vectors(history, cs.scope, normal, every_s)
            collecting.advance()
            return vectors

        for (cs, normal), vectors in zip(plan, pool.map(one, plan), strict=True):
            rows.extend((cs.kind, cs.name, t) for t in normal)
            blocks.append(vectors)
    values = [[math.nan if v is None else v for v in row] for block in blocks for row in block]
    return ClusterTrainingSet(
        vectors=np.asarray(values, dtype=np.float64).reshape(len(values), len(FEATURE_NAMES)),
        rows=rows,
        start=start,
        end=end,
        scopes=Counter(cs.kind for cs in scopes),
        skipped=skipped,
        queries=history.queries,
        seconds=time.perf_counter() - started,
    )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def train(
    url: str,
    *,
    since: str = DEFAULT_SINCE,
    every: str = DEFAULT_EVERY,
    namespaces: Sequence[str] = (),
    model_dir: Path | None = None,
    now: float | None = None,
    settings: Settings | None = None,
) -> tuple[ReferenceModel, ClusterTrainingSet, Path]:
    """Collect the normal rows, fit, and save the model into ``model_dir`` (the serve default)."""
    settings = settings or load_settings()
    since_s, every_s = parse_duration(since, "--since"), parse_duration(every, "--every")
    data = collect(
        url, since_s=since_s, every_s=every_s, namespaces=namespaces, settings=settings, now=now
    )
    if not data.rows:
        raise TrainingFailed(
            f"no scope was normal at any time between {_iso(data.start)} and {_iso(data.end)} "
            f"({'; '.join(RULES.values())}): nothing to train on"
        )
    complete = ~np.isnan(data.vectors).all(axis=0)
    if not complete.all():
        absent = [FEATURE_NAMES[i] for i in np.flatnonzero(~complete)]
        raise TrainingFailed(
            f"no value at all for {', '.join(absent)}: Prometheus lacks the metrics they need"
        )
    kinds = Counter(kind for kind, _, _ in data.rows)
    report = {
        "source": "prometheus",
        "prometheus": redact(url),
        "start": _iso(data.start),
        "end": _iso(data.end),
        "since_s": since_s,
        "every_s": every_s,
        "namespaces": list(namespaces),
        "normal": RULES,
        "rows_per_kind": {k: kinds[k] for k in SCOPE_KINDS if kinds[k]},
        "rows_per_scope": dict(sorted(Counter(f"{kind} {name}" for kind, name, _ in data.rows).items())),
        "scopes_per_kind": {k: data.scopes[k] for k in SCOPE_KINDS if data.scopes[k]},
        "scopes_never_normal": {k: data.skipped[k] for k in SCOPE_KINDS if data.skipped[k]},
        "missing_values": {
            FEATURE_NAMES[i]: int(n) for i, n in enumerate(np.isnan(data.vectors).sum(axis=0)) if n
        },
        "queries": data.queries,
        "seconds": round(data.seconds, 3),
    }
    model = ReferenceModel.fit(data.vectors, report)
    directory = model_dir or default_model_dir(settings)
    model.save(directory)
    return model, data, directory


def print_report(model: ReferenceModel, directory: Path, out: TextIO = sys.stdout) -> None:
    t = model.training
    print(f"trained {model.name} {model.version} on {t['prometheus']}", file=out)
    print(
        f"window: {t['start']} .. {t['end']}, one vector per scope every {t['every_s'] // 60} min", file=out
    )
    print(f"normal: {'; '.join(t['normal'].values())}", file=out)
    print("rows per kind of scope (scopes with normal rows / scopes seen):", file=out)
    for kind, seen in t["scopes_per_kind"].items():
        used = seen - t["scopes_never_normal"].get(kind, 0)
        print(f"  {kind:<11} {t['rows_per_kind'].get(kind, 0):>7} rows  {used}/{seen} scopes", file=out)
    missing = t["missing_values"]
    if missing:
        worst = sorted(missing.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {n}/{t['size']}" for name, n in worst[:6])
        more = f" and {len(worst) - 6} more" if len(worst) > 6 else ""
        print(f"missing values (imputed with the training median): {shown}{more}", file=out)
    else:
        print("missing values: none", file=out)
    print(
        f"{t['size']} rows, {t['queries']} queries in {t['seconds']:.1f} s, fit in {t['fit_seconds']:.1f} s",
        file=out,
    )
    print(f"written to {directory} (pipeline ml serve --model-dir {directory})", file=out)


def main(
    url: str,
    *,
    since: str | None,
    every: str | None,
    namespaces: Sequence[str] | None,
    model_dir: Path | None,
    settings: Settings | None = None,
) -> int:
    """``pipeline ml train --prometheus URL``: 0 with a report, 1 with the reason nothing was written."""
    try:
        model, _, directory = train(
            url,
            since=since or DEFAULT_SINCE,
            every=every or DEFAULT_EVERY,
            namespaces=namespaces or (),
            model_dir=model_dir,
            settings=settings,
        )
    except TrainingFailed as exc:
        print(f"pipeline ml train: {exc}", file=sys.stderr)
        return 1
    print_report(model, directory)
    return 0

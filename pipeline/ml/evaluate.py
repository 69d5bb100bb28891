"""How well the reference model tells anomalous scopes from normal ones, on generated histories it was not
trained on (`pipeline ml evaluate`).

Each evaluation history is the scenario cluster with some scenarios healthy (``generate_history(healthy=
...)``), with seeds the training set does not use (:data:`EVALUATION_SEEDS`), served by a real Prometheus.
Every pod, deployment, namespace, node and the cluster is scored every ``EVALUATION_EVERY_S`` through the
project's FeatureCollector, as the enrich stage and the gateway would, and labelled with
``training.is_anomalous``: anomalous when one of its pods is leaking, crash looping (from its first
restart) or throttled at that time. The report counts, per kind of scope, what the model flags (-1) against
those labels: precision (flagged that were anomalous), recall (anomalous that were flagged), and the false
positive rate (normal that were flagged).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from pipeline.embedded.history import (
    CRASHY_DEPLOYMENT,
    LEAKY_DEPLOYMENT,
    SCENARIOS,
    THROTTLED_DEPLOYMENT,
    History,
)
from pipeline.ml.model import ReferenceModel
from pipeline.ml.training import SCOPE_KINDS, TRAINING_HISTORIES, HistorySpec, Row, collect_histories

# Every mix of healthy scenarios the training histories have, plus the scenario cluster's two namespaces
# each healthy alone; none of these seeds is a training seed.
EVALUATION_SEEDS: tuple[int, ...] = (101, 102)
VARIANTS: tuple[tuple[str, ...], ...] = (
    (),
    (LEAKY_DEPLOYMENT,),
    (CRASHY_DEPLOYMENT, THROTTLED_DEPLOYMENT),
    SCENARIOS,
)


def evaluation_histories(seeds: Sequence[int] = EVALUATION_SEEDS) -> list[HistorySpec]:
    """One history per variant and seed, each ending on its own day (the end does not change the data)."""
    used = {spec.seed for spec in TRAINING_HISTORIES}
    clash = sorted(set(seeds) & used)
    if clash:
        raise ValueError(f"seeds {clash} are training seeds: evaluate on held-out ones")
    return [
        HistorySpec(healthy=variant, seed=seed, end=TRAINING_HISTORIES[0].end + 86_400 * (i + 1))
        for i, (seed, variant) in enumerate((s, v) for s in seeds for v in VARIANTS)
    ]


@dataclass
class Counts:
    """Confusion counts of one group of rows (a kind of scope, or one scope in one history)."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    def add(self, flagged: bool, anomalous: bool) -> None:
        if flagged and anomalous:
            self.true_positive += 1
        elif flagged:
            self.false_positive += 1
        elif anomalous:
            self.false_negative += 1
        else:
            self.true_negative += 1

    @property
    def rows(self) -> int:
        return self.true_positive + self.false_positive + self.false_negative + self.true_negative

    @property
    def precision(self) -> float | None:
        """None when nothing was flagged: no precision to speak of (not 0 or 1)."""
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        """None when nothing was anomalous."""
        anomalous = self.true_positive + self.false_negative
        return self.true_positive / anomalous if anomalous else None

    @property
    def false_positive_rate(self) -> float | None:
        """None when nothing was normal."""
        normal = self.false_positive + self.true_negative
        return self.false_positive / normal if normal else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "true_positive": self.true_positive,
            "false_positive": self.false_positive,
            "false_negative": self.false_negative,
            "true_negative": self.true_negative,
            "precision": self.precision,
            "recall": self.recall,
            "false_positive_rate": self.false_positive_rate,
        }


@dataclass
class Evaluation:
    """Counts per kind of scope and per (history, scope), the model and the histories they came from."""

    model_version: str
    histories: list[dict[str, Any]]
    by_kind: dict[str, Counts] = field(default_factory=dict)
    by_scope: dict[tuple[int, str, str], Counts] = field(default_factory=dict)  # (history, kind, name)
    seconds: float = 0.0

    @property
    def overall(self) -> Counts:
        total = Counts()
        for counts in self.by_kind.values():
            total.true_positive += counts.true_positive
            total.false_positive += counts.false_positive
            total.false_negative += counts.false_negative
            total.true_negative += counts.true_negative
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "histories": self.histories,
            "by_kind": {kind: c.as_dict() for kind, c in self.by_kind.items()},
            "overall": self.overall.as_dict(),
            "seconds": round(self.seconds, 3),
        }


def score(
    model: ReferenceModel, histories: Sequence[History], rows: Sequence[Row], vectors: np.ndarray
) -> Evaluation:
    """Count the model's verdicts on labelled rows (pure: no I/O)."""
    inputs = [[None if math.isnan(v) else float(v) for v in row] for row in vectors.tolist()]
    predictions = model.predict(inputs)
    result = Evaluation(
        model.version,
        [
            {"healthy": sorted(h.healthy), "seed": h.seed, "end": h.end, "duration_s": h.duration_s}
            for h in histories
        ],
    )
    for kind in SCOPE_KINDS:
        result.by_kind[kind] = Counts()
    for row, prediction in zip(rows, predictions, strict=True):
        flagged = prediction.prediction == -1
        result.by_kind[row.target.kind].add(flagged, row.anomalous)
        key = (row.history, row.target.kind, row.target.name)
        result.by_scope.setdefault(key, Counts()).add(flagged, row.anomalous)
    return result


def evaluate(
    model: ReferenceModel,
    seeds: Sequence[int] = EVALUATION_SEEDS,
    *,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Generate the held-out histories, serve each with a real Prometheus, collect every scope, score."""
    started = time.perf_counter()
    specs = evaluation_histories(seeds)

    def announce(index: int, history: History, rows: int) -> None:
        if progress is not None:
            progress(f"history {index + 1}/{len(specs)}: {specs[index].label}, {rows} vectors")

    histories, rows, vectors, _ = collect_histories(
        specs, normal_only=False, workdir=workdir, on_history=announce
    )
    result = score(model, histories, rows, vectors)
    result.seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- the table
def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(result: Evaluation) -> str:
    """A plain-text (and Markdown) table: one line per kind of scope, then all of them."""
    lines = [
        "| scope | rows | anomalous | flagged | precision | recall | false positive rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in [*result.by_kind.items(), ("all", result.overall)]:
        anomalous = c.true_positive + c.false_negative
        flagged = c.true_positive + c.false_positive
        lines.append(
            f"| {name} | {c.rows} | {anomalous} | {flagged} | {_fraction(c.precision)} | "
            f"{_fraction(c.recall)} | {_fraction(c.false_positive_rate)} |"
        )
    return "\n".join(lines)


def details(result: Evaluation) -> str:
    """Per history and scope: how often it was flagged while normal and while anomalous."""
    lines = ["| history | scope | normal rows flagged | anomalous rows flagged |", "|---|---|---|---|"]
    for (index, kind, name), c in sorted(result.by_scope.items()):
        history = result.histories[index]
        healthy = "+".join(history["healthy"]) or "none"
        normal = c.false_positive + c.true_negative
        anomalous = c.true_positive + c.false_negative
        lines.append(
            f"| seed {history['seed']}, healthy: {healthy} | {kind} {name} | "
            f"{c.false_positive}/{normal} | {c.true_positive}/{anomalous} |"
        )
    return "\n".join(lines)


def print_report(result: Evaluation, *, detail: bool = False, out: TextIO = sys.stdout) -> None:
    print(
        f"model {result.model_version}, {len(result.histories)} held-out histories "
        f"(seeds {sorted({h['seed'] for h in result.histories})}), {result.overall.rows} vectors, "
        f"{result.seconds:.1f} s",
        file=out,
    )
    print(table(result), file=out)
    if detail:
        print(file=out)
        print(details(result), file=out)

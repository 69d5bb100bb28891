"""The reference anomaly detector: ``RobustScaler`` + ``IsolationForest`` over the 45-feature vector.

The same pipeline as the platform's notebook (anchor §3.4) but for one parameter, trained on the project's
own normal vectors of every kind of scope (``pipeline.ml.training``; or on a real cluster's history,
``pipeline.ml.cluster``). Each tree sees the whole training set (``max_samples=1.0`` where the notebook
has ``"auto"``, 256 rows): pods, deployments, namespaces, nodes and the cluster are separate groups in the
45-feature space, and 256 rows hold too few of the smaller groups for their points to look normal. The
training set is about 1,500 rows, so fitting stays under a second. What it adds to the KServe sklearn
server's bare ``-1|1``:

* **score** (0..1, higher = more anomalous) from ``decision_function`` ``d`` (negative = anomalous):
  ``score = 1 / (1 + exp(SCORE_SLOPE * d))``. ``d = 0`` — the model's own boundary, set by
  ``contamination`` — maps to 0.5, so ``score > 0.5`` exactly when the prediction is ``-1``;
  ``d = -0.1`` maps to 0.82, ``d = +0.1`` to 0.18.
* **confidence** (0..1): distance from the boundary on the same curve, ``|2 * score - 1|``.
* **imputation**: a missing value (``None``) becomes the training median of its feature, and the
  prediction names every imputed feature, so nobody mistakes an imputed vector for a measured one.

A limitation to know: features that were constant in training (the restart counts are always 0 for
normal scopes of the generated histories) cannot be split on by the forest, so they do not move the score;
the scoring rules (``pipeline.domain.scoring``) cover restarts. ``deviations()`` still shows them.

The model directory holds ``model.joblib`` (the fitted pipeline) and ``model.json`` (version, medians,
training report, and the SHA-256 of ``model.joblib``, written last so a half-written model never loads).
The version is a hash of the training vectors, so it changes whenever the training set does; a cached
model trained from generated history by another recipe (``training.recipe_id``) is retrained by
``train_or_load``, and one trained from a real cluster is served as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler

from pipeline.config import Settings, load_settings
from pipeline.domain.features import FEATURE_NAMES
from pipeline.progress import Progress

MODEL_NAME = "anomaly-detector"
PARAMS: dict[str, Any] = {
    "scaler": "RobustScaler",
    "n_estimators": 200,
    "contamination": 0.05,
    "max_samples": 1.0,
    "max_features": 1.0,
    "random_state": 42,
}
SCORE_SLOPE = 15.0
ARTIFACT = "model.joblib"
METADATA = "model.json"


class ModelError(Exception):
    """Base of the model's errors."""


class ModelUnavailable(ModelError):
    """No usable model in the directory (absent, half-written, or from another feature set/sklearn)."""


class InvalidVector(ModelError, ValueError):
    """An input that is not a 45-feature vector; ``field`` says where, e.g. ``instances[0][3]``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's answer for one vector (see the module docstring for score and confidence)."""

    prediction: int  # -1 anomaly, 1 normal
    score: float
    confidence: float
    decision: float  # IsolationForest.decision_function: < 0 is anomalous
    imputed: tuple[str, ...]  # features that were missing and got the training median


@dataclass(frozen=True, slots=True)
class Deviation:
    """How far one feature is from normal, in robust units (IQRs of the training set from its median)."""

    name: str
    value: float
    expected: float
    deviation: float


def default_model_dir(settings: Settings | None = None) -> Path:
    """``<cache_dir>/ml/anomaly-detector``: ``PIPELINE_CACHE_DIR`` (default ``~/.cache/pipeline``) of
    ``settings``, read from the environment when none are given."""
    return (settings or load_settings()).cache_dir / "ml" / MODEL_NAME


# ----------------------------------------------------------------------------- pure parts
def anomaly_score(decision: float) -> float:
    """0..1, higher = more anomalous; 0.5 at the model's boundary (``decision == 0``)."""
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, SCORE_SLOPE * decision))))


def confidence(decision: float) -> float:
    """0..1: how far the vector is from the boundary, on the score's curve."""
    return abs(2.0 * anomaly_score(decision) - 1.0)


def as_vector(values: Any, field: str) -> list[float | None]:
    """Check one vector: 45 numbers (``None`` = missing, not all); no strings, booleans or non-finite values."""
    if not isinstance(values, list | tuple):
        raise InvalidVector(
            field, f"expected a list of {len(FEATURE_NAMES)} numbers, got {type(values).__name__}"
        )
    if len(values) != len(FEATURE_NAMES):
        raise InvalidVector(field, f"has {len(values)} values; the model expects {len(FEATURE_NAMES)}")
    return _complete_enough(
        [_number(v, f"{field}[{i}]", FEATURE_NAMES[i]) for i, v in enumerate(values)], field
    )


def vector_from_mapping(values: Mapping[str, Any], field: str) -> list[float | None]:
    """``{"pod_memory_usage_value": 0.93, ...}`` -> the vector; absent names are missing (``None``)."""
    unknown = sorted(set(values) - set(FEATURE_NAMES))
    if unknown:
        raise InvalidVector(
            f"{field}.{unknown[0]}", f"unknown feature (known: {FEATURE_NAMES[0]} .. {FEATURE_NAMES[-1]})"
        )
    return _complete_enough([_number(values.get(n), f"{field}.{n}", n) for n in FEATURE_NAMES], field)


def _number(value: Any, field: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidVector(field, f"{name} is not a number: {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidVector(field, f"{name} is not finite: {value!r:.40}")
    return number


def _complete_enough(vector: list[float | None], field: str) -> list[float | None]:
    if all(v is None for v in vector):
        raise InvalidVector(field, "every value is missing: the model would only see training medians")
    return vector


def impute(
    vectors: Sequence[Sequence[float | None]], medians: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Missing values (``None`` or NaN) -> the feature's training median; also which were imputed per row."""
    matrix = np.array([[np.nan if v is None else v for v in row] for row in vectors], dtype=np.float64)
    matrix = matrix.reshape(len(vectors), len(FEATURE_NAMES))
    missing = np.isnan(matrix)
    matrix[missing] = np.broadcast_to(medians, matrix.shape)[missing]
    imputed = [tuple(FEATURE_NAMES[i] for i in np.flatnonzero(row)) for row in missing]
    return matrix, imputed


def training_medians(vectors: np.ndarray) -> np.ndarray:
    """Per-feature median over the values present; every feature needs at least one."""
    present = ~np.isnan(vectors)
    empty = [FEATURE_NAMES[i] for i in np.flatnonzero(~present.any(axis=0))]
    if empty:
        raise ModelError(f"no training value for {', '.join(empty)}")
    return np.array([float(np.median(vectors[present[:, i], i])) for i in range(vectors.shape[1])])


def model_version(vectors: np.ndarray) -> str:
    """Content hash of the training set (NaN kept), the feature names, the parameters and sklearn."""
    digest = hashlib.sha256()
    header = {"features": FEATURE_NAMES, "params": PARAMS, "sklearn": sklearn.__version__}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(vectors, dtype="<f8").tobytes())
    return digest.hexdigest()[:16]


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("scaler", RobustScaler()),
            (
                "isolation_forest",
                IsolationForest(
                    n_estimators=PARAMS["n_estimators"],
                    contamination=PARAMS["contamination"],
                    max_samples=PARAMS["max_samples"],
                    max_features=PARAMS["max_features"],
                    random_state=PARAMS["random_state"],
                ),
            ),
        ]
    )


# ----------------------------------------------------------------------------- the model
class ReferenceModel:
    """A fitted pipeline with its training medians, version and training report."""

    name = MODEL_NAME

    def __init__(
        self, pipeline: Pipeline, medians: np.ndarray, version: str, training: dict[str, Any]
    ) -> None:
        self.pipeline = pipeline
        self.medians = medians
        self.version = version
        self.training = training
        self.load_seconds: float | None = None

    @classmethod
    def fit(cls, vectors: np.ndarray, report: Mapping[str, Any] | None = None) -> ReferenceModel:
        """Train on ``vectors`` (n x 45, NaN = missing): impute with their medians, then fit."""
        started = time.perf_counter()
        medians = training_medians(vectors)
        matrix, imputed = impute(vectors.tolist(), medians)
        pipeline = build_pipeline().fit(matrix)
        counts: dict[str, int] = {}
        for names in imputed:
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        training = {
            **(report or {}),
            "size": int(vectors.shape[0]),
            "imputed": counts,
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        return cls(pipeline, medians, model_version(vectors), training)

    def predict(self, vectors: Sequence[Sequence[float | None]]) -> list[Prediction]:
        """One prediction per vector (45 values each, ``None`` = missing; see ``as_vector``)."""
        if not vectors:
            return []
        matrix, imputed = impute(vectors, self.medians)
        decisions = self.pipeline.decision_function(matrix)
        return [
            Prediction(
                prediction=-1 if d < 0 else 1,
                score=anomaly_score(float(d)),
                confidence=confidence(float(d)),
                decision=float(d),
                imputed=names,
            )
            for d, names in zip(decisions, imputed, strict=True)
        ]

    def deviations(self, vector: Sequence[float | None]) -> list[Deviation]:
        """Each feature's distance from the training median, in IQRs (the scaler's own units)."""
        matrix, _ = impute([vector], self.medians)
        scaler: RobustScaler = self.pipeline.named_steps["scaler"]
        scaled = scaler.transform(matrix)[0]
        return [
            Deviation(name, float(matrix[0, i]), float(scaler.center_[i]), float(scaled[i]))
            for i, name in enumerate(FEATURE_NAMES)
        ]

    # ------------------------------------------------------------------------- persistence
    def save(self, model_dir: Path) -> None:
        """Write the artifact, then the metadata naming its hash (so a torn write never loads)."""
        model_dir.mkdir(parents=True, exist_ok=True)
        artifact = model_dir / ARTIFACT
        tmp = artifact.with_suffix(f".{os.getpid()}.tmp")
        joblib.dump(self.pipeline, tmp)
        os.replace(tmp, artifact)
        metadata = {
            "name": self.name,
            "version": self.version,
            "features": list(FEATURE_NAMES),
            "params": PARAMS,
            "sklearn": sklearn.__version__,
            "medians": self.medians.tolist(),
            "training": self.training,
            "artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        }
        tmp = (model_dir / METADATA).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True))
        os.replace(tmp, model_dir / METADATA)

    @classmethod
    def load(cls, model_dir: Path) -> ReferenceModel:
        """Load a saved model; ``ModelUnavailable`` when it is absent, torn, or of another kind."""
        started = time.perf_counter()
        try:
            metadata = json.loads((model_dir / METADATA).read_text())
            artifact = (model_dir / ARTIFACT).read_bytes()
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"no model in {model_dir}: {exc}") from None
        expected = {"features": list(FEATURE_NAMES), "params": PARAMS, "sklearn": sklearn.__version__}
        for key, value in expected.items():
            if metadata.get(key) != value:
                raise ModelUnavailable(f"the model in {model_dir} was built with other {key}")
        if hashlib.sha256(artifact).hexdigest() != metadata.get("artifact_sha256"):
            raise ModelUnavailable(f"{model_dir / ARTIFACT} does not match {METADATA}")
        pipeline = joblib.load(model_dir / ARTIFACT)  # our own file, checked against its hash above
        model = cls(
            pipeline,
            np.asarray(metadata["medians"], dtype=np.float64),
            metadata["version"],
            metadata["training"],
        )
        model.load_seconds = time.perf_counter() - started
        return model


def train(model_dir: Path | None = None, *, settings: Settings | None = None) -> ReferenceModel:
    """Collect the training set (real Prometheus servers over generated histories), fit, save into
    ``model_dir`` (default: ``default_model_dir(settings)``)."""
    from pipeline.ml.training import TRAINING_HISTORIES, build_training_set

    # a unit per history, and one for the fit and save (a bar on a terminal, else a log line every 10 %)
    with Progress("training the reference ML model", len(TRAINING_HISTORIES) + 1, unit="steps") as progress:
        training = build_training_set(progress=progress)
        progress.note("fitting")
        model = ReferenceModel.fit(training.vectors, training.report())
        model.save(model_dir or default_model_dir(settings))
        progress.advance()
    return model


def is_stale(model: ReferenceModel) -> bool:
    """A model trained from generated history by another recipe than today's (or before recipes existed).
    A model trained on a real cluster (``training.source == "prometheus"``) is never stale."""
    if model.training.get("source") == "prometheus":
        return False
    from pipeline.ml.training import recipe_id

    return model.training.get("recipe") != recipe_id()


def train_or_load(
    model_dir: Path | None = None, *, retrain: bool = False, settings: Settings | None = None
) -> ReferenceModel:
    """The cached model in ``model_dir`` (default: ``default_model_dir(settings)``), or train it (needs the
    Prometheus binaries) and cache it: the first time, and whenever the cached one came from another
    training recipe."""
    directory = model_dir or default_model_dir(settings)
    if not retrain:
        try:
            model = ReferenceModel.load(directory)
        except ModelUnavailable:
            pass
        else:
            if not is_stale(model):
                return model
    return train(directory)

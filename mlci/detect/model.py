"""The model detection runs: a registered version, the extractor it needs, a threshold per concept.

Thresholds default to the ones the version's training run chose on its out-of-fold scores (the
F1-optimal threshold per concept, ``evaluation/metrics.json``); a run logged before thresholds were
recorded has them recomputed the same way from its ``evaluation/oof_scores.parquet``; a concept
with neither gets 0.5. Given thresholds replace them.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from mlci.detect.exceptions import DetectionSchemaError
from mlci.features import FeatureExtractor, FeatureSchema, resolve_extractor
from mlci.layout import FeatureLayout
from mlci.models import (
    CHAMPION,
    FeatureSchemaMismatchError,
    MultiLabelModel,
    load_model,
    resolve_version,
)
from mlci.models.evaluation import best_f1_threshold
from mlci.models.tracking import client_for, mlflow_errors
from mlci.storage import ObjectNotFoundError, Store

__all__ = ["THRESHOLD_SOURCES", "Detector", "load_detector"]

#: Where a concept's threshold came from.
THRESHOLD_SOURCES = ("training run", "given", "default")
_DEFAULT_THRESHOLD = 0.5


@dataclass
class Detector:
    """A registered model version ready to score detection windows.

    Attributes
    ----------
    model_name, version, run_id : str
    model : MultiLabelModel
    extractor : FeatureExtractor
        Configured exactly as the model's training features were.
    thresholds : dict of str to float
        Enter threshold per trained concept.
    threshold_sources : dict of str to str
        Per concept, one of :data:`THRESHOLD_SOURCES`.
    skipped : dict of str to str
        Concepts the model could not train, with their status; they are not detected.
    """

    model_name: str
    version: str
    run_id: str
    model: MultiLabelModel
    extractor: FeatureExtractor
    thresholds: dict[str, float]
    threshold_sources: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def concepts(self) -> list[str]:
        """The trained concepts, in the model's order."""
        return list(self.thresholds)

    @property
    def modality(self) -> str:
        return self.model.modality

    @property
    def window(self) -> float:
        """The extractor's window in seconds."""
        return self.extractor.window_length

    def score(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of shape (n_windows, n_concepts), columns in :attr:`concepts` order."""
        if len(X) == 0:
            return np.zeros((0, len(self.concepts)))
        proba = self.model.predict_proba(X)
        columns = [list(self.model.classes_).index(c) for c in self.concepts]
        return proba[:, columns]


def _cache_id(schema: Mapping[str, str]) -> str:
    """``<extractor>-v<version>-<params hash>`` of a recorded schema (as ``FeatureSchema.cache_id``)."""
    return f"{schema.get('extractor')}-v{schema.get('version')}-{schema.get('params_hash')}"


def _describe(schema: Mapping[str, str]) -> str:
    return f"{_cache_id(schema)} ({schema['modality']})" if schema.get("modality") else _cache_id(schema)


def _check_schema(model: MultiLabelModel, extractor: FeatureExtractor, label: str, store: Store | None) -> None:
    recorded = model.feature_schema_
    configured = {**extractor.schema.to_dict(), "modality": model.modality}
    if recorded is None:
        raise DetectionSchemaError(f"{label} records no feature schema, so detection cannot run its extractor; "
                                   "train a new version")
    try:
        model.check_features(extractor.schema)
    except FeatureSchemaMismatchError:
        hint = "retrain on these features, or configure the extractor the model was trained with"
        trained = _trained_schema(store, recorded)
        if trained is not None and trained.extractor == extractor.name:
            args = " ".join(f"--param {k}={json.dumps(v)}" for k, v in sorted(trained.params.items())
                            if extractor.get_params().get(k) != v)
            hint = f"run detection with the model's extractor parameters ({args}), or retrain on these features"
        raise DetectionSchemaError(
            f"{label} was trained on features {_describe(recorded)}, but the configured extractor gives "
            f"{_describe(configured)}: {hint}"
        ) from None


def _trained_schema(store: Store | None, recorded: Mapping[str, str]) -> FeatureSchema | None:
    """The training features' full schema, when this store holds it (to say which parameters differ)."""
    if store is None or recorded.get("params_hash") is None:
        return None
    try:
        return FeatureSchema.from_json(store.read_text(FeatureLayout(_cache_id(recorded)).schema_key))
    except (ObjectNotFoundError, ValueError, KeyError):
        return None


def _training_thresholds(tracking_uri: str, run_id: str) -> dict[str, float]:
    """Per-concept thresholds the training run recorded (or that its out-of-fold scores give)."""
    client = client_for(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mlci-detect-") as tmp:
        try:
            metrics = json.loads(Path(client.download_artifacts(run_id, "evaluation/metrics.json", tmp)).read_text())
            if isinstance(metrics.get("thresholds"), dict):
                return {str(k): float(v) for k, v in metrics["thresholds"].items()}
        except (MlflowException, OSError, ValueError):
            pass
        try:
            oof = pd.read_parquet(client.download_artifacts(run_id, "evaluation/oof_scores.parquet", tmp))
        except (MlflowException, OSError, ValueError):
            return {}
    out = {}
    for concept, rows in oof.groupby("class"):
        t = best_f1_threshold(rows["label"].to_numpy(), rows["score"].to_numpy())
        if not math.isnan(t):
            out[str(concept)] = t
    return out


def load_detector(
    tracking_uri: str,
    model_name: str,
    *,
    version: str | int | None = None,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    thresholds: Mapping[str, float] | float | None = None,
    store: Store | None = None,
) -> Detector:
    """Load a registered version (the champion when ``version`` is None) for detection.

    Parameters
    ----------
    tracking_uri, model_name : str
    version : str or int, default=None
    extractor, params :
        The configured extractor; it must be the one the model was trained on.
    thresholds : float or dict of str to float, default=None
        One threshold for every concept, or per concept (others keep the training run's).
    store : Store, default=None
        When given and it holds the training features' schema, a mismatch names the parameters to use.

    Raises
    ------
    ModelNotFoundError
        No such model or version (or no champion).
    DetectionSchemaError
        The model was trained on other features than ``extractor`` gives (both are named).
    ValueError
        A threshold outside (0, 1) or for a concept the model does not know.
    """
    info = resolve_version(tracking_uri, model_name, alias=CHAMPION if version is None else None, version=version)
    model = load_model(tracking_uri, model_name, version=info.version)
    ex = resolve_extractor(extractor, params, store=store)
    label = f"model {model_name!r} version {info.version}"
    _check_schema(model, ex, label, store)
    trained = [str(c) for c, ok in zip(model.classes_, model.trained_mask_) if ok]
    skipped = {c: s for c, s in model.class_status_.items() if s != "trained"}
    given = _given_thresholds(thresholds, [str(c) for c in model.classes_])
    with mlflow_errors(tracking_uri):
        recorded = _training_thresholds(tracking_uri, info.run_id) if len(given) < len(trained) else {}
    chosen, sources = {}, {}
    for c in trained:
        if c in given:
            chosen[c], sources[c] = given[c], "given"
        elif c in recorded:
            chosen[c], sources[c] = recorded[c], "training run"
        else:
            chosen[c], sources[c] = _DEFAULT_THRESHOLD, "default"
    return Detector(model_name, info.version, info.run_id, model, ex, chosen, sources, skipped)


def _given_thresholds(thresholds: Mapping[str, float] | float | None, classes: list[str]) -> dict[str, float]:
    if thresholds is None:
        return {}
    given = {c: thresholds for c in classes} if isinstance(thresholds, (int, float)) else dict(thresholds)
    for concept, value in given.items():
        if concept not in classes:
            raise ValueError(f"threshold for {concept!r}: the model has no such concept (it has {', '.join(classes)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ValueError(f"threshold for {concept!r} must be in (0, 1), got {value!r}")
    return {c: float(v) for c, v in given.items()}

"""Align a feature matrix with consensus labels into one training set."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlci.models.exceptions import TrainingDataError
from mlci.models.multilabel import UNKNOWN_LABEL
from mlci.tables import CONSENSUS, conform

__all__ = ["TrainingSet", "build_training_set", "labels_from_table"]


@dataclass(frozen=True)
class TrainingSet:
    """Features and labels of the clips that have both.

    Attributes
    ----------
    keys : ndarray of shape (n_samples,)
        Clip keys (``asset`` of the consensus table), sorted.
    X : ndarray of shape (n_samples, n_features), float32
    Y : ndarray of shape (n_samples, n_classes), int8
        1 present, 0 absent, -1 unknown.
    weights : ndarray of shape (n_samples, n_classes) or None
        Per-label sample weights (0 where the label is unknown).
    classes : tuple of str
    missing_features : tuple of str
        Labeled clips left out because they have no features.
    unknown_classes : tuple of str
        Classes of the consensus table that are not in ``classes`` (ignored).
    """

    keys: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    weights: np.ndarray | None
    classes: tuple[str, ...]
    missing_features: tuple[str, ...] = field(default=())
    unknown_classes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.keys)

    def labels_per_class(self) -> dict[str, dict[str, int]]:
        """``class -> {"positive": n, "negative": n}`` of known labels."""
        return {
            c: {"positive": int((self.Y[:, j] == 1).sum()), "negative": int((self.Y[:, j] == 0).sum())}
            for j, c in enumerate(self.classes)
        }

    def labels_table(self) -> pd.DataFrame:
        """Known labels in long form: columns ``asset``, ``class``, ``label`` (int8)."""
        rows, cols = np.nonzero(self.Y != UNKNOWN_LABEL)
        return pd.DataFrame(
            {
                "asset": pd.array(self.keys[rows], dtype="string"),
                "class": pd.array(np.asarray(self.classes, dtype=object)[cols], dtype="string"),
                "label": self.Y[rows, cols].astype(np.int8),
            }
        )

    def fingerprint(self) -> str:
        """sha256 over keys, classes, labels, weights and feature values: equal inputs, equal digest."""
        h = hashlib.sha256()
        for part in ("\n".join(self.keys.tolist()), "\n".join(self.classes)):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
        h.update(np.ascontiguousarray(self.Y).tobytes())
        h.update(np.ascontiguousarray(self.X).tobytes())
        if self.weights is not None:
            h.update(np.ascontiguousarray(self.weights).tobytes())
        return h.hexdigest()


def labels_from_table(labels: pd.DataFrame, keys: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Label matrix (len(keys), len(classes)) from an ``asset, class, label`` table; -1 where absent."""
    index = {k: i for i, k in enumerate(keys)}
    cindex = {c: j for j, c in enumerate(classes)}
    Y = np.full((len(keys), len(classes)), UNKNOWN_LABEL, dtype=np.int8)
    for asset, cls, label in zip(labels["asset"], labels["class"], labels["label"]):
        i, j = index.get(asset), cindex.get(cls)
        if i is not None and j is not None:
            Y[i, j] = label
    return Y


def build_training_set(
    keys: Sequence[str],
    X: np.ndarray,
    consensus: pd.DataFrame,
    classes: Sequence[str],
    *,
    weight_by_posterior: bool = False,
) -> TrainingSet:
    """Join features and consensus labels on the clip key.

    Parameters
    ----------
    keys : sequence of str of length n_clips
        Clip key of each row of ``X``.
    X : ndarray of shape (n_clips, n_features)
    consensus : DataFrame
        The ``consensus`` table (:data:`mlci.tables.CONSENSUS`): one row per (asset, class).
    classes : sequence of str
        Concepts to train, in column order.
    weight_by_posterior : bool, default=False
        Weight each label by the consensus' confidence in it: ``posterior`` for a positive label,
        ``1 - posterior`` for a negative one (1.0 when the posterior is missing).

    Returns
    -------
    TrainingSet
        Clips that have features and at least one known label for ``classes``, sorted by key.

    Raises
    ------
    TrainingDataError
        Duplicate keys or (asset, class) rows, labels outside {0, 1}, ``X`` not matching ``keys``,
        or no labeled clip with features.
    """
    keys = np.asarray([str(k) for k in keys], dtype=object)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(keys):
        raise TrainingDataError(f"X must have shape ({len(keys)}, n_features) to match keys, but got {X.shape}")
    if len(set(keys.tolist())) != len(keys):
        dup = pd.Series(keys).loc[lambda s: s.duplicated()].iloc[0]
        raise TrainingDataError(f"feature keys must be unique, but {dup!r} appears more than once")
    classes = tuple(str(c) for c in classes)
    if not classes or len(set(classes)) != len(classes):
        raise TrainingDataError(f"classes must be non-empty and unique, but got {list(classes)}")
    table = conform(consensus, CONSENSUS)
    dup = table.duplicated(["asset", "class"])
    if dup.any():
        first = table.loc[dup, ["asset", "class"]].iloc[0].tolist()
        raise TrainingDataError(f"consensus has {int(dup.sum())} duplicate (asset, class) rows, e.g. {first}")
    bad = ~table["label"].isin([0, 1])
    if bad.any():
        raise TrainingDataError(f"consensus labels must be 0 or 1, but got {sorted(table.loc[bad, 'label'].unique().tolist())}")

    unknown_classes = tuple(sorted(set(table["class"].dropna()) - set(classes)))
    table = table[table["class"].isin(classes)]
    have = set(keys.tolist())
    labeled = set(table["asset"].dropna())
    missing = tuple(sorted(labeled - have))
    rows = sorted(labeled & have)
    if not rows:
        raise TrainingDataError(
            f"no labeled clip has features: {len(labeled)} labeled clips, {len(keys)} clips with features"
        )
    order = {k: i for i, k in enumerate(keys.tolist())}
    take = np.fromiter((order[k] for k in rows), dtype=np.int64, count=len(rows))
    out_keys = np.asarray(rows, dtype=object)
    Y = labels_from_table(table, rows, classes)
    weights = None
    if weight_by_posterior:
        post = table.assign(
            w=np.where(table["label"] == 1, table["posterior"], 1.0 - table["posterior"])
        )
        post["w"] = post["w"].fillna(1.0).astype(np.float64)
        index = {k: i for i, k in enumerate(rows)}
        cindex = {c: j for j, c in enumerate(classes)}
        weights = np.zeros(Y.shape, dtype=np.float64)
        for asset, cls, w in zip(post["asset"], post["class"], post["w"]):
            if asset in index:
                weights[index[asset], cindex[cls]] = w
    return TrainingSet(
        keys=out_keys,
        X=np.ascontiguousarray(X[take], dtype=np.float32),
        Y=Y,
        weights=weights,
        classes=classes,
        missing_features=missing,
        unknown_classes=unknown_classes,
    )

"""The data a strategy sees: an unlabeled :class:`Pool`, a separate :class:`LabeledSet`, a :class:`Selection`.

The separation is the point: a :class:`Pool` has no label attribute and its constructor refuses
one, so no strategy can rank unlabeled clips by their true labels (the seed notebook's
"inlier"/"outlier" orderings did; they live only in the simulator, as named oracle bounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlci.strategies.exceptions import LabelLeakError

__all__ = ["Pool", "LabeledSet", "Selection"]

_LABEL_NAMES = frozenset({"y", "label", "labels", "target", "targets", "truth", "consensus"})


def _keys(keys, name: str) -> np.ndarray:
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise ValueError(f"{name} keys must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "OUT":
        raise TypeError(f"{name} keys must be strings, got dtype {arr.dtype}")
    arr = arr.astype(object, copy=False)
    if len(set(arr)) != arr.size:
        dup = pd.Index(arr)[pd.Index(arr).duplicated()][:3].tolist()
        raise ValueError(f"{name} keys must be unique; duplicated: {dup}")
    return _readonly(arr)


def _features(X, n: int, name: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float32)  # no copy when the caller already holds float32
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} X must have shape (n_clips={n}, n_features), got {arr.shape}")
    return _readonly(arr)


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()  # the caller's own array stays writable
    view.flags.writeable = False
    return view


@dataclass(frozen=True, init=False, repr=False, eq=False)
class Pool:
    """Unlabeled clips offered to a query strategy: keys, features and optional model scores.

    Parameters
    ----------
    keys : array-like of str of shape (n_clips,)
        Clip keys, unique.
    X : array-like of shape (n_clips, n_features)
        Features, stored as float32 (pass float32 to avoid a copy). ``n_features`` may be 0 for
        strategies that only use scores.
    proba : array-like of float of shape (n_clips, n_concepts) or (n_clips,), default=None
        Column ``j`` is the model's P(concept ``j`` present) for each clip. Labels are refused:
        integer or boolean arrays raise :class:`LabelLeakError`.

    Notes
    -----
    There is deliberately no ``y``: passing ``y=``, ``labels=`` or any other keyword raises
    :class:`~mlci.strategies.exceptions.LabelLeakError`. Arrays are exposed read-only.
    """

    # Slots written by hand: dataclass(slots=True) breaks frozen __setattr__ on Python 3.11.
    __slots__ = ("keys", "X", "proba")
    keys: np.ndarray
    X: np.ndarray
    proba: np.ndarray | None

    def __init__(self, keys, X, proba=None, **unexpected):
        if unexpected:
            names = sorted(unexpected)
            why = "labels" if _LABEL_NAMES.intersection(n.lower() for n in names) else "anything else"
            raise LabelLeakError(
                f"Pool takes keys, X and proba only, got {names}: a pool carries no {why}; "
                "labeled clips go in a LabeledSet"
            )
        if isinstance(proba, LabeledSet) or isinstance(X, LabeledSet):
            raise LabelLeakError("Pool got a LabeledSet: a pool carries no labels")
        keys = _keys(keys, "pool")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "X", _features(X, keys.size, "pool"))
        object.__setattr__(self, "proba", None if proba is None else self._check_proba(proba, keys.size))

    @staticmethod
    def _check_proba(proba, n: int) -> np.ndarray:
        arr = np.asarray(proba)
        if arr.dtype.kind != "f":
            raise LabelLeakError(
                f"pool proba must be float probabilities, got dtype {arr.dtype}: labels never enter a pool"
            )
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
            raise ValueError(f"pool proba must have shape (n_clips={n}, n_concepts), got {np.shape(proba)}")
        if n and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise ValueError(
                f"pool proba must be finite probabilities in [0, 1], got min={np.nanmin(arr)}, "
                f"max={np.nanmax(arr)}, {int(np.count_nonzero(~np.isfinite(arr)))} non-finite"
            )
        return _readonly(arr)

    def with_scores(self, proba) -> Pool:
        """The same clips and features with new scores, without re-checking keys or copying ``X``.

        Parameters
        ----------
        proba : array-like of float of shape (n_clips, n_concepts) or (n_clips,)
        """
        pool = object.__new__(Pool)
        object.__setattr__(pool, "keys", self.keys)
        object.__setattr__(pool, "X", self.X)
        object.__setattr__(pool, "proba", self._check_proba(proba, self.keys.size))
        return pool

    @property
    def n_concepts(self) -> int:
        """Number of score columns (0 without scores)."""
        return 0 if self.proba is None else self.proba.shape[1]

    def __len__(self) -> int:
        return self.keys.size

    def __repr__(self) -> str:
        return f"Pool(n_clips={len(self)}, n_features={self.X.shape[1]}, n_concepts={self.n_concepts})"


@dataclass(frozen=True, init=False, repr=False, eq=False)
class LabeledSet:
    """Labeled clips: keys, features and 0/1 labels per concept, for strategies fitted on labels.

    Parameters
    ----------
    keys : array-like of str of shape (n_labeled,)
    X : array-like of shape (n_labeled, n_features)
        Same feature space as the pool.
    y : array-like of {0, 1} of shape (n_labeled, n_concepts) or (n_labeled,)
        Consensus labels, stored as int8.
    """

    __slots__ = ("keys", "X", "y")
    keys: np.ndarray
    X: np.ndarray
    y: np.ndarray

    def __init__(self, keys, X, y):
        keys = _keys(keys, "labeled")
        labels = np.asarray(y)
        if labels.ndim == 1:
            labels = labels.reshape(-1, 1)
        if labels.ndim != 2 or labels.shape[0] != keys.size:
            raise ValueError(f"labeled y must have shape (n_labeled={keys.size}, n_concepts), got {np.shape(y)}")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"labeled y must hold 0/1 labels, got values {np.unique(labels)[:5].tolist()}")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "X", _features(X, keys.size, "labeled"))
        object.__setattr__(self, "y", _readonly(labels.astype(np.int8)))

    def __len__(self) -> int:
        return self.keys.size

    def __repr__(self) -> str:
        return f"LabeledSet(n_labeled={len(self)}, n_features={self.X.shape[1]}, n_concepts={self.y.shape[1]})"


@dataclass(frozen=True, eq=False)
class Selection:
    """The clips a strategy chose, best first.

    Attributes
    ----------
    indices : ndarray of int64 of shape (batch_size,)
        Positions in the pool, in rank order.
    keys : ndarray of str of shape (batch_size,)
    utility : ndarray of float64 of shape (batch_size,)
        The strategy's utility of each selected clip (higher = more worth labeling).
    reason : ndarray of str of shape (batch_size,)
        Why each clip was chosen: ``uncertain``, ``diverse``, ``relabel``, ``random``,
        ``positive``, ``negative`` or ``anomalous``.
    concept : ndarray of int64 of shape (batch_size,)
        Score column the clip was chosen for (the per-concept argmax under ``policy="max"``,
        the concept whose quota it filled under ``"round_robin"``), or -1 when no single concept.
    """

    indices: np.ndarray
    keys: np.ndarray
    utility: np.ndarray
    reason: np.ndarray
    concept: np.ndarray

    def __len__(self) -> int:
        return self.indices.size

    def to_frame(self) -> pd.DataFrame:
        """One row per selected clip: ``rank`` (1-based), ``key``, ``utility``, ``reason``, ``concept``."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(self) + 1, dtype=np.int64),
                "key": pd.array(self.keys, dtype="string"),
                "utility": self.utility,
                "reason": pd.array(self.reason, dtype="string"),
                "concept": self.concept,
            }
        )

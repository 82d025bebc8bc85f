"""Plan one active-learning round: which clips form the next labeling batch, and why.

Pure computation over arrays and tables; publishing is :mod:`mlci.batches.publish`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlci.batches.publish import score_column
from mlci.consensus.relabel import clips_to_relabel
from mlci.strategies import LabeledSet, Pool, QueryStrategy
from mlci.tables import BATCH, conform

__all__ = ["RoundInputs", "RoundPlan", "round_id", "plan_round", "consensus_matrix"]


def round_id(determinants: Mapping[str, Any]) -> str:
    """A short id derived from everything that decides a batch (same inputs -> same id).

    ``determinants`` holds the model name and version, the label snapshot, the feature snapshot,
    the strategy and its parameters, batch size and relabel share.
    """
    blob = json.dumps(determinants, sort_keys=True, default=str).encode()
    return "r-" + hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class RoundInputs:
    """What a round knows. Arrays are aligned with ``keys``; ``proba`` is the champion's scores.

    ``labeled_y`` is the consensus label matrix of the labeled clips (rows follow
    ``labeled_keys``; columns follow ``classes``). ``relabel`` is the consensus snapshot's RELABEL
    table (:func:`mlci.consensus.relabel_candidates`). ``unavailable`` are keys that must not be
    offered: quarantined clips and clips in batches still out. ``recently_batched`` are clips of
    batches not yet expired, answered or not: they are not offered again for relabeling.
    ``stopped`` are concepts the stop advisor says to stop labeling: they rank nothing, so the
    batch's round-robin quotas go to the other concepts.
    """

    keys: np.ndarray
    X: np.ndarray
    proba: np.ndarray
    classes: Sequence[str]
    labeled_keys: np.ndarray
    labeled_y: np.ndarray
    relabel: pd.DataFrame
    unavailable: frozenset[str] = field(default_factory=frozenset)
    recently_batched: frozenset[str] = field(default_factory=frozenset)
    stopped: frozenset[str] = field(default_factory=frozenset)


@dataclass
class RoundPlan:
    """The batch a round chose: ``batch`` follows :data:`mlci.tables.BATCH`."""

    batch: pd.DataFrame
    n_pool: int
    n_new: int
    n_relabel: int
    dropped_concepts: list[str]


def plan_round(
    inputs: RoundInputs,
    strategy: QueryStrategy,
    *,
    batch_size: int,
    relabel_share: float,
    url_for: Any = None,
    random_state: int | None = 0,
) -> RoundPlan:
    """Choose the next batch: new clips from the unlabeled pool plus relabel candidates.

    Parameters
    ----------
    inputs : RoundInputs
    strategy : QueryStrategy
        Ranks the unlabeled pool.
    batch_size : int
        Clips in the batch (fewer when the pool is smaller).
    relabel_share : float
        At most this share of the batch goes to the consensus's relabel candidates (``inputs.relabel``).
    url_for : callable, default=None
        ``key -> URL`` written in the batch; the key itself when None.
    random_state : int, default=0

    Returns
    -------
    RoundPlan
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not 0 <= relabel_share <= 1:
        raise ValueError(f"relabel_share must be in [0, 1], got {relabel_share!r}")
    classes = list(inputs.classes)
    keys = np.asarray(inputs.keys, dtype=object)
    labeled = set(inputs.labeled_keys.tolist())
    in_pool = np.array([k not in labeled and k not in inputs.unavailable for k in keys], dtype=bool)

    # A concept the champion could not train has no scores (NaN); it cannot rank anything.
    trained = ~np.isnan(inputs.proba).all(axis=0) if len(keys) else np.ones(len(classes), bool)
    dropped = [c for c, ok in zip(classes, trained) if not ok]
    trained &= np.array([c not in inputs.stopped for c in classes], dtype=bool)
    if inputs.stopped and not trained.any():
        # Every concept is advised to stop: labeling anything, relabels included, buys nothing.
        in_pool[:] = False
        relabel_share = 0.0

    relabel = clips_to_relabel(inputs.relabel, int(np.floor(relabel_share * batch_size)),
                               exclude=inputs.unavailable | inputs.recently_batched)
    n_relabel = len(relabel)
    n_new = min(batch_size - n_relabel, int(in_pool.sum()))

    rows: list[dict[str, Any]] = []
    if n_new > 0:
        pool = Pool(keys[in_pool], inputs.X[in_pool], np.nan_to_num(inputs.proba[in_pool][:, trained], nan=0.5))
        labeled_set = None
        if len(inputs.labeled_keys):
            feature_index = {k: i for i, k in enumerate(keys)}
            rows_with_features = [i for i, k in enumerate(inputs.labeled_keys) if k in feature_index]
            if rows_with_features:
                labeled_set = LabeledSet(
                    inputs.labeled_keys[rows_with_features],
                    inputs.X[[feature_index[k] for k in inputs.labeled_keys[rows_with_features]]],
                    # A class without consensus for a clip counts as absent for the strategy.
                    np.clip(inputs.labeled_y[rows_with_features][:, trained], 0, 1),
                )
        selection = strategy.query(pool, labeled=labeled_set, batch_size=n_new, random_state=random_state)
        for key, utility, reason in zip(selection.keys, selection.utility, selection.reason):
            rows.append({"key": key, "utility": float(utility), "reason": str(reason)})
    for key, utility in zip(relabel["key"], relabel["utility"]):
        rows.append({"key": key, "utility": float(utility), "reason": "relabel"})

    batch = pd.DataFrame(rows, columns=["key", "utility", "reason"])
    batch.insert(0, "rank", np.arange(1, len(batch) + 1, dtype=np.int64))
    batch.insert(2, "url", [url_for(k) if url_for else k for k in batch["key"]])
    index = {k: i for i, k in enumerate(keys)}
    for j, concept in enumerate(classes):
        batch[score_column(concept)] = [
            float(inputs.proba[index[k], j]) if k in index else np.nan for k in batch["key"]
        ]
    return RoundPlan(
        batch=conform(batch, BATCH), n_pool=int(in_pool.sum()), n_new=max(n_new, 0),
        n_relabel=n_relabel, dropped_concepts=dropped,
    )


def consensus_matrix(consensus: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labeled keys and their hard consensus labels, shape (n_labeled, n_classes); -1 where unknown."""
    if consensus.empty:
        return np.array([], dtype=object), np.zeros((0, len(classes)), dtype=np.int8)
    wide = consensus.pivot(index="asset", columns="class", values="label").reindex(columns=list(classes))
    return wide.index.to_numpy(dtype=object), wide.fillna(-1).to_numpy(dtype=np.int8)

"""Labels for an analysis: from the consensus tables or the demo corpus's truth, aligned with features.

The engine itself takes plain arrays (:func:`mlci.analysis.make_data`); these helpers turn the
store's tables into them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlci.analysis.engine import SimulationData, make_data

__all__ = [
    "SOURCES",
    "align_features",
    "data_fingerprint",
    "labels_from_consensus",
    "labels_from_truth",
    "load_analysis_data",
]

#: Where the labels of an analysis come from.
SOURCES = ("consensus", "truth")


def labels_from_consensus(consensus: pd.DataFrame, concepts: Sequence[str] | None = None) -> pd.DataFrame:
    """A clip x concept 0/1 frame from a CONSENSUS table; clips missing any concept are dropped.

    Parameters
    ----------
    consensus : pandas.DataFrame
        CONSENSUS rows (asset, class, label, ...).
    concepts : sequence of str, default=None
        Column order (the catalog's); None: the table's classes, sorted.

    Returns
    -------
    pandas.DataFrame
        Index: clip key; one int8 column per concept.
    """
    missing = [c for c in ("asset", "class", "label") if c not in consensus.columns]
    if missing:
        raise ValueError(f"consensus table lacks columns {missing}; has {list(consensus.columns)}")
    wide = consensus.pivot_table(index="asset", columns="class", values="label", aggfunc="first")
    columns = sorted(wide.columns) if concepts is None else list(concepts)
    absent = [c for c in columns if c not in wide.columns]
    if absent:
        raise ValueError(f"consensus has no labels for concepts {absent}; it has {sorted(wide.columns)}")
    wide = wide[columns].dropna(axis=0, how="any").astype(np.int8)
    wide.index = wide.index.astype(str)
    wide.columns.name = None
    return wide


def labels_from_truth(truth: pd.DataFrame) -> pd.DataFrame:
    """A clip x concept 0/1 frame from the demo corpus's TRUTH table (``key`` plus one column per concept)."""
    if "key" not in truth.columns:
        raise ValueError(f"truth table needs a 'key' column; has {list(truth.columns)}")
    wide = truth.set_index("key")
    if not len(wide.columns):
        raise ValueError("truth table has no concept columns")
    values = wide.to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise ValueError("truth table concept columns must hold 0/1")
    wide = wide.astype(np.int8)
    wide.index = wide.index.astype(str)
    return wide


def align_features(
    keys: Sequence[str], X: np.ndarray, labels: pd.DataFrame, *, min_positives: int = 5
) -> tuple[SimulationData, dict[str, int]]:
    """Keep the clips that have both features and labels, in feature order.

    Returns
    -------
    data : SimulationData
    counts : dict
        ``with_features``, ``with_labels``, ``used``, ``labels_without_features``,
        ``features_without_labels``.

    Raises
    ------
    ValueError
        When no clip has both.
    """
    keys = np.asarray(keys).astype(str)
    label_keys = labels.index.astype(str)
    in_labels = pd.Index(label_keys).get_indexer(keys)
    keep = in_labels >= 0
    if not keep.any():
        raise ValueError(
            f"no clip has both features ({len(keys)} clips) and labels ({len(labels)} clips); "
            f"e.g. feature key {keys[:1].tolist()} vs label key {list(label_keys[:1])}"
        )
    Y = labels.to_numpy()[in_labels[keep]]
    data = make_data(keys[keep], np.asarray(X)[keep], Y, list(labels.columns), min_positives=min_positives)
    counts = {
        "with_features": len(keys),
        "with_labels": len(labels),
        "used": int(keep.sum()),
        "labels_without_features": int(len(labels) - keep.sum()),
        "features_without_labels": int((~keep).sum()),
    }
    return data, counts


def data_fingerprint(data: SimulationData, params: dict) -> str:
    """A short sha256 of the data (keys, features, labels, concepts) and the analysis parameters."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, data.keys)).encode())
    h.update(np.ascontiguousarray(data.X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(data.Y, dtype=np.int8).tobytes())
    h.update(json.dumps(list(data.concepts)).encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def load_analysis_data(
    store,
    *,
    source: str = "consensus",
    concepts: Sequence[str] | None = None,
    extractor: str = "basic",
    modality: str = "combined",
    snapshot: str | None = None,
    min_positives: int = 5,
    params: dict | None = None,
) -> tuple[SimulationData, str]:
    """Features and labels from the store, aligned, and one sentence saying where they came from.

    Parameters
    ----------
    store : Store
    source : {"consensus", "truth"}, default="consensus"
        The latest (or ``snapshot``) consensus labels, or the demo corpus's ground truth.
    concepts : sequence of str, default=None
        Concept order (the catalog's); consensus classes not listed are ignored. None: as stored.
    extractor, modality : str
        Which features (:func:`mlci.features.load_features`).
    params : dict, default=None
        The extractor's parameters (its defaults when None).
    snapshot : str, default=None
    min_positives : int, default=5

    Raises
    ------
    ValueError
        Unknown ``source``, or no clip with both features and labels.
    mlci.consensus.SnapshotNotFoundError, mlci.features.FeaturesNotComputedError
        When the store has no consensus or no features yet.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    from mlci.features import load_features

    keys, X, _ = load_features(store, extractor=extractor, params=params, modality=modality)
    if source == "consensus":
        from mlci.consensus import load_consensus

        table = load_consensus(store, snapshot)
        present = set(table["class"])
        order = [c for c in concepts if c in present] if concepts is not None else None
        labels = labels_from_consensus(table, order)
        origin = f"consensus labels of snapshot {table.attrs.get('snapshot', '?')}"
    else:
        from mlci.demo import load_truth

        labels = labels_from_truth(load_truth(store))
        origin = "the demo corpus's ground truth (truth/labels.csv)"
    data, counts = align_features(keys, X, labels, min_positives=min_positives)
    description = (
        f"Data: store {store.uri}; labels are {origin}; features are the {extractor} extractor's {modality} "
        f"features ({data.X.shape[1]} dimensions). {counts['used']} clips have both "
        f"({counts['features_without_labels']} clips with features have no labels, "
        f"{counts['labels_without_features']} labeled clips have no features)."
    )
    return data, description

"""The stop signals of one night, per concept: what a team can measure without held-out truth.

Each model version the nightly trains (on every label of its night) adds one point to each
concept's series:

``kappa``
    Cohen's kappa between this version's and the previous recorded version's 0/1 predictions on the
    *stop set*: a fixed sample of clips chosen once from the first night's pool, less the clips
    labeled since (Bloodgood & Vijay-Shanker 2009). NaN when either predicts one class everywhere,
    or when fewer than :data:`MIN_STOP_CLIPS` clips are left to compare on.
``oof_ap``
    The version's out-of-fold (cross-validated) AP for the concept, from its training run.
``uncertainty``
    Mean binary entropy in bits of the version's scores over the unlabeled pool (Zhu et al. 2008).
``prevalence``
    The pool's estimated share of positives: the mean score over pool and stop set.
``labels``, ``positives``, ``new_labels``, ``new_positives``
    Known consensus labels for the concept and how many arrived since the previous version:
    ``new_positives / new_labels`` is what the last labels found, to hold against ``prevalence``.

The successive versions, not the successive champions, make the series: each version is fitted on
all labels of its night, which is what the signals are about; the promotion gate decides serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["choose_stop_set", "night_signals", "stop_predictions"]

#: Fewest stop-set clips a kappa is computed on (fewer agree by chance too easily).
MIN_STOP_CLIPS = 50
#: Clips of the pool the uncertainty and prevalence are estimated on (a fixed sample when larger).
MAX_POOL_SAMPLE = 50_000


def choose_stop_set(pool_keys: Sequence[str], *, size: int = 1000, random_state: int = 0) -> list[str]:
    """Up to ``size`` keys of ``pool_keys``, sorted; the same keys for the same pool and seed."""
    keys = np.array(sorted(map(str, pool_keys)), dtype=object)
    if len(keys) > size:
        keys = np.sort(np.random.default_rng(random_state).choice(keys, size=size, replace=False))
    return keys.tolist()


def stop_predictions(proba: np.ndarray, keys: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """The stop set's 0/1 predictions (score >= 0.5) as a table: ``key`` + one bool column per concept.

    An untrained concept (NaN scores) predicts absent everywhere, which gives a NaN kappa.
    """
    table = pd.DataFrame({"key": pd.Series(list(keys), dtype="string")})
    for j, concept in enumerate(classes):
        table[concept] = np.nan_to_num(proba[:, j], nan=0.0) >= 0.5
    return table


def night_signals(
    *,
    classes: Sequence[str],
    predictions: pd.DataFrame,
    previous_predictions: pd.DataFrame | None,
    pool_proba: np.ndarray,
    stop_proba: np.ndarray,
    consensus: pd.DataFrame,
    oof_ap: Mapping[str, float],
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per concept: the signals of this version (:data:`mlci.tables.ADVISOR_SIGNALS` without the ids).

    Parameters
    ----------
    classes : sequence of str
    predictions, previous_predictions : DataFrame
        :func:`stop_predictions` of this and the previous recorded version (None: the first night).
        Kappa is computed on the keys both hold (NaN with fewer than :data:`MIN_STOP_CLIPS`).
    pool_proba : ndarray of shape (n_pool, n_classes)
        This version's scores on the unlabeled pool (a sample of it).
    stop_proba : ndarray of shape (n_stop, n_classes)
        Its scores on the stop set.
    consensus : DataFrame
        :data:`mlci.tables.CONSENSUS` of the night's label snapshot.
    oof_ap : mapping
        Concept -> cross-validated AP of this version (NaN when it could not be evaluated).
    previous : DataFrame, default=None
        The previous version's signals (for ``new_labels`` / ``new_positives``).
    """
    # Imported here: reading advice (`mlci status`) must not pay for the analysis package's imports.
    from mlci.analysis.stopping import mean_uncertainty, prediction_kappa

    classes = list(classes)
    if previous_predictions is not None:
        shared = predictions.merge(previous_predictions, on="key", suffixes=("", "_prev"))
        kappa = prediction_kappa(shared[[f"{c}_prev" for c in classes]].to_numpy(bool), shared[classes].to_numpy(bool)) \
            if len(shared) >= MIN_STOP_CLIPS else np.full(len(classes), np.nan)
    else:
        kappa = np.full(len(classes), np.nan)
    uncertainty = mean_uncertainty(pool_proba) if len(pool_proba) else np.full(len(classes), np.nan)
    both = np.vstack([pool_proba, stop_proba]) if len(stop_proba) else pool_proba
    scored = (~np.isnan(both)).sum(axis=0)  # an untrained concept has no scores: NaN, without a warning
    prevalence = np.where(scored > 0, np.nansum(both, axis=0) / np.maximum(scored, 1), np.nan)
    known = consensus[consensus["label"] >= 0]
    labels = known.groupby("class", observed=True)["label"].agg(["count", "sum"])
    before = previous.set_index("concept") if previous is not None and len(previous) else None
    rows: list[dict[str, Any]] = []
    for j, concept in enumerate(classes):
        n = int(labels.loc[concept, "count"]) if concept in labels.index else 0
        pos = int(labels.loc[concept, "sum"]) if concept in labels.index else 0
        n0 = int(before.loc[concept, "labels"]) if before is not None and concept in before.index else 0
        p0 = int(before.loc[concept, "positives"]) if before is not None and concept in before.index else 0
        rows.append({
            "concept": concept,
            "labels": n,
            "positives": pos,
            "new_labels": max(n - n0, 0),
            "new_positives": max(pos - p0, 0),
            "oof_ap": float(oof_ap.get(concept, np.nan)),
            "kappa": float(kappa[j]),
            "uncertainty": float(uncertainty[j]),
            "prevalence": float(prevalence[j]),
            "stop_set_size": int(len(predictions)),
        })
    return pd.DataFrame(rows)

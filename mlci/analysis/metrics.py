"""The seed's evaluation metrics, vectorised over many score columns at once.

The definitions are those of the seed notebook's ``classifier_score`` (binary per concept):
average precision, ROC AUC, and accuracy, recall and F1 of the decision ``score >= 0.5``. They
give the same numbers as ``sklearn.metrics`` (checked in ``tests/test_analysis_core.py``) but take
an ``(n_clips, n_columns)`` matrix and skip scikit-learn's per-call validation, which costs more
than the metric itself on the small sets a simulation round scores. Macro averages are the
unweighted mean over concepts.

One deliberate difference: AP and ROC AUC are NaN when the labels hold a single class (scikit-learn
warns and returns 0 for AP, NaN for AUC), so an exhausted pool shows as a gap, not as a zero.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["METRICS", "THRESHOLD", "average_precision", "column_metrics", "roc_auc"]

#: Metric names in the order they are reported.
METRICS = ("ap", "auc", "accuracy", "recall", "f1")
#: Decision threshold of the seed's accuracy, recall and F1.
THRESHOLD = 0.5


def _as_2d(y, s) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same shape, got {y.shape} and {s.shape}")
    return y.astype(bool, copy=False), s


def average_precision(y, s) -> np.ndarray:
    """Average precision per column: ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds.

    Parameters
    ----------
    y : array-like of {0, 1} of shape (n,) or (n, m)
    s : array-like of float of the same shape

    Returns
    -------
    ndarray of float64 of shape (m,)
        NaN for a column without positives.
    """
    y, s = _as_2d(y, s)
    n, m = s.shape
    if n == 0:
        return np.full(m, np.nan)
    order = np.argsort(-s, axis=0, kind="stable")
    ss = np.take_along_axis(s, order, axis=0)
    ys = np.take_along_axis(y, order, axis=0)
    tp = np.cumsum(ys, axis=0, dtype=np.float64)
    precision = tp / np.arange(1, n + 1)[:, None]
    # Each clip takes the precision at the end of its tie group (the threshold equal to its score).
    end = np.ones((n, m), dtype=bool)
    end[:-1] = ss[:-1] != ss[1:]
    group_end = np.where(end, np.arange(n)[:, None], n)
    group_end = np.minimum.accumulate(group_end[::-1], axis=0)[::-1]
    prec_at_end = np.take_along_axis(precision, group_end, axis=0)
    n_pos = tp[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (ys * prec_at_end).sum(axis=0) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def roc_auc(y, s) -> np.ndarray:
    """Area under the ROC curve per column (Mann–Whitney U with ties counted one half).

    Returns
    -------
    ndarray of float64 of shape (m,)
        NaN for a column with a single class.
    """
    y, s = _as_2d(y, s)
    n_pos = y.sum(axis=0).astype(np.float64)
    n_neg = y.shape[0] - n_pos
    if y.shape[0] == 0:
        return np.full(y.shape[1], np.nan)
    ranks = rankdata(s, axis=0, method="average")
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def column_metrics(y, s, *, threshold: float = THRESHOLD) -> dict[str, np.ndarray]:
    """The seed's five metrics per column of ``s`` against the 0/1 labels ``y``.

    The batched counterpart of :func:`mlci.models.evaluation.binary_metrics` (one concept, six
    metrics, scikit-learn) under the seed's names: ``auc`` is its ``roc_auc``; precision is not
    reported. Both give the same numbers (tested).

    Parameters
    ----------
    y : array-like of {0, 1} of shape (n,) or (n, m)
    s : array-like of float of the same shape
        Scores, P(concept present).
    threshold : float, default=0.5
        A clip is predicted positive when its score is ``>= threshold`` (the seed's ``thresh``).

    Returns
    -------
    dict of str to ndarray of float64 of shape (m,)
        ``ap``, ``auc``, ``accuracy``, ``recall``, ``f1``. Recall and F1 are 0 when undefined
        (no positives), as scikit-learn's ``zero_division`` default gives; accuracy is NaN on an
        empty set.
    """
    y, s = _as_2d(y, s)
    n = y.shape[0]
    pred = s >= threshold
    tp = (pred & y).sum(axis=0).astype(np.float64)
    fp = (pred & ~y).sum(axis=0).astype(np.float64)
    n_pos = y.sum(axis=0).astype(np.float64)
    fn = n_pos - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (pred == y).sum(axis=0) / n if n else np.full(y.shape[1], np.nan)
        recall = np.where(n_pos > 0, tp / n_pos, 0.0)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return {
        "ap": average_precision(y, s),
        "auc": roc_auc(y, s),
        "accuracy": np.asarray(accuracy, dtype=np.float64),
        "recall": recall,
        "f1": f1,
    }

"""Out-of-fold evaluation: the seed's ``classifier_score`` and ``classifier_plot``, done per concept.

Metric definitions (used everywhere in mlci, and in ``docs/models.md``):

- Every metric is **binary, per concept**: the positive class is "concept present", computed on the
  clips whose label for that concept is known and that received an out-of-fold score. Unknown
  labels are never counted as negatives (the seed notebook did that).
- ``ap``: average precision (``sklearn.metrics.average_precision_score``, the step-wise area under
  the precision-recall curve). ``roc_auc``: area under the ROC curve.
- ``accuracy``, ``precision``, ``recall``, ``f1``: of the decision ``score >= threshold``
  (default 0.5); precision and F1 are 0 when nothing is predicted positive.
- ``threshold``: the per-concept decision threshold chosen on the out-of-fold scores, the one with
  the highest F1 (:func:`best_f1_threshold`); the detection flow uses it. Not a metric: the
  metrics above stay at the fixed ``threshold`` of the evaluation, so runs compare.
- ``macro_<metric>``: the unweighted mean of the per-concept values over the concepts that were
  evaluated (status ``"evaluated"``); concepts that could not be cross-validated do not count.
  NaN when no concept was evaluated.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas; no pyplot state), so they are
safe in worker threads and never open a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from mlci.models.estimators import fit_binary
from mlci.models.exceptions import TooFewLabelsError
from mlci.models.multilabel import (
    UNKNOWN_LABEL,
    MultiLabelModel,
    check_label_matrix,
    check_sample_weight,
)
from mlci.models.versions import METRICS
from mlci.tables import OOF_SCORES, conform

__all__ = [
    "METRICS",
    "EVALUATION_STATUSES",
    "Evaluation",
    "best_f1_threshold",
    "binary_metrics",
    "check_cv_params",
    "cross_validate",
    "evaluate_scores",
    "plot_class_curves",
    "plot_summary",
]

#: Per-concept outcome of :func:`cross_validate`.
EVALUATION_STATUSES = ("evaluated", "too_few_positives", "too_few_negatives", "no_scores")


def binary_metrics(y_true: np.ndarray, score: np.ndarray, *, threshold: float = 0.5) -> dict[str, float]:
    """AP, ROC AUC, and accuracy / precision / recall / F1 at ``threshold`` of one concept.

    Metrics that need both labels present (AP, ROC AUC) are NaN when one is missing.
    """
    y_true = np.asarray(y_true).astype(int)
    score = np.asarray(score, dtype=np.float64)
    pred = (score >= threshold).astype(int)
    both = 0 < y_true.sum() < y_true.size
    return {
        "ap": float(skm.average_precision_score(y_true, score)) if both else math.nan,
        "roc_auc": float(skm.roc_auc_score(y_true, score)) if both else math.nan,
        "accuracy": float(skm.accuracy_score(y_true, pred)) if y_true.size else math.nan,
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
    }


def best_f1_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """The decision threshold with the highest F1 on these scores (NaN without both labels).

    The threshold sits halfway between the lowest score taken as positive and the next lower
    score, so it does not rest on one clip's exact score; ties go to the higher threshold.
    """
    y_true = np.asarray(y_true).astype(int)
    score = np.asarray(score, dtype=np.float64)
    if not 0 < y_true.sum() < y_true.size:
        return math.nan
    precision, recall, cuts = skm.precision_recall_curve(y_true, score)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0)[:-1]
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    below = score[score < cuts[best]]
    return float((cuts[best] + below.max()) / 2 if below.size else cuts[best])


@dataclass(frozen=True)
class Evaluation:
    """Out-of-fold scores of a model and the metrics computed from them.

    Attributes
    ----------
    classes : tuple of str
    Y : ndarray of shape (n_samples, n_classes), int8
        The labels scored against (-1 unknown).
    scores : ndarray of shape (n_samples, n_classes)
        Out-of-fold probability; NaN where the label is unknown or no fold could score it.
    folds : ndarray of shape (n_samples, n_classes), int64
        Fold that scored each entry (-1 when not scored).
    per_class : DataFrame
        One row per concept: ``class, status, n_positive, n_negative, n_scored, n_folds``,
        :data:`METRICS` and ``threshold`` (:func:`best_f1_threshold` of its out-of-fold scores).
    macro : dict
        ``macro_<metric>`` over the evaluated concepts.
    threshold : float
    """

    classes: tuple[str, ...]
    Y: np.ndarray
    scores: np.ndarray
    folds: np.ndarray
    per_class: pd.DataFrame
    macro: dict[str, float]
    threshold: float = 0.5

    @property
    def status(self) -> dict[str, str]:
        return dict(zip(self.per_class["class"], self.per_class["status"]))

    @property
    def n_evaluated_labels(self) -> int:
        """Known labels with an out-of-fold score, over the concepts with status ``"evaluated"``."""
        done = self.per_class["status"] == "evaluated"
        return int(self.per_class.loc[done, "n_scored"].sum())

    def oof_table(self, keys: Sequence[str]) -> pd.DataFrame:
        """The scored entries as the :data:`~mlci.tables.OOF_SCORES` table."""
        rows, cols = np.nonzero(~np.isnan(self.scores))
        df = pd.DataFrame(
            {
                "asset": np.asarray(keys, dtype=object)[rows],
                "class": np.asarray(self.classes, dtype=object)[cols],
                "label": self.Y[rows, cols],
                "score": self.scores[rows, cols],
                "fold": self.folds[rows, cols],
            }
        )
        return conform(df, OOF_SCORES)

    def class_metrics(self, name: str) -> dict[str, float]:
        row = self.per_class.set_index("class").loc[name]
        return {m: float(row[m]) for m in METRICS}


def _fold_count(n_pos: int, n_neg: int, n_splits: int) -> int:
    # Every fold must hold at least one positive and one negative to be stratified.
    return min(n_splits, n_pos, n_neg)


def check_cv_params(*, n_splits: int, threshold: float) -> None:
    """Raise ``ValueError`` unless ``n_splits`` is an int >= 2 and ``threshold`` is in (0, 1)."""
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an int >= 2, but got {n_splits!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), but got {threshold!r}")


def cross_validate(
    model: MultiLabelModel,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
    n_splits: int = 5,
    threshold: float = 0.5,
    random_state: int | None = 0,
) -> Evaluation:
    """Out-of-fold scores of ``model``'s binary classifier for each concept, and their metrics.

    Each concept is split on its own known labels by a shuffled ``StratifiedKFold`` with
    ``min(n_splits, n_positive, n_negative)`` folds; a concept with fewer than 2 positives or 2
    negatives is not evaluated. A fold whose training part is too small for the estimator (e.g.
    calibration needs 2 of each) leaves its entries unscored.

    Parameters
    ----------
    model : MultiLabelModel
        Supplies classes, estimator, parameters, calibration and the per-concept seeds (unfitted
        is fine; it is not modified).
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_classes)
    sample_weight : ndarray of shape (n_samples,) or (n_samples, n_classes), default=None
        Used when fitting; metrics are unweighted.
    n_splits : int, default=5
    threshold : float, default=0.5
    random_state : int or None, default=0
        Seed of the fold assignment.
    """
    check_cv_params(n_splits=n_splits, threshold=threshold)
    model.check_params()
    X = np.asarray(X)
    classes = tuple(str(c) for c in model.classes)
    Y = check_label_matrix(Y, X.shape[0], len(classes))
    W = check_sample_weight(sample_weight, X.shape[0], len(classes))
    seeds = model.class_seeds()
    scores = np.full(Y.shape, np.nan)
    folds = np.full(Y.shape, -1, dtype=np.int64)
    records = []
    for j, name in enumerate(classes):
        rows = np.flatnonzero(Y[:, j] != UNKNOWN_LABEL)
        y = Y[rows, j]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        k = _fold_count(n_pos, n_neg, n_splits)
        record = {"class": name, "n_positive": n_pos, "n_negative": n_neg, "n_folds": k if k >= 2 else 0}
        if k < 2:
            record["status"] = "too_few_positives" if n_pos < 2 else "too_few_negatives"
        else:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
            for f, (train, test) in enumerate(splitter.split(np.zeros(len(rows)), y)):
                X_train, X_test = X[rows[train]], X[rows[test]]
                if model.standardize:
                    # Fitted on the training fold only, as MultiLabelModel.fit does on all its rows.
                    scaler = StandardScaler().fit(X_train)
                    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
                try:
                    clf = fit_binary(
                        model.estimator,
                        model.estimator_params,
                        X_train,
                        y[train],
                        None if W is None else W[rows[train], j],
                        calibration=model.calibration,
                        random_state=int(seeds[j]),
                    )
                except TooFewLabelsError:
                    continue
                proba = clf.predict_proba(X_test)
                scores[rows[test], j] = proba[:, list(clf.classes_).index(1)]
                folds[rows[test], j] = f
            record["status"] = "evaluated" if np.isfinite(scores[rows, j]).any() else "no_scores"
        scored = rows[np.isfinite(scores[rows, j])]
        record["n_scored"] = int(scored.size)
        if record["status"] == "evaluated":
            record.update(binary_metrics(Y[scored, j], scores[scored, j], threshold=threshold))
            record["threshold"] = best_f1_threshold(Y[scored, j], scores[scored, j])
        else:
            record.update({m: math.nan for m in METRICS}, threshold=math.nan)
        records.append(record)
    per_class = pd.DataFrame.from_records(
        records, columns=["class", "status", "n_positive", "n_negative", "n_scored", "n_folds", *METRICS, "threshold"]
    )
    return Evaluation(classes, Y, scores, folds, per_class, macro_means(per_class), threshold)


def macro_means(per_class: pd.DataFrame) -> dict[str, float]:
    """``macro_<metric>``: unweighted mean over the concepts with status ``"evaluated"``."""
    done = per_class[per_class["status"] == "evaluated"]
    out = {}
    for m in METRICS:
        values = done[m].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        out[f"macro_{m}"] = float(values.mean()) if values.size else math.nan
    return out


def evaluate_scores(
    labels: pd.DataFrame, classes: Sequence[str], *, threshold: float = 0.5
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-concept metrics and macro means of a long ``asset, class, label, score`` table.

    Concepts without both labels among the scored rows get status ``"too_few_positives"`` /
    ``"too_few_negatives"`` and do not enter the macro means. Used to compare two models on the
    same held-out labels.
    """
    records = []
    for name in classes:
        sub = labels[(labels["class"] == name) & labels["score"].notna()]
        y, s = sub["label"].to_numpy(dtype=int), sub["score"].to_numpy(dtype=np.float64)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        status = "evaluated" if n_pos and n_neg else ("too_few_positives" if not n_pos else "too_few_negatives")
        rec = {"class": name, "status": status, "n_positive": n_pos, "n_negative": n_neg, "n_scored": len(sub)}
        rec.update(binary_metrics(y, s, threshold=threshold) if status == "evaluated" else {m: math.nan for m in METRICS})
        records.append(rec)
    per_class = pd.DataFrame.from_records(
        records, columns=["class", "status", "n_positive", "n_negative", "n_scored", *METRICS]
    )
    return per_class, macro_means(per_class)


# -- figures ---------------------------------------------------------------------------------


def plot_class_curves(y_true: np.ndarray, score: np.ndarray, class_name: str, *, threshold: float = 0.5) -> Figure:
    """ROC curve (left) and precision-recall curve (right) of one concept: the seed's layout."""
    y_true = np.asarray(y_true).astype(int)
    score = np.asarray(score, dtype=np.float64)
    m = binary_metrics(y_true, score, threshold=threshold)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    lw = 2
    if 0 < y_true.sum() < y_true.size:
        fpr, tpr, _ = skm.roc_curve(y_true, score)
        ax1.plot(fpr, tpr, color="darkorange", lw=lw, label=f"ROC curve (AUC={m['roc_auc']:.2f})")
        precision, recall, _ = skm.precision_recall_curve(y_true, score)
        ax2.plot(recall, precision, color="red", lw=lw, label=f"PR curve (AP={m['ap']:.2f}, F1={m['f1']:.2f})")
        prevalence = y_true.mean()
        ax2.axhline(prevalence, color="navy", lw=lw, linestyle="--", label=f"chance (prevalence={prevalence:.2f})")
    ax1.plot([0, 1], [0, 1], color="navy", lw=lw, linestyle="--")
    ax1.set(xlim=(0.0, 1.0), ylim=(0.0, 1.05), xlabel="False Positive Rate", ylabel="True Positive Rate")
    ax2.set(xlim=(0.0, 1.0), ylim=(0.0, 1.05), xlabel="Recall", ylabel="Precision")
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is ax1 else "upper right")
    fig.suptitle(f"{class_name}  (n={y_true.size}, positives={int(y_true.sum())}, out-of-fold)")
    return fig


def plot_summary(evaluation: Evaluation, *, title: str = "") -> Figure:
    """One page: ROC and PR curves of every evaluated concept, and the metrics table."""
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    ax_roc, ax_pr = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_tab = fig.add_subplot(grid[1, :])
    for j, name in enumerate(evaluation.classes):
        if evaluation.status.get(name) != "evaluated":
            continue
        ok = np.isfinite(evaluation.scores[:, j])
        y, s = evaluation.Y[ok, j].astype(int), evaluation.scores[ok, j]
        if not 0 < y.sum() < y.size:
            continue
        fpr, tpr, _ = skm.roc_curve(y, s)
        precision, recall, _ = skm.precision_recall_curve(y, s)
        m = evaluation.class_metrics(name)
        ax_roc.plot(fpr, tpr, lw=1.5, label=f"{name} ({m['roc_auc']:.2f})")
        ax_pr.plot(recall, precision, lw=1.5, label=f"{name} ({m['ap']:.2f})")
    ax_roc.plot([0, 1], [0, 1], color="navy", lw=1, linestyle="--")
    ax_roc.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="False Positive Rate", ylabel="True Positive Rate", title="ROC (AUC)")
    ax_pr.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="Recall", ylabel="Precision", title="Precision-recall (AP)")
    for ax in (ax_roc, ax_pr):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8)
    ax_tab.axis("off")
    pc = evaluation.per_class
    cols = ["class", "status", "n_positive", "n_negative", *METRICS]
    cells = [[_fmt(row[c]) for c in cols] for _, row in pc.iterrows()]
    cells.append(["macro", "", "", "", *[_fmt(evaluation.macro[f"macro_{m}"]) for m in METRICS]])
    table = ax_tab.table(cellText=cells, colLabels=cols, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    fig.suptitle(title or f"Out-of-fold evaluation (threshold {evaluation.threshold:g})")
    return fig


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)

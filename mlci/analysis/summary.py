"""Summary numbers of a simulation: area under the learning curve, labels to reach a target, paired tests.

Definitions (``docs/analysis.md`` repeats them):

normalised AULC
    The trapezoid area under the learning curve (metric against number of labels) between the
    first and last label count of the schedule, divided by that label range: the curve's mean
    height, in the metric's units (0..1). Only curves on the same label range are compared.
labels to 90 % / 95 %
    The first label count of the schedule at which the run's test score is at least 90 % (95 %)
    of the score of a model trained on the whole pool *in the same repetition*; NaN when the run
    never gets there. Means are over the repetitions that got there, and the count is reported.
paired test
    For two strategies on the same schedule and concept, the per-repetition differences of
    normalised AULC (repetitions share their test split and start set, so they pair). The
    verdict uses the two-sided paired t-test (``scipy.stats.ttest_rel``) at ``alpha``; the
    Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``) is given beside it, but with five
    repetitions its smallest possible two-sided p-value is 0.0625, so it can never reach 0.05.
    ``p_holm`` is the t-test p-value Holm-adjusted over the strategies compared with the same
    baseline on the same schedule and concept.
macro
    The unweighted mean over concepts, taken per repetition before any statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "MACRO",
    "aulc",
    "holm",
    "labels_to_target",
    "paired_comparisons",
    "run_summaries",
    "strategy_summary",
    "total_drop",
]

#: Concept name used for the macro average in summary tables.
MACRO = "macro"
_RUN = ["strategy", "schedule", "repetition", "concept"]


def aulc(labels, values, *, x_min: float | None = None, x_max: float | None = None) -> float:
    """Normalised area under a learning curve (its mean height over ``[x_min, x_max]``).

    Parameters
    ----------
    labels : array-like of shape (n_rounds,)
        Label counts, increasing.
    values : array-like of shape (n_rounds,)
        The metric after each round.
    x_min, x_max : float, default=None
        Range to integrate over (default: the first and last label count). The curve is linearly
        interpolated at the bounds, which must lie inside the curve's range.

    Returns
    -------
    float
        NaN if the range holds a NaN value or is empty; the value itself for a one-point curve.
    """
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"labels and values must be 1-D of the same length, got {x.shape} and {y.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"labels must increase strictly, got {x.tolist()}")
    lo = x[0] if x_min is None else float(x_min)
    hi = x[-1] if x_max is None else float(x_max)
    if lo < x[0] or hi > x[-1] or lo > hi:
        raise ValueError(f"range [{lo}, {hi}] must lie within the curve's labels [{x[0]}, {x[-1]}]")
    if x.size == 1 or lo == hi:
        return float(np.interp(lo, x, y))
    inside = (x > lo) & (x < hi)
    xs = np.concatenate([[lo], x[inside], [hi]])
    ys = np.concatenate([[np.interp(lo, x, y)], y[inside], [np.interp(hi, x, y)]])
    if np.isnan(ys).any():
        return float("nan")
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (hi - lo))


def labels_to_target(labels, values, target: float) -> float:
    """First label count whose value is >= ``target``; NaN if never (or if ``target`` is NaN)."""
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if not np.isfinite(target):
        return float("nan")
    hit = np.flatnonzero(~np.isnan(y) & (y >= target))
    return float(x[hit[0]]) if hit.size else float("nan")


def total_drop(values) -> float:
    """Sum of the decreases along a curve: 0 for a curve that never goes down (measures oscillation)."""
    y = np.asarray(values, dtype=np.float64)
    d = -np.diff(y)
    return float(np.nansum(np.where(d > 0, d, 0.0)))


def run_summaries(
    curves: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    metric: str = "ap",
    targets: Sequence[float] = (0.9, 0.95),
    common_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Summary numbers of every run (strategy, schedule, repetition, concept), plus macro runs.

    Parameters
    ----------
    curves : pandas.DataFrame
        The engine's curves table.
    reference : pandas.DataFrame
        Whole-pool model metrics per (repetition, concept).
    metric : str, default="ap"
        Test metric (``test_<metric>`` column) and reference column.
    targets : sequence of float, default=(0.9, 0.95)
        Fractions of the reference score for the labels-to-target columns.
    common_range : (float, float), default=None
        Also compute ``aulc_common`` over this label range (to compare schedules).

    Returns
    -------
    pandas.DataFrame
        strategy, schedule, repetition, concept, ``aulc``, ``aulc_common``, ``labels_<pct>`` per
        target, ``final`` (score after the last round), ``reference``, ``max_labels``,
        ``total_drop``. Macro rows (concept ``"macro"``) average the per-concept curves of a
        repetition first, then summarise that curve against the mean reference.
    """
    col = f"test_{metric}"
    if col not in curves.columns:
        raise ValueError(f"curves have no column {col!r}; metric must be one of ap, auc, accuracy, recall, f1")
    ref = reference.set_index(["repetition", "concept"])[metric]
    macro = (
        curves.groupby(["strategy", "schedule", "repetition", "round", "labels"], sort=True)[col]
        .mean()
        .reset_index()
        .assign(concept=MACRO)
    )
    macro_ref = reference.groupby("repetition")[metric].mean()
    rows = []
    for source, is_macro in ((curves, False), (macro, True)):
        for key, run in source.sort_values("round").groupby(_RUN, sort=True):
            strategy, schedule, rep, concept = key
            x = run["labels"].to_numpy(dtype=np.float64)
            y = run[col].to_numpy(dtype=np.float64)
            reference_score = float(macro_ref[rep]) if is_macro else float(ref[(rep, concept)])
            row = {
                "strategy": strategy,
                "schedule": schedule,
                "repetition": rep,
                "concept": concept,
                "aulc": aulc(x, y),
                "aulc_common": np.nan,
                "final": float(y[-1]),
                "reference": reference_score,
                "max_labels": float(x[-1]),
                "total_drop": total_drop(y),
            }
            if common_range is not None and x[0] <= common_range[0] and x[-1] >= common_range[1]:
                row["aulc_common"] = aulc(x, y, x_min=common_range[0], x_max=common_range[1])
            for t in targets:
                row[f"labels_{round(100 * t)}"] = labels_to_target(x, y, t * reference_score)
            rows.append(row)
    return pd.DataFrame(rows)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _paired_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    if d.size < 2:
        return float("nan"), float("nan")
    if np.allclose(d, 0.0, atol=1e-12):
        return 1.0, 1.0
    if np.allclose(d, d[0], atol=1e-12):
        # Constant non-zero differences: the t statistic is infinite.
        p_t = 0.0
    else:
        p_t = float(stats.ttest_rel(a, b).pvalue)
    try:
        p_w = float(stats.wilcoxon(a, b).pvalue)
    except ValueError:
        p_w = float("nan")
    return p_t, p_w


def paired_comparisons(
    runs: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    value: str = "aulc",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Paired comparison of strategy ``a`` with strategy ``b`` for every (pair, schedule, concept).

    Parameters
    ----------
    runs : pandas.DataFrame
        From :func:`run_summaries`.
    pairs : sequence of (str, str)
        (strategy, baseline) pairs; pairs whose strategies are missing are skipped.
    value : str, default="aulc"
    alpha : float, default=0.05

    Returns
    -------
    pandas.DataFrame
        strategy, baseline, schedule, concept, n (paired repetitions), ``mean``, ``baseline_mean``,
        ``diff_mean``, ``diff_std``, ``p_ttest``, ``p_wilcoxon``, ``p_holm``, ``verdict``
        (``better``/``worse`` when ``p_ttest < alpha``, else ``no difference``).
    """
    rows = []
    present = set(runs["strategy"])
    indexed = runs.set_index(["strategy", "schedule", "concept", "repetition"])[value].sort_index()
    for a, b in pairs:
        if a not in present or b not in present or a == b:
            continue
        for (schedule, concept), _ in runs[runs["strategy"] == a].groupby(["schedule", "concept"], sort=True):
            try:
                va, vb = indexed.loc[(a, schedule, concept)], indexed.loc[(b, schedule, concept)]
            except KeyError:
                continue
            both = va.index.intersection(vb.index)
            x, y = va.loc[both].to_numpy(dtype=np.float64), vb.loc[both].to_numpy(dtype=np.float64)
            keep = ~(np.isnan(x) | np.isnan(y))
            x, y = x[keep], y[keep]
            p_t, p_w = _paired_p(x, y)
            d = x - y
            verdict = "no difference"
            if np.isfinite(p_t) and p_t < alpha:
                verdict = "better" if d.mean() > 0 else "worse"
            rows.append({
                "strategy": a,
                "baseline": b,
                "schedule": schedule,
                "concept": concept,
                "n": int(x.size),
                "mean": float(x.mean()) if x.size else np.nan,
                "baseline_mean": float(y.mean()) if y.size else np.nan,
                "diff_mean": float(d.mean()) if d.size else np.nan,
                "diff_std": float(d.std(ddof=1)) if d.size > 1 else np.nan,
                "p_ttest": p_t,
                "p_wilcoxon": p_w,
                "verdict": verdict,
            })
    out = pd.DataFrame(rows, columns=["strategy", "baseline", "schedule", "concept", "n", "mean", "baseline_mean",
                                      "diff_mean", "diff_std", "p_ttest", "p_wilcoxon", "verdict"])
    out.insert(len(out.columns) - 1, "p_holm", np.nan)
    for idx in out.groupby(["baseline", "schedule", "concept"]).groups.values():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_ttest"].to_numpy())
    return out


def strategy_summary(runs: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean ± std over repetitions per (strategy, schedule, concept), with the test against the baseline.

    Returns
    -------
    pandas.DataFrame
        strategy, schedule, concept, repetitions, ``aulc_mean``, ``aulc_std``, for each target
        ``labels_<pct>_mean``, ``labels_<pct>_std``, ``labels_<pct>_reached`` (repetitions that
        got there), ``final_mean``, ``reference_mean``, ``total_drop_mean``, and — when
        ``comparisons`` is given — ``baseline``, ``diff_mean``, ``p_ttest``, ``p_wilcoxon``,
        ``p_holm``, ``verdict``.
    """
    label_cols = [c for c in runs.columns if c.startswith("labels_")]
    agg = {"repetitions": ("repetition", "nunique"), "aulc_mean": ("aulc", "mean"), "aulc_std": ("aulc", "std")}
    for c in label_cols:
        agg[f"{c}_mean"] = (c, "mean")
        agg[f"{c}_std"] = (c, "std")
        agg[f"{c}_reached"] = (c, "count")
    agg.update(final_mean=("final", "mean"), reference_mean=("reference", "mean"), total_drop_mean=("total_drop", "mean"))
    out = runs.groupby(["strategy", "schedule", "concept"], sort=True).agg(**agg).reset_index()
    if comparisons is not None and len(comparisons):
        cols = ["strategy", "schedule", "concept", "baseline", "diff_mean", "p_ttest", "p_wilcoxon", "p_holm", "verdict"]
        out = out.merge(comparisons[cols], on=["strategy", "schedule", "concept"], how="left")
    return out

"""Stopping criteria: signals recorded along a simulated run, the rules that read them, and how
their stop points compare with where the learning curve really levelled off (question 4).

Signals (computed by the engine every round):

``kappa``
    Cohen's kappa between the 0/1 predictions (score >= 0.5) of this round's model and the
    previous round's on a fixed *stop set* of pool clips.
``uncertainty``
    Mean binary entropy (in bits, so in [0, 1]) of the model's scores over the remaining pool.
``oof_ap``
    Out-of-fold average precision on the labeled clips (stratified k-fold): the only score a real
    project can compute without a test set.

Rules (each returns the first round at which it says "stop", or None):

:func:`stabilizing_predictions`
    Bloodgood & Vijay-Shanker (2009), "A method for stopping active learning based on stabilizing
    predictions and the need for user-adjustable stopping", CoNLL: stop when the mean kappa of
    the last ``window`` (3) rounds is >= ``threshold`` (0.99).
:func:`overall_uncertainty`
    Zhu, Wang & Hovy (2008), "Multi-criteria-based strategy to stop active learning for data
    annotation", COLING: stop when the pool's mean uncertainty is <= ``threshold``.
:func:`oof_plateau`
    Stop when the best out-of-fold AP of the last ``window`` rounds is less than ``min_delta``
    above the best before them.

How close each rule stops to the real plateau (:func:`evaluate_stopping`, per run) and which rule
stops closest (:func:`rank_stopping_rules`, over runs): the *plateau* of a run is the first label
count at which its test score reaches 99 % of the run's final score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from mlci.analysis.linear import fit_logistic
from mlci.analysis.metrics import average_precision
from mlci.consensus.agreement import cohen_kappa
from mlci.strategies.uncertainty import binary_entropy

__all__ = [
    "RANKING_COLUMNS",
    "STOPPING_RULES",
    "evaluate_stopping",
    "first_reaching",
    "make_rules",
    "mean_uncertainty",
    "oof_average_precision",
    "oof_plateau",
    "overall_uncertainty",
    "prediction_kappa",
    "rank_stopping_rules",
    "stabilizing_predictions",
]


def prediction_kappa(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Cohen's kappa (:func:`mlci.consensus.cohen_kappa`) per concept between two rounds' 0/1 predictions.

    Parameters
    ----------
    previous, current : ndarray of bool of shape (n_clips, n_concepts)
        Predictions (score >= 0.5) of two rounds' models on the same stop set.

    Returns
    -------
    ndarray of float64 of shape (n_concepts,)
        NaN where both predict one and the same class everywhere (the agreement carries no
        information, so it cannot count towards stopping).
    """
    previous, current = np.asarray(previous, dtype=bool), np.asarray(current, dtype=bool)
    if previous.ndim == 1:
        previous, current = previous[:, None], current[:, None]
    if previous.shape != current.shape:
        raise ValueError(f"previous and current must have the same shape, but got {previous.shape} and {current.shape}")
    return np.array([cohen_kappa(previous[:, k], current[:, k]) for k in range(previous.shape[1])], dtype=np.float64)


def mean_uncertainty(proba: np.ndarray) -> np.ndarray:
    """Mean binary entropy in bits of each column of ``proba`` (n, m): 0 = certain, 1 = coin flip."""
    return binary_entropy(np.asarray(proba, dtype=np.float64)).mean(axis=0) / np.log(2.0)


def oof_average_precision(
    X: np.ndarray,
    y: np.ndarray,
    train_weights: np.ndarray | None,
    *,
    C: float = 1.0,
    coef_init: np.ndarray | None = None,
    intercept_init: float | None = None,
) -> float:
    """AP of out-of-fold scores on the labeled clips (all folds fitted at once).

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    y : ndarray of {0, 1} of shape (n,)
    train_weights : ndarray of {0, 1} of shape (n, k) or None
        Column ``f`` marks the rows fold ``f`` trains on; each row is held out by exactly one
        fold. None (too few positives or negatives to split) gives NaN.
    C : float, default=1.0
    coef_init, intercept_init : warm start (the model on all labeled clips)
    """
    if train_weights is None:
        return float("nan")
    k = train_weights.shape[1]
    Y = np.repeat(np.asarray(y, dtype=np.float64)[:, None], k, axis=1)
    init = None if coef_init is None else np.repeat(np.asarray(coef_init)[None, :], k, axis=0)
    b0 = None if intercept_init is None else np.full(k, float(intercept_init))
    # A looser tolerance than the main fit: AP only needs the order of the scores.
    fit = fit_logistic(X, Y, C=C, sample_weight=train_weights, coef_init=init, intercept_init=b0, tol=1e-8)
    scores = fit.predict(X)
    held_out = np.argmin(train_weights, axis=1)
    oof = scores[np.arange(len(y)), held_out]
    return float(average_precision(y, oof)[0])


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def stabilizing_predictions(kappa, *, threshold: float = 0.99, window: int = 3) -> int | None:
    """First round whose last ``window`` kappas are all defined with mean >= ``threshold``."""
    k = np.asarray(kappa, dtype=np.float64)
    if k.size < window:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(k, window)
    ok = ~np.isnan(windows).any(axis=1) & (np.nan_to_num(windows).mean(axis=1) >= threshold)
    first = _first(ok)
    return None if first is None else first + window - 1


def overall_uncertainty(uncertainty, *, threshold: float = 0.05) -> int | None:
    """First round whose mean pool uncertainty (bits) is <= ``threshold``."""
    u = np.asarray(uncertainty, dtype=np.float64)
    return _first(~np.isnan(u) & (u <= threshold))


def oof_plateau(oof_ap, *, window: int = 3, min_delta: float = 0.01) -> int | None:
    """First round ``r`` at which the best OOF AP of rounds ``r-window+1..r`` is < ``min_delta`` above the best before."""
    a = np.asarray(oof_ap, dtype=np.float64)
    for r in range(window, a.size):
        before, recent = a[: r - window + 1], a[r - window + 1 : r + 1]
        if np.isnan(before).all() or np.isnan(recent).all():
            continue
        if np.nanmax(recent) - np.nanmax(before) < min_delta:
            return r
    return None


#: Rule name -> (signal column, rule with its default parameters).
STOPPING_RULES: dict[str, tuple[str, Callable]] = {
    "stabilizing_predictions": ("kappa", stabilizing_predictions),
    "overall_uncertainty": ("uncertainty", overall_uncertainty),
    "oof_plateau": ("oof_ap", oof_plateau),
}


def make_rules(
    *,
    kappa_threshold: float = 0.99,
    kappa_window: int = 3,
    uncertainty_threshold: float = 0.05,
    plateau_window: int = 3,
    plateau_delta: float = 0.01,
) -> dict[str, tuple[str, Callable, str]]:
    """The three rules with chosen parameters: name -> (signal column, rule, description)."""
    from functools import partial

    return {
        "stabilizing_predictions": (
            "kappa",
            partial(stabilizing_predictions, threshold=kappa_threshold, window=kappa_window),
            f"Stabilizing predictions (mean kappa of the last {kappa_window} rounds ≥ {kappa_threshold})",
        ),
        "overall_uncertainty": (
            "uncertainty",
            partial(overall_uncertainty, threshold=uncertainty_threshold),
            f"Overall pool uncertainty (mean ≤ {uncertainty_threshold} bits)",
        ),
        "oof_plateau": (
            "oof_ap",
            partial(oof_plateau, window=plateau_window, min_delta=plateau_delta),
            f"Out-of-fold AP plateau (gain < {plateau_delta} over {plateau_window} rounds)",
        ),
    }


def first_reaching(values, target: float) -> int | None:
    """First index whose value is >= ``target`` (NaN never reaches), or None."""
    v = np.asarray(values, dtype=np.float64)
    return _first(~np.isnan(v) & (v >= target))


def evaluate_stopping(
    curves: pd.DataFrame,
    *,
    metric: str = "test_ap",
    rules: dict[str, tuple[str, Callable]] | None = None,
) -> pd.DataFrame:
    """Where each rule stops every run, against where the run's curve reached 95 % / 99 % of its final value.

    Parameters
    ----------
    curves : pandas.DataFrame
        The engine's curves table (needs the signal columns and ``metric``).
    metric : str, default="test_ap"
    rules : dict, default=None
        Name -> (signal column, rule function[, description]); default :data:`STOPPING_RULES`.

    Returns
    -------
    pandas.DataFrame
        One row per (strategy, schedule, repetition, concept, rule): ``stop_labels`` (NaN if the
        rule never fired; the run then uses every label), ``score_at_stop``, ``final_labels``,
        ``final_score``, ``labels_95``, ``labels_99``, ``labels_saved`` (final minus stop
        labels), ``score_given_up`` (final minus score at stop) and ``timing``: ``early``
        (before the 95 % point), ``on time`` (between the 95 % and 99 % points), ``late`` (after
        the 99 % point) or ``never``; ``signal_at_95`` is the rule's signal at the 95 % point
        (what a threshold would have had to be to stop there).

        How far the stop is from the real plateau (NaN when the final score is NaN):

        ``plateau_labels``
            The run's real plateau: the first label count whose score reaches 99 % of the final
            score (the same number as ``labels_99``).
        ``labels_past_plateau``
            Labels spent after the plateau: ``stop_labels - plateau_labels`` when that is >= 0,
            else 0; a rule that never fired spends every label: ``final_labels - plateau_labels``.
        ``score_lost``
            ``final_score - score_at_stop`` when the rule stopped before the plateau, else 0
            (also 0 when it never fired).
        ``distance``
            ``|stop_labels - plateau_labels|``; ``final_labels - plateau_labels`` if it never fired.
    """
    rules = STOPPING_RULES if rules is None else rules
    rows = []
    keys = ["strategy", "schedule", "repetition", "concept"]
    for key, run in curves.sort_values("round").groupby(keys, sort=True):
        labels = run["labels"].to_numpy()
        score = run[metric].to_numpy(dtype=np.float64)
        final = score[-1]
        i95 = first_reaching(score, 0.95 * final) if np.isfinite(final) else None
        i99 = first_reaching(score, 0.99 * final) if np.isfinite(final) else None
        l95 = float(labels[i95]) if i95 is not None else np.nan
        l99 = float(labels[i99]) if i99 is not None else np.nan
        for name, (signal, rule, *_) in rules.items():
            values = run[signal].to_numpy(dtype=np.float64)
            stop = rule(values)
            if stop is None:
                stop_labels, at_stop, timing = np.nan, np.nan, "never"
                saved, given_up = 0.0, 0.0
                past = distance = float(labels[-1]) - l99
                lost = 0.0 if np.isfinite(l99) else np.nan
            else:
                stop_labels, at_stop = float(labels[stop]), float(score[stop])
                saved, given_up = float(labels[-1] - labels[stop]), float(final - score[stop])
                if np.isnan(l95) or stop_labels < l95:
                    timing = "early"
                elif stop_labels > l99:
                    timing = "late"
                else:
                    timing = "on time"
                past, distance = max(stop_labels - l99, 0.0), abs(stop_labels - l99)
                lost = (float(final) - at_stop) if stop_labels < l99 else 0.0
                if np.isnan(l99):
                    past = lost = np.nan
            rows.append({
                **dict(zip(keys, key)),
                "rule": name,
                "stop_labels": stop_labels,
                "score_at_stop": at_stop,
                "final_labels": float(labels[-1]),
                "final_score": float(final),
                "labels_95": l95,
                "labels_99": l99,
                "labels_saved": saved,
                "score_given_up": given_up,
                "timing": timing,
                "signal_at_95": float(values[i95]) if i95 is not None else np.nan,
                "plateau_labels": l99,
                "labels_past_plateau": past,
                "score_lost": lost,
                "distance": distance,
            })
    return pd.DataFrame(rows)


#: Columns of :func:`rank_stopping_rules`' table after the grouping columns.
RANKING_COLUMNS = [
    "rule", "runs", "never", "plateau_labels_median", "labels_past_plateau_mean",
    "labels_past_plateau_median", "score_lost_mean", "early_share", "distance_mean",
    "eligible", "rank", "winner", "fallback", "early_tolerance", "max_early_share",
]


def rank_stopping_rules(
    stopping_runs: pd.DataFrame,
    *,
    by: Sequence[str] = ("schedule",),
    early_tolerance: float = 0.01,
    max_early_share: float = 0.10,
) -> pd.DataFrame:
    """Rank the stopping rules by how close they stop to the real plateau, and name the winner.

    Oracle runs (strategies that read true labels) are left out. The numbers per run are
    :func:`evaluate_stopping`'s ``plateau_labels``, ``labels_past_plateau``, ``score_lost`` and
    ``distance``; runs whose plateau is undefined (NaN final score) do not count.

    How the winner is chosen, within each group of ``by``:

    1. A rule *stops early* in a run when stopping cost more than ``early_tolerance`` of the
       score (``score_lost > early_tolerance``); ``early_share`` is the share of runs where it did.
    2. A rule is *eligible* when ``early_share <= max_early_share``.
    3. The winner is the eligible rule with the smallest ``distance_mean`` (mean
       ``|stop - plateau|`` in labels; a rule that never fired counts ``final - plateau``);
       ties go to the smaller ``score_lost_mean``, then to the rule name in alphabetical order.
    4. If no rule is eligible, the winner is the rule with the smallest ``distance_mean`` over all
       rules (same tie-breaks), and ``fallback`` is True on every row of the group.

    ``rank`` orders the rules the same way (eligible rules first), so the winner has rank 1. A
    group where no rule has a defined ``distance_mean`` has no winner.

    Parameters
    ----------
    stopping_runs : pandas.DataFrame
        :func:`evaluate_stopping`'s table (one row per run and rule).
    by : sequence of str, default=("schedule",)
        Columns to rank within (one ranking per schedule by default); ``()`` ranks over all runs.
    early_tolerance : float, default=0.01
        Score lost by stopping before the plateau that still does not count as stopping early.
    max_early_share : float, default=0.10
        Largest share of runs a rule may stop early in and still be eligible to win.

    Returns
    -------
    pandas.DataFrame
        One row per (``by``..., rule), sorted by ``by`` and ``rank``: ``runs``, ``never`` (share
        of runs where the rule never fired), ``plateau_labels_median``,
        ``labels_past_plateau_mean``/``_median``, ``score_lost_mean``, ``early_share``,
        ``distance_mean``, ``eligible``, ``rank``, ``winner``, ``fallback``, and the two
        parameters (``early_tolerance``, ``max_early_share``) so the table states its own criterion.

    Examples
    --------
    >>> ranking = rank_stopping_rules(evaluate_stopping(curves))  # doctest: +SKIP
    >>> ranking.loc[ranking["winner"], ["schedule", "rule", "distance_mean"]]  # doctest: +SKIP
    """
    from mlci.analysis.summarise import is_oracle  # summarise imports this module

    if not 0 <= early_tolerance:
        raise ValueError(f"early_tolerance must be >= 0, but got {early_tolerance}")
    if not 0 <= max_early_share <= 1:
        raise ValueError(f"max_early_share must be between 0 and 1, but got {max_early_share}")
    by = list(by)
    needed = ["strategy", "rule", "timing", "plateau_labels", "labels_past_plateau", "score_lost", "distance", *by]
    missing = [c for c in needed if c not in stopping_runs.columns]
    if len(stopping_runs) and missing:
        raise ValueError(f"stopping_runs lacks the columns {missing}; it must come from evaluate_stopping")
    if not len(stopping_runs):
        return pd.DataFrame(columns=[*by, *RANKING_COLUMNS])
    real = stopping_runs[~stopping_runs["strategy"].map(is_oracle) & stopping_runs["plateau_labels"].notna()]
    if not len(real):
        return pd.DataFrame(columns=[*by, *RANKING_COLUMNS])
    table = (
        real.assign(_early=(real["score_lost"] > early_tolerance).where(real["score_lost"].notna()).astype(float),
                    _never=(real["timing"] == "never").astype(float))
        .groupby([*by, "rule"], sort=True)
        .agg(
            runs=("distance", "size"),
            never=("_never", "mean"),
            plateau_labels_median=("plateau_labels", "median"),
            labels_past_plateau_mean=("labels_past_plateau", "mean"),
            labels_past_plateau_median=("labels_past_plateau", "median"),
            score_lost_mean=("score_lost", "mean"),
            early_share=("_early", "mean"),
            distance_mean=("distance", "mean"),
        )
        .reset_index()
    )
    table["eligible"] = table["early_share"] <= max_early_share
    groups = []
    for _, g in (table.groupby(by, sort=True) if by else [((), table)]):
        g = g.sort_values(["eligible", "distance_mean", "score_lost_mean", "rule"],
                          ascending=[False, True, True, True], na_position="last").copy()
        g["rank"] = np.arange(1, len(g) + 1)
        g["fallback"] = not g["eligible"].any()
        g["winner"] = (g["rank"] == 1) & g["distance_mean"].notna()
        groups.append(g)
    out = pd.concat(groups, ignore_index=True)
    out["early_tolerance"], out["max_early_share"] = float(early_tolerance), float(max_early_share)
    return out[[*by, *RANKING_COLUMNS]]

"""mlci.analysis's pure parts: metrics, the batched logistic regression, schedules, summaries, stopping rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from mlci.analysis import column_metrics
from mlci.analysis.linear import fit_logistic
from mlci.analysis.schedules import Schedule, doubling, fixed_depth, parse_schedule
from mlci.analysis.stopping import (
    evaluate_stopping,
    oof_plateau,
    overall_uncertainty,
    prediction_kappa,
    stabilizing_predictions,
)
from mlci.analysis.summary import (
    aulc,
    holm,
    labels_to_target,
    paired_comparisons,
    run_summaries,
    total_drop,
)


# --- metrics -------------------------------------------------------------------------------------
def test_metrics_equal_scikit_learn_and_the_models_package_with_ties():
    from mlci.models.evaluation import binary_metrics as models_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(400, 4))
    s = np.round(rng.random((400, 4)), 2)  # many ties
    s[:50, 1] = 0.5
    got = column_metrics(y, s)
    for j in range(4):
        fpr, tpr, _ = skm.roc_curve(y[:, j], s[:, j])
        assert got["ap"][j] == pytest.approx(skm.average_precision_score(y[:, j], s[:, j]), abs=1e-12)
        assert got["auc"][j] == pytest.approx(skm.auc(fpr, tpr), abs=1e-12)
        assert got["accuracy"][j] == pytest.approx(skm.accuracy_score(y[:, j], s[:, j] >= 0.5))
        assert got["recall"][j] == pytest.approx(skm.recall_score(y[:, j], s[:, j] >= 0.5))
        assert got["f1"][j] == pytest.approx(skm.f1_score(y[:, j], s[:, j] >= 0.5))
        ref = models_metrics(y[:, j], s[:, j])
        for ours, theirs in (("ap", "ap"), ("auc", "roc_auc"), ("accuracy", "accuracy"), ("recall", "recall"), ("f1", "f1")):
            assert got[ours][j] == pytest.approx(ref[theirs], abs=1e-12)


def test_metrics_single_class_gives_nan_rank_metrics_and_zero_recall():
    got = column_metrics(np.zeros(5, int), np.linspace(0, 1, 5))
    assert math.isnan(got["ap"][0]) and math.isnan(got["auc"][0])
    assert got["recall"][0] == 0.0 and got["accuracy"][0] == pytest.approx(0.4)  # 0.5, 0.75, 1.0 predicted present


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        column_metrics(np.zeros((3, 2)), np.zeros((3, 1)))


# --- logistic regression --------------------------------------------------------------------------
@pytest.mark.parametrize("n,d", [(120, 8), (30, 60)])  # primal Newton, and the n < d kernel form
def test_fit_logistic_matches_scikit_learn_optimum(n, d):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = (X[:, :3] + 0.5 * rng.normal(size=(n, 3)) > 0).astype(int)
    W = (rng.random((n, 3)) < 0.8).astype(float)
    fit = fit_logistic(X, Y, C=2.0, sample_weight=W)
    for j in range(3):
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000).fit(X, Y[:, j], sample_weight=W[:, j])
        np.testing.assert_allclose(fit.coef[j], ref.coef_[0], atol=1e-5)
        assert fit.intercept[j] == pytest.approx(ref.intercept_[0], abs=1e-5)
    np.testing.assert_allclose(fit.predict(X)[:, 0], LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000)
                               .fit(X, Y[:, 0], sample_weight=W[:, 0]).predict_proba(X)[:, 1], atol=1e-6)


def test_fit_logistic_one_class_is_the_constant_laplace_model():
    X = np.random.default_rng(0).normal(size=(8, 3))
    fit = fit_logistic(X, np.zeros((8, 1)))
    assert fit.constant[0]
    np.testing.assert_allclose(fit.predict(X)[:, 0], 1 / 10)


def test_fit_logistic_rejects_bad_C():
    with pytest.raises(ValueError, match="C must be a positive number, got -1"):
        fit_logistic(np.zeros((3, 2)), np.array([0, 1, 0]), C=-1)


# --- schedules --------------------------------------------------------------------------------------
def test_doubling_schedule_runs_until_the_pool_is_labeled():
    np.testing.assert_array_equal(doubling(5).label_counts(100), [5, 10, 20, 30, 50, 70, 100])
    np.testing.assert_array_equal(parse_schedule("doubling5-max60").label_counts(1000), [5, 10, 20, 30, 50, 60])


def test_fixed_depth_and_list_schedules():
    assert parse_schedule("20x20").label_counts(1000)[-1] == 400
    np.testing.assert_array_equal(fixed_depth(100, 4).label_counts(250), [100, 200, 250])
    np.testing.assert_array_equal(parse_schedule("5,5,10").label_counts(1000), [5, 10, 20])
    assert str(parse_schedule("50x8")) == "50x8"


@pytest.mark.parametrize("text", ["doubling-5", "20y20", "", "5,,5", "0,5"])
def test_bad_schedules_are_named_in_the_error(text):
    with pytest.raises(ValueError, match="schedule"):
        parse_schedule(text)


def test_schedule_larger_start_than_pool_is_an_error():
    with pytest.raises(ValueError, match="starts with 50 labels but the pool has only 10"):
        Schedule("x", (50,)).label_counts(10)


# --- summaries on hand-built curves ---------------------------------------------------------------
def test_aulc_is_the_mean_height_of_the_curve():
    assert aulc([0, 10, 20], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert aulc([10, 20, 40], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    # over a sub-range, interpolated at the bounds: from 5 (0.5) to 15 (1.0)
    assert aulc([0, 10, 20], [0.0, 1.0, 1.0], x_min=5, x_max=15) == pytest.approx((0.75 * 5 + 1.0 * 5) / 10)
    assert math.isnan(aulc([0, 10], [0.1, np.nan]))
    with pytest.raises(ValueError, match="increase strictly"):
        aulc([0, 0, 1], [1, 1, 1])


def test_labels_to_target_takes_the_first_crossing():
    assert labels_to_target([5, 10, 20, 40], [0.2, 0.8, 0.7, 0.95], 0.75) == 10
    assert math.isnan(labels_to_target([5, 10], [0.2, 0.3], 0.9))
    assert total_drop([0.2, 0.8, 0.7, 0.95, 0.9]) == pytest.approx(0.15)


def test_run_summaries_targets_use_each_repetitions_reference():
    curves = pd.DataFrame({
        "strategy": "s", "schedule": "sch", "repetition": [0, 0, 0, 1, 1, 1], "concept": "c",
        "round": [0, 1, 2] * 2, "labels": [10, 20, 30] * 2,
        "test_ap": [0.5, 0.9, 0.95, 0.5, 0.6, 0.9],
    })
    reference = pd.DataFrame({"repetition": [0, 1], "concept": ["c", "c"], "ap": [1.0, 0.7]})
    runs = run_summaries(curves, reference).set_index(["concept", "repetition"])
    assert runs.loc[("c", 0), "labels_90"] == 20 and runs.loc[("c", 0), "labels_95"] == 30
    assert runs.loc[("c", 1), "labels_90"] == 30  # 0.9 * 0.7 = 0.63 first reached at 30
    assert runs.loc[("macro", 0), "aulc"] == pytest.approx(aulc([10, 20, 30], [0.5, 0.9, 0.95]))


def test_paired_comparisons_verdicts_and_holm():
    rng = np.random.default_rng(0)
    base = rng.random(6)
    runs = pd.DataFrame({
        "strategy": ["a"] * 6 + ["b"] * 6 + ["r"] * 6,
        "schedule": "s", "concept": "c", "repetition": list(range(6)) * 3,
        "aulc": np.concatenate([base + 0.1 + rng.normal(0, 0.01, 6), base, base]),
    })
    out = paired_comparisons(runs, [("a", "r"), ("b", "r")]).set_index("strategy")
    assert out.loc["a", "verdict"] == "better" and out.loc["a", "p_ttest"] < 0.001
    assert out.loc["b", "verdict"] == "no difference" and out.loc["b", "p_ttest"] == 1.0
    np.testing.assert_allclose(holm([0.01, 0.04, np.nan, 0.03]), [0.03, 0.06, np.nan, 0.06])


# --- stopping rules on hand-built signals ---------------------------------------------------------
def test_stabilizing_predictions_needs_three_defined_kappas_averaging_099():
    assert stabilizing_predictions([np.nan, 0.5, 0.99, 1.0, 0.99, 1.0]) == 4
    assert stabilizing_predictions([np.nan, 1.0, 1.0, np.nan, 1.0, 1.0]) is None
    assert stabilizing_predictions([1.0, 1.0]) is None


def test_prediction_kappa_is_nan_when_both_predict_one_class():
    a = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], bool)
    b = np.array([[1, 0], [0, 0], [0, 0], [0, 0]], bool)
    k = prediction_kappa(a, b)
    assert k.shape == (2,) and k[0] == pytest.approx(0.5) and math.isnan(k[1])
    with pytest.raises(ValueError, match="same shape"):
        prediction_kappa(a, b[:, :1])


def test_prediction_kappa_is_the_consensus_cohen_kappa_per_concept():
    from mlci.consensus import cohen_kappa

    rng = np.random.default_rng(3)
    a, b = rng.random((300, 4)) < 0.3, rng.random((300, 4)) < 0.4
    k = prediction_kappa(a, b)
    for j in range(4):
        assert k[j] == cohen_kappa(a[:, j], b[:, j]) == pytest.approx(skm.cohen_kappa_score(a[:, j], b[:, j]))
    assert prediction_kappa(a[:, 0], b[:, 0]) == pytest.approx([k[0]])


def test_uncertainty_and_plateau_rules():
    assert overall_uncertainty([0.9, 0.3, np.nan, 0.04]) == 3
    assert oof_plateau([0.5, 0.7, 0.8, 0.805, 0.806, 0.807]) == 5
    assert oof_plateau([0.5, 0.6, 0.7, 0.8, 0.9]) is None


def test_evaluate_stopping_labels_saved_score_given_up_and_timing():
    labels = [10, 20, 30, 40, 50, 60]
    ap = [0.5, 0.8, 0.9, 0.96, 0.99, 1.0]  # 95 % point: 40 labels; 99 % point: 50 labels
    curves = pd.DataFrame({
        "strategy": "s", "schedule": "x", "repetition": 0, "concept": "c", "round": range(6), "labels": labels,
        "test_ap": ap,
        "kappa": [np.nan, 0.9, 0.99, 1.0, 1.0, 1.0],  # stabilizes at round 4 (50 labels): on time
        "uncertainty": [0.9, 0.04, 0.03, 0.02, 0.01, 0.0],  # fires at round 1 (20 labels): early
        "oof_ap": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95],  # never plateaus
    })
    out = evaluate_stopping(curves).set_index("rule")
    assert out.loc["stabilizing_predictions", "stop_labels"] == 50
    assert out.loc["stabilizing_predictions", "timing"] == "on time"
    assert out.loc["stabilizing_predictions", "labels_saved"] == 10
    assert out.loc["stabilizing_predictions", "score_given_up"] == pytest.approx(0.01)
    assert out.loc["overall_uncertainty", "timing"] == "early"
    assert out.loc["overall_uncertainty", "score_given_up"] == pytest.approx(0.2)
    assert out.loc["oof_plateau", "timing"] == "never" and out.loc["oof_plateau", "labels_saved"] == 0
    assert out.loc["stabilizing_predictions", "labels_95"] == 40 and out.loc["stabilizing_predictions", "labels_99"] == 50

"""The simulation engine: every strategy and schedule runs, oracles stay out of real rounds, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from mlci.analysis import (
    NotEnoughDataError,
    SimulationConfig,
    UnknownSimulationStrategyError,
    make_data,
    make_simulation_strategy,
    plan_units,
    prepare_repetition,
    simulate,
    simulation_strategy_names,
)
from mlci.analysis.consensus_study import (
    AnnotatorProfile,
    consensus_study,
    merge_answers,
    simulate_answers,
)
from mlci.analysis.data import align_features, labels_from_consensus, labels_from_truth
from mlci.analysis.oracles import OracleInlier, OracleOutlier
from mlci.analysis.report import answers, render_report
from mlci.analysis.strategies import SIMULATION_ONLY, RegisteredStrategy, RoundState
from mlci.analysis.summarise import summarise_analysis
from mlci.strategies import (
    STRATEGIES,
    Pool,
    QueryStrategy,
    UnknownStrategyError,
    get_strategy,
)

FAST = SimulationConfig(repetitions=2, oof_folds=3, stop_set_size=100)


@pytest.fixture(scope="module")
def digits():
    """300 digits, three one-vs-rest concepts (about 10 % positives each), rows L2-normalised."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = (y[:, None] == np.array([0, 1, 2])).astype(int)
    return make_data([f"clip-{i:03d}" for i in range(300)], X, Y, ["zero", "one", "two"])


def _curves(result):
    return result.curves.drop(columns=["seconds"])


def test_every_strategy_runs_and_labels_grow_by_the_schedule(digits):
    names = simulation_strategy_names()
    assert {"random", "margin", "anomaly", "fixed_order", "oracle_inlier", "oracle_outlier"} <= set(names)
    assert set(names) == set(STRATEGIES) | set(SIMULATION_ONLY)  # every registered strategy simulates
    result = simulate(digits, names + ["fixed_order:by=margin"], ["5,5,10"], FAST)
    curves = result.curves
    assert set(curves["strategy"]) == set(names) | {"fixed_order:by=margin"}
    assert sorted(curves["labels"].unique()) == [5, 10, 20]
    per_run = curves.groupby(["strategy", "repetition", "concept"]).size()
    assert (per_run == 3).all()
    # the start set is shared: every strategy has the same first-round score
    first = curves[curves["round"] == 0].groupby(["repetition", "concept"])["test_ap"].agg(lambda v: v.max() - v.min())
    assert (first < 1e-12).all()
    assert curves["test_ap"].between(0, 1).all()


@pytest.mark.parametrize("schedule,counts", [("doubling5", [5, 10, 20, 30, 50, 70, 110, 150, 225]),
                                              ("20x3", [20, 40, 60]), ("100x4", [100, 200, 225])])
def test_every_schedule_form_runs(digits, schedule, counts):
    result = simulate(digits, ["margin"], [schedule], SimulationConfig(repetitions=1, stopping=False))
    assert sorted(result.curves["labels"].unique()) == counts
    assert result.n_pool == 225 and result.n_test == 75


def test_results_reproduce_with_a_seed_and_differ_with_another(digits):
    strategies = ["random", "fixed_order", "margin", "anomaly", "kmeans_diversity"]
    a = simulate(digits, strategies, ["5,5,10,10"], FAST)
    b = simulate(digits, strategies, ["5,5,10,10"], FAST)
    pd.testing.assert_frame_equal(_curves(a), _curves(b))
    c = simulate(digits, strategies, ["5,5,10,10"], SimulationConfig(repetitions=2, oof_folds=3, stop_set_size=100, seed=1))
    assert not _curves(a).equals(_curves(c))
    # random and fixed_order draw from their own streams: they do not pick the same clips
    assert not np.allclose(a.curves.loc[a.curves.strategy == "random", "test_ap"].to_numpy(),
                           a.curves.loc[a.curves.strategy == "fixed_order", "test_ap"].to_numpy())


def test_parallel_units_give_the_serial_result(digits):
    strategies = ["random", "margin"]
    serial = simulate(digits, strategies, ["5,5,10"], FAST)
    parallel = simulate(digits, strategies, ["5,5,10"], FAST, n_jobs=2, concepts_per_unit=1)
    pd.testing.assert_frame_equal(_curves(serial), _curves(parallel))


def test_label_free_strategies_run_once_for_all_concepts(digits):
    units = plan_units(["random", "anomaly", "margin"], ["5,5"], 3, 2, concepts_per_unit=1)
    by = {}
    for u in units:
        by.setdefault(u.strategy, []).append(u.concepts)
    assert by["random"] == [(0, 1, 2)] * 2 and by["anomaly"] == [(0, 1, 2)] * 2
    assert sorted(by["margin"]) == [(0,), (0,), (1,), (1,), (2,), (2,)]


def test_label_spreading_shortcut_ranks_like_the_registered_strategy(digits):
    rep = prepare_repetition(digits, 0, FAST)
    X = digits.X[rep.pool].astype(np.float32)
    pool = Pool(digits.keys[rep.pool], X)
    y = digits.Y[rep.pool][:, [1]]
    fast = make_simulation_strategy("label_spreading_entropy")
    slow = RegisteredStrategy("label_spreading_entropy", get_strategy("label_spreading_entropy"))
    cache: dict = {}
    for n in (10, 40, 120):
        labeled = np.arange(n)
        if y[labeled].sum() == 0:
            continue
        available = np.ones(len(pool), bool)
        available[labeled] = False
        state = RoundState(pool, labeled, y[labeled], available, np.full((len(pool), 1), 0.5), 0, cache)
        np.testing.assert_array_equal(fast.select(state, 15), slow.select(state, 15))


def test_oracle_orderings_exist_only_in_the_simulator():
    for name in ("oracle_inlier", "oracle_outlier", "fixed_order"):
        assert name not in STRATEGIES
        with pytest.raises(UnknownStrategyError):
            get_strategy(name)  # what the real round calls with its configured name
    assert not isinstance(OracleInlier(), QueryStrategy) and not isinstance(OracleOutlier(), QueryStrategy)
    pool = Pool(["a", "b"], np.zeros((2, 1)), np.array([0.2, 0.9]))
    with pytest.raises(TypeError):
        OracleInlier().rank(pool, batch_size=1)  # needs the truth, which a pool never carries
    # given the truth, the orderings are the seed's |score - label| ranks
    proba, truth = np.array([0.9, 0.2, 0.6]), np.array([1, 1, 0])
    np.testing.assert_array_equal(OracleInlier().rank(proba, truth, 3), [0, 2, 1])
    np.testing.assert_array_equal(OracleOutlier().rank(proba, truth, 3), [1, 2, 0])


@pytest.mark.parametrize("spec,error,match", [
    ("no_such_strategy", UnknownSimulationStrategyError, "unknown strategy 'no_such_strategy'"),
    ("margin:bogus=1", TypeError, "does not take parameters"),
    ("oracle_inlier:x=1", TypeError, "takes no parameters"),
    ("margin:policy", ValueError, "is not key=value"),
])
def test_bad_strategy_specs_fail_with_a_clear_error(spec, error, match):
    with pytest.raises(error, match=match):
        make_simulation_strategy(spec)


def test_bad_data_fails_clearly_and_rare_concepts_are_skipped():
    X = np.random.default_rng(0).normal(size=(40, 3))
    Y = np.zeros((40, 2), int)
    Y[:10, 0] = 1
    Y[:2, 1] = 1
    data = make_data(None, X, Y, ["common", "rare"])
    assert data.concepts == ("common",) and "2 positives" in data.skipped["rare"]
    with pytest.raises(NotEnoughDataError, match="no concept can be simulated"):
        make_data(None, X, np.zeros((40, 1), int))
    with pytest.raises(ValueError, match="0/1 labels"):
        make_data(None, X, np.full((40, 1), 2))
    with pytest.raises(ValueError, match="non-finite"):
        make_data(None, np.full((40, 3), np.nan), Y)
    with pytest.raises(ValueError, match="repetitions must be an int >= 1, got 0"):
        simulate(data, ["random"], ["5,5"], SimulationConfig(repetitions=0))


def test_labels_from_the_store_tables_align_with_features():
    consensus = pd.DataFrame({
        "asset": ["a", "a", "b", "b", "c"], "class": ["x", "y", "x", "y", "x"], "label": [1, 0, 0, 1, 1],
    })
    wide = labels_from_consensus(consensus, ["x", "y"])
    assert list(wide.index) == ["a", "b"]  # c has no answer for y
    with pytest.raises(ValueError, match="no labels for concepts \\['z'\\]"):
        labels_from_consensus(consensus, ["x", "z"])
    truth = pd.DataFrame({"key": ["a", "b"], "x": [1, 0]})
    assert labels_from_truth(truth).loc["a", "x"] == 1
    with pytest.raises(ValueError, match="no clip has both"):
        align_features(["q"], np.zeros((1, 2)), wide, min_positives=1)


def test_consensus_study_dawid_skene_sees_through_a_spammer(digits):
    profiles = (AnnotatorProfile("good", 0.95, 0.95), AnnotatorProfile("ok", 0.85, 0.9),
                AnnotatorProfile("spammer", 0.5, 0.5), AnnotatorProfile("yes", 0.95, 0.6))
    truth = digits.Y[:200]
    who, said = simulate_answers(truth, profiles, 3, random_state=0)
    assert who.shape == (200, 3) and said.shape == (200, 3, 3)
    assert all(len(set(row)) == 3 for row in who)  # k different annotators per clip
    good = said[who == 0]  # answers of the good annotator
    assert (good == truth[np.nonzero(who == 0)[0]]).mean() > 0.9
    single = merge_answers(digits.keys[:200], who[:, :1], said[:, :1], digits.concepts, profiles, "single")
    ds = merge_answers(digits.keys[:200], who, said, digits.concepts, profiles, "dawid_skene")
    assert (ds == truth).mean() > (single == truth).mean()
    reps = [prepare_repetition(digits, 0, FAST)]
    rows = consensus_study(digits, reps, FAST, profiles=profiles, ks=(1, 3), n_budgets=3)
    assert set(rows["method"]) == {"single", "majority", "dawid_skene", "one_coin"}
    assert set(rows.loc[rows["method"] == "single", "k"]) == {1}
    assert rows["label_accuracy"].between(0, 1).all()
    with pytest.raises(ValueError, match="between 1 and the number of annotators"):
        simulate_answers(truth, profiles, 9, random_state=0)


def test_report_sentences_come_from_the_numbers(digits):
    result = simulate(digits, ["random", "fixed_order", "margin", "oracle_outlier"], ["5,5,10,10,20"], FAST)
    summary = summarise_analysis(result)
    text = render_report(summary, result)
    blocks = answers(summary, result)
    macro = summary.strategies.query("concept == 'macro' and strategy == 'margin'").iloc[0]
    assert f"margin ({macro['aulc_mean']:.3f} ±" in text
    assert any("fixed order" in s for s in blocks["q1"])
    assert "consensus study was not run" in blocks["q3"][0]
    assert all(s.strip() for s in blocks["q4"])
    assert "## 4." in text and "oracle_outlier" in text


def test_split_falls_back_when_label_combinations_outnumber_test_clips():
    rng = np.random.default_rng(3)
    Y = (rng.random((48, 5)) < 0.5).astype(int)  # ~30 distinct combinations, 12 test clips
    data = make_data(None, rng.normal(size=(48, 4)), Y, min_positives=5)
    rep = prepare_repetition(data, 0, SimulationConfig(repetitions=1))
    assert len(rep.test) == 12 and len(rep.pool) == 36
    assert not set(rep.test) & set(rep.pool)

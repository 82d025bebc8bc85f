"""Training and the champion comparison as plain library calls: no MLflow, no Prefect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_models import CLASSES, SPEC, make_corpus

from mlci.models import (
    ChampionComparison,
    ChampionSnapshot,
    FeatureSpec,
    MultiLabelModel,
    TrainingConfig,
    build_training_set,
    compare_with_champion,
    cross_validate,
    train,
)
from mlci.models.evaluation import evaluate_scores

# -- training --------------------------------------------------------------------------------


def test_train_is_cross_validation_then_the_fit_on_every_label():
    keys, X, consensus, _ = make_corpus(150, seed=1)
    ts = build_training_set(keys, X, consensus, CLASSES, weight_by_posterior=True)
    config = TrainingConfig(estimator_params={"C": 2.0}, n_splits=4, random_state=3)
    trained = train(ts, config, feature_schema=SPEC)

    assert trained.config is config and trained.weighted
    reference = MultiLabelModel(list(CLASSES), estimator_params={"C": 2.0}, feature_schema=SPEC, random_state=3)
    expected = cross_validate(reference, ts.X, ts.Y, sample_weight=ts.weights, n_splits=4, random_state=3)
    np.testing.assert_array_equal(trained.evaluation.scores, expected.scores)
    assert trained.evaluation.macro == expected.macro
    reference.fit(ts.X, ts.Y, sample_weight=ts.weights)
    np.testing.assert_allclose(trained.model.predict_proba(X), reference.predict_proba(X))
    assert trained.model.feature_schema_ == {"extractor": "demo-av", "version": "1", "modality": "combined"}
    assert trained.class_status == {c: "trained" for c in CLASSES}
    evaluated = trained.evaluation.per_class["status"] == "evaluated"
    assert trained.evaluation.n_evaluated_labels == int(trained.evaluation.per_class.loc[evaluated, "n_scored"].sum())
    assert trained.evaluation.n_evaluated_labels == int((ts.Y >= 0).sum())


def test_train_without_sample_weights_and_with_an_untrainable_concept():
    keys, X, consensus, _ = make_corpus(120, seed=2)
    consensus.loc[consensus["class"] == "halloween", "label"] = 0
    ts = build_training_set(keys, X, consensus, CLASSES, weight_by_posterior=True)
    trained = train(ts, TrainingConfig(use_sample_weights=False), feature_schema=SPEC)
    assert not trained.weighted
    assert trained.class_status["halloween"] == "too_few_positives"
    assert trained.evaluation.status["halloween"] == "too_few_positives"


@pytest.mark.parametrize(
    "config, match",
    [
        (TrainingConfig(n_splits=1), "n_splits must be an int >= 2, but got 1"),
        (TrainingConfig(threshold=1.5), r"threshold must be in \(0, 1\), but got 1.5"),
        (TrainingConfig(estimator="forest"), "estimator"),
        (TrainingConfig(modality="both"), "modality must be one of"),
        (TrainingConfig(min_negatives=0), "min_negatives"),
    ],
)
def test_bad_configuration_fails_before_any_fit(config, match):
    with pytest.raises(ValueError, match=match):
        config.make_model(CLASSES, SPEC)


# -- the champion comparison -----------------------------------------------------------------


@pytest.fixture(scope="module")
def story():
    """A champion trained on the first 60 clips; a challenger on all 220 (160 clips it never saw)."""
    keys, X, consensus, _ = make_corpus(220, seed=5, noise=1.5)
    first = build_training_set(keys[:60], X[:60], consensus, CLASSES)
    full = build_training_set(keys, X, consensus, CLASSES)
    champ = train(first, TrainingConfig(), feature_schema=SPEC)
    challenger = train(full, TrainingConfig(), feature_schema=SPEC)
    snapshot = ChampionSnapshot("1", "run-1", metrics=dict(champ.evaluation.macro),
                                seen_labels=first.labels_table()[["asset", "class"]], model=champ.model)
    return first, full, champ, challenger, snapshot


def test_no_champion_means_first_model():
    keys, X, consensus, _ = make_corpus(60)
    ts = build_training_set(keys, X, consensus, CLASSES)
    trained = train(ts, TrainingConfig(), feature_schema=SPEC)
    comparison = compare_with_champion(ts, trained, None)
    assert comparison == ChampionComparison() and not comparison.has_champion
    decision = comparison.decide(trained, tolerance=0.0, min_new_labels=50)
    assert decision.promote and decision.comparison_set == "first_model"
    assert decision.n == trained.evaluation.n_evaluated_labels


def test_comparison_on_new_labels_equals_scoring_them_by_hand(story):
    _, full, champ, challenger, snapshot = story
    comparison = compare_with_champion(full, challenger, snapshot)

    new = full.labels_table()
    new = new[~new["asset"].isin(set(full.keys[:60]))].reset_index(drop=True)
    rows = [full.keys.tolist().index(a) for a in new["asset"]]
    cols = [list(CLASSES).index(c) for c in new["class"]]
    by_champion = champ.model.predict_proba(full.X[rows])[np.arange(len(rows)), cols]
    by_challenger = challenger.evaluation.scores[rows, cols]
    ch, _ = evaluate_scores(new.assign(score=by_challenger), CLASSES)
    cp, _ = evaluate_scores(new.assign(score=by_champion), CLASSES)
    common = [c for c, a, b in zip(CLASSES, ch["status"], cp["status"]) if a == b == "evaluated"]

    assert comparison.has_champion and comparison.champion_version == "1" and comparison.note == ""
    assert comparison.champion_metrics == champ.evaluation.macro
    assert comparison.n_compare == int(new["class"].isin(common).sum()) > 50
    assert comparison.challenger_new_labels["macro_ap"] == pytest.approx(ch.set_index("class").loc[common, "ap"].mean())
    assert comparison.champion_new_labels["macro_ap"] == pytest.approx(cp.set_index("class").loc[common, "ap"].mean())
    assert comparison.per_class["classes_compared"] == common

    decision = comparison.decide(challenger, tolerance=0.0, min_new_labels=50)
    assert decision.comparison_set == "new_labels" and decision.n == comparison.n_compare
    assert decision.numbers["challenger"] == pytest.approx(comparison.challenger_new_labels["macro_ap"])
    too_few = comparison.decide(challenger, tolerance=0.0, min_new_labels=comparison.n_compare + 1)
    assert too_few.comparison_set == "cross_validation"
    assert too_few.numbers["champion"] == pytest.approx(champ.evaluation.macro["macro_ap"])


def test_comparison_says_why_it_could_not_use_new_labels(story):
    first, full, champ, challenger, snapshot = story
    n_new = int((full.labels_table()["asset"].isin(set(full.keys[60:]))).sum())

    # The champion saw every label of the training set.
    same = compare_with_champion(first, champ, snapshot)
    assert (same.note, same.n_compare) == ("no labels the champion never saw", 0)
    assert same.decide(champ, tolerance=0.0, min_new_labels=1).comparison_set == "cross_validation"

    # Its run could not be read: no metrics, so the challenger replaces it.
    unread = ChampionSnapshot("1", "run-1", unavailable="champion run run-1 unreadable: gone")
    gone = compare_with_champion(full, challenger, unread)
    assert gone.note == "champion run run-1 unreadable: gone" and gone.champion_metrics is None and gone.has_champion
    decision = gone.decide(challenger, tolerance=0.0, min_new_labels=50)
    assert decision.promote and decision.reason.startswith("champion has no cv_macro_ap")

    # Its model could not be loaded.
    unloaded = ChampionSnapshot("1", "run-1", metrics=snapshot.metrics, seen_labels=snapshot.seen_labels,
                                model_error="no skops file")
    broken = compare_with_champion(full, challenger, unloaded)
    assert broken.note == "champion version 1 cannot score the new labels: no skops file"
    assert broken.n_compare == n_new and broken.challenger_new_labels is None

    # Its model was trained on other features.
    other = train(first, TrainingConfig(), feature_schema=FeatureSpec("demo-av", "2"))
    mismatch = compare_with_champion(full, challenger, ChampionSnapshot(
        "1", "run-1", metrics=snapshot.metrics, seen_labels=snapshot.seen_labels, model=other.model))
    assert mismatch.note.startswith("champion version 1 cannot score the new labels: ") and "version" in mismatch.note
    assert mismatch.n_compare == n_new


def test_seen_labels_may_come_with_other_columns_and_dtypes(story):
    _, full, _, challenger, snapshot = story
    seen = pd.DataFrame({"asset": snapshot.seen_labels["asset"].astype(object),
                         "class": snapshot.seen_labels["class"].astype(object), "label": 1})
    a = compare_with_champion(full, challenger, snapshot)
    b = compare_with_champion(full, challenger, ChampionSnapshot("1", "run-1", metrics=snapshot.metrics,
                                                                   seen_labels=seen, model=snapshot.model))
    assert (a.n_compare, a.challenger_new_labels, a.champion_new_labels) == (
        b.n_compare, b.challenger_new_labels, b.champion_new_labels)

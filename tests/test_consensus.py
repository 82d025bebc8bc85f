"""Consensus methods: Dawid–Skene on simulated annotators, majority vote, pass-through, relabel, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from mlci.consensus import (
    METHODS,
    DawidSkene,
    NoAnnotationsError,
    OneCoinDawidSkene,
    clips_to_relabel,
    compute_consensus,
    majority_vote,
)
from mlci.tables import ANNOTATOR_QUALITY, CONSENSUS, RELABEL, conform


def simulate(n_clips, quality, per_clip, prevalence, seed):
    """Answers of annotators with sensitivity = specificity = quality[a]; per_clip of them per clip."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n_clips) < prevalence
    rows = []
    for i in range(n_clips):
        chosen = rng.choice(len(quality), per_clip, replace=False) if per_clip < len(quality) else range(len(quality))
        for a in chosen:
            correct = rng.random() < quality[a]
            rows.append((f"clip{i:05d}", f"ann{a}", "holiday", int(truth[i] == correct)))
    df = pd.DataFrame(rows, columns=["asset", "annotator", "class", "value"])
    return df, pd.Series(truth.astype(int), index=[f"clip{i:05d}" for i in range(n_clips)])


def accuracy(labels: pd.DataFrame, truth: pd.Series) -> float:
    return float((labels.set_index("asset")["label"] == truth.reindex(labels["asset"]).to_numpy()).mean())


@pytest.fixture(scope="module")
def three_annotators():
    return simulate(3000, [0.95, 0.75, 0.55], 3, 0.4, seed=1)


def test_dawid_skene_beats_majority_vote(three_annotators):
    df, truth = three_annotators
    mv = majority_vote(df)
    ds = compute_consensus(df, method="dawid_skene")
    acc_mv, acc_ds = accuracy(mv, truth), accuracy(ds.labels, truth)
    # Majority of three is right with P = 0.864 here; Dawid-Skene learns to trust the 0.95 annotator.
    assert acc_ds > acc_mv + 0.03, (acc_ds, acc_mv)
    assert ds.fit["converged"]
    quality = ds.annotators.set_index("annotator")
    assert quality.loc["ann0", "sensitivity"] > quality.loc["ann1", "sensitivity"] > quality.loc["ann2", "sensitivity"]


def test_dawid_skene_recovers_sensitivity_and_specificity():
    # Two annotators per quality level, three per clip. (With exactly three annotators, one near
    # chance, the two-coin model is barely identified: even the exact maximum-likelihood estimate
    # misses the truth by more than 0.05 on a few thousand clips, so more raters are simulated.)
    quality = [0.95, 0.75, 0.55, 0.95, 0.75, 0.55]
    df, truth = simulate(4000, quality, 3, 0.4, seed=7)
    model = DawidSkene().fit(df)
    assert model.converged_
    expected = np.array(quality)[[int(a[3:]) for a in model.annotators_]]
    np.testing.assert_allclose(model.sensitivity_["holiday"].to_numpy(), expected, atol=0.05)
    np.testing.assert_allclose(model.specificity_["holiday"].to_numpy(), expected, atol=0.05)
    assert model.class_prior_["holiday"] == pytest.approx(truth.mean(), abs=0.03)
    mv = majority_vote(df)
    labels = model.items_[["asset"]].assign(label=model.predict().to_numpy())
    assert accuracy(labels, truth) > accuracy(mv, truth)


def test_acceleration_reaches_the_plain_em_fixed_point(three_annotators):
    df, _ = three_annotators
    fast = DawidSkene(tol=1e-9, max_iter=5000).fit(df)
    plain = DawidSkene(tol=1e-9, max_iter=5000, accelerate=False).fit(df)
    assert fast.converged_ and plain.converged_ and fast.n_iter_ < plain.n_iter_ / 3
    np.testing.assert_allclose(fast.posterior_, plain.posterior_, atol=1e-5)
    np.testing.assert_allclose(fast.sensitivity_, plain.sensitivity_, atol=1e-5)
    assert fast.log_likelihood_ == pytest.approx(plain.log_likelihood_, abs=1e-3)


def test_one_coin_on_sparse_data():
    # 12 annotators, two answers per clip, only 400 clips: about 65 answers per annotator.
    quality = [0.9] * 4 + [0.75] * 4 + [0.6] * 4
    df, truth = simulate(400, quality, 2, 0.5, seed=5)
    model = OneCoinDawidSkene().fit(df)
    se = model.sensitivity_["holiday"]
    np.testing.assert_allclose(se.to_numpy(), model.specificity_["holiday"].to_numpy())
    by_level = se.groupby(np.array(quality)[[int(a[3:]) for a in se.index]]).mean()
    assert by_level[0.9] > by_level[0.75] > by_level[0.6]
    res = compute_consensus(df, method="one_coin")
    assert set(res.labels["method"]) == {"one_coin"}


def test_deterministic_and_row_order_independent(three_annotators):
    df, _ = three_annotators
    a = compute_consensus(df)
    b = compute_consensus(df.sample(frac=1.0, random_state=3).reset_index(drop=True))
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.annotators, b.annotators)
    assert a.agreement == b.agreement


def test_majority_vote_tie_rule_and_single_pass_through():
    df = pd.DataFrame(
        [
            ("tie", "a", "holiday", 1), ("tie", "b", "holiday", 0),
            ("yes", "a", "holiday", 1), ("yes", "b", "holiday", 1), ("yes", "c", "holiday", 0),
            ("lone", "c", "holiday", 1),
            ("lone", "c", "halloween", 0),
        ],
        columns=["asset", "annotator", "class", "value"],
    )
    neg = majority_vote(df).set_index(["asset", "class"])
    pos = majority_vote(df, tie="positive").set_index(["asset", "class"])
    assert neg.loc[("tie", "holiday"), "label"] == 0 and pos.loc[("tie", "holiday"), "label"] == 1
    assert neg.loc[("tie", "holiday"), "posterior"] == 0.5
    assert neg.loc[("yes", "holiday"), "label"] == 1 and neg.loc[("yes", "holiday"), "method"] == "majority"
    assert neg.loc[("lone", "holiday"), "method"] == "single" and neg.loc[("lone", "holiday"), "label"] == 1
    for method in METHODS:
        res = compute_consensus(df, method=method)
        labels = res.labels.set_index(["asset", "class"])
        # A single vote passes through unchanged, whatever the method.
        assert labels.loc[("lone", "holiday"), ["posterior", "label", "n_votes"]].tolist() == [1.0, 1, 1]
        assert labels.loc[("lone", "halloween"), "label"] == 0
        assert labels.loc[("lone", "holiday"), "method"] == "single"
        # Output tables follow the contract.
        conform(res.labels, CONSENSUS), conform(res.annotators, ANNOTATOR_QUALITY), conform(res.relabel, RELABEL)
        assert res.params["tie"] == "negative"
    with pytest.raises(ValueError, match="tie must be one of"):
        majority_vote(df, tie="coin flip")


def test_relabel_candidates_band_and_ties():
    df = pd.DataFrame(
        [
            ("tie", "a", "x", 1), ("tie", "b", "x", 0),
            ("split", "a", "x", 1), ("split", "b", "x", 1), ("split", "c", "x", 0),
            ("sure", "a", "x", 1), ("sure", "b", "x", 1), ("sure", "c", "x", 1),
        ],
        columns=["asset", "annotator", "class", "value"],
    )
    res = compute_consensus(df, method="majority", band=(0.2, 0.8))
    assert res.relabel["asset"].tolist() == ["tie", "split"]  # most uncertain first
    assert res.relabel["reason"].tolist() == ["tie", "uncertain"]
    assert res.relabel["n_positive"].tolist() == [1, 2]
    narrow = compute_consensus(df, method="majority", band=(0.45, 0.55))
    assert narrow.relabel["asset"].tolist() == ["tie"]
    with pytest.raises(ValueError, match="band must satisfy"):
        compute_consensus(df, band=(0.6, 0.9))


def test_the_round_relabels_the_consensus_candidates_most_uncertain_first():
    # One rule: the round's relabel share is taken from the consensus's own RELABEL table.
    df = pd.DataFrame(
        [
            ("tie", "a", "x", 1), ("tie", "b", "x", 0), ("tie", "a", "y", 1), ("tie", "b", "y", 0),
            ("split", "a", "x", 1), ("split", "b", "x", 1), ("split", "c", "x", 0),
            ("lean", "a", "x", 1), ("lean", "b", "x", 1), ("lean", "c", "x", 1), ("lean", "d", "x", 0),
            ("sure", "a", "x", 1), ("sure", "b", "x", 1), ("sure", "c", "x", 1),
        ],
        columns=["asset", "annotator", "class", "value"],
    )
    relabel = compute_consensus(df, method="majority", band=(0.2, 0.8)).relabel
    assert relabel["asset"].tolist() == ["tie", "tie", "split", "lean"]  # two classes of "tie"
    chosen = clips_to_relabel(relabel, 10)
    assert chosen["key"].tolist() == ["tie", "split", "lean"]  # each clip once, "sure" never
    assert chosen["utility"].tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert clips_to_relabel(relabel, 2)["key"].tolist() == ["tie", "split"]
    assert clips_to_relabel(relabel, 10, exclude={"tie"})["key"].tolist() == ["split", "lean"]
    assert clips_to_relabel(relabel, 0).empty and clips_to_relabel(relabel.head(0), 5).empty


def test_clips_to_relabel_refuses_bad_arguments():
    relabel = pd.DataFrame({"asset": ["a"], "posterior": [0.5]})
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        clips_to_relabel(relabel, -1)
    with pytest.raises(TypeError, match="single string"):
        clips_to_relabel(relabel, 1, exclude="a")
    with pytest.raises(ValueError, match=r"missing columns \['posterior'\]"):
        clips_to_relabel(relabel.drop(columns="posterior"), 1)


def test_annotator_table_for_majority():
    df = pd.DataFrame(
        [("c1", "a", "x", 1), ("c1", "b", "x", 1), ("c1", "c", "x", 0),
         ("c2", "a", "x", 0), ("c2", "b", "x", 0), ("c2", "c", "x", 0),
         ("c3", "c", "x", 1)],
        columns=["asset", "annotator", "class", "value"],
    )
    q = compute_consensus(df, method="majority").annotators.set_index("annotator")
    assert q.loc["c", "n_items"] == 3  # every answer counts as labeled
    assert q.loc["c", "agreement_with_consensus"] == 0.5  # the lone answer on c3 is not counted
    assert q.loc["c", "sensitivity"] == 0.0 and q.loc["c", "specificity"] == 1.0
    assert q.loc["a", "agreement_with_consensus"] == 1.0


def test_bad_annotations_and_parameters():
    good = pd.DataFrame([("c", "a", "x", 1), ("c", "b", "x", 0)], columns=["asset", "annotator", "class", "value"])
    with pytest.raises(NoAnnotationsError):
        compute_consensus(good.iloc[:0])
    with pytest.raises(ValueError, match="repeat 1"):
        compute_consensus(pd.concat([good, good.iloc[:1]]))
    with pytest.raises(ValueError, match="must be 0 or 1"):
        compute_consensus(good.assign(value=[1, 2]))
    with pytest.raises(ValueError, match="missing"):
        compute_consensus(good.drop(columns="annotator"))
    with pytest.raises(ValueError, match="method must be one of"):
        compute_consensus(good, method="glad")
    for params, match in [({"tol": 0}, "tol"), ({"max_iter": 0}, "max_iter"), ({"prior": (1.0,)}, "prior"),
                          ({"class_prior": (0, 1)}, "class_prior"), ({"min_votes": 0}, "min_votes"),
                          ({"accelerate": "yes"}, "accelerate")]:
        with pytest.raises(ValueError, match=match):
            DawidSkene(**params).fit(good)
    with pytest.raises(NotFittedError):
        DawidSkene().predict()
    assert "max_iter=50" in repr(DawidSkene(max_iter=50))


def test_convergence_warning_and_predict_on_new_answers(three_annotators):
    df, _ = three_annotators
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        DawidSkene(max_iter=2).fit(df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = DawidSkene().fit(df)
    # Scoring new answers: a "yes" from the reliable annotator outweighs a "no" from the poor one;
    # an unknown annotator gets the prior quality.
    new = pd.DataFrame([("n1", "ann0", "holiday", 1), ("n1", "ann2", "holiday", 0), ("n2", "newbie", "holiday", 1)],
                       columns=["asset", "annotator", "class", "value"])
    proba = model.predict_proba(new)
    assert proba[("n1", "holiday")] > 0.75
    assert 0.4 < proba[("n2", "holiday")] < 0.8
    assert model.predict(new)[("n1", "holiday")] == 1
    with pytest.raises(ValueError, match="not fitted on"):
        model.predict_proba(new.assign(**{"class": "halloween"}))

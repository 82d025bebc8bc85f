"""Agreement figures against values computed by hand on small tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from mlci.consensus import (
    agreement_frame,
    agreement_report,
    cohen_kappa,
    encode_votes,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    percent_agreement,
)

# Five clips, three raters; "yes" counts 3, 0, 2, 1, 3.
COUNTS = np.array([[0, 3], [3, 0], [1, 2], [2, 1], [0, 3]])


def test_fleiss_kappa_by_hand():
    # P_i = 1, 1, 1/3, 1/3, 1 -> P_bar = 11/15; p_yes = 9/15, p_no = 6/15 -> P_e = 0.52.
    # kappa = (11/15 - 0.52) / 0.48 = 4/9.
    assert fleiss_kappa(COUNTS) == pytest.approx(4 / 9)
    assert percent_agreement(COUNTS) == pytest.approx(11 / 15)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[0, 3], [1, 1]]))
    assert math.isnan(fleiss_kappa(np.array([[0, 3], [0, 3]])))  # no variation: chance agreement is 1


def test_krippendorff_alpha_by_hand():
    # Coincidences: o_no,no = 4, o_yes,yes = 7, o_no,yes = o_yes,no = 2; n = 15, n_no = 6, n_yes = 9.
    # D_o = 4/15, D_e = 2*6*9/(15*14) -> alpha = 1 - 14/27 = 13/27.
    assert krippendorff_alpha(COUNTS) == pytest.approx(13 / 27)


def test_krippendorff_alpha_with_missing_by_hand():
    # Clip 1: three yes; clip 2: two no (third rater missing); clip 3: one yes, one no;
    # clip 4: a single rating, which cannot be paired and is ignored.
    # o_yy = 3, o_nn = 2, o_ny = o_yn = 1; n = 7, n_y = 4, n_n = 3 -> alpha = 1 - (2/7)/(24/42) = 0.5.
    counts = np.array([[0, 3], [2, 0], [1, 1], [0, 1]])
    assert krippendorff_alpha(counts) == pytest.approx(0.5)
    # The same table as a long annotations frame (missing answers are simply absent rows).
    rows = [("c1", "r1", 1), ("c1", "r2", 1), ("c1", "r3", 1), ("c2", "r1", 0), ("c2", "r2", 0),
            ("c3", "r2", 1), ("c3", "r3", 0), ("c4", "r1", 1)]
    df = pd.DataFrame(rows, columns=["asset", "annotator", "value"]).assign(**{"class": "holiday"})
    report = agreement_report(df)["holiday"]
    assert report["krippendorff_alpha"] == {"value": 0.5, "n_clips": 3, "n_raters": 3}
    assert report["n_clips"] == 4 and report["n_ratings"] == 8
    # Percent agreement: clip 1 -> 1, clip 2 -> 1, clip 3 -> 0; mean 2/3.
    assert report["percent_agreement"]["value"] == pytest.approx(2 / 3, abs=1e-6)
    # Fleiss on the largest equal-size group: clips 2 and 3 (two ratings each; ties go to more
    # ratings only when the groups are equally large -- here 2 clips with 2 ratings beat 1 with 3).
    fleiss = report["fleiss_kappa"]
    assert fleiss["ratings_per_clip"] == 2 and fleiss["n_clips"] == 2 and not fleiss["all_clips"]
    # Clip 2: (no, no), clip 3: (yes, no): P_bar = 1/2, p_yes = 1/4 -> P_e = 5/8, kappa = -1/3.
    assert fleiss["value"] == pytest.approx(-1 / 3, abs=1e-6)


def test_undefined_alpha_is_nan():
    assert math.isnan(krippendorff_alpha(np.array([[0, 1], [0, 1]])))  # one rating per clip
    assert math.isnan(krippendorff_alpha(np.array([[0, 2], [0, 3]])))  # everyone always says yes


def test_cohen_kappa_by_hand_and_against_sklearn():
    a = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 1])
    b = np.array([1, 1, 0, 0, 0, 1, 1, 0, 1, 0])
    # p_o = 7/10; p_a(yes) = 6/10, p_b(yes) = 5/10 -> p_e = 0.5; kappa = 0.4.
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa(a, b[:3])


def test_pairwise_cohen_kappa_matches_pairs():
    rng = np.random.default_rng(3)
    rows = []
    for clip in range(60):
        for rater in ("r1", "r2", "r3"):
            if rng.random() < 0.8:
                rows.append((f"c{clip}", rater, "holiday", int(rng.random() < 0.4)))
    df = pd.DataFrame(rows, columns=["asset", "annotator", "class", "value"])
    votes = encode_votes(df)
    pairs = pairwise_cohen_kappa(votes, 0)
    wide = df.pivot(index="asset", columns="annotator", values="value")
    for r in pairs.itertuples():
        both = wide[[r.annotator_a, r.annotator_b]].dropna()
        assert r.n_clips == len(both)
        assert r.kappa == pytest.approx(cohen_kappa_score(both[r.annotator_a], both[r.annotator_b]))
    assert len(pairs) == 3
    report = agreement_report(df)["holiday"]
    assert report["cohen_kappa"]["n_pairs"] == 3 and len(report["cohen_kappa"]["pairs"]) == 3
    assert agreement_frame(agreement_report(df))["class"].tolist() == ["holiday"]


def test_fleiss_uses_all_clips_when_counts_are_equal():
    rows = [(f"c{i}", f"r{j}", "x", int(COUNTS[i, 1] > j)) for i in range(5) for j in range(3)]
    df = pd.DataFrame(rows, columns=["asset", "annotator", "class", "value"])
    report = agreement_report(df)["x"]
    assert report["fleiss_kappa"]["all_clips"] and report["fleiss_kappa"]["n_clips"] == 5
    assert report["fleiss_kappa"]["value"] == pytest.approx(4 / 9, abs=1e-6)
    assert report["krippendorff_alpha"]["value"] == pytest.approx(13 / 27, abs=1e-6)
    assert report["fleiss_kappa"]["n_raters"] == 3

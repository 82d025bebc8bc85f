"""Which stopping rule stops closest to the real plateau: per-run numbers, the ranking, the winner, the report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlci.analysis.report import _q4
from mlci.analysis.stopping import RANKING_COLUMNS, evaluate_stopping, rank_stopping_rules
from mlci.analysis.summarise import AnalysisSummary, summarise_stopping

LABELS = [10, 20, 30, 40, 50, 60, 70, 80]
# Final AP 1.0; the first point at >= 99 % of it is round 5, so the real plateau is at 60 labels.
AP = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0, 1.0]
NEVER_PLATEAUS = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65]  # OOF AP gains 0.05 a round


def _run(repetition, *, kappa, uncertainty, oof_ap, strategy="margin", schedule="x", ap=AP):
    return pd.DataFrame({
        "strategy": strategy, "schedule": schedule, "repetition": repetition, "concept": "c",
        "round": range(len(LABELS)), "labels": LABELS, "test_ap": ap,
        "kappa": kappa, "uncertainty": uncertainty, "oof_ap": oof_ap,
    })


# Repetition 0: kappa stabilizes at round 6 (70 labels: 10 late), uncertainty fires at round 2
# (30 labels: 30 early, at AP 0.8), the OOF curve never plateaus (every label spent: 20 past).
RUN_0 = dict(
    kappa=[np.nan, 0.5, 0.6, 0.7, 0.99, 1.0, 1.0, 1.0],
    uncertainty=[0.9, 0.5, 0.04, 0.03, 0.02, 0.01, 0.0, 0.0],
    oof_ap=NEVER_PLATEAUS,
)
# Repetition 1: kappa stabilizes at round 5 (on the plateau), uncertainty fires at round 6
# (70 labels: 10 late), the OOF curve plateaus at round 4 (50 labels: 10 early, at AP 0.95).
RUN_1 = dict(
    kappa=[np.nan, 0.5, 0.6, 0.99, 1.0, 1.0, 1.0, 1.0],
    uncertainty=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.04, 0.03],
    oof_ap=[0.5, 0.8, 0.801, 0.802, 0.803, 0.804, 0.805, 0.806],
)


@pytest.fixture
def curves():
    return pd.concat([_run(0, **RUN_0), _run(1, **RUN_1)], ignore_index=True)


def _at(table, repetition, rule):
    return table[(table["repetition"] == repetition) & (table["rule"] == rule)].iloc[0]


def test_per_run_plateau_labels_past_plateau_score_lost_and_distance(curves):
    out = evaluate_stopping(curves)
    assert (out["plateau_labels"] == 60).all() and (out["plateau_labels"] == out["labels_99"]).all()
    expected = {  # (repetition, rule): stop labels, labels past the plateau, score lost, distance
        (0, "stabilizing_predictions"): (70, 10, 0.0, 10),
        (0, "overall_uncertainty"): (30, 0, 0.2, 30),
        (0, "oof_plateau"): (np.nan, 20, 0.0, 20),  # never fired: final 80 - plateau 60
        (1, "stabilizing_predictions"): (60, 0, 0.0, 0),
        (1, "overall_uncertainty"): (70, 10, 0.0, 10),
        (1, "oof_plateau"): (50, 0, 0.05, 10),
    }
    for (rep, rule), (stop, past, lost, distance) in expected.items():
        row = _at(out, rep, rule)
        assert (math.isnan(row["stop_labels"]) and math.isnan(stop)) or row["stop_labels"] == stop, (rep, rule)
        assert row["labels_past_plateau"] == past, (rep, rule)
        assert row["score_lost"] == pytest.approx(lost), (rep, rule)
        assert row["distance"] == distance, (rep, rule)


def test_a_run_with_no_final_score_has_no_plateau_numbers():
    ap = [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0, np.nan]
    out = evaluate_stopping(_run(0, ap=ap, **RUN_0))
    assert out[["plateau_labels", "labels_past_plateau", "score_lost", "distance"]].isna().all().all()
    assert rank_stopping_rules(out).empty


def test_ranking_and_winner(curves):
    ranking = rank_stopping_rules(evaluate_stopping(curves))
    assert list(ranking.columns) == ["schedule", *RANKING_COLUMNS]
    r = ranking.set_index("rule")
    assert list(ranking["rule"]) == ["stabilizing_predictions", "oof_plateau", "overall_uncertainty"]
    assert list(ranking["rank"]) == [1, 2, 3]
    assert r["runs"].tolist() == [2, 2, 2]
    assert r.loc["stabilizing_predictions", "distance_mean"] == 5  # (10 + 0) / 2
    assert r.loc["oof_plateau", "distance_mean"] == 15  # (20 + 10) / 2
    assert r.loc["overall_uncertainty", "distance_mean"] == 20  # (30 + 10) / 2
    assert r.loc["oof_plateau", "labels_past_plateau_mean"] == 10
    assert r.loc["oof_plateau", "labels_past_plateau_median"] == 10
    assert r.loc["overall_uncertainty", "score_lost_mean"] == pytest.approx(0.1)
    assert r.loc["oof_plateau", "score_lost_mean"] == pytest.approx(0.025)
    assert r.loc["oof_plateau", "never"] == 0.5
    assert r["early_share"].tolist() == [0.0, 0.5, 0.5]
    assert r["eligible"].tolist() == [True, False, False]
    assert r["winner"].tolist() == [True, False, False]
    assert not r["fallback"].any()
    assert (r["early_tolerance"] == 0.01).all() and (r["max_early_share"] == 0.1).all()


def test_an_early_stopper_cannot_win_even_when_closest():
    # a: closest on average (10) but loses 0.05 AP in 1 of 4 runs (25 % > 10 %); b: 30 away, never early.
    runs = pd.DataFrame({
        "strategy": "margin", "schedule": "x", "rule": ["a"] * 4 + ["b"] * 4, "timing": "on time",
        "plateau_labels": 60.0,
        "labels_past_plateau": [0, 10, 10, 10, 30, 30, 30, 30],
        "score_lost": [0.05, 0, 0, 0, 0, 0, 0, 0],
        "distance": [10, 10, 10, 10, 30, 30, 30, 30],
    })
    r = rank_stopping_rules(runs).set_index("rule")
    assert r.loc["a", "distance_mean"] < r.loc["b", "distance_mean"]
    assert r.loc["b", "winner"] and not r.loc["a", "winner"] and r.loc["a", "early_share"] == 0.25
    # Allow 25 % early stops and the closer rule wins; lose at most 0.01 AP: 0.05 is still early.
    assert rank_stopping_rules(runs, max_early_share=0.25).set_index("rule").loc["a", "winner"]
    # A loss within the tolerance is not an early stop.
    lenient = rank_stopping_rules(runs, early_tolerance=0.05).set_index("rule")
    assert lenient.loc["a", "early_share"] == 0 and lenient.loc["a", "winner"]


def test_equal_distances_go_to_the_smaller_loss_then_the_name():
    runs = pd.DataFrame({
        "strategy": "margin", "schedule": "x", "rule": ["a", "a", "b", "b", "c", "c", "d", "d"],
        "timing": "on time", "plateau_labels": 60.0, "labels_past_plateau": 0.0,
        "score_lost": [0.008, 0.0, 0.0, 0.0, 0.0, 0.0, 0.004, 0.004],
        "distance": [40, 0, 20, 20, 30, 10, 20, 20],
    })
    r = rank_stopping_rules(runs)
    assert r["distance_mean"].tolist() == [20, 20, 20, 20] and r["eligible"].all()
    # b and c lose nothing (b first by name); a and d lose 0.004 on average (a first by name).
    assert list(r["rule"]) == ["b", "c", "a", "d"]
    assert r["winner"].tolist() == [True, False, False, False] and not r["fallback"].any()


def test_fallback_winner_is_the_smallest_distance_with_ties_to_the_smaller_loss():
    runs = pd.DataFrame({
        "strategy": "margin", "schedule": "x", "rule": ["a", "a", "b", "b", "c", "c"], "timing": "early",
        "plateau_labels": 60.0, "labels_past_plateau": 0.0,
        "score_lost": [0.2, 0.0, 0.03, 0.03, 0.02, 0.0],
        "distance": [40, 0, 10, 20, 30, 10],
    })
    r = rank_stopping_rules(runs)
    assert list(r["rule"]) == ["b", "c", "a"]  # b 15; c and a 20, c loses less (0.01 vs 0.1)
    assert r["winner"].tolist() == [True, False, False]
    assert r["fallback"].all() and not r["eligible"].any()


def test_oracle_runs_are_left_out_and_schedules_are_ranked_apart(curves):
    # An oracle run where uncertainty stops exactly on the plateau and kappa never fires, thrice.
    oracle = pd.concat([
        _run(r, strategy="oracle_outlier", kappa=[np.nan] * 8,
             uncertainty=[0.9, 0.8, 0.7, 0.6, 0.5, 0.04, 0.0, 0.0], oof_ap=NEVER_PLATEAUS)
        for r in range(3)
    ])
    other = _run(0, schedule="y", kappa=[np.nan] * 8, uncertainty=[0.9, 0.8, 0.7, 0.6, 0.5, 0.04, 0.0, 0.0],
                 oof_ap=NEVER_PLATEAUS)
    stop = evaluate_stopping(pd.concat([curves, oracle, other], ignore_index=True))
    ranking = rank_stopping_rules(stop)
    x = ranking[ranking["schedule"] == "x"].set_index("rule")
    assert x.loc["stabilizing_predictions", "winner"] and x["runs"].tolist() == [2, 2, 2]
    y = ranking[ranking["schedule"] == "y"].set_index("rule")
    assert y.loc["overall_uncertainty", "winner"] and y.loc["overall_uncertainty", "distance_mean"] == 0
    pooled = rank_stopping_rules(stop, by=())
    assert "schedule" not in pooled.columns and pooled["runs"].tolist() == [3, 3, 3]
    assert pooled.set_index("rule").loc["overall_uncertainty", "distance_mean"] == pytest.approx(40 / 3)


def test_ranking_rejects_bad_parameters_and_foreign_tables(curves):
    stop = evaluate_stopping(curves)
    with pytest.raises(ValueError, match="max_early_share must be between 0 and 1, but got 1.5"):
        rank_stopping_rules(stop, max_early_share=1.5)
    with pytest.raises(ValueError, match="early_tolerance must be >= 0, but got -0.1"):
        rank_stopping_rules(stop, early_tolerance=-0.1)
    with pytest.raises(ValueError, match=r"lacks the columns \['distance'\]"):
        rank_stopping_rules(stop.drop(columns="distance"))
    assert list(rank_stopping_rules(pd.DataFrame()).columns) == ["schedule", *RANKING_COLUMNS]


def _summary(stop):
    empty = pd.DataFrame()
    return AnalysisSummary(
        runs=empty, strategies=empty, versus_baseline=empty, versus_fixed=empty, query_depth=empty,
        stopping=stop, stopping_summary=summarise_stopping(stop), stopping_ranking=rank_stopping_rules(stop),
    )


def test_report_names_the_winner_and_by_how_much(curves):
    q4 = _q4(_summary(evaluate_stopping(curves)), "x")
    assert q4[-1] == (
        "stabilizing_predictions stopped closest to the real plateau (where the test curve first reaches 99 % of "
        "its final AP): 5 labels from it on average, against oof_plateau 15 (early in 50 % of runs) and "
        "overall_uncertainty 20 (early in 50 % of runs); it spent 5 labels past the plateau and gave up 0.000 AP "
        "on average, and stopped early (losing more than 0.01 AP) in 0 % of runs. It is the closest of the rules "
        "that stop early in at most 10 % of runs. It is the nightly stop advisor's default rule."
    )
    assert any(s.startswith("The rule that most often stops inside the 95–99 % window") for s in q4)  # kept


def test_report_says_when_the_winner_is_only_the_fallback(curves):
    # In repetition 1 every rule stops before the plateau: kappa and the OOF plateau at round 3
    # (40 labels, AP 0.9), uncertainty at round 2 (30 labels, AP 0.8).
    early = dict(kappa=[np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                 uncertainty=[0.9, 0.5, 0.04, 0.0, 0.0, 0.0, 0.0, 0.0],
                 oof_ap=[0.5] * 8)
    stop = evaluate_stopping(pd.concat([_run(0, **RUN_0), _run(1, **early)], ignore_index=True))
    r = rank_stopping_rules(stop)
    assert r["fallback"].all() and not r["eligible"].any()
    assert list(r["rule"]) == ["stabilizing_predictions", "oof_plateau", "overall_uncertainty"]
    assert r["distance_mean"].tolist() == [15, 20, 30] and r["early_share"].tolist() == [0.5, 0.5, 1.0]
    assert r["winner"].tolist() == [True, False, False]
    q4 = _q4(_summary(stop), "x")
    assert q4[-1].startswith("stabilizing_predictions stopped closest to the real plateau")
    assert "and stopped early (losing more than 0.01 AP) in 50 % of runs." in q4[-1]
    assert q4[-1].endswith(
        "Every rule stops early in more than 10 % of runs, so none qualifies; stabilizing_predictions is only the "
        "closest. It is the nightly stop advisor's default rule."
    )


def test_report_says_when_the_winner_never_fired():
    # kappa never defined: the rule never fires (20 labels from the plateau, nothing lost); the two
    # others are closer in one run but stop early in the other.
    silent = [np.nan] * 8
    stop = evaluate_stopping(pd.concat([_run(0, **{**RUN_0, "kappa": silent}), _run(1, **{**RUN_1, "kappa": silent})],
                                       ignore_index=True))
    r = rank_stopping_rules(stop)
    assert list(r["rule"]) == ["stabilizing_predictions", "oof_plateau", "overall_uncertainty"]
    assert r["distance_mean"].tolist() == [20, 15, 20] and r["winner"].tolist() == [True, False, False]
    sentence = _q4(_summary(stop), "x")[-1]
    assert "20 labels from it on average, against oof_plateau 15 (early in 50 % of runs) and" in sentence
    assert "in 0 % of runs and never fired in 100 % (labeling to the end)." in sentence


def test_the_analysis_summary_ranks_the_rules_and_writes_the_table():
    from sklearn.datasets import load_digits

    from mlci.analysis import SimulationConfig, make_data, simulate
    from mlci.analysis.summarise import summarise_analysis

    X, y = load_digits(return_X_y=True)
    X, y = X[:200], y[:200]
    data = make_data(None, X / np.linalg.norm(X, axis=1, keepdims=True), (y[:, None] == np.array([0, 1])).astype(int))
    config = SimulationConfig(repetitions=2, oof_folds=3, stop_set_size=100)
    result = simulate(data, ["random", "oracle_outlier"], ["5,5,10,10,20,20"], config)
    summary = summarise_analysis(result)
    ranking = summary.tables()["stopping_ranking"]
    assert ranking is summary.stopping_ranking
    assert sorted(ranking["rule"]) == ["oof_plateau", "overall_uncertainty", "stabilizing_predictions"]
    assert ranking["runs"].tolist() == [4, 4, 4]  # random only: 2 repetitions x 2 concepts
    assert ranking["winner"].sum() == 1
    winner = ranking.loc[ranking["winner"], "rule"].iloc[0]
    assert _q4(summary, "5,5,10,10,20,20")[-1].startswith(f"{winner} stopped closest to the real plateau")

    silent = summarise_analysis(simulate(data, ["random"], ["5,5,10"], SimulationConfig(repetitions=1, stopping=False)))
    assert silent.stopping_ranking.empty and "stopping_ranking" in silent.tables()

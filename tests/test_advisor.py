"""The stop advisor: its verdicts from signal series, its record in the store, and what a stop does to the batch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from mlci.advisor import StopAdvisor, choose_stop_set, gain_per_100, load_advice, load_history, record_night
from mlci.batches import RoundInputs, consensus_matrix, plan_round
from mlci.strategies import get_strategy
from mlci.tables import ADVISOR_SIGNALS, conform

# -- verdicts from a series -------------------------------------------------------------------------


def _history(kappa, *, oof=None, uncertainty=None, positives=40, per_night=10, labels=100, concept="gift"):
    """ADVISOR_SIGNALS rows of one concept, one per night, 50 labels a night."""
    n = len(kappa)
    oof = oof if oof is not None else [0.5 + 0.05 * i for i in range(n)]
    uncertainty = uncertainty if uncertainty is not None else [0.5] * n
    rows = [{
        "model_version": str(i + 1), "label_snapshot": f"s{i}", "recorded_at": pd.Timestamp("2026-01-01", tz="UTC"),
        "concept": concept, "labels": labels + 50 * i, "positives": positives + per_night * i, "new_labels": 50,
        "new_positives": per_night, "oof_ap": oof[i], "kappa": kappa[i], "uncertainty": uncertainty[i],
        "prevalence": 0.1, "stop_set_size": 500,
    } for i in range(n)]
    return conform(pd.DataFrame(rows), ADVISOR_SIGNALS)


def _verdict(history, **kw):
    [row] = StopAdvisor(**kw).advise(history).to_dict(orient="records")
    return row


def test_stabilizing_predictions_stops_after_three_stable_nights_and_says_slowing_before():
    nan = float("nan")
    assert _verdict(_history([nan, 0.80, 0.95]))["verdict"] == "keep labeling"
    slowing = _verdict(_history([nan, 0.80, 0.995]))
    assert slowing["verdict"] == "slowing"
    assert slowing["reason"].startswith("kappa ≥ 0.99 last night, not yet for 3 nights")
    stop = _verdict(_history([nan, 0.80, 0.992, 0.995, 1.0]))
    assert stop["verdict"] == "stop" and stop["kappa_mean"] == pytest.approx((0.992 + 0.995 + 1.0) / 3)
    assert "kappa 0.992, 0.995, 1.000" in stop["reason"] and "OOF AP 0.700" in stop["reason"]
    # An undefined kappa (a model predicting one class everywhere) never counts towards stopping.
    assert _verdict(_history([nan, 1.0, nan, 1.0]))["verdict"] == "slowing"
    undefined = _verdict(_history([nan, 1.0, 1.0, nan]))
    assert undefined["verdict"] == "keep labeling" and undefined["reason"].startswith("no kappa (a model predicts")
    assert _verdict(_history([nan]))["reason"].startswith("first night: no earlier model to compare with; kappa –")
    used_up = _history([nan, 1.0, 1.0, nan]).assign(stop_set_size=[500, 200, 60, 40])
    assert _verdict(used_up)["reason"].startswith("no kappa: only 40 clips of the stop set are still unlabeled")


def test_the_evidence_carries_the_oof_gain_and_what_the_last_labels_found():
    row = _verdict(_history([0.5] * 5, oof=[0.5, 0.6, 0.7, 0.8, 0.9]))
    # 0.1 AP per 50 labels on the last four nights: +0.2 per 100 labels, exactly linear.
    assert row["gain_per_100"] == pytest.approx(0.2) and row["gain_se"] == pytest.approx(0.0, abs=1e-12)
    assert row["found_rate"] == pytest.approx(0.2) and row["prevalence"] == pytest.approx(0.1)
    assert "+0.200 ± 0.000 per 100 labels" in row["reason"]
    assert "last labels 20 % positive vs 10 % in the pool" in row["reason"]


def test_too_few_positives_are_never_judged_and_a_spent_budget_stops_everything():
    stable = [float("nan"), 1.0, 1.0, 1.0]
    few = _verdict(_history(stable, positives=3, per_night=0, labels=200), min_positives=10)
    assert few["verdict"] == "keep labeling"
    assert few["reason"].startswith("3 positives and 347 negatives so far: too few to judge (needs 10 of each)")
    rows = StopAdvisor().advise(_history([0.2, 0.3]), budget_left=0).to_dict(orient="records")
    assert rows[0]["verdict"] == "stop" and rows[0]["reason"].startswith("the label budget is spent")
    assert "0 labels left in the budget" in rows[0]["reason"]


def test_oof_plateau_and_overall_uncertainty_rules():
    flat = _history([0.5] * 5, oof=[0.5, 0.70, 0.705, 0.706, 0.707])
    assert _verdict(flat, rule="oof_plateau")["verdict"] == "stop"
    rising = _history([0.5] * 5, oof=[0.5, 0.6, 0.7, 0.8, 0.9])
    assert _verdict(rising, rule="oof_plateau")["verdict"] == "keep labeling"
    almost = _history([0.5] * 5, oof=[0.5, 0.70, 0.71, 0.712, 0.715])
    assert _verdict(almost, rule="oof_plateau")["verdict"] == "slowing"
    assert _verdict(_history([0.5] * 2, uncertainty=[0.3, 0.04]), rule="overall_uncertainty")["verdict"] == "stop"
    assert _verdict(_history([0.5] * 2, uncertainty=[0.3, 0.08]), rule="overall_uncertainty")["verdict"] == "slowing"


@pytest.mark.parametrize(("params", "message"), [
    ({"rule": "patience"}, "rule must be one of"),
    ({"kappa_threshold": 1.5}, "kappa_threshold must be in"),
    ({"window": 0}, "window must be an int >= 1"),
    ({"min_positives": 0}, "min_positives must be >= 1"),
])
def test_bad_advisor_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        StopAdvisor(**params)


def test_a_bad_advisor_setting_fails_the_run_before_it_starts(monkeypatch, tmp_path):
    from mlci.params import ParameterError, settings_for_run

    monkeypatch.setenv("MLCI_HOME", str(tmp_path))
    monkeypatch.setenv("MLCI_ADVISOR__STOP_RULE", "patience")
    monkeypatch.setenv("MLCI_ADVISOR__LABEL_BUDGET", "0")
    with pytest.raises(ParameterError) as err:
        settings_for_run(None)
    assert err.value.problems == [
        "stop_rule must be one of stabilizing_predictions, oof_plateau, overall_uncertainty, but got 'patience'",
        "label_budget must be an integer >= 1, but got 0",
    ]


def test_gain_per_100_needs_three_points():
    assert np.isnan(gain_per_100(np.array([10, 20]), np.array([0.1, 0.2]))[0])
    slope, se = gain_per_100(np.array([0, 100, 200, 300]), np.array([0.5, 0.61, 0.69, 0.8]))
    assert slope == pytest.approx(0.098) and 0 < se < 0.02


def test_the_stop_set_is_a_seeded_sample_of_the_pool():
    pool = [f"clips/{i:04d}.mp4" for i in range(3000)]
    chosen = choose_stop_set(pool[::-1], size=1000, random_state=3)
    assert chosen == choose_stop_set(pool, size=1000, random_state=3) and chosen == sorted(chosen)
    assert len(set(chosen)) == 1000 and set(chosen) <= set(pool)
    assert chosen != choose_stop_set(pool, size=1000, random_state=4)
    assert choose_stop_set(pool[:10], size=1000) == pool[:10]


# -- a night's record in the store ------------------------------------------------------------------

CLASSES = ["holiday", "gift"]


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    keys = np.array([f"clips/c{i:03d}.mp4" for i in range(n)], dtype=object)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = np.stack([(X[:, 0] > 0.3), (X[:, 1] > 0.0)], axis=1).astype(int)
    return keys, X, Y


def _consensus(keys, Y):
    return pd.DataFrame([{"asset": k, "class": c, "posterior": float(Y[i, j]), "label": int(Y[i, j]), "n_votes": 2,
                          "method": "majority"} for i, k in enumerate(keys) for j, c in enumerate(CLASSES)])


def _night(store, version, n_labeled, *, keys, X, Y, advisor=StopAdvisor(min_positives=2), **kw):
    from mlci.models import MultiLabelModel

    schema = {"extractor": "basic", "version": "1"}
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(X[:n_labeled], Y[:n_labeled])
    return record_night(store, model_name="m", model_version=str(version), label_snapshot=f"s{version}",
                        model=model, keys=keys, X=X, feature_schema=schema,
                        consensus=_consensus(keys[:n_labeled], Y[:n_labeled]),
                        oof_ap={"holiday": 0.5 + version / 10, "gift": 0.6}, advisor=advisor,
                        stop_set_size=100, now=datetime(2026, 5, version, tzinfo=timezone.utc), **kw)


def test_a_night_is_recorded_once_and_its_signals_follow_the_models(local_store):
    keys, X, Y = _data()
    first = _night(local_store, 1, 20, keys=keys, X=X, Y=Y)
    assert first.recorded and first.model_version == "1"
    stop_set = json.loads(local_store.read_text("advisor/m/stop_set.json"))["keys"]
    assert len(stop_set) == 100 and not set(stop_set) & set(keys[:20])  # label-free when chosen
    signals = first.history.set_index("concept")
    assert np.isnan(signals["kappa"]).all()  # nothing to compare with on the first night
    assert signals.loc["holiday", "labels"] == 20 and signals.loc["holiday", "positives"] == Y[:20, 0].sum()
    assert signals.loc["holiday", "oof_ap"] == pytest.approx(0.6)
    assert ((signals["uncertainty"] > 0) & (signals["uncertainty"] <= 1)).all()

    # Version 2 is fitted on more labels: its predictions on the stop set change, not perfectly agree.
    second = _night(local_store, 2, 100, keys=keys, X=X, Y=Y)
    s2 = second.history[second.history["model_version"] == "2"].set_index("concept")
    assert s2.loc["holiday", "new_labels"] == 80 and s2.loc["gift", "new_positives"] == Y[20:100, 1].sum()
    assert (s2["kappa"] < 1).all() and (s2["kappa"] > 0).all()
    assert json.loads(local_store.read_text("advisor/m/stop_set.json"))["keys"] == stop_set  # fixed for good
    # ... less the clips labeled since, on which a model would agree with itself.
    assert (s2["stop_set_size"] == len(set(stop_set) - set(keys[:100]))).all() and 50 <= s2["stop_set_size"].iloc[0] < 100

    # Version 3 is the same fit as version 2: its predictions agree exactly.
    third = _night(local_store, 3, 100, keys=keys, X=X, Y=Y)
    assert (third.history.query("model_version == '3'")["kappa"] == 1.0).all()
    # Too few clips left to compare on: no kappa (chance agreement on a handful proves nothing).
    fourth = _night(local_store, 4, 280, keys=keys, X=X, Y=Y)
    assert fourth.history.query("model_version == '4'")["kappa"].isna().all()
    assert fourth.history["model_version"].tolist() == ["1", "1", "2", "2", "3", "3", "4", "4"]

    # Recording version 3 again changes nothing in the store and gives the same advice.
    before = {k: local_store.stat(k).identity for k in local_store.list("advisor/")}
    again = _night(local_store, 3, 110, keys=keys, X=X, Y=Y)
    assert not again.recorded
    pd.testing.assert_frame_equal(again.advice, third.advice, check_dtype=False)
    assert {k: local_store.stat(k).identity for k in local_store.list("advisor/")} == before
    assert load_advice(local_store, "m").model_version == "4"
    assert load_advice(local_store, "m", 7) is None and load_advice(local_store, "other") is None
    assert len(load_history(local_store, "m", up_to=2)) == 4


def test_a_spent_budget_is_in_the_record(local_store):
    keys, X, Y = _data()
    night = _night(local_store, 1, 30, keys=keys, X=X, Y=Y, label_budget=30)
    assert set(night.verdicts().values()) == {"stop"} and night.stopped() == CLASSES
    manifest = json.loads(local_store.read_text("advisor/m/v00000001/manifest.json"))
    assert manifest["label_budget"] == 30 and manifest["advice"][0]["budget_left"] == 0


# -- a stopped concept's share goes to the others ---------------------------------------------------


def _inputs(stopped=()):
    """Clip 0 is the most uncertain for holiday only; clip 1 for gift only."""
    n = 40
    keys = np.array([f"clips/c{i:03d}.mp4" for i in range(n)], dtype=object)
    proba = np.tile([[0.97, 0.02]], (n, 1))
    proba[2:, 0] = np.linspace(0.70, 0.95, n - 2)
    proba[2:, 1] = np.linspace(0.30, 0.05, n - 2)
    proba[0, 0], proba[1, 1] = 0.5, 0.5
    consensus = pd.DataFrame(columns=["asset", "class", "posterior", "label", "n_votes", "method"])
    lk, ly = consensus_matrix(consensus, CLASSES)
    return RoundInputs(keys, np.zeros((n, 3), np.float32), proba, CLASSES, lk, ly,
                       pd.DataFrame(columns=["asset", "class", "posterior", "label", "n_votes", "n_positive", "reason"]),
                       stopped=frozenset(stopped))


def test_a_concept_advised_to_stop_ranks_nothing_and_the_others_take_its_share():
    margin = get_strategy("margin", policy="round_robin")
    both = plan_round(_inputs(), margin, batch_size=4, relabel_share=0).batch["key"].tolist()
    assert {"clips/c000.mp4", "clips/c001.mp4"} <= set(both)
    gift_only = plan_round(_inputs(stopped={"holiday"}), margin, batch_size=4, relabel_share=0).batch
    assert len(gift_only) == 4 and "clips/c000.mp4" not in set(gift_only["key"])
    # Its four clips are gift's four most uncertain.
    assert gift_only["key"].tolist()[0] == "clips/c001.mp4"
    assert plan_round(_inputs(stopped=set(CLASSES)), margin, batch_size=4, relabel_share=0.5).batch.empty


def test_a_round_with_every_concept_stopped_publishes_nothing_and_records_the_advice(local_store):
    from mlci.batches import run_round
    from mlci.catalog import ClassCatalog, Concept
    from mlci.models import MultiLabelModel

    keys, X, Y = _data(n=60)
    schema = {"extractor": "basic", "version": "1"}
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(X[:20], Y[:20])
    history = pd.DataFrame({"asset": pd.Series(dtype=str), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]")})
    consensus = _consensus(keys[:20], Y[:20])

    def run(advice):
        return run_round(local_store, model=model, model_name="m", model_version="1", keys=keys, X=X,
                         feature_schema=schema, consensus=consensus, relabel=consensus.iloc[:0].assign(
                             n_positive=pd.Series(dtype=int), reason=pd.Series(dtype=str)),
                         label_snapshot="s", annotations_history=history,
                         catalog=ClassCatalog(tuple(Concept(c, c) for c in CLASSES)), question="Which?",
                         strategy="margin", batch_size=6, relabel_share=0.0, open_batch_expiry=timedelta(days=7),
                         advice=advice, now=datetime(2026, 3, 1, tzinfo=timezone.utc))

    nothing = run({"holiday": "stop", "gift": "stop"})
    assert not nothing.published and nothing.reason.startswith("every concept is advised to stop labeling")
    some = run({"holiday": "stop", "gift": "slowing"})
    assert some.published and len(some.batch) == 6
    manifest = json.loads(local_store.read_text(f"batches/{some.round_id}/manifest.json"))
    assert manifest["advice"] == {"holiday": "stop", "gift": "slowing"} and manifest["stopped_concepts"] == ["holiday"]
    unlabeled = model.predict_proba(X[20:], feature_schema=schema)
    assert manifest["pool_prior"] == pytest.approx(dict(zip(CLASSES, unlabeled.mean(axis=0))))
    # Without advice the round is another round (another id); with the same advice, the same.
    assert run(None).round_id != some.round_id
    assert run({"holiday": "stop", "gift": "slowing"}).round_id == some.round_id

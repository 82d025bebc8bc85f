"""mlci.models without MLflow: training sets, the multi-label model, evaluation, the promotion rule."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.metrics import average_precision_score, roc_auc_score

from mlci.models import (
    SKOPS_TRUSTED_TYPES,
    FeatureSchemaMismatchError,
    FeatureSpec,
    MultiLabelModel,
    TrainingDataError,
    build_training_set,
    cross_validate,
    decide_promotion,
    plot_class_curves,
    plot_summary,
)
from mlci.models.evaluation import binary_metrics
from mlci.models.promotion import PromotionDecision
from mlci.tables import OOF_SCORES, TableSchemaError, conform

CLASSES = ("holiday", "gift giving", "family moments", "shopping scenes", "halloween")
PREVALENCE = (0.3, 0.25, 0.3, 0.2, 0.25)
SPEC = FeatureSpec("demo-av", "1")

# Every estimator configuration that must train, predict and round-trip through skops.
VARIANTS = [
    ("logistic_regression", None, {"C": 1.0, "class_weight": "balanced"}),
    ("logistic_regression", "sigmoid", None),
    ("logistic_regression", "isotonic", None),
    ("linear_svm", None, {"C": 0.5}),
    ("hist_gradient_boosting", None, {"max_iter": 30}),
    ("hist_gradient_boosting", "sigmoid", {"max_iter": 20}),
]


def make_corpus(n=240, d=24, *, seed=0, noise=0.6, known=0.9, classes=CLASSES, prevalence=PREVALENCE):
    """Separable L2-normalised features, hidden truth, and a consensus table covering ``known`` of the labels."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, len(classes))) < np.asarray(prevalence)).astype(np.int8)
    centers = rng.normal(size=(len(classes), d))
    X = truth @ centers + rng.normal(scale=noise, size=(n, d)) + rng.normal(size=d)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    keys = [f"clips/demo/clip_{i:04d}.mp4" for i in range(n)]
    rows = []
    for i, key in enumerate(keys):
        for j, cls in enumerate(classes):
            if rng.random() < known:
                label = int(truth[i, j])
                rows.append({"asset": key, "class": cls, "posterior": 0.8 if label else 0.3,
                             "label": label, "n_votes": 3, "method": "dawid_skene"})
    return keys, X, pd.DataFrame(rows), truth


# -- training sets ---------------------------------------------------------------------------


def test_build_training_set_aligns_features_and_labels():
    keys, X, consensus, _ = make_corpus(60)
    # Features arrive in another order, with unlabeled pool clips; some labeled clips lack features.
    order = np.random.default_rng(1).permutation(60)
    fkeys = [keys[i] for i in order[:50]] + ["clips/pool/unlabeled.mp4"]
    fX = np.vstack([X[order[:50]], np.ones((1, X.shape[1]), np.float32)])
    consensus = pd.concat([consensus, pd.DataFrame([{"asset": keys[0], "class": "snow", "posterior": 1.0,
                                                      "label": 1, "n_votes": 1, "method": "single"}])])
    ts = build_training_set(fkeys, fX, consensus, CLASSES)

    labeled_with_features = sorted(set(fkeys[:50]) & set(consensus["asset"]))
    assert ts.keys.tolist() == labeled_with_features
    assert "clips/pool/unlabeled.mp4" not in ts.keys
    assert set(ts.missing_features) == set(consensus["asset"]) - set(fkeys)
    assert ts.unknown_classes == ("snow",)
    assert ts.X.dtype == np.float32 and ts.Y.dtype == np.int8 and ts.Y.shape == (len(ts), len(CLASSES))
    for i, key in enumerate(ts.keys):
        np.testing.assert_array_equal(ts.X[i], X[keys.index(key)])
        for j, cls in enumerate(CLASSES):
            row = consensus[(consensus["asset"] == key) & (consensus["class"] == cls)]
            assert ts.Y[i, j] == (row["label"].iloc[0] if len(row) else -1)
    table = ts.labels_table()
    assert len(table) == int((ts.Y >= 0).sum())
    assert ts.weights is None
    assert ts.fingerprint() == build_training_set(fkeys, fX, consensus, CLASSES).fingerprint()


def test_build_training_set_weights_from_posterior():
    keys, X, consensus, _ = make_corpus(30)
    ts = build_training_set(keys, X, consensus, CLASSES, weight_by_posterior=True)
    pos, neg, unknown = ts.Y == 1, ts.Y == 0, ts.Y == -1
    assert np.allclose(ts.weights[pos], 0.8) and np.allclose(ts.weights[neg], 0.7)
    assert np.all(ts.weights[unknown] == 0)


@pytest.mark.parametrize(
    "case, error",
    [
        ("duplicate_rows", TrainingDataError),
        ("label_out_of_range", TrainingDataError),
        ("keys_x_mismatch", TrainingDataError),
        ("duplicate_keys", TrainingDataError),
        ("no_overlap", TrainingDataError),
        ("missing_column", TableSchemaError),
    ],
)
def test_build_training_set_rejects_bad_input(case, error):
    keys, X, consensus, _ = make_corpus(20)
    if case == "duplicate_rows":
        consensus = pd.concat([consensus, consensus.iloc[:1]])
    elif case == "label_out_of_range":
        consensus.loc[0, "label"] = 2
    elif case == "keys_x_mismatch":
        X = X[:-1]
    elif case == "duplicate_keys":
        keys = keys[:-1] + keys[:1]
    elif case == "no_overlap":
        keys = [k.replace("demo", "other") for k in keys]
    elif case == "missing_column":
        consensus = consensus.drop(columns="posterior")
    with pytest.raises(error) as info:
        build_training_set(keys, X, consensus, CLASSES)
    assert str(info.value)


# -- the multi-label model -------------------------------------------------------------------


@pytest.mark.parametrize("estimator, calibration, params", VARIANTS)
def test_every_estimator_trains_predicts_and_roundtrips_through_skops(estimator, calibration, params):
    keys, X, consensus, truth = make_corpus(200)
    ts = build_training_set(keys[:150], X[:150], consensus, CLASSES)
    model = MultiLabelModel(CLASSES, estimator=estimator, calibration=calibration, estimator_params=params,
                            feature_schema=SPEC, random_state=3)
    model.fit(ts.X, ts.Y)
    assert set(model.class_status_.values()) == {"trained"}
    proba = model.predict_proba(X[150:])
    assert proba.shape == (50, len(CLASSES)) and np.all((proba >= 0) & (proba <= 1))
    # Held-out ranking is far better than chance on separable data.
    aucs = [roc_auc_score(truth[150:, j], proba[:, j]) for j in range(len(CLASSES))]
    assert min(aucs) > 0.8, aucs

    blob = skops.io.dumps(model)
    assert set(skops.io.get_untrusted_types(data=blob)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = skops.io.loads(blob, trusted=SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(X[150:]), proba)
    assert loaded.feature_schema_ == {"extractor": "demo-av", "version": "1", "modality": "combined"}


def test_fit_is_reproducible_with_a_fixed_seed():
    keys, X, consensus, _ = make_corpus(120)
    ts = build_training_set(keys, X, consensus, CLASSES)
    a = MultiLabelModel(CLASSES, estimator="hist_gradient_boosting", estimator_params={"max_iter": 15}).fit(ts.X, ts.Y)
    b = MultiLabelModel(CLASSES, estimator="hist_gradient_boosting", estimator_params={"max_iter": 15}).fit(ts.X, ts.Y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_concepts_that_cannot_train_are_reported_and_the_others_train():
    keys, X, consensus, _ = make_corpus(80)
    consensus.loc[consensus["class"] == "halloween", "label"] = 0  # no positives at all
    consensus.loc[consensus["class"] == "holiday", "label"] = 1  # no negatives
    sub = consensus["class"] == "gift giving"
    consensus.loc[sub, "label"] = 0
    consensus.loc[consensus.index[sub][:1], "label"] = 1  # one positive only
    ts = build_training_set(keys, X, consensus, CLASSES)
    model = MultiLabelModel(CLASSES, feature_schema=SPEC).fit(ts.X, ts.Y)
    assert model.class_status_ == {
        "holiday": "too_few_negatives",
        "gift giving": "too_few_positives",
        "family moments": "trained",
        "shopping scenes": "trained",
        "halloween": "too_few_positives",
    }
    proba = model.predict_proba(X)
    assert np.all(proba[:, 0] == 1.0) and np.all(proba[:, 4] == 0.0)
    assert np.allclose(proba[:, 1], model.priors_[1]) and 0 < model.priors_[1] < 0.05
    assert proba[:, 2].std() > 0
    nan_model = MultiLabelModel(CLASSES, untrained_score="nan").fit(ts.X, ts.Y)
    assert np.isnan(nan_model.predict_proba(X)[:, [0, 1, 4]]).all()
    assert nan_model.trained_mask_.tolist() == [False, False, True, True, False]


def test_features_from_another_extractor_are_refused():
    keys, X, consensus, _ = make_corpus(60)
    ts = build_training_set(keys, X, consensus, CLASSES)
    model = MultiLabelModel(CLASSES, feature_schema=SPEC, modality="combined").fit(ts.X, ts.Y)
    model.check_features(FeatureSpec("demo-av", "1"))
    model.check_features({"extractor": "demo-av", "version": 1})  # 1 and "1" are the same version

    class OtherSchema:  # the features package's schema: any object with these attributes
        extractor, version, modality = "demo-av", "2", "combined"

    with pytest.raises(FeatureSchemaMismatchError, match=r"version: model expects '1', got '2'"):
        model.check_features(OtherSchema())
    with pytest.raises(FeatureSchemaMismatchError, match="extractor"):
        model.predict_proba(X, feature_schema=FeatureSpec("clip-vit", "1"))
    with pytest.raises(FeatureSchemaMismatchError, match="modality"):
        model.check_features({"extractor": "demo-av", "version": "1", "modality": "audio"})
    with pytest.raises(FeatureSchemaMismatchError, match="n_features"):
        model.predict_proba(X[:, :10])
    assert model.predict_proba(X, feature_schema=SPEC).shape == (60, 5)


def test_extractor_parameters_are_checked_when_both_sides_know_them():
    keys, X, consensus, _ = make_corpus(40)
    ts = build_training_set(keys, X, consensus, CLASSES)

    class Schema:  # shaped like the features package's FeatureSchema
        def __init__(self, params_hash):
            self.extractor, self.version, self.params_hash = "demo-av", 1, params_hash

    model = MultiLabelModel(CLASSES, feature_schema=Schema("abc123")).fit(ts.X, ts.Y)
    assert model.feature_schema_["params_hash"] == "abc123"
    model.check_features(Schema("abc123"))
    model.check_features(SPEC)  # a bare name + version cannot say, so it is not refused
    with pytest.raises(FeatureSchemaMismatchError, match="params_hash: model expects 'abc123', got 'fff000'"):
        model.check_features(Schema("fff000"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"estimator": "svm"}, "estimator must be one of"),
        ({"estimator_params": {"gamma": 1.0}}, "does not accept"),
        ({"estimator_params": {"random_state": 1}}, "random_state"),
        ({"calibration": "platt"}, "calibration must be one of"),
        ({"modality": "both"}, "modality must be one of"),
        ({"min_positives": 0}, "min_positives"),
        ({"untrained_score": "zero"}, "untrained_score"),
        ({"classes": ()}, "classes must be"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, match):
    keys, X, consensus, _ = make_corpus(30)
    ts = build_training_set(keys, X, consensus, CLASSES)
    model = MultiLabelModel(**{"classes": CLASSES, **kwargs})
    with pytest.raises(ValueError, match=match):
        model.fit(ts.X, ts.Y)


def test_label_matrix_is_checked():
    X = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"Y must have shape \(4, 5\)"):
        MultiLabelModel(CLASSES).fit(X, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="Y values must be"):
        MultiLabelModel(CLASSES).fit(X, np.full((4, 5), 2))


# -- evaluation ------------------------------------------------------------------------------


def test_cross_validation_scores_metrics_and_reduced_folds():
    keys, X, consensus, _ = make_corpus(150)
    small = consensus["class"] == "shopping scenes"
    pos_rows = consensus.index[small & (consensus["label"] == 1)]
    consensus.loc[pos_rows[3:], "label"] = 0  # three positives: three folds
    lone = consensus["class"] == "halloween"
    consensus.loc[consensus.index[lone & (consensus["label"] == 1)][1:], "label"] = 0  # one positive
    ts = build_training_set(keys, X, consensus, CLASSES)
    model = MultiLabelModel(CLASSES)
    ev = cross_validate(model, ts.X, ts.Y, n_splits=5, random_state=7)

    pc = ev.per_class.set_index("class")
    assert pc.loc["holiday", "n_folds"] == 5 and pc.loc["shopping scenes", "n_folds"] == 3
    assert pc.loc["halloween", "status"] == "too_few_positives" and pc.loc["halloween", "n_folds"] == 0
    assert np.isnan(ev.scores[:, 4]).all() and math.isnan(pc.loc["halloween", "ap"])
    # Every known label of an evaluated concept is scored exactly once; unknown labels never.
    for j, cls in enumerate(CLASSES[:4]):
        known = ts.Y[:, j] >= 0
        assert np.isfinite(ev.scores[known, j]).all() and np.isnan(ev.scores[~known, j]).all()
        assert set(ev.folds[known, j]) == set(range(int(pc.loc[cls, "n_folds"])))
        y, s = ts.Y[known, j], ev.scores[known, j]
        assert pc.loc[cls, "ap"] == pytest.approx(average_precision_score(y, s))
        assert pc.loc[cls, "roc_auc"] == pytest.approx(roc_auc_score(y, s))
        assert pc.loc[cls, "accuracy"] == pytest.approx(np.mean((s >= 0.5) == y))
    evaluated = pc[pc["status"] == "evaluated"]
    assert len(evaluated) == 4
    assert ev.macro["macro_ap"] == pytest.approx(evaluated["ap"].mean())
    assert ev.macro["macro_ap"] > 0.6  # chance is the prevalence, 0.2-0.3

    again = cross_validate(model, ts.X, ts.Y, n_splits=5, random_state=7)
    np.testing.assert_array_equal(again.scores, ev.scores)
    other = cross_validate(model, ts.X, ts.Y, n_splits=5, random_state=8)
    assert not np.array_equal(np.nan_to_num(other.folds), np.nan_to_num(ev.folds))

    table = ev.oof_table(ts.keys)
    assert list(table.columns) == list(OOF_SCORES.columns)
    assert len(table) == int(np.isfinite(ev.scores).sum())
    conform(table, OOF_SCORES)


def test_calibrated_estimator_leaves_too_small_folds_unscored():
    keys, X, consensus, _ = make_corpus(80)
    sub = consensus["class"] == "holiday"
    consensus.loc[consensus.index[sub & (consensus["label"] == 1)][2:], "label"] = 0  # two positives
    ts = build_training_set(keys, X, consensus, CLASSES)
    ev = cross_validate(MultiLabelModel(CLASSES, calibration="sigmoid"), ts.X, ts.Y)
    # Two folds, each training part holds one positive: too few to calibrate, nothing is scored.
    assert ev.status["holiday"] == "no_scores"
    assert ev.status["family moments"] == "evaluated"
    assert ev.macro["macro_ap"] == pytest.approx(ev.per_class.loc[ev.per_class["status"] == "evaluated", "ap"].mean())


def test_binary_metrics_follow_the_documented_definitions():
    y = np.array([1, 1, 0, 0, 0, 1])
    s = np.array([0.9, 0.4, 0.6, 0.1, 0.2, 0.8])
    m = binary_metrics(y, s)
    assert m["accuracy"] == pytest.approx(4 / 6)  # predicted 1,0,1,0,0,1
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    only_neg = binary_metrics(np.zeros(4, int), np.linspace(0, 1, 4))
    assert math.isnan(only_neg["ap"]) and math.isnan(only_neg["roc_auc"]) and only_neg["f1"] == 0.0


def test_figures_are_drawn_without_a_display():
    keys, X, consensus, _ = make_corpus(80)
    consensus.loc[consensus["class"] == "halloween", "label"] = 0
    ts = build_training_set(keys, X, consensus, CLASSES)
    ev = cross_validate(MultiLabelModel(CLASSES), ts.X, ts.Y)
    ok = np.isfinite(ev.scores[:, 0])
    fig = plot_class_curves(ev.Y[ok, 0], ev.scores[ok, 0], "holiday")
    assert len(fig.axes) == 2  # ROC left, precision-recall right (the seed's layout)
    assert fig.axes[0].get_xlabel() == "False Positive Rate" and fig.axes[1].get_xlabel() == "Recall"
    for figure in (fig, plot_summary(ev)):
        buf = io.BytesIO()
        figure.savefig(buf, format="png")
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the promotion rule ----------------------------------------------------------------------


def test_first_model_is_promoted():
    d = decide_promotion({"macro_ap": 0.4}, None)
    assert d.promote and d.comparison_set == "first_model"


@pytest.mark.parametrize(
    "challenger, champion, tolerance, promote",
    [(0.80, 0.75, 0.0, True), (0.70, 0.75, 0.0, False), (0.75, 0.75, 0.0, True), (0.73, 0.75, 0.03, True),
     (0.71, 0.75, 0.03, False)],
)
def test_gate_on_cross_validated_metrics(challenger, champion, tolerance, promote):
    d = decide_promotion({"macro_ap": challenger}, {"macro_ap": champion}, n_compare=10, tolerance=tolerance,
                         min_new_labels=50, n_cross_validated=900)
    assert d.promote is promote
    assert d.comparison_set == "cross_validation" and d.n == 900
    assert d.numbers["delta"] == pytest.approx(challenger - champion)
    assert "10 new labels < min_new_labels=50" in d.reason


def test_gate_uses_new_labels_when_there_are_enough():
    # Cross-validation says "better", but on labels the champion never saw the challenger is worse.
    d = decide_promotion({"macro_ap": 0.9}, {"macro_ap": 0.7}, n_compare=120, min_new_labels=50,
                         challenger_new_labels={"macro_ap": 0.6}, champion_new_labels={"macro_ap": 0.65})
    assert not d.promote and d.comparison_set == "new_labels" and d.n == 120
    assert d.numbers["challenger"] == 0.6 and "120 labels the champion never saw" in d.reason
    # Not computable on the new labels: falls back to cross-validation and says why.
    d = decide_promotion({"macro_ap": 0.9}, {"macro_ap": 0.7}, n_compare=120, min_new_labels=50,
                         challenger_new_labels=None, champion_new_labels={"macro_ap": 0.65})
    assert d.promote and d.comparison_set == "cross_validation" and "not defined" in d.reason


def test_gate_with_missing_metrics_and_bad_arguments():
    assert not decide_promotion({"macro_ap": math.nan}, {"macro_ap": 0.5}).promote
    assert decide_promotion({"macro_ap": 0.1}, {"macro_ap": math.nan}).promote
    with pytest.raises(ValueError, match="tolerance"):
        decide_promotion({}, {}, tolerance=-0.1)
    with pytest.raises(ValueError, match="min_new_labels"):
        decide_promotion({}, {}, min_new_labels=0)


def test_gate_parameters_are_checked_on_their_own():
    from mlci.models import check_promotion_params

    check_promotion_params(tolerance=0.0, min_new_labels=1)
    with pytest.raises(ValueError, match=r"tolerance must be a finite number >= 0, but got -0.1"):
        check_promotion_params(tolerance=-0.1, min_new_labels=50)
    with pytest.raises(ValueError, match="tolerance .* but got nan"):
        check_promotion_params(tolerance=math.nan, min_new_labels=50)
    with pytest.raises(ValueError, match="min_new_labels must be an int >= 1, but got 0"):
        check_promotion_params(tolerance=0.0, min_new_labels=0)


def test_decision_roundtrips_through_tags():
    d = decide_promotion({"macro_ap": 0.8}, {"macro_ap": 0.75}, tolerance=0.01, n_cross_validated=300)
    back = PromotionDecision.from_tags(d.as_tags())
    assert back.promote == d.promote and back.reason == d.reason and back.n == 300
    assert back.numbers["challenger"] == pytest.approx(0.8) and back.comparison_set == "cross_validation"

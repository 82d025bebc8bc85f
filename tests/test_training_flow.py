"""The training step (flows/training.py) end to end: training runs, the registry and the promotion
gate against a real SQLite MLflow store; its tasks run on the session's Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from prefect import flow
from test_models import CLASSES, make_corpus
from typer.testing import CliRunner

from flows.training import training_step
from mlci.models import (
    CHALLENGER,
    CHAMPION,
    FeatureSchemaMismatchError,
    FeatureSpec,
    MultiLabelModel,
    TrainingConfig,
    TrainingResult,
    build_training_set,
    list_versions,
    load_model,
    resolve_version,
)
from mlci.models.tracking import tracking_context
from mlci.tables import OOF_SCORES, conform

SPEC = FeatureSpec("demo-av", "1")
MODEL = "concepts"


#: Keywords of :func:`training_step` that are not fields of :class:`TrainingConfig`.
STEP_ARGS = {"feature_schema", "tracking_uri", "experiment_name", "model_name", "label_snapshot_id", "trigger",
             "tolerance", "min_new_labels", "tags", "reuse_existing"}


@pytest.fixture(autouse=True)
def _prefect(prefect_harness):
    """The step runs in flows on the session's Prefect test server."""


def train(ts, tracking_uri, **kwargs):
    """The training step inside a flow, with this module's defaults; ``kwargs`` are step or TrainingConfig keywords."""
    args = dict(tracking_uri=tracking_uri, experiment_name="mlci-test", model_name=MODEL, feature_schema=SPEC,
                label_snapshot_id="snap-1", trigger="manual", tolerance=0.0, min_new_labels=50)
    config = TrainingConfig(**{k: v for k, v in kwargs.items() if k not in STEP_ARGS})
    step_args = {**args, **{k: v for k, v in kwargs.items() if k in STEP_ARGS}}

    @flow(name="training-step-test")
    def run() -> TrainingResult:  # the training set reaches the step by closure, not as a flow parameter
        return training_step(ts, config=config, **step_args)

    return run()


def artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    out = set()
    for item in client.list_artifacts(run_id, path or None):
        out |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_run_contents_registry_aliases_and_loading(tracking_uri, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # to see that nothing lands in MLflow's working-directory defaults
    keys, X, consensus, _ = make_corpus(200)
    ts = build_training_set(keys, X, consensus, CLASSES, weight_by_posterior=True)
    result = train(ts, tracking_uri, estimator_params={"C": 2.0}, trigger="nightly", tags={"team": "media"})

    assert result.model_version == "1" and result.promoted and not result.reused
    assert result.decision.comparison_set == "first_model"
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["estimator"] == "logistic_regression" and p["estimator.C"] == "2.0"
    assert p["calibration"] == "none" and p["modality"] == "combined"
    assert (p["feature_extractor"], p["feature_version"], p["label_snapshot_id"]) == ("demo-av", "1", "snap-1")
    assert p["sample_weights"] == "consensus_posterior"
    assert int(p["labels_positive_gift_giving"]) == int((ts.Y[:, 1] == 1).sum())
    assert int(p["labels_negative_gift_giving"]) == int((ts.Y[:, 1] == 0).sum())
    for cls in ("holiday", "gift_giving", "family_moments", "shopping_scenes", "halloween"):
        assert {f"cv_ap_{cls}", f"cv_roc_auc_{cls}", f"cv_accuracy_{cls}", f"cv_recall_{cls}", f"cv_f1_{cls}"} <= set(m)
    assert m["cv_macro_ap"] == pytest.approx(np.mean([m[f"cv_ap_{c}"] for c in ("holiday", "gift_giving",
                                                  "family_moments", "shopping_scenes", "halloween")]))
    assert t["mlci.trigger"] == "nightly" and t["team"] == "media"
    assert len(t["mlflow.source.git.commit"]) == 40  # the project is a git checkout: MLflow's own tag
    assert t["mlflow.note.content"].startswith("Nightly training of logistic_regression on 200 clips (")
    assert "demo-av v1 combined features; cross-validated macro AP 0." in t["mlflow.note.content"]
    assert "champion" in client.get_registered_model(MODEL).description
    assert t["mlci.promotion.promote"] == "true" and json.loads(t["mlci.class_status"])["halloween"] == "trained"

    files = artifacts(client, result.run_id)
    assert {"figures/summary.png", "evaluation/oof_scores.parquet", "evaluation/metrics.json",
            "training/labels.parquet", "promotion.json"} <= files
    assert {f"figures/roc_pr_{c}.png" for c in ("holiday", "gift_giving", "halloween")} <= files
    local = Path(client.download_artifacts(result.run_id, "evaluation", str(tmp_path)))
    oof = conform(pd.read_parquet(local / "oof_scores.parquet"), OOF_SCORES)
    assert len(oof) == int((ts.Y >= 0).sum())  # every known label scored out of fold
    from sklearn.metrics import average_precision_score
    h = oof[oof["class"] == "holiday"]
    assert m["cv_ap_holiday"] == pytest.approx(average_precision_score(h["label"], h["score"]))
    assert json.loads((local / "metrics.json").read_text())["macro"]["macro_ap"] == pytest.approx(m["cv_macro_ap"])

    # Registry: version 1 carries both aliases and the decision as tags.
    info = resolve_version(tracking_uri, MODEL)
    assert info.version == "1" and set(info.aliases) == {CHAMPION, CHALLENGER} and info.run_id == result.run_id
    assert info.tags["mlci.promotion.comparison_set"] == "first_model"

    # The logged model is a skops file (a zip), not a pickle, and carries signature and input example.
    with tracking_context(tracking_uri):  # MLflow resolves models:/ URIs with the process-wide registry
        model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(tmp_path / "m")))
    names = {f.name for f in model_dir.iterdir()}
    assert "model.skops" in names and not any(n.endswith((".pkl", ".pickle")) for n in names)
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["signature"]["inputs"] and mlmodel["signature"]["outputs"]
    assert "saved_input_example_info" in mlmodel
    assert (model_dir / "model.skops").read_bytes()[:2] == b"PK"

    # Loading goes through the registry, never through a pickle, and predicts what was trained.
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    model = load_model(tracking_uri, MODEL)
    assert isinstance(model, MultiLabelModel) and list(model.classes_) == list(CLASSES)
    refit = MultiLabelModel(CLASSES, estimator_params={"C": 2.0}, feature_schema=SPEC).fit(ts.X, ts.Y, ts.weights)
    np.testing.assert_allclose(model.predict_proba(X, feature_schema=SPEC), refit.predict_proba(X))
    np.testing.assert_array_equal(load_model(tracking_uri, MODEL, version=1).predict_proba(X), model.predict_proba(X))

    # The same inputs again change nothing.
    again = train(ts, tracking_uri, estimator_params={"C": 2.0}, trigger="nightly", tags={"team": "media"})
    assert again.reused and again.run_id == result.run_id and again.model_version == "1"
    assert again.metrics["cv_macro_ap"] == pytest.approx(m["cv_macro_ap"])
    assert len(list_versions(tracking_uri, MODEL)) == 1

    # Nothing went to MLflow's working-directory defaults.
    assert list(Path(".").iterdir()) == []
    assert (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").is_dir()

    # `mlci models` lists the version with its aliases and metrics.
    import typer

    from cli.models import models_command

    app = typer.Typer()
    app.command("models")(models_command)
    app.command("noop")(lambda: None)
    out = CliRunner().invoke(app, ["models", "--name", MODEL], env={"MLCI_MLFLOW_TRACKING_URI": tracking_uri})
    assert out.exit_code == 0, out.output
    assert "champion" in out.output and f"{m['cv_macro_ap']:.3f}" in out.output


def test_promotion_gate_both_ways(tracking_uri, tmp_path):
    keys, X, consensus, _ = make_corpus(260, seed=5, noise=2.5)  # hard enough that 60 clips are clearly too few
    full = build_training_set(keys, X, consensus, CLASSES)
    first = build_training_set(keys[:60], X[:60], consensus, CLASSES)
    v1 = train(first, tracking_uri)
    assert v1.promoted and v1.model_version == "1"

    # A worse challenger: the same labels on features that no longer belong to their clips.
    scrambled = build_training_set(keys[:60], X[:60][np.random.default_rng(0).permutation(60)], consensus, CLASSES)
    v2 = train(scrambled, tracking_uri)
    assert not v2.promoted and v2.model_version == "2"
    assert v2.decision.comparison_set == "cross_validation"  # no labels the champion never saw
    assert v2.decision.numbers["challenger"] < v2.decision.numbers["champion"]
    assert resolve_version(tracking_uri, MODEL, alias=CHAMPION).version == "1"
    assert resolve_version(tracking_uri, MODEL, alias=CHALLENGER).version == "2"
    tags2 = resolve_version(tracking_uri, MODEL, version=2).tags
    assert tags2["mlci.promotion.promote"] == "false" and "worse than" in tags2["mlci.promotion.reason"]

    # A better challenger, judged on the 200 newer clips' labels that version 1 never saw.
    v3 = train(full, tracking_uri, min_new_labels=50)
    assert v3.promoted and v3.model_version == "3"
    d = v3.decision
    assert d.comparison_set == "new_labels" and d.n >= 50
    n_new = int((full.Y[60:] >= 0).sum())
    assert d.n <= n_new and d.numbers["challenger"] > d.numbers["champion"]
    assert resolve_version(tracking_uri, MODEL, alias=CHAMPION).version == "3"
    client = MlflowClient(tracking_uri)
    run = client.get_run(v3.run_id)
    assert run.data.tags["mlci.promotion.comparison_set"] == "new_labels"
    assert run.data.metrics["promotion_n_compare"] == d.n and run.data.tags["mlci.champion_before"] == "1"
    promo = json.loads(Path(client.download_artifacts(v3.run_id, "promotion.json", str(tmp_path))).read_text())
    assert promo["n"] == d.n and set(promo["new_labels_per_class"]["classes_compared"]) <= set(CLASSES)
    versions = list_versions(tracking_uri, MODEL)
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert set(versions[0].aliases) == {CHAMPION, CHALLENGER} and versions[1].aliases == ()


def test_class_without_positives_and_another_feature_version(tracking_uri):
    keys, X, consensus, _ = make_corpus(160, seed=2)
    consensus.loc[consensus["class"] == "halloween", "label"] = 0
    ts = build_training_set(keys, X, consensus, CLASSES)
    v1 = train(ts, tracking_uri)
    assert v1.class_status["halloween"] == "too_few_positives"
    assert {c for c, s in v1.class_status.items() if s == "trained"} == set(CLASSES) - {"halloween"}
    assert "cv_ap_halloween" not in v1.metrics and "cv_ap_holiday" in v1.metrics
    client = MlflowClient(tracking_uri)
    run = client.get_run(v1.run_id)
    assert json.loads(run.data.tags["mlci.class_status"])["halloween"] == "too_few_positives"
    assert "figures/roc_pr_halloween.png" not in artifacts(client, v1.run_id)
    model = load_model(tracking_uri, MODEL)
    assert np.all(model.predict_proba(X)[:, CLASSES.index("halloween")] == 0.0)

    # Features of another extractor version are refused by the registered model...
    with pytest.raises(FeatureSchemaMismatchError, match="version"):
        model.predict_proba(X, feature_schema=FeatureSpec("demo-av", "2"))
    # ...and a challenger on them is compared on cross-validation, saying why.
    more_keys, more_X, more_cons, _ = make_corpus(220, seed=2)
    ts2 = build_training_set(more_keys, more_X, more_cons, CLASSES)
    v2 = train(ts2, tracking_uri, feature_schema=FeatureSpec("demo-av", "2"), min_new_labels=10)
    assert v2.decision.comparison_set == "cross_validation"
    note = client.get_run(v2.run_id).data.tags["mlci.promotion.note"]
    assert "cannot score" in note and "version" in note


def test_bad_parameters_fail_before_anything_is_registered(tracking_uri):
    keys, X, consensus, _ = make_corpus(60)
    ts = build_training_set(keys, X, consensus, CLASSES)
    with pytest.raises(ValueError, match="trigger"):
        train(ts, tracking_uri, trigger="hourly")
    with pytest.raises(ValueError, match="tolerance"):
        train(ts, tracking_uri, tolerance=-1)
    with pytest.raises(ValueError, match="min_new_labels"):
        train(ts, tracking_uri, min_new_labels=0)
    with pytest.raises(ValueError, match="estimator"):
        train(ts, tracking_uri, estimator="forest")
    with pytest.raises(ValueError, match="n_splits"):
        train(ts, tracking_uri, n_splits=1)
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists()  # not even the MLflow database

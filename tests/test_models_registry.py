"""The registry's MLflow I/O called directly (no Prefect) against a real SQLite MLflow store:
logging and registering a trained model, reusing an identical run, reading the champion, loading."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_models import CLASSES, make_corpus

from mlci.models import (
    CHALLENGER,
    CHAMPION,
    FeatureSpec,
    ModelNotFoundError,
    MultiLabelModel,
    TrainingConfig,
    UnsafeModelFormatError,
    build_training_set,
    check_run_params,
    compare_with_champion,
    find_reusable_run,
    list_versions,
    load_champion,
    load_model,
    log_and_register,
    resolve_version,
    run_fingerprint,
    train,
)
from mlci.models.multilabel import SKOPS_TRUSTED_TYPES
from mlci.models.registry import cross_validated
from mlci.models.tracking import (
    default_artifact_location,
    get_or_create_experiment,
    tracking_context,
)

SPEC = FeatureSpec("demo-av", "1")
MODEL = "concepts"
EXPERIMENT = "mlci-registry-test"


def log(ts, tracking_uri, config=TrainingConfig(), **kwargs):
    """Train without MLflow, then log and register the way the training step does."""
    trained = train(ts, config, feature_schema=SPEC)
    comparison = compare_with_champion(ts, trained, load_champion(tracking_uri, MODEL))
    decision = comparison.decide(trained, tolerance=0.0, min_new_labels=50)
    fingerprint = run_fingerprint(ts, config, SPEC, model_name=MODEL, label_snapshot_id="snap-1",
                                  tolerance=0.0, min_new_labels=50)
    result = log_and_register(
        ts, trained, comparison, decision, tracking_uri=tracking_uri, experiment_name=EXPERIMENT,
        model_name=MODEL, feature_schema=SPEC, fingerprint=fingerprint, label_snapshot_id="snap-1", **kwargs,
    )
    return trained, fingerprint, result


def test_log_register_reuse_and_read_back_the_champion(tracking_uri):
    keys, X, consensus, _ = make_corpus(120, seed=4)
    ts = build_training_set(keys, X, consensus, CLASSES)
    assert load_champion(tracking_uri, MODEL) is None
    trained, fingerprint, result = log(ts, tracking_uri, trigger="nightly", flow_run_id="flow-123", tags={"team": "x"},
                                       store_uri="s3://bucket/store")

    assert (result.model_version, result.promoted, result.reused) == ("1", True, False)
    assert result.decision.reason == "no champion yet: the first model becomes champion"
    assert result.class_status == trained.class_status
    assert result.metrics["cv_macro_ap"] == pytest.approx(trained.evaluation.macro["macro_ap"])
    run = MlflowClient(tracking_uri).get_run(result.run_id)
    t = run.data.tags
    assert t["mlci.fingerprint"] == fingerprint and t["mlci.prefect_flow_run_id"] == "flow-123"
    assert (t["mlci.trigger"], t["team"], t["mlci.champion_before"]) == ("nightly", "x", "none")
    assert run.data.params["n_splits"] == "5" and run.data.params["min_new_labels"] == "50"
    assert run.data.metrics["promoted"] == 1.0
    info = resolve_version(tracking_uri, MODEL)
    assert set(info.aliases) == {CHAMPION, CHALLENGER} and info.run_id == result.run_id
    assert info.tags["mlci.promotion.reason"] == result.decision.reason
    # No champion to compare with: no number of it is recorded, and no tag or param says "nan".
    numbers = json.loads(t["mlci.promotion.numbers"])
    assert numbers["challenger"] == pytest.approx(result.metrics["cv_macro_ap"], rel=1e-5) and "champion" not in numbers
    assert info.tags["mlci.promotion.numbers"] == t["mlci.promotion.numbers"]
    # Fewer, grouped tags: the per-concept statuses in one, the gate's numbers in one.
    assert json.loads(t["mlci.class_status"]) == result.class_status
    assert len([k for k in t if k.startswith("mlci.")]) <= 16 and len(info.tags) <= 13
    assert not [k for k, v in {**t, **run.data.params, **info.tags}.items() if v.lower() == "nan"]
    # The training data, as MLflow dataset inputs: the label snapshot and the feature set, by id and place.
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"labels snap-1", "features demo-av-v1"}
    labels, features = inputs["labels snap-1"], inputs["features demo-av-v1"]
    assert labels.dataset.digest == "snap-1" and '"s3://bucket/store/consensus/snap-1/"' in labels.dataset.source
    assert features.dataset.digest == "v1" and '"s3://bucket/store/features/demo-av-v1/"' in features.dataset.source
    assert {tag.key: tag.value for tag in labels.tags}["mlflow.data.context"] == "training"

    # Idempotence: the fingerprint finds the run; another fingerprint finds nothing.
    again = find_reusable_run(tracking_uri, experiment_name=EXPERIMENT, model_name=MODEL, fingerprint=fingerprint)
    assert again.reused and (again.run_id, again.model_version) == (result.run_id, "1")
    d, r = again.decision, result.decision
    assert (d.promote, d.reason, d.comparison_set, d.n) == (r.promote, r.reason, r.comparison_set, r.n)
    assert d.numbers["challenger"] == pytest.approx(r.numbers["challenger"]) and again.class_status == result.class_status
    assert find_reusable_run(tracking_uri, experiment_name=EXPERIMENT, model_name=MODEL, fingerprint="0" * 64) is None

    # The champion as the comparison sees it: its run's metrics, its training labels, its model.
    champion = load_champion(tracking_uri, MODEL)
    assert (champion.version, champion.run_id) == ("1", result.run_id)
    assert champion.metrics == cross_validated(run.data.metrics) and champion.metrics["macro_ap"] > 0 and champion.unavailable == "" and champion.model_error == ""
    seen = champion.seen_labels.astype(str).sort_values(["asset", "class"]).reset_index(drop=True)
    expected = ts.labels_table()[["asset", "class"]].astype(str).sort_values(["asset", "class"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(seen, expected)
    np.testing.assert_allclose(champion.model.predict_proba(X), trained.model.predict_proba(X))

    # A second version with the same labels: compared on cross-validation, champion_before recorded.
    _, _, second = log(ts, tracking_uri, config=TrainingConfig(estimator_params={"C": 0.01}))
    assert second.model_version == "2" and second.decision.comparison_set == "cross_validation"
    assert MlflowClient(tracking_uri).get_run(second.run_id).data.tags["mlci.champion_before"] == "1"
    assert resolve_version(tracking_uri, MODEL, alias=CHALLENGER).version == "2"
    expected_champion = "2" if second.promoted else "1"
    assert resolve_version(tracking_uri, MODEL, alias=CHAMPION).version == expected_champion


def test_a_retry_in_the_same_flow_run_returns_the_run_it_logged(tracking_uri):
    keys, X, consensus, _ = make_corpus(60, seed=5)
    ts = build_training_set(keys, X, consensus, CLASSES)
    _, fingerprint, first = log(ts, tracking_uri, flow_run_id="flow-1")
    _, _, retried = log(ts, tracking_uri, flow_run_id="flow-1")  # e.g. the answer to the last call was lost
    assert retried.reused and (retried.run_id, retried.model_version) == (first.run_id, "1")
    _, _, deliberate = log(ts, tracking_uri, flow_run_id="flow-2")  # same inputs, another flow run: a new run
    assert not deliberate.reused and deliberate.model_version == "2" and deliberate.run_id != first.run_id
    assert [v.version for v in list_versions(tracking_uri, MODEL)] == ["2", "1"]


def test_a_version_created_twice_is_registered_once(tracking_uri, monkeypatch):
    """MLflow's client re-sends a create whose answer was lost: the copy is deleted, never left pending."""
    keys, X, consensus, _ = make_corpus(60, seed=5)
    ts = build_training_set(keys, X, consensus, CLASSES)
    create = MlflowClient.create_model_version

    def sent_twice(self, *args, **kwargs):
        lost = create(self, *args, **kwargs)
        assert lost.tags["mlci.registration"] == "pending"
        return create(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_model_version", sent_twice)
    _, _, result = log(ts, tracking_uri)
    versions = list_versions(tracking_uri, MODEL)
    assert result.model_version == "2" and [(v.version, v.aliases) for v in versions] == [("2", (CHALLENGER, CHAMPION))]
    assert versions[0].tags["mlci.registration"] == "complete"


def test_champion_snapshot_says_what_it_could_not_read(tracking_uri):
    keys, X, consensus, _ = make_corpus(60)
    ts = build_training_set(keys, X, consensus, CLASSES)
    plain = MultiLabelModel(CLASSES, feature_schema=SPEC).fit(ts.X, ts.Y)
    with tracking_context(tracking_uri) as client:
        exp = get_or_create_experiment(client, "other", artifact_location=default_artifact_location(tracking_uri))
    with tracking_context(tracking_uri), mlflow.start_run(experiment_id=exp):
        mlflow.log_metric("macro_ap", 0.5)
        mlflow.sklearn.log_model(plain, name="model", serialization_format="skops", skops_trusted_types=SKOPS_TRUSTED_TYPES,
                                 registered_model_name=MODEL, pip_requirements=["scikit-learn"])
    MlflowClient(tracking_uri).set_registered_model_alias(MODEL, CHAMPION, "1")

    champion = load_champion(tracking_uri, MODEL)
    assert champion.version == "1" and champion.metrics == {"macro_ap": 0.5}
    assert champion.seen_labels is None and champion.model is None
    assert champion.unavailable.startswith("champion run has no training/labels.parquet: ")
    comparison = compare_with_champion(ts, train(ts, TrainingConfig(), feature_schema=SPEC), champion)
    assert comparison.note == champion.unavailable and comparison.champion_metrics == {"macro_ap": 0.5}


def test_run_parameters_are_checked():
    check_run_params(model_name="concepts", trigger="nightly")
    with pytest.raises(ValueError, match="trigger must be one of .* but got 'hourly'"):
        check_run_params(model_name="concepts", trigger="hourly")
    with pytest.raises(ValueError, match="model_name"):
        check_run_params(model_name="it's", trigger="manual")


def test_loading_refuses_pickles_and_unknown_models(tracking_uri):
    keys, X, consensus, _ = make_corpus(60)
    ts = build_training_set(keys, X, consensus, CLASSES)
    plain = MultiLabelModel(CLASSES).fit(ts.X, ts.Y)
    with tracking_context(tracking_uri) as client:
        exp = get_or_create_experiment(client, "other", artifact_location=default_artifact_location(tracking_uri))
    with pytest.raises(ModelNotFoundError, match="nothing-here"):
        load_model(tracking_uri, "nothing-here")
    with tracking_context(tracking_uri), mlflow.start_run(experiment_id=exp):
        mlflow.sklearn.log_model(plain, name="model", serialization_format="cloudpickle",
                                 registered_model_name="pickled", pip_requirements=["scikit-learn"])
    with pytest.raises(UnsafeModelFormatError, match="cloudpickle"):
        load_model(tracking_uri, "pickled", version=1)
    with pytest.raises(ModelNotFoundError, match="alias 'champion'"):
        load_model(tracking_uri, "pickled")
    assert list_versions(tracking_uri, MODEL) == []


def test_a_moved_store_is_refused_until_relocated_then_uses_its_own_artifacts(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from cli import app
    from mlci.models import TrackingStoreMovedError
    from mlci.models.sqlite_store import relocate_store

    keys, X, consensus, _ = make_corpus(120, seed=4)
    ts = build_training_set(keys, X, consensus, CLASSES)
    home, moved = tmp_path / "home", tmp_path / "elsewhere" / "home"
    home.mkdir()
    _, _, first = log(ts, f"sqlite:///{home / 'mlflow.db'}")
    moved.parent.mkdir()
    shutil.move(home, moved)  # the original folder is gone
    uri = f"sqlite:///{moved / 'mlflow.db'}"
    with pytest.raises(TrackingStoreMovedError, match=r"was moved or copied; run `mlci relocate` to use file://"):
        list_versions(uri, MODEL)

    env = {"MLCI_MLFLOW_TRACKING_URI": uri, "MLCI_HOME": str(moved)}
    out = CliRunner().invoke(app, ["relocate"], env=env)
    assert out.exit_code == 0 and out.output == "relocated: 1 experiments, 1 runs, 1 logged_models, 1 model_versions\n"
    again = CliRunner().invoke(app, ["relocate"], env=env)
    assert again.exit_code == 0 and again.output.startswith("nothing to do: ")
    assert relocate_store(uri) == {"experiments": 0, "runs": 0, "logged_models": 0, "model_versions": 0}

    # Reads find the moved artifacts; a new run writes beside the moved database.
    assert load_model(uri, MODEL).predict_proba(X).shape == (len(X), len(CLASSES))
    _, _, second = log(ts, uri, config=TrainingConfig(estimator_params={"C": 0.5}))
    run = MlflowClient(uri).get_run(second.run_id)
    assert run.info.artifact_uri.startswith((moved / "mlartifacts").as_uri())
    assert (moved / "mlartifacts" / second.run_id).is_dir() and not home.exists()

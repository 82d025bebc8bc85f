"""The training tasks inside a real Prefect flow run (the session's Prefect test server)."""

from __future__ import annotations

from mlflow import MlflowClient
from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Failed
from test_models import CLASSES, make_corpus

from flows.training import training_step
from mlci.models import FeatureSchemaMismatchError, FeatureSpec, TrainingConfig
from tasks.training import build_training_set_task, load_model_task, retry_on_io_only


@flow(name="train-models-test")
def train_flow(tracking_uri: str) -> dict:
    keys, X, consensus, _ = make_corpus(120, seed=3)
    ts = build_training_set_task(keys, X, consensus, list(CLASSES))
    result = training_step(
        ts, feature_schema=FeatureSpec("demo-av", "1"), config=TrainingConfig(), tracking_uri=tracking_uri,
        experiment_name="flow-test", model_name="flow-model", label_snapshot_id="snap", trigger="nightly",
        tolerance=0.0, min_new_labels=50,
    )
    model = load_model_task(tracking_uri, "flow-model")
    return {"flow_run_id": flow_run.get_id(), "run_id": result.run_id, "version": result.model_version,
            "proba_shape": model.predict_proba(X).shape}


def test_training_step_records_the_flow_run(prefect_harness, tracking_uri):
    out = train_flow(tracking_uri)
    assert out["version"] == "1" and out["proba_shape"] == (120, len(CLASSES))
    tags = MlflowClient(tracking_uri).get_run(out["run_id"]).data.tags
    assert tags["mlci.prefect_flow_run_id"] == out["flow_run_id"] and tags["mlci.trigger"] == "nightly"


def test_training_tasks_retry_only_what_talks_to_mlflow():
    from tasks import training

    io = (training.find_reusable_run_task, training.load_champion_snapshot_task, training.log_and_register_task,
          training.load_model_task)
    compute = (training.train_task, training.compare_with_champion_task, training.build_training_set_task)
    assert all(t.retries == 2 and t.retry_condition_fn is retry_on_io_only for t in io)
    assert all(not t.retries for t in compute)


def test_only_io_failures_are_retried():
    assert retry_on_io_only(None, None, Failed(data=ConnectionError("mlflow server down")))
    assert retry_on_io_only(None, None, Failed(data=OSError("disk")))
    assert not retry_on_io_only(None, None, Failed(data=ValueError("trigger must be one of")))
    assert not retry_on_io_only(None, None, Failed(data=FeatureSchemaMismatchError({"version": "1"}, {"version": "2"})))

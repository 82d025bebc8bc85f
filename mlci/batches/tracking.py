"""A published batch as an MLflow run: which strategy chose each clip, from which model and labels.

One run per round, in the experiment ``<experiment>-batches`` (kept apart so that the training
runs data scientists compare are not mixed with batches), named by the round id and found again
by its ``mlci.round_id`` tag: recording the same round twice changes nothing, and a round that was
published but not recorded (the process died in between) is recorded by the next call.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlci.batches.round import RoundResult

__all__ = ["BATCH_EXPERIMENT_SUFFIX", "BATCHES_USED_TAG", "record_batch_run", "tag_batches_used"]

#: Tag of a model version and its training run: the batches whose answers it was the first to train on.
BATCHES_USED_TAG = "mlci.batches_first_used"

BATCH_EXPERIMENT_SUFFIX = "-batches"


def record_batch_run(tracking_uri: str, experiment_name: str, result: RoundResult) -> str | None:
    """Log ``result`` as a finished MLflow run and return its id (None when the round has no batch).

    Params: the strategy and its parameters, batch size, model and label snapshot. Metrics:
    ``clips_<reason>`` (e.g. ``clips_uncertain``, ``clips_coverage``, ``clips_relabel``). Artifacts:
    ``batch.csv`` (each clip with its ``reason``) and ``manifest.json``. The run's description says
    the same in one sentence.
    """
    from mlci.models.sqlite_store import default_artifact_location
    from mlci.models.tracking import clean_params, get_or_create_experiment, mlflow_errors, tracking_context, write_json

    if result.batch.empty or not result.manifest:
        return None
    manifest = result.manifest
    with mlflow_errors(tracking_uri), tracking_context(tracking_uri) as client:
        experiment_id = get_or_create_experiment(client, experiment_name + BATCH_EXPERIMENT_SUFFIX,
                                                 artifact_location=default_artifact_location(tracking_uri))
        found = client.search_runs([experiment_id], filter_string=f"tags.`mlci.round_id` = '{result.round_id}'",
                                   max_results=1)
        if found and found[0].info.status == "FINISHED":
            return found[0].info.run_id
        run = found[0] if found else client.create_run(experiment_id, run_name=result.round_id, tags={
            "mlci.kind": "batch",
            "mlci.round_id": result.round_id,
            "mlci.model": f"{manifest['model_name']}/{manifest['model_version']}",
            "mlci.label_snapshot": str(manifest["label_snapshot"]),
            "mlci.strategy": str(manifest["strategy"]),
            "mlci.batch_location": result.location,
        })
        run_id = run.info.run_id
        counts = result.batch["reason"].value_counts().sort_index()
        client.set_tag(run_id, "mlflow.note.content", (
            f"{len(result.batch)} clips chosen by {manifest['strategy']} with model {manifest['model_name']} version "
            f"{manifest['model_version']} on label snapshot {manifest['label_snapshot']}: "
            + ", ".join(f"{n} {reason}" for reason, n in counts.items()) + f". Batch: {result.location}"))
        params = {"strategy": manifest["strategy"], "batch_size": len(result.batch),
                  "model": f"{manifest['model_name']}/{manifest['model_version']}",
                  "label_snapshot": manifest["label_snapshot"]}
        params.update({f"strategy.{k}": v for k, v in manifest["strategy_params"].items()})
        for key, value in clean_params(params).items():
            client.log_param(run_id, key, value)
        for reason, count in counts.items():
            client.log_metric(run_id, f"clips_{reason}", float(count))
        with tempfile.TemporaryDirectory() as tmp:
            result.batch.to_csv(Path(tmp) / "batch.csv", index=False)
            write_json(Path(tmp) / "manifest.json", manifest)
            client.log_artifacts(run_id, tmp)
        client.set_terminated(run_id, "FINISHED")
    return run_id


def tag_batches_used(tracking_uri: str, model_name: str, version: str, round_ids: list[str]) -> None:
    """Tag version ``version`` and its run with the batches whose answers it first trained on
    (:func:`mlci.batches.batches_first_used_by`; comma-separated, oldest first; ``none`` when none)."""
    from mlci.models.tracking import mlflow_errors, tracking_context

    value = ",".join(round_ids) or "none"
    with mlflow_errors(tracking_uri), tracking_context(tracking_uri) as client:
        client.set_model_version_tag(model_name, str(version), BATCHES_USED_TAG, value)
        run_id = client.get_model_version(model_name, str(version)).run_id
        if run_id:
            client.set_tag(run_id, BATCHES_USED_TAG, value)

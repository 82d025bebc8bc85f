"""Prefect tasks of the training step: one :mod:`mlci.models` call each.

Tasks that talk to MLflow retry I/O failures, never a failure caused by the training data or
parameters (:data:`retry_on_io_only`); training and the comparison compute only and do not retry.
``flows/training.py`` composes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from mlci.models import (
    ChampionComparison,
    ChampionSnapshot,
    ModelError,
    MultiLabelModel,
    PromotionDecision,
    TrainedModel,
    TrainingConfig,
    TrainingResult,
    TrainingSet,
    build_training_set,
    compare_with_champion,
    find_reusable_run,
    load_champion,
    load_model,
    log_and_register,
    train,
)
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = [
    "build_training_set_task",
    "find_reusable_run_task",
    "load_champion_snapshot_task",
    "train_task",
    "compare_with_champion_task",
    "log_and_register_task",
    "load_model_task",
    "retry_on_io_only",
]

#: Retry MLflow/store I/O failures; never a failure caused by the training data or parameters.
retry_on_io_only = retry_unless(ModelError)


@task(name="build-training-set", cache_policy=NO_CACHE)
def build_training_set_task(
    keys: list[str], X: np.ndarray, consensus: pd.DataFrame, classes: list[str], *, weight_by_posterior: bool = False
) -> TrainingSet:
    """Align features and consensus labels (:func:`mlci.models.build_training_set`)."""
    ts = build_training_set(keys, X, consensus, classes, weight_by_posterior=weight_by_posterior)
    logger = get_run_logger()
    logger.info("training set: %d clips, labels per class %s", len(ts), ts.labels_per_class())
    if ts.missing_features:
        logger.warning("%d labeled clips have no features and are left out", len(ts.missing_features))
    if ts.unknown_classes:
        logger.warning("consensus classes not in the catalog, ignored: %s", list(ts.unknown_classes))
    return ts


@task(name="find-reusable-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io_only)
def find_reusable_run_task(
    tracking_uri: str, *, experiment_name: str, model_name: str, fingerprint: str
) -> TrainingResult | None:
    """A finished run with the same inputs, or None (:func:`mlci.models.find_reusable_run`)."""
    earlier = find_reusable_run(tracking_uri, experiment_name=experiment_name, model_name=model_name,
                                fingerprint=fingerprint)
    if earlier is not None:
        get_run_logger().info("same inputs as run %s (version %s): reused", earlier.run_id, earlier.model_version,
                              extra=ends_step("model"))
    return earlier


@task(name="load-champion-snapshot", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_io_only)
def load_champion_snapshot_task(tracking_uri: str, model_name: str) -> ChampionSnapshot | None:
    """The champion's metrics, training labels and model, or None (:func:`mlci.models.load_champion`)."""
    return load_champion(tracking_uri, model_name)


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(training_set: TrainingSet, config: TrainingConfig, *, feature_schema: Any) -> TrainedModel:
    """Out-of-fold evaluation, then the fit on every label (:func:`mlci.models.train`)."""
    trained = train(training_set, config, feature_schema=feature_schema)
    logger = get_run_logger()
    logger.info("out-of-fold macro AP %.3f", trained.evaluation.macro.get("macro_ap", float("nan")),
                extra=ends_step("training"))
    untrained = {c: s for c, s in trained.class_status.items() if s != "trained"}
    if untrained:
        logger.warning("concepts not trained: %s", untrained)
    return trained


@task(name="compare-with-champion", cache_policy=NO_CACHE)
def compare_with_champion_task(
    training_set: TrainingSet, trained: TrainedModel, champion: ChampionSnapshot | None
) -> ChampionComparison:
    """Both models on the labels the champion never saw (:func:`mlci.models.compare_with_champion`)."""
    comparison = compare_with_champion(training_set, trained, champion)
    if comparison.note:
        get_run_logger().info("comparison: %s", comparison.note)
    return comparison


@task(name="log-and-register", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10,
      retry_condition_fn=retry_on_io_only)
def log_and_register_task(
    training_set: TrainingSet,
    trained: TrainedModel,
    comparison: ChampionComparison,
    decision: PromotionDecision,
    *,
    tracking_uri: str,
    experiment_name: str,
    model_name: str,
    feature_schema: Any,
    fingerprint: str,
    label_snapshot_id: str | None,
    trigger: str,
    tags: Mapping[str, str] | None,
    tolerance: float,
    min_new_labels: int,
    store_uri: str | None = None,
) -> TrainingResult:
    """Log the run, register the version, move the aliases (:func:`mlci.models.log_and_register`).

    The Prefect flow run id is recorded on the MLflow run. If MLflow fails before the run has
    finished, the run is left RUNNING (or FAILED) and a retry logs a new one, marking the RUNNING one
    FAILED (tag ``mlci.abandoned``). If it fails after, a retry logs no second run: it registers the
    finished run's model, or sets the aliases of its version still tagged ``mlci.registration=pending``,
    and returns that run (``reused=True``). A half-registered version is never left as it is.
    """
    result = log_and_register(
        training_set, trained, comparison, decision,
        tracking_uri=tracking_uri, experiment_name=experiment_name, model_name=model_name,
        feature_schema=feature_schema, fingerprint=fingerprint, label_snapshot_id=label_snapshot_id,
        trigger=trigger, flow_run_id=flow_run.get_id(), tags=tags, tolerance=tolerance,
        min_new_labels=min_new_labels, store_uri=store_uri,
    )
    get_run_logger().info(
        "model %s version %s (run %s): %s", result.model_name, result.model_version, result.run_id,
        result.decision.reason, extra=ends_step("model"),
    )
    return result


@task(name="load-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_io_only)
def load_model_task(
    tracking_uri: str, model_name: str, *, alias: str | None = "champion", version: str | None = None
) -> MultiLabelModel:
    """A registered model by alias or version (:func:`mlci.models.load_model`)."""
    return load_model(tracking_uri, model_name, alias=alias, version=version)

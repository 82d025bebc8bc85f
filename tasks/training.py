"""Prefect tasks of the training step: thin wrappers around :mod:`mlci.models`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from mlci.models import (
    ModelError,
    MultiLabelModel,
    TrainingResult,
    TrainingSet,
    build_training_set,
    load_model,
    train_and_register,
)
from tasks.retry import retry_unless

__all__ = ["build_training_set_task", "train_register_task", "load_model_task", "retry_on_io_only"]

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


@task(
    name="train-register",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_on_io_only,
)
def train_register_task(training_set: TrainingSet, **kwargs: Any) -> TrainingResult:
    """Train, evaluate, log, register and gate (:func:`mlci.models.train_and_register`).

    The Prefect flow run id is recorded on the MLflow run. A retry after a failure is safe: a
    finished run with the same inputs is reused, never duplicated.
    """
    kwargs.setdefault("flow_run_id", flow_run.get_id())
    result = train_and_register(training_set, **kwargs)
    logger = get_run_logger()
    logger.info(
        "model %s version %s (run %s)%s: %s",
        result.model_name,
        result.model_version,
        result.run_id,
        " reused" if result.reused else "",
        result.decision.reason,
    )
    untrained = {c: s for c, s in result.class_status.items() if s != "trained"}
    if untrained:
        logger.warning("concepts not trained: %s", untrained)
    return result


@task(name="load-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_io_only)
def load_model_task(
    tracking_uri: str, model_name: str, *, alias: str | None = "champion", version: str | None = None
) -> MultiLabelModel:
    """A registered model by alias or version (:func:`mlci.models.load_model`)."""
    return load_model(tracking_uri, model_name, alias=alias, version=version)

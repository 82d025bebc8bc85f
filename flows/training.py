"""Training, top to bottom: the ``train`` flow (``mlci train``) and the training step it shares with the nightly.

:func:`training_step` is the one place the step is composed; ``flows/nightly.py`` calls it with
the training set it has built, :func:`train_flow` after loading one. It is a plain function that
calls tasks, not a subflow, so the training set's arrays are never serialised as parameters.

0. check every parameter (nothing may fail after a model is registered);
1. reuse: a finished run with the same inputs is returned, and nothing else happens;
2. load the champion (metrics, training labels, model) from the registry;
3. train: out-of-fold evaluation, then the fit on every label;
4. compare the challenger with the champion on labels the champion never saw;
5. decide promotion (the gate);
6. log the MLflow run, register the version as ``challenger``, and as ``champion`` if promoted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import flow

from flows.naming import dated_run_name
from mlci.catalog import ClassCatalog
from mlci.config import apply_mlflow_environment
from mlci.models import (
    TrainingConfig,
    TrainingResult,
    TrainingSet,
    check_promotion_params,
    check_run_params,
    run_fingerprint,
)
from mlci.params import settings_for_run
from tasks.consensus import load_consensus_task
from tasks.features import load_features_task
from tasks.training import (
    build_training_set_task,
    compare_with_champion_task,
    find_reusable_run_task,
    load_champion_snapshot_task,
    log_and_register_task,
    train_task,
)

__all__ = ["train_flow", "training_step"]


def training_step(
    training_set: TrainingSet,
    *,
    feature_schema: Any,
    config: TrainingConfig,
    tracking_uri: str,
    experiment_name: str,
    model_name: str,
    label_snapshot_id: str | None,
    trigger: str,
    tolerance: float,
    min_new_labels: int,
    tags: Mapping[str, str] | None = None,
    reuse_existing: bool = True,
    store_uri: str | None = None,
) -> TrainingResult:
    """Train on ``training_set``, gate the challenger, log and register it (steps 0-6 above).

    Called by flows; its tasks also run outside a flow (tests do). ``reuse_existing=False`` trains
    and registers again even when a finished run has the same inputs (but a registration of those
    inputs that MLflow failing left unfinished is completed, not repeated: see ``log_and_register``).
    """
    check_run_params(model_name=model_name, trigger=trigger)
    check_promotion_params(tolerance=tolerance, min_new_labels=min_new_labels)
    fingerprint = run_fingerprint(  # also checks the model's parameters
        training_set, config, feature_schema, model_name=model_name, label_snapshot_id=label_snapshot_id,
        tolerance=tolerance, min_new_labels=min_new_labels,
    )
    if reuse_existing:
        earlier = find_reusable_run_task(tracking_uri, experiment_name=experiment_name, model_name=model_name,
                                         fingerprint=fingerprint)
        if earlier is not None:
            return earlier
    champion = load_champion_snapshot_task(tracking_uri, model_name)
    trained = train_task(training_set, config, feature_schema=feature_schema)
    comparison = compare_with_champion_task(training_set, trained, champion)
    decision = comparison.decide(trained, tolerance=tolerance, min_new_labels=min_new_labels)
    return log_and_register_task(
        training_set, trained, comparison, decision,
        tracking_uri=tracking_uri, experiment_name=experiment_name, model_name=model_name,
        feature_schema=feature_schema, fingerprint=fingerprint, label_snapshot_id=label_snapshot_id,
        trigger=trigger, tags=tags, tolerance=tolerance, min_new_labels=min_new_labels, store_uri=store_uri,
    )


@flow(name="train", flow_run_name=dated_run_name("train"), description="Train one classifier per concept on a consensus snapshot, log, register and gate it.")
def train_flow(
    store: str | None = None,
    extractor: str | None = None,
    extractor_params: dict[str, Any] | None = None,
    modality: str | None = None,
    snapshot: str | None = None,
    estimator: str | None = None,
    estimator_params: dict[str, Any] | None = None,
    calibration: str | None = None,
    weight_by_posterior: bool = False,
    trigger: str = "manual",
    tolerance: float | None = None,
    min_new_labels: int | None = None,
    n_splits: int = 5,
    random_state: int | None = None,
) -> TrainingResult:
    """Train on the active features and the consensus ``snapshot`` (default: the latest).

    Parameters left as None take their configured defaults (``MLCI_STORE``, ``MLCI_TRAINING__*``,
    ``MLCI_RANDOM_STATE``).
    """
    settings = settings_for_run(store, extractor=extractor, extractor_params=extractor_params, modality=modality,
                                estimator=estimator, tolerance=tolerance, min_new_labels=min_new_labels,
                                random_state=random_state)
    apply_mlflow_environment(settings)  # on a worker too: bounded waits on a dead server
    fit = settings.training
    keys, X, schema = load_features_task(settings, modality=fit.modality, extractor=fit.extractor,
                                         params=fit.extractor_params)
    consensus = load_consensus_task(settings, snapshot)
    classes = ClassCatalog.from_json(settings.class_catalog).names
    training_set = build_training_set_task(keys, X, consensus.labels, classes, weight_by_posterior=weight_by_posterior)
    config = TrainingConfig(estimator=fit.estimator, estimator_params=estimator_params, calibration=calibration,
                            modality=fit.modality, n_splits=n_splits, random_state=settings.random_state)
    return training_step(
        training_set,
        feature_schema=schema,
        config=config,
        tracking_uri=settings.tracking_uri,
        experiment_name=settings.experiment_name,
        model_name=settings.registered_model_name,
        label_snapshot_id=consensus.snapshot,
        trigger=trigger,
        tolerance=fit.tolerance,
        min_new_labels=fit.min_new_labels,
        store_uri=settings.store_uri,
    )

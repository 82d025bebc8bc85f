"""The nightly round, top to bottom.

0. check every parameter (a wrong one fails here, before anything is locked, written or registered);
1. take the store lock (a second run at the same time skips; a stale lock from a crash expires);
2. with a Label Studio URL configured, pull its new and changed answers into ``labels/``
   (:mod:`flows.labelstudio`); then ingest new label files from ``labels/``;
3. compute features for new or changed clips (incremental; broken clips are quarantined);
4. merge annotators into consensus labels (Dawid–Skene by default);
5. train one classifier per concept, log to MLflow, register, and gate the challenger;
6. advise per concept whether labeling still pays (``keep labeling`` / ``slowing`` / ``stop``, from
   the stop signals of the version just trained; docs/advisor.md);
7. score the unlabeled pool with the champion and publish the next labeling batch once (concepts
   advised to stop give their share to the others), and into Label Studio when configured (with
   any batch still out that is not there yet); record the batch as an MLflow run (the strategy and
   why each clip was chosen) with the advice and a learning picture per concept;
8. leave a markdown summary and a table of the batch as Prefect artifacts.

A run that had to skip work (feature chunks that failed after their retries, or Label Studio
steps that failed: down, a rejected token, a mismatching project) still publishes from
the clips it has, ends Completed with status ``incomplete``: its summary names each failed chunk
and why, the batch manifest records ``incomplete_pool``, and ``mlci nightly`` exits with status 3.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.features import features as features_flow
from flows.labelstudio import publish_step, pull_step
from flows.naming import nightly_run_name
from flows.training import training_step
from mlci.catalog import ClassCatalog
from mlci.config import apply_mlflow_environment
from mlci.models import TrainingConfig
from mlci.models.tracking import class_keys, ui_links
from mlci.params import settings_for_run
from mlci.reporting import (
    AdviceStep,
    BatchStep,
    ConsensusStep,
    FeaturesStep,
    LabelsStep,
    ModelStep,
    NightlySummary,
)
from tasks.advisor import advise_task, log_advice_task
from tasks.consensus import compute_consensus_task
from tasks.features import load_features_task, quarantined_keys_task
from tasks.labels import ingest_labels_task, load_annotation_history_task
from tasks.round import (
    acquire_lock_task,
    link_batches_task,
    load_champion_task,
    record_batch_task,
    release_lock_task,
    run_round_task,
)
from tasks.training import build_training_set_task

__all__ = ["nightly"]


@flow(name="nightly", flow_run_name=nightly_run_name, description="Ingest labels, features, consensus, train and gate, publish the next batch.")
def nightly(
    store: str | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    relabel_share: float | None = None,
    consensus_method: str | None = None,
    estimator: str | None = None,
    modality: str | None = None,
    extractor: str | None = None,
    extractor_params: dict[str, Any] | None = None,
    tolerance: float | None = None,
    open_batch_days: float | None = None,
    lock_ttl_hours: float | None = None,
    trigger: str = "nightly",
    random_state: int | None = None,
) -> NightlySummary:
    """Run one nightly round and return what each step did.

    Every parameter left as None takes its configured default: ``store`` from ``MLCI_STORE``, the
    round's from ``MLCI_ROUND__*``, training's from ``MLCI_TRAINING__*``, ``lock_ttl_hours`` from
    ``MLCI_SCHEDULE__LOCK_TTL_HOURS`` (see docs/configuration.md).
    """
    settings = settings_for_run(
        store, strategy=strategy, strategy_params=strategy_params, batch_size=batch_size, relabel_share=relabel_share,
        open_batch_days=open_batch_days, consensus_method=consensus_method, estimator=estimator, modality=modality,
        extractor=extractor, extractor_params=extractor_params, tolerance=tolerance, lock_ttl_hours=lock_ttl_hours,
        random_state=random_state,
    )
    apply_mlflow_environment(settings)  # on a worker too: bounded waits on a dead server
    fit = settings.training
    logger = get_run_logger()
    lock, held_by = acquire_lock_task(settings, "nightly", settings.schedule.lock_ttl_hours)
    if lock is None:
        summary = NightlySummary(status="skipped", reason=f"another nightly run holds the store lock: {held_by}")
        create_markdown_artifact(summary.to_markdown(), key="nightly-summary", description="nightly: skipped")
        return summary
    warnings: list[str] = []
    if lock.replaced_ is not None:
        warnings.append(f"took over the store lock from {lock.replaced_.describe()}: that run did not finish")
    label_studio = None
    try:
        if settings.label_studio_url:
            label_studio = pull_step(settings)
        ingest = ingest_labels_task(settings)
        feature_report = features_flow(store=settings.store_uri, extractor=fit.extractor, params=fit.extractor_params)
        consensus = compute_consensus_task(settings, method=fit.consensus_method)

        incomplete_pool = None
        if not feature_report.complete:
            incomplete_pool = {"clips_without_features": feature_report.n_failed,
                               "failed_chunks": {str(n): why for n, why in feature_report.failed_chunks.items()}}
            warnings.append(
                f"{feature_report.n_failed} clips have no features and were left out of the pool "
                f"(computed next run); failed chunks: "
                + "; ".join(f"{n}: {why}" for n, why in sorted(feature_report.failed_chunks.items()))
            )

        catalog = ClassCatalog.from_json(settings.class_catalog)
        keys, X, schema = load_features_task(settings, modality=fit.modality, extractor=fit.extractor,
                                             params=fit.extractor_params)
        training_set = build_training_set_task(keys, X, consensus.labels, catalog.names)
        training = training_step(
            training_set,
            feature_schema=schema,
            config=TrainingConfig(estimator=fit.estimator, modality=fit.modality, random_state=settings.random_state),
            tracking_uri=settings.tracking_uri,
            experiment_name=settings.experiment_name,
            model_name=settings.registered_model_name,
            label_snapshot_id=consensus.snapshot,
            trigger=trigger,
            tolerance=fit.tolerance,
            min_new_labels=fit.min_new_labels,
            store_uri=settings.store_uri,
        )

        link_batches_task(settings, training.model_version)
        champion, champion_version = load_champion_task(settings)
        night = advise_task(settings, training=training, champion=champion, champion_version=champion_version,
                            keys=keys, X=X, feature_schema=schema, consensus=consensus)
        round_result = run_round_task(
            settings,
            model=champion,
            model_version=champion_version,
            keys=keys,
            X=X,
            feature_schema=schema,
            consensus=consensus,
            annotations_history=load_annotation_history_task(settings),
            quarantined=quarantined_keys_task(settings, extractor=fit.extractor, params=fit.extractor_params),
            incomplete_pool=incomplete_pool,
            advice=night.verdicts(),
        )
        batch_run_id = record_batch_task(settings, round_result)
        log_advice_task(settings, night, batch_run_id=batch_run_id)
        if label_studio is not None:
            label_studio = publish_step(settings, label_studio)
    finally:
        release_lock_task(lock)
    if label_studio is not None and label_studio.problem:
        warnings.append(label_studio.problem)

    summary = NightlySummary(
        status="completed" if feature_report.complete and not (label_studio and label_studio.problem) else "incomplete",
        warnings=warnings,
        labels=LabelsStep.from_report(ingest),
        features=FeaturesStep.from_report(feature_report),
        consensus=ConsensusStep(snapshot=consensus.snapshot, method=consensus.method,
                                n_clips=int(consensus.labels["asset"].nunique())),
        model=ModelStep(
            name=training.model_name,
            version=training.model_version,
            run_id=training.run_id,
            links=ui_links(settings.tracking_uri, training.run_id, training.model_name, training.model_version),
            reused=training.reused,
            promoted=training.promoted,
            decision=training.decision.reason,
            champion_version=champion_version,
            metrics=training.metrics,
            class_status=training.class_status,
            classes=[(key, name) for name, key in class_keys(catalog.names).items()],
        ),
        batch=BatchStep.from_round(round_result, settings.round.strategy),
        advice=AdviceStep.from_night(night, reassigned=settings.advisor.reassign_stopped),
        label_studio=label_studio,
    )
    create_markdown_artifact(summary.to_markdown(), key="nightly-summary",
                             description=f"nightly round summary ({summary.status})")
    for warning in warnings:
        logger.warning(warning)
    create_table_artifact(
        round_result.batch.head(200).round(4).to_dict(orient="records"),
        key="nightly-batch",
        description=f"batch {round_result.round_id}",
    )
    create_table_artifact(
        night.advice.round(4).replace({float("nan"): None}).to_dict(orient="records"),
        key="nightly-advice",
        description=f"stop advice per concept for model version {night.model_version} ({night.rule})",
    )
    logger.info("nightly done: %s", summary.headline())
    return summary

"""Prefect tasks of the active-learning round: the run lock and the round itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.batches import RoundResult, record_batch_run, run_round
from mlci.catalog import ClassCatalog
from mlci.config import Settings
from mlci.consensus import ConsensusResult
from mlci.features import FeatureSchema
from mlci.locks import LockHeldError, StoreLock
from mlci.models import MultiLabelModel
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = ["acquire_lock_task", "release_lock_task", "run_round_task", "record_batch_task", "load_champion_task",
           "link_batches_task"]


@task(name="acquire-lock", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless(LockHeldError))
def acquire_lock_task(settings: Settings, name: str, ttl_hours: float) -> tuple[StoreLock | None, str]:
    """Take the store lock ``name``: ``(lock, "")``, or ``(None, who holds it)`` when another run does."""
    lock = StoreLock(settings.open_store(), name, ttl=timedelta(hours=ttl_hours))
    logger = get_run_logger()
    try:
        lock.acquire()
    except LockHeldError as exc:
        logger.warning("not running: %s", exc)
        return None, str(exc)
    if lock.replaced_ is not None:
        logger.warning("took over lock %r from %s: the previous run did not finish", name, lock.replaced_.describe())
    return lock, ""


@task(name="release-lock", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5, retry_condition_fn=retry_unless())
def release_lock_task(lock: StoreLock | None) -> None:
    """Release the lock taken by :func:`acquire_lock_task` (nothing when it was not taken)."""
    if lock is not None:
        lock.release()


@task(name="run-round", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless())
def run_round_task(
    settings: Settings,
    *,
    model: MultiLabelModel,
    model_version: str,
    keys: np.ndarray,
    X: np.ndarray,
    feature_schema: FeatureSchema,
    consensus: ConsensusResult,
    annotations_history: pd.DataFrame,
    quarantined: list[str],
    incomplete_pool: dict[str, Any] | None = None,
    advice: dict[str, str] | None = None,
) -> RoundResult:
    """Score the pool with the champion and publish the batch once (:func:`mlci.batches.run_round`).

    ``advice`` is the stop advisor's verdict per concept; ``settings.advisor.reassign_stopped``
    says whether concepts advised to stop give their share of the batch to the others.

    The round's choices come from ``settings.round`` and ``settings.random_state``; the labeling
    interface written with the batch from ``settings.class_catalog`` and ``settings.labeling_question``.
    """
    config = settings.round
    result = run_round(
        settings.open_store(),
        model=model,
        model_name=settings.registered_model_name,
        model_version=model_version,
        keys=keys,
        X=X,
        feature_schema=feature_schema,
        consensus=consensus.labels,
        relabel=consensus.relabel,
        label_snapshot=consensus.snapshot,
        annotations_history=annotations_history,
        catalog=ClassCatalog.from_json(settings.class_catalog),
        question=settings.labeling_question,
        quarantined=quarantined,
        strategy=config.strategy,
        strategy_params=config.strategy_params,
        batch_size=config.batch_size,
        relabel_share=config.relabel_share,
        open_batch_expiry=timedelta(days=config.open_batch_days),
        base_url=settings.clip_base_url,
        random_state=settings.random_state,
        incomplete_pool=incomplete_pool,
        advice=advice,
        reassign_stopped=settings.advisor.reassign_stopped,
    )
    get_run_logger().info(result.summary(), extra=ends_step("batch"))
    return result


@task(name="record-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless())
def record_batch_task(settings: Settings, result: RoundResult) -> str | None:
    """The round's MLflow run (:func:`mlci.batches.record_batch_run`): strategy, reasons, the batch."""
    run_id = record_batch_run(settings.tracking_uri, settings.experiment_name, result)
    if run_id:
        get_run_logger().info("batch %s recorded as MLflow run %s", result.round_id, run_id)
    return run_id


@task(name="link-batches", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless())
def link_batches_task(settings: Settings, model_version: str) -> list[str]:
    """Tag ``model_version`` with the batches whose answers it was the first to train on (lineage)."""
    from mlci.batches import batches_first_used_by, lineage_table, tag_batches_used, versions_frame
    from mlci.labels import load_annotations
    from mlci.models import list_versions

    store = settings.open_store()
    versions = versions_frame(list_versions(settings.tracking_uri, settings.registered_model_name))
    lineage = lineage_table(store, load_annotations(store, current=False), versions)
    used = batches_first_used_by(lineage, model_version)
    tag_batches_used(settings.tracking_uri, settings.registered_model_name, model_version, used)
    return used


@task(name="load-champion", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless())
def load_champion_task(settings: Settings) -> tuple[Any, str]:
    """The champion model and its version, through the registry (``models:/<name>@champion``)."""
    from mlci.models import load_model, resolve_version

    info = resolve_version(settings.tracking_uri, settings.registered_model_name, alias="champion")
    model = load_model(settings.tracking_uri, settings.registered_model_name, version=info.version)
    return model, info.version

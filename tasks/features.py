"""Prefect tasks of the features step: thin wrappers around :mod:`mlci.features`.

The chunk task runs wherever the flow's task runner puts it (threads here, or Dask workers), so
it takes the :class:`~mlci.config.Settings` (picklable, no credentials in it) and opens the store
itself. All tasks are safe to retry: shards are written with ``write_if_absent`` and the active
index only when it changes.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.config import Settings
from mlci.features import (
    ChunkResult,
    FeatureError,
    FeatureRunPlan,
    FeatureRunReport,
    commit_feature_run,
    compute_feature_chunk,
    list_quarantined,
    load_features,
    plan_feature_run,
)
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = [
    "commit_feature_run_task",
    "compute_feature_chunk_task",
    "load_features_task",
    "plan_feature_run_task",
    "quarantined_keys_task",
]


@task(name="plan-feature-run", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(FeatureError), cache_policy=NO_CACHE)
def plan_feature_run_task(
    settings: Settings, *, extractor: str, params: dict | None = None
) -> FeatureRunPlan:
    """List the clips and decide which need features (:func:`mlci.features.plan_feature_run`)."""
    plan = plan_feature_run(settings.open_store(), extractor=extractor, params=params)
    get_run_logger().info(
        "features %s: %d clips listed, %d cached, %d to compute (%d non-clip objects ignored)",
        plan.cache_id, len(plan.listed), len(plan.reused), len(plan.todo), plan.n_ignored,
    )
    return plan


@task(name="compute-feature-chunk", task_run_name="features-chunk-{chunk}", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(FeatureError), cache_policy=NO_CACHE)
def compute_feature_chunk_task(
    settings: Settings,
    items: list[tuple[str, str]],
    *,
    extractor: str,
    params: dict | None = None,
    run_id: str,
    chunk: int,
    threads: int = 1,
) -> ChunkResult:
    """Features of one chunk of clips, written as the chunk's shards (:func:`mlci.features.compute_feature_chunk`)."""
    result = compute_feature_chunk(
        settings.open_store(), items, extractor=extractor, params=params, run_id=run_id, chunk=chunk, threads=threads
    )
    logger = get_run_logger()
    logger.info(
        "chunk %d: %d computed, %d quarantined, %d skipped in %.1f s",
        chunk, result.n_computed, result.n_quarantined, len(result.skipped), result.seconds,
    )
    for key, (_, status, _) in result.entries.items():
        if status == "quarantined":
            logger.warning("quarantined %s", key)
    return result


@task(name="commit-feature-run", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(FeatureError), cache_policy=NO_CACHE)
def commit_feature_run_task(
    settings: Settings, plan: FeatureRunPlan, results: list[ChunkResult], failed_chunks: dict[int, str] | None = None
) -> FeatureRunReport:
    """Write the run's active index if it changed (:func:`mlci.features.commit_feature_run`)."""
    report = commit_feature_run(settings.open_store(), plan, results, failed_chunks=failed_chunks)
    logger = get_run_logger()
    logger.info(
        "features %s: %d computed, %d cached, %d newly quarantined %s; active %d, quarantined %d, dropped %d; index %s",
        report.cache_id, report.n_computed, report.n_reused, report.n_quarantined_new,
        report.quarantine_kinds or "", report.n_active, report.n_quarantined, report.n_removed,
        report.index_key or "unchanged", extra=ends_step("features"),
    )
    if report.skipped:
        logger.warning("%d clips not finished this run (retried next run): %s",
                       len(report.skipped), dict(list(report.skipped.items())[:5]))
    if not report.complete:
        logger.warning("%d clips have no features this run: chunk(s) failed after their retries: %s",
                       report.n_failed, report.failed_chunks)
    return report


@task(name="load-features", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(FeatureError), cache_policy=NO_CACHE)
def load_features_task(
    settings: Settings,
    *,
    modality: str,
    extractor: str,
    params: dict | None = None,
    keys: list[str] | None = None,
):
    """``(keys, X, schema)`` of the active clips (:func:`mlci.features.load_features`)."""
    return load_features(settings.open_store(), extractor=extractor, params=params, modality=modality, keys=keys)


@task(name="quarantined-keys", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(FeatureError), cache_policy=NO_CACHE)
def quarantined_keys_task(
    settings: Settings, *, extractor: str, params: dict | None = None
) -> list[str]:
    """Keys of the active clips in quarantine (:func:`mlci.features.list_quarantined`)."""
    return list_quarantined(settings.open_store(), extractor=extractor, params=params)["key"].tolist()

"""Prefect tasks of the Label Studio steps: thin wrappers around :mod:`mlci.labelstudio`.

Only an unreachable server is retried (the client already retried each request with backoff); a
rejected token, a missing or mismatching project fail at once.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.catalog import ClassCatalog
from mlci.config import Settings
from mlci.labelstudio import (
    ImportResult,
    LabelStudioClient,
    LabelStudioUnreachableError,
    PullResult,
    ensure_project,
    import_batch,
    pull_annotations,
)
from mlci.reporting import ends_step
from tasks.retry import retry_only

__all__ = ["labelstudio_project_task", "labelstudio_publish_task", "labelstudio_pull_task"]

retry_when_unreachable = retry_only(LabelStudioUnreachableError)


@task(name="labelstudio-project", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10,
      retry_condition_fn=retry_when_unreachable)
def labelstudio_project_task(settings: Settings) -> int:
    """The id of the catalog's project, created when missing (:func:`mlci.labelstudio.ensure_project`)."""
    catalog = ClassCatalog.from_json(settings.class_catalog)
    project = ensure_project(LabelStudioClient.from_settings(settings), catalog, title=settings.label_studio_project,
                             question=settings.labeling_question)
    return int(project["id"])


@task(name="labelstudio-pull", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10,
      retry_condition_fn=retry_when_unreachable)
def labelstudio_pull_task(settings: Settings, project_id: int) -> PullResult:
    """New and changed annotations into ``labels/`` (:func:`mlci.labelstudio.pull_annotations`)."""
    result = pull_annotations(settings.open_store(), LabelStudioClient.from_settings(settings), project_id)
    get_run_logger().info(result.summary(), extra=ends_step("label studio"))
    return result


@task(name="labelstudio-publish", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10,
      retry_condition_fn=retry_when_unreachable)
def labelstudio_publish_task(settings: Settings, project_id: int, round_ids: list[str]) -> list[ImportResult]:
    """Each batch's tasks into the project once (:func:`mlci.labelstudio.import_batch`)."""
    store, client, logger = settings.open_store(), LabelStudioClient.from_settings(settings), get_run_logger()
    results = []
    for round_id in round_ids:
        results.append(import_batch(store, client, project_id, round_id))
        logger.info(results[-1].summary(), extra=ends_step("label studio"))
    return results

"""The nightly's Label Studio steps: pull answers before ingestion, publish batches after the round.

Plain functions that call tasks (the nightly composes them), so that Label Studio being down, a
rejected token or a mismatching project costs the night its Label Studio steps only: the problem
goes into the summary (status ``incomplete``) and the other steps run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from mlci.config import Settings
from mlci.labelstudio import LabelStudioError, rounds_to_import
from mlci.reporting import LabelStudioStep
from tasks.labelstudio import (
    labelstudio_project_task,
    labelstudio_publish_task,
    labelstudio_pull_task,
)

__all__ = ["publish_step", "pull_step"]


def pull_step(settings: Settings) -> LabelStudioStep:
    """Find (or create) the project and pull new and changed answers into ``labels/``."""
    project = labelstudio_project_task(settings, return_state=True)
    if problem := _problem(project, "find the Label Studio project"):
        return LabelStudioStep(problem=problem)
    project_id = project.result()
    pulled = labelstudio_pull_task(settings, project_id, return_state=True)
    if problem := _problem(pulled, "pull answers from Label Studio"):
        return LabelStudioStep(project_id=project_id, problem=problem)
    result = pulled.result()
    return LabelStudioStep(project_id=project_id, pulled_new=result.n_new, pulled_changed=result.n_changed,
                           pull_file=result.label_key)


def publish_step(settings: Settings, step: LabelStudioStep) -> LabelStudioStep:
    """Publish every batch still out that is not in Label Studio yet (this night's included)."""
    if step.problem or step.project_id is None:
        return step
    round_ids = rounds_to_import(settings.open_store(), open_for=timedelta(days=settings.round.open_batch_days))
    if not round_ids:
        return step
    published = labelstudio_publish_task(settings, step.project_id, round_ids, return_state=True)
    if problem := _problem(published, "publish batches to Label Studio"):
        return replace(step, problem=problem)
    return replace(step, published={r.round_id: r.n_imported for r in published.result()})


def _problem(state, what: str) -> str:
    if state.is_completed():
        return ""
    exc = state.result(raise_on_failure=False)
    if not isinstance(exc, LabelStudioError):
        raise exc  # a bug or a store failure: the nightly fails as for any other step
    return f"could not {what}: {exc} (the other steps ran; the next run catches up)"

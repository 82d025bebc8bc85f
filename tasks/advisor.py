"""Prefect tasks of the stop advisor: the night's advice per concept, and its record in MLflow."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.advisor import AdvisorNight, StopAdvisor, load_advice, record_night
from mlci.config import Settings
from mlci.consensus import ConsensusResult
from mlci.features import FeatureSchema
from mlci.models.registry import TrainingResult
from mlci.models.tracking import class_keys
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = ["advise_task", "latest_advice_task", "log_advice_task"]


def stop_advisor(settings: Settings) -> StopAdvisor:
    """The :class:`~mlci.advisor.StopAdvisor` of ``settings.advisor``."""
    a = settings.advisor
    return StopAdvisor(rule=a.stop_rule, kappa_threshold=a.kappa_threshold, window=a.stop_window,
                       uncertainty_threshold=a.uncertainty_threshold, plateau_delta=a.plateau_delta,
                       min_positives=a.min_positives)


@task(name="advise", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless())
def advise_task(
    settings: Settings,
    *,
    training: TrainingResult,
    champion: Any,
    champion_version: str,
    keys: np.ndarray,
    X: np.ndarray,
    feature_schema: FeatureSchema,
    consensus: ConsensusResult,
) -> AdvisorNight:
    """Record the signals of the version the night trained and say, per concept, whether labeling still pays."""
    from mlci.models import load_model

    model = champion if str(training.model_version) == str(champion_version) else load_model(
        settings.tracking_uri, settings.registered_model_name, version=training.model_version)
    ckeys = class_keys(list(model.classes_))
    night = record_night(
        settings.open_store(),
        model_name=settings.registered_model_name,
        model_version=training.model_version,
        label_snapshot=consensus.snapshot,
        model=model,
        keys=keys,
        X=X,
        feature_schema=feature_schema,
        consensus=consensus.labels,
        oof_ap={c: training.metrics.get(f"cv_ap_{k}", float("nan")) for c, k in ckeys.items()},
        advisor=stop_advisor(settings),
        label_budget=settings.advisor.label_budget,
        stop_set_size=settings.advisor.stop_set_size,
        random_state=settings.random_state,
    )
    counts = night.advice["verdict"].value_counts()
    get_run_logger().info(
        "stop advice for v%s (%s): %s", night.model_version, night.rule,
        ", ".join(f"{n} {verdict}" for verdict, n in counts.items()), extra=ends_step("advice"))
    return night


@task(name="latest-advice", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless())
def latest_advice_task(settings: Settings) -> dict[str, str]:
    """The verdict per concept the last nightly recorded (empty before the first)."""
    night = load_advice(settings.open_store(), settings.registered_model_name)
    return {} if night is None else night.verdicts()


@task(name="log-advice", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless())
def log_advice_task(settings: Settings, night: AdvisorNight, *, batch_run_id: str | None) -> None:
    """Tag the model version and its run with the advice; the pictures go on the batch run."""
    from mlci.advisor.tracking import log_advice
    from mlci.batches import list_batches
    from mlci.labels import load_annotations

    store = settings.open_store()
    batches = list_batches(store, load_annotations(store, current=False))
    log_advice(settings.tracking_uri, night, model_name=settings.registered_model_name, batch_run_id=batch_run_id,
               batch_versions=[str(v) for v in batches["model_version"].dropna()])

"""The active-learning round alone, for users who label between nightly runs.

0. check the parameters (before anything is read or written);
1. load the current consensus labels and the features of every clip;
2. load the champion from the registry;
3. score the unlabeled pool, choose the batch, publish it once (concepts the last nightly advised
   to stop give their share to the others, as in the nightly);
4. record the batch as an MLflow run (strategy, the reason each clip was chosen).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.naming import dated_run_name
from mlci.batches import RoundResult
from mlci.params import settings_for_run
from tasks.advisor import latest_advice_task
from tasks.consensus import load_consensus_task
from tasks.features import load_features_task, quarantined_keys_task
from tasks.labels import load_annotation_history_task
from tasks.round import load_champion_task, record_batch_task, run_round_task

__all__ = ["round_flow"]


@flow(name="round", flow_run_name=dated_run_name("round"), description="Score the pool with the champion and publish the next labeling batch.")
def round_flow(
    store: str | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    batch_size: int | None = None,
    relabel_share: float | None = None,
    modality: str | None = None,
    open_batch_days: float | None = None,
    random_state: int | None = None,
) -> RoundResult:
    """Publish a batch from the latest consensus snapshot and the champion.

    Parameters left as None take their configured defaults (``MLCI_STORE``, ``MLCI_ROUND__*``;
    ``modality``, and the extractor, from ``MLCI_TRAINING__*``: the champion's features).
    """
    settings = settings_for_run(
        store, strategy=strategy, strategy_params=strategy_params, batch_size=batch_size, relabel_share=relabel_share,
        open_batch_days=open_batch_days, modality=modality, random_state=random_state,
    )
    fit = settings.training
    consensus = load_consensus_task(settings)
    keys, X, schema = load_features_task(settings, modality=fit.modality, extractor=fit.extractor,
                                         params=fit.extractor_params)
    champion, version = load_champion_task(settings)
    result = run_round_task(
        settings,
        model=champion,
        model_version=version,
        keys=keys,
        X=X,
        feature_schema=schema,
        consensus=consensus,
        annotations_history=load_annotation_history_task(settings),
        quarantined=quarantined_keys_task(settings, extractor=fit.extractor, params=fit.extractor_params),
        advice=latest_advice_task(settings),
    )
    record_batch_task(settings, result)
    return result

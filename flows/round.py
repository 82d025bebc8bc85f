"""The active-learning round alone, for users who label between nightly runs.

0. check the parameters (before anything is read or written);
1. load the current consensus labels and the features of every clip;
2. load the champion from the registry;
3. score the unlabeled pool, choose the batch, publish it once.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow

from mlci.batches import RoundResult
from mlci.config import Settings
from mlci.params import check_round_params
from tasks.consensus import load_consensus_task
from tasks.features import load_features_task, quarantined_keys_task
from tasks.labels import load_annotation_history_task
from tasks.round import load_champion_task, run_round_task

__all__ = ["round_flow"]


@flow(name="round", description="Score the pool with the champion and publish the next labeling batch.")
def round_flow(
    store: str | None = None,
    strategy: str = "margin",
    batch_size: int = 50,
    relabel_share: float = 0.1,
    modality: str = "combined",
    open_batch_days: float = 7.0,
    random_state: int = 0,
) -> RoundResult:
    """Publish a batch from the latest consensus snapshot and the champion; ``store`` defaults to MLCI_STORE."""
    check_round_params(store=store, strategy=strategy, batch_size=batch_size, relabel_share=relabel_share,
                       modality=modality, open_batch_days=open_batch_days, random_state=random_state)
    settings = Settings(store=store) if store else Settings()
    consensus = load_consensus_task(settings)
    keys, X, schema = load_features_task(settings, modality=modality)
    champion, version = load_champion_task(settings)
    return run_round_task(
        settings,
        model=champion,
        model_name=settings.registered_model_name,
        model_version=version,
        keys=keys,
        X=X,
        feature_schema=schema,
        consensus=consensus,
        label_snapshot=consensus.attrs.get("snapshot", ""),
        annotations_history=load_annotation_history_task(settings),
        quarantined=quarantined_keys_task(settings),
        strategy=strategy,
        batch_size=batch_size,
        relabel_share=relabel_share,
        open_batch_expiry=timedelta(days=open_batch_days),
        random_state=random_state,
    )

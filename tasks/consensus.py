"""Prefect task of the consensus step: a thin wrapper around :func:`mlci.consensus.run_consensus`."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.config import Settings
from mlci.consensus import ConsensusError, ConsensusResult, run_consensus
from mlci.storage import Store
from tasks.retry import retry_unless

__all__ = ["compute_consensus_task", "load_consensus_task"]


@task(
    name="compute-consensus",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless(ConsensusError),
    cache_policy=NO_CACHE,
)
def compute_consensus_task(
    store: Store | None = None,
    *,
    settings: Settings | None = None,
    method: str = "dawid_skene",
    **params,
) -> ConsensusResult:
    """Compute (or load, if already stored) the consensus of the current label snapshot.

    ``params`` go to :func:`mlci.consensus.run_consensus` (tie, tol, max_iter, prior, band, ...).
    """
    store = store or (settings or Settings()).open_store()
    result = run_consensus(store, method=method, **params)
    logger = get_run_logger()
    labels = result.labels
    logger.info(
        "consensus %s of snapshot %s: %d clips, %d (clip, class) items, %d with 2+ votes, positives %s, "
        "%d relabel candidates%s",
        result.method, result.snapshot, labels["asset"].nunique(), len(labels), int((labels["n_votes"] >= 2).sum()),
        {str(k): int(v) for k, v in labels.groupby("class")["label"].sum().items()}, len(result.relabel),
        f", EM {result.fit['n_iter']} steps converged={result.fit['converged']}" if result.fit else "",
    )
    if result.fit and not result.fit.get("converged", True):
        logger.warning("Dawid-Skene EM did not converge within max_iter; raise max_iter")
    return result


@task(name="load-consensus", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(ConsensusError), cache_policy=NO_CACHE)
def load_consensus_task(settings: Settings, snapshot: str | None = None):
    """The consensus table of ``snapshot`` (default: the latest); ``attrs["snapshot"]`` names it."""
    from mlci.consensus import load_consensus

    return load_consensus(settings.open_store(), snapshot)

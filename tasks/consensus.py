"""Prefect tasks of the consensus step: thin wrappers around :mod:`mlci.consensus`."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.config import Settings
from mlci.consensus import (
    ConsensusError,
    ConsensusResult,
    load_consensus_result,
    run_consensus,
)
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = ["compute_consensus_task", "load_consensus_task"]


@task(
    name="compute-consensus",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_unless(ConsensusError),
    cache_policy=NO_CACHE,
)
def compute_consensus_task(settings: Settings, *, method: str) -> ConsensusResult:
    """Compute (or load, if already stored) the consensus of the current label snapshot
    (:func:`mlci.consensus.run_consensus`)."""
    result = run_consensus(settings.open_store(), method=method)
    logger = get_run_logger()
    labels = result.labels
    logger.info(
        "consensus %s of snapshot %s: %d clips, %d (clip, class) items, %d with 2+ votes, positives %s, "
        "%d relabel candidates%s",
        result.method, result.snapshot, labels["asset"].nunique(), len(labels), int((labels["n_votes"] >= 2).sum()),
        {str(k): int(v) for k, v in labels.groupby("class")["label"].sum().items()}, len(result.relabel),
        f", EM {result.fit['n_iter']} steps converged={result.fit['converged']}" if result.fit else "",
        extra=ends_step("consensus"),
    )
    if result.fit and not result.fit.get("converged", True):
        logger.warning("Dawid-Skene EM did not converge within max_iter; raise max_iter")
    return result


@task(name="load-consensus", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(ConsensusError), cache_policy=NO_CACHE)
def load_consensus_task(settings: Settings, snapshot: str | None = None) -> ConsensusResult:
    """The stored consensus of ``snapshot`` (default: the latest) (:func:`mlci.consensus.load_consensus_result`)."""
    return load_consensus_result(settings.open_store(), snapshot)

"""Relabel candidates: labeled clips whose consensus is still uncertain, worth another opinion."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mlci.strategies.base import UtilityStrategy
from mlci.strategies.pool import Pool, Selection
from mlci.strategies.ranking import check_policy
from mlci.strategies.uncertainty import UNCERTAINTY_MEASURES

__all__ = ["consensus_pool", "ConsensusRelabel", "relabel_candidates"]

#: Posterior given to a (clip, class) the consensus table has no row for: as uncertain as it gets.
MISSING_POSTERIOR = 0.5


def consensus_pool(consensus: pd.DataFrame, classes: Sequence[str] | None = None) -> Pool:
    """A :class:`Pool` of the clips in a consensus table, with the consensus posteriors as scores.

    Parameters
    ----------
    consensus : DataFrame
        A ``consensus`` table (:data:`mlci.tables.CONSENSUS`): columns ``asset``, ``class``,
        ``posterior`` (others are ignored).
    classes : sequence of str, default=None
        Column order of ``proba`` (the catalog order); classes not listed are dropped. None means
        the table's classes, sorted.

    Returns
    -------
    Pool
        Keys are the assets, sorted; ``X`` has no columns; ``proba[i, j]`` is the posterior of
        clip ``i`` for class ``j`` (``0.5`` where the table has no row: unanswered is uncertain).
    """
    missing = [c for c in ("asset", "class", "posterior") if c not in consensus.columns]
    if missing:
        raise ValueError(f"consensus table is missing columns {missing}; has {list(consensus.columns)}")
    if consensus.duplicated(["asset", "class"]).any():
        dup = consensus.loc[consensus.duplicated(["asset", "class"]), ["asset", "class"]].head(3)
        raise ValueError(f"consensus table has duplicate (asset, class) rows, e.g. {dup.values.tolist()}")
    wide = consensus.pivot(index="asset", columns="class", values="posterior").sort_index()
    wide = wide.reindex(columns=sorted(wide.columns) if classes is None else list(classes))
    proba = wide.to_numpy(dtype=np.float64, na_value=MISSING_POSTERIOR)
    keys = wide.index.to_numpy(dtype=object)
    return Pool(keys, np.empty((keys.size, 0), dtype=np.float32), proba)


class ConsensusRelabel(UtilityStrategy):
    """Labeled clips whose consensus posterior is closest to a coin flip, for another annotator.

    Repeated labeling of the most uncertain labels (Sheng, Provost & Ipeirotis, 2008, "Get another
    label?", KDD): where annotators disagree, one more vote is worth more than a new clip. The
    pool is :func:`consensus_pool` of a consensus table; utility is ``uncertainty`` of each
    posterior, combined across classes by ``policy``.
    """

    reason = "relabel"

    def __init__(self, *, uncertainty: str = "margin", policy: str = "max", quotas=None):
        self.uncertainty = uncertainty
        self.policy = policy
        self.quotas = quotas

    def validate_params(self) -> None:
        if self.uncertainty not in UNCERTAINTY_MEASURES:
            raise ValueError(f"uncertainty must be one of {tuple(UNCERTAINTY_MEASURES)}, got {self.uncertainty!r}")
        check_policy(self.policy, self.quotas)

    def utility(self, pool, labeled, available, rng):
        return UNCERTAINTY_MEASURES[self.uncertainty][0](self._proba(pool))


def relabel_candidates(
    consensus: pd.DataFrame,
    *,
    batch_size: int,
    classes: Sequence[str] | None = None,
    exclude: Iterable[str] = (),
    max_votes: int | None = None,
    min_utility: float = 0.0,
    uncertainty: str = "margin",
    policy: str = "max",
    quotas=None,
) -> Selection:
    """Up to ``batch_size`` relabel candidates from a consensus table, most uncertain first.

    Unlike a strategy's ``query`` this returns fewer clips (possibly none) rather than failing
    when few are uncertain: the round adds relabel candidates *up to* a share of the batch.

    Parameters
    ----------
    consensus : DataFrame
        A ``consensus`` table (``asset``, ``class``, ``posterior``, ``n_votes``, ...).
    batch_size : int
        Most clips to return.
    classes : sequence of str, default=None
        See :func:`consensus_pool`.
    exclude : iterable of str, default=()
        Keys never to return (e.g. clips already out for relabeling).
    max_votes : int, default=None
        Skip clips that already have at least this many votes on every class (still uncertain
        after that many opinions: genuinely ambiguous, not worth another).
    min_utility : float, default=0.0
        Only clips whose utility is above this (0 keeps any clip not fully certain).
    uncertainty, policy, quotas
        As in :class:`ConsensusRelabel`.

    Returns
    -------
    Selection
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
        raise ValueError(f"batch_size must be an int >= 0, got {batch_size!r}")
    if isinstance(exclude, (str, bytes)):
        raise TypeError(f"exclude must be an iterable of keys, got a single string {exclude!r}")
    strategy = ConsensusRelabel(uncertainty=uncertainty, policy=policy, quotas=quotas)
    strategy.validate_params()
    pool = consensus_pool(consensus, classes)
    skip = set(exclude)
    if max_votes is not None:
        if "n_votes" not in consensus.columns:
            raise ValueError("max_votes needs the consensus table's n_votes column")
        fewest = consensus.groupby("asset")["n_votes"].min()
        skip.update(fewest.index[fewest >= max_votes])
    utility = strategy.utility(pool, None, None, None)
    combined = utility.mean(axis=1) if policy == "mean" else utility.max(axis=1)
    skip.update(pool.keys[combined <= min_utility])
    n_left = len(pool) - int(pd.Series(pool.keys).isin(skip).sum())
    if n_left == 0 or batch_size == 0:
        empty = np.empty(0, dtype=np.int64)
        return Selection(empty, np.empty(0, dtype=object), np.empty(0), np.empty(0, dtype=object), empty)
    return strategy.query(pool, batch_size=min(batch_size, n_left), exclude=skip)

"""Diversity: spread the batch over feature space (k-means over uncertain candidates; greedy core-set)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from mlci.strategies.base import QueryStrategy, as_generator, seed_from
from mlci.strategies.ranking import check_policy, rank_by_policy
from mlci.strategies.uncertainty import UNCERTAINTY_MEASURES

__all__ = ["min_sq_distances", "greedy_k_center", "kmeans_labels", "KMeansDiversity", "CoreSet"]

_CHUNK_ELEMENTS = 1 << 24  # 64 MB of float32 distances per block


def min_sq_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance from each row of ``X`` to its nearest row of ``centers``.

    Computed blockwise as ``|x|^2 - 2 x.c + |c|^2`` in float32 so memory stays bounded for
    large pools. Returns ndarray of float32 of shape (n,).
    """
    X = np.asarray(X, dtype=np.float32)
    C = np.asarray(centers, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", C, C)
    out = np.empty(X.shape[0], dtype=np.float32)
    step = max(1, _CHUNK_ELEMENTS // max(1, C.shape[0]))
    for start in range(0, X.shape[0], step):
        block = X[start : start + step]
        d = block @ C.T
        d *= -2
        d += c_sq
        d += np.einsum("ij,ij->i", block, block)[:, None]
        out[start : start + step] = d.min(axis=1)
    return np.maximum(out, 0, out=out)


def greedy_k_center(
    X: np.ndarray,
    k: int,
    *,
    centers: np.ndarray | None = None,
    available: np.ndarray | None = None,
    first: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: repeatedly take the row farthest from every center chosen so far.

    A 2-approximation of the k-center problem (Gonzalez, 1985); the core-set strategy of Sener &
    Savarese (2018). Each step costs one matrix-vector product over ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    k : int
        Rows to choose (at most the number available).
    centers : ndarray of shape (m, n_features), default=None
        Existing centers (the labeled clips). Without them the first pick is ``first``.
    available : ndarray of bool of shape (n,), default=None
        Rows that may be chosen; the others are neither chosen nor used as centers.
    first : int, default=0
        First row when there are no centers.

    Returns
    -------
    indices : ndarray of int64 of shape (k,)
        In the order chosen; ties go to the lower index.
    distances : ndarray of float64 of shape (k,)
        Each pick's Euclidean distance to its nearest center when chosen (``inf`` for ``first``).
    """
    X = np.asarray(X, dtype=np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    d = None if centers is None or len(centers) == 0 else min_sq_distances(X, centers)
    if d is not None and available is not None:
        d[~available] = -np.inf
    indices = np.empty(k, dtype=np.int64)
    distances = np.empty(k)
    for t in range(k):
        i = first if d is None else int(np.argmax(d))
        indices[t] = i
        distances[t] = np.inf if d is None else np.sqrt(max(float(d[i]), 0.0))
        new = X @ X[i]
        new *= -2
        new += sq
        new += sq[i]
        if d is None:
            d = new
            if available is not None:
                d[~available] = -np.inf
        else:
            np.minimum(d, new, out=d)  # -inf (unavailable, chosen) stays -inf
        d[i] = -np.inf
    return indices, distances


def kmeans_labels(X: np.ndarray, n_clusters: int, *, random_state: int, minibatch_threshold: int) -> np.ndarray:
    """Cluster labels of the rows of ``X`` (``MiniBatchKMeans`` above ``minibatch_threshold`` rows)."""
    if X.shape[0] > minibatch_threshold:
        model = MiniBatchKMeans(n_clusters=n_clusters, random_state=random_state, batch_size=max(1024, 4 * n_clusters))
    else:
        model = KMeans(n_clusters=n_clusters, random_state=random_state)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters: handled by the caller (it fills from the ranking).
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit_predict(X)


def _check_common(strategy) -> None:
    if strategy.uncertainty not in UNCERTAINTY_MEASURES:
        raise ValueError(f"uncertainty must be one of {tuple(UNCERTAINTY_MEASURES)}, got {strategy.uncertainty!r}")
    beta = strategy.beta
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, int) or beta < 1):
        raise ValueError(f"beta must be None or an int >= 1, got {beta!r}")
    check_policy(strategy.policy, strategy.quotas)


def uncertain_candidates(strategy, pool, batch_size, available):
    """The ``beta * batch_size`` most uncertain available clips: (indices, utility, concept)."""
    measure = UNCERTAINTY_MEASURES[strategy.uncertainty][0]
    utility = measure(strategy._proba(pool))
    n_available = len(pool) if available is None else int(available.sum())
    m = n_available if strategy.beta is None else min(n_available, strategy.beta * batch_size)
    return rank_by_policy(utility, m, available=available, policy=strategy.policy, quotas=strategy.quotas)


class KMeansDiversity(QueryStrategy):
    """The most uncertain clip of each k-means cluster of the uncertain candidates.

    Diverse mini-batch active learning (Zhdanov, 2019, arXiv:1901.05954): take the
    ``beta * batch_size`` most uncertain clips (by ``uncertainty`` and ``policy``), cluster their
    features into ``batch_size`` clusters, and pick the most uncertain clip of each cluster. Avoids
    a batch of near-duplicates when uncertainty concentrates in one region. ``beta=None`` clusters
    the whole pool; ``MiniBatchKMeans`` is used above ``minibatch_threshold`` candidates.
    """

    reason = "diverse"

    def __init__(
        self,
        *,
        uncertainty: str = "margin",
        beta: int | None = 10,
        policy: str = "max",
        quotas=None,
        minibatch_threshold: int = 10_000,
    ):
        self.uncertainty = uncertainty
        self.beta = beta
        self.policy = policy
        self.quotas = quotas
        self.minibatch_threshold = minibatch_threshold

    def validate_params(self) -> None:
        _check_common(self)

    def query(self, pool, *, labeled=None, batch_size, exclude=(), random_state=None):
        batch_size, available = self._prepare(pool, labeled, batch_size, exclude)
        cand, utility, concept = uncertain_candidates(self, pool, batch_size, available)
        if cand.size > batch_size:
            seed = seed_from(as_generator(random_state))
            labels = kmeans_labels(
                pool.X[cand], batch_size, random_state=seed, minibatch_threshold=self.minibatch_threshold
            )
            order = np.lexsort((cand, -utility, labels))
            first = np.r_[True, labels[order][1:] != labels[order][:-1]]
            best = np.zeros(cand.size, dtype=bool)
            best[order[first]] = True
            # Empty clusters (duplicate features) leave gaps: fill them in uncertainty order.
            fill = np.flatnonzero(~best)[: batch_size - int(best.sum())]
            best[fill] = True
            keep = np.flatnonzero(best)
            keep = keep[np.lexsort((cand[keep], -utility[keep]))]
            cand, utility, concept = cand[keep], utility[keep], concept[keep]
        return self._selection(pool, cand, utility, concept)


class CoreSet(QueryStrategy):
    """Greedy core-set: each clip the farthest from the labeled clips and the clips already chosen.

    Sener & Savarese (2018), "Active learning for convolutional neural networks: a core-set
    approach", ICLR (greedy k-center). Ignores scores; covers feature space, which helps most when
    the model is weak or the labels cluster in a few regions. Without labeled clips the first pick
    is drawn from ``random_state``. ``max_candidates`` draws a random subset of the pool first
    (each step costs one pass over the candidates). Utility is the distance when picked.
    """

    reason = "diverse"

    def __init__(self, *, max_candidates: int | None = None):
        self.max_candidates = max_candidates

    def validate_params(self) -> None:
        m = self.max_candidates
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"max_candidates must be None or an int >= 1, got {m!r}")

    def query(self, pool, *, labeled=None, batch_size, exclude=(), random_state=None):
        batch_size, available = self._prepare(pool, labeled, batch_size, exclude)
        rng = as_generator(random_state)
        rows = np.arange(len(pool)) if available is None else np.flatnonzero(available)
        if self.max_candidates is not None and rows.size > max(self.max_candidates, batch_size):
            rows = np.sort(rng.choice(rows, size=max(self.max_candidates, batch_size), replace=False))
            available = np.zeros(len(pool), dtype=bool)
            available[rows] = True
        centers = labeled.X if labeled is not None and len(labeled) else None
        first = int(rng.choice(rows)) if centers is None else 0
        indices, distances = greedy_k_center(pool.X, batch_size, centers=centers, available=available, first=first)
        return self._selection(pool, indices, distances)

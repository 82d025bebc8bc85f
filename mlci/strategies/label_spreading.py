"""Graph-based uncertainty: entropy of labels spread over the labeled and pool clips."""

from __future__ import annotations

import numpy as np
from sklearn.semi_supervised import LabelSpreading

from mlci.strategies.base import UtilityStrategy, available_rows, scatter
from mlci.strategies.uncertainty import entropy

__all__ = ["LabelSpreadingEntropy", "spread_entropy"]


class LabelSpreadingEntropy(UtilityStrategy):
    """Pool clips where labels spread through the feature graph disagree most (the seed's "entropy").

    Per concept, scikit-learn's ``LabelSpreading`` (Zhou, Bousquet, Lal, Weston & Schölkopf, 2004,
    "Learning with local and global consistency", NIPS) propagates the labeled clips' 0/1 labels
    over a k-nearest-neighbour (or RBF) graph of labeled + pool clips; utility is the entropy of
    each pool clip's spread distribution, combined across concepts by ``policy``. Useful early,
    when the classifier has seen few labels but the feature space has structure. A concept whose
    labeled clips all share one label spreads nothing and has utility 0. Deterministic; the graph
    is built over the whole pool, so it is the slowest strategy on large pools.
    """

    reason = "uncertain"

    def __init__(
        self,
        *,
        kernel: str = "knn",
        n_neighbors: int = 7,
        gamma: float = 20.0,
        alpha: float = 0.2,
        max_iter: int = 30,
        policy: str = "max",
        quotas=None,
    ):
        self.kernel = kernel
        self.n_neighbors = n_neighbors
        self.gamma = gamma
        self.alpha = alpha
        self.max_iter = max_iter
        self.policy = policy
        self.quotas = quotas

    def validate_params(self) -> None:
        super().validate_params()
        if self.kernel not in ("knn", "rbf"):
            raise ValueError(f"kernel must be 'knn' or 'rbf', got {self.kernel!r}")

    def utility(self, pool, labeled, available, rng):
        labeled = self._labeled(labeled, 1)
        X_pool = available_rows(pool.X, available)
        X = np.vstack([labeled.X, X_pool])
        utility = np.zeros((X_pool.shape[0], labeled.y.shape[1]))
        unlabeled = np.full(X_pool.shape[0], -1)
        for j in range(labeled.y.shape[1]):
            if np.unique(labeled.y[:, j]).size < 2:
                continue
            model = LabelSpreading(
                kernel=self.kernel,
                n_neighbors=min(self.n_neighbors, X.shape[0] - 1),
                gamma=self.gamma,
                alpha=self.alpha,
                max_iter=self.max_iter,
            ).fit(X, np.concatenate([labeled.y[:, j], unlabeled]))
            utility[:, j] = spread_entropy(model.label_distributions_[len(labeled) :])
        return scatter(utility, available)


def spread_entropy(dist: np.ndarray) -> np.ndarray:
    """Entropy of each row of spread label distributions, shape (n_clips,).

    A clip the graph never reaches has an all-zero (or 0/0) row: it counts as maximally uncertain
    (``log n_classes``), not as certain.
    """
    dist = np.nan_to_num(np.asarray(dist, dtype=np.float64))
    out = entropy(dist)
    out[~(dist.sum(axis=1) > 0)] = np.log(dist.shape[1])
    return out

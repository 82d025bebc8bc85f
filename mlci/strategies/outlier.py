"""Novelty ranking: pool clips least like the labeled ones first (Isolation Forest, LOF)."""

from __future__ import annotations

from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from mlci.strategies.base import UtilityStrategy, available_rows, scatter, seed_from

__all__ = ["IsolationForestAnomaly", "LocalOutlier"]


class IsolationForestAnomaly(UtilityStrategy):
    """Pool clips most anomalous w.r.t. the labeled clips first.

    An Isolation Forest (Liu, Ting & Zhou, 2008, "Isolation forest", ICDM) is fitted on the
    labeled clips' features; utility is ``-score_samples`` (higher = easier to isolate). Helps
    cover regions of feature space the labels have not reached; ignores the model's scores.
    """

    reason = "anomalous"

    def __init__(self, *, n_estimators: int = 100, max_samples="auto"):
        self.n_estimators = n_estimators
        self.max_samples = max_samples

    def utility(self, pool, labeled, available, rng):
        labeled = self._labeled(labeled, 2)
        forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=seed_from(rng)
        ).fit(labeled.X)
        return scatter(-forest.score_samples(available_rows(pool.X, available)), available)


class LocalOutlier(UtilityStrategy):
    """Pool clips in the sparsest neighbourhoods relative to the labeled clips first.

    Local Outlier Factor (Breunig, Kriegel, Ng & Sander, 2000, "LOF: identifying density-based
    local outliers", SIGMOD) in novelty mode, fitted on the labeled clips; utility is
    ``-score_samples``. ``n_neighbors`` is capped at ``n_labeled - 1``. Deterministic.
    """

    reason = "anomalous"

    def __init__(self, *, n_neighbors: int = 20):
        self.n_neighbors = n_neighbors

    def validate_params(self) -> None:
        if not isinstance(self.n_neighbors, int) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be an int >= 1, got {self.n_neighbors!r}")

    def utility(self, pool, labeled, available, rng):
        labeled = self._labeled(labeled, 2)
        lof = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, len(labeled) - 1), novelty=True)
        lof.fit(labeled.X)
        return scatter(-lof.score_samples(available_rows(pool.X, available)), available)

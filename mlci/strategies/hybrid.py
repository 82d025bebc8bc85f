"""Hybrid of uncertainty and diversity: ranked batch-mode active learning."""

from __future__ import annotations

import numpy as np

from mlci.strategies.base import QueryStrategy
from mlci.strategies.diversity import (
    _check_common,
    min_sq_distances,
    uncertain_candidates,
)
from mlci.strategies.uncertainty import UNCERTAINTY_MEASURES

__all__ = ["RankedBatch"]


class RankedBatch(QueryStrategy):
    """Trade uncertainty against distance to what is labeled or already chosen, one pick at a time.

    Ranked batch-mode active learning (Cardoso, Silva, Pratas & Prudêncio, 2017, Information
    Sciences 379): each pick maximises ``alpha * (1 - sim) + (1 - alpha) * u``, where ``u`` is the
    uncertainty scaled to [0, 1], ``sim = 1 / (1 + d)`` and ``d`` the Euclidean distance to the
    nearest labeled or already-chosen clip. ``alpha="auto"`` is the paper's
    ``n_unlabeled / (n_unlabeled + n_labeled)``: mostly diversity while labels are few, mostly
    uncertainty later. Candidates are the ``beta * batch_size`` most uncertain clips
    (``beta=None``: the whole pool). Each clip's reason is the term that contributed more.
    """

    reason = "uncertain"

    def __init__(
        self,
        *,
        uncertainty: str = "margin",
        alpha: float | str = "auto",
        beta: int | None = 10,
        policy: str = "max",
        quotas=None,
    ):
        self.uncertainty = uncertainty
        self.alpha = alpha
        self.beta = beta
        self.policy = policy
        self.quotas = quotas

    def validate_params(self) -> None:
        _check_common(self)
        if self.alpha != "auto" and not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha must be 'auto' or a number in [0, 1], got {self.alpha!r}")

    def query(self, pool, *, labeled=None, batch_size, exclude=(), random_state=None):
        batch_size, available = self._prepare(pool, labeled, batch_size, exclude)
        cand, utility, concept = uncertain_candidates(self, pool, batch_size, available)
        order = np.argsort(cand, kind="stable")  # argmax ties then go to the lower pool index
        cand, utility, concept = cand[order], utility[order], concept[order]
        u = utility / UNCERTAINTY_MEASURES[self.uncertainty][1]
        n_labeled = 0 if labeled is None else len(labeled)
        n_unlabeled = len(pool) if available is None else int(available.sum())
        alpha = n_unlabeled / (n_unlabeled + n_labeled) if self.alpha == "auto" else float(self.alpha)
        X = pool.X if cand.size == len(pool) else pool.X[cand]
        d = np.sqrt(min_sq_distances(X, labeled.X)).astype(np.float64) if n_labeled else np.full(cand.size, np.inf)
        sq = np.einsum("ij,ij->i", X, X)
        picks, scores, reasons = [], [], []
        taken = np.zeros(cand.size, dtype=bool)
        for _ in range(batch_size):
            novelty = alpha * (1 - 1 / (1 + d))  # inf distance -> similarity 0
            score = np.where(taken, -np.inf, novelty + (1 - alpha) * u)
            i = int(np.argmax(score))
            picks.append(i)
            scores.append(score[i])
            reasons.append("uncertain" if (1 - alpha) * u[i] >= novelty[i] else "diverse")
            taken[i] = True
            new = X @ X[i]
            new *= -2
            new += sq
            new += sq[i]
            np.minimum(d, np.sqrt(np.maximum(new, 0)), out=d)
        picks = np.asarray(picks)
        return self._selection(pool, cand[picks], scores, concept[picks], reason=np.asarray(reasons, dtype=object))

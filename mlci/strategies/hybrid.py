"""Hybrids of uncertainty and diversity: ranked batch-mode active learning, margin with coverage."""

from __future__ import annotations

import numpy as np

from mlci.strategies.base import QueryStrategy, as_generator
from mlci.strategies.diversity import (
    _check_common,
    greedy_k_center,
    min_sq_distances,
    uncertain_candidates,
)
from mlci.strategies.ranking import check_policy, rank_by_policy
from mlci.strategies.uncertainty import UNCERTAINTY_MEASURES

__all__ = ["RankedBatch", "MarginCoverage"]


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


class MarginCoverage(QueryStrategy):
    """Half the batch where the model is unsure, half where nothing is labeled yet.

    Uncertainty sampling alone samples near the current decision boundary and can miss whole
    regions where the model is confidently wrong (clustered pools, a misspecified model, few labels
    in many dimensions: Dasgupta, 2011, "Two faces of active learning"; Settles, 2009, sec. 6.1);
    there it needs several times the labels random sampling needs. Coverage alone throws away what
    the model knows. This strategy takes ``1 - coverage_share`` of the batch by ``uncertainty``
    (per ``policy`` and ``quotas``, so a multi-label batch keeps its per-concept round-robin), then
    the rest by greedy k-center (:func:`greedy_k_center`) away from the labeled clips and the
    uncertain picks, in features standardised by the pool's mean and deviation so that no feature
    dominates the distances by its unit.

    ``max_candidates`` bounds the coverage step on large pools: it runs on a random subset of that
    many available clips (drawn from ``random_state``). Reasons: ``"uncertain"`` and ``"coverage"``,
    alternating in rank order (so a batch labeled only in part still has both kinds).
    Measured against random and every other strategy in ``benchmarks/label_efficiency.py``; the
    table is in ``docs/strategies.md``.
    """

    reason = "uncertain"

    def __init__(
        self,
        *,
        coverage_share: float = 0.5,
        uncertainty: str = "margin",
        policy: str = "max",
        quotas=None,
        max_candidates: int | None = 20_000,
    ):
        self.coverage_share = coverage_share
        self.uncertainty = uncertainty
        self.policy = policy
        self.quotas = quotas
        self.max_candidates = max_candidates

    def validate_params(self) -> None:
        share = self.coverage_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise ValueError(f"coverage_share must be a number in [0, 1], got {share!r}")
        if self.uncertainty not in UNCERTAINTY_MEASURES:
            raise ValueError(f"uncertainty must be one of {tuple(UNCERTAINTY_MEASURES)}, got {self.uncertainty!r}")
        check_policy(self.policy, self.quotas)
        m = self.max_candidates
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ValueError(f"max_candidates must be None or an int >= 1, got {m!r}")

    def query(self, pool, *, labeled=None, batch_size, exclude=(), random_state=None):
        batch_size, available = self._prepare(pool, labeled, batch_size, exclude)
        rng = as_generator(random_state)
        n_coverage = int(round(self.coverage_share * batch_size))
        n_uncertain = batch_size - n_coverage
        if n_uncertain:
            utility = UNCERTAINTY_MEASURES[self.uncertainty][0](self._proba(pool))
            picked, picked_utility, concept = rank_by_policy(
                utility, n_uncertain, available=available, policy=self.policy, quotas=self.quotas
            )
        else:
            picked, picked_utility, concept = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
        if n_coverage:
            free = np.ones(len(pool), dtype=bool) if available is None else available.copy()
            free[picked] = False
            rows = np.flatnonzero(free)
            if self.max_candidates is not None and rows.size > max(self.max_candidates, n_coverage):
                rows = np.sort(rng.choice(rows, size=max(self.max_candidates, n_coverage), replace=False))
            Z, scale = _standardised(pool.X[rows])
            known = [pool.X[picked]] + ([labeled.X] if labeled is not None and len(labeled) else [])
            centers = scale(np.concatenate(known)) if sum(len(k) for k in known) else None
            first = int(rng.integers(rows.size)) if centers is None else 0
            chosen, distances = greedy_k_center(Z, n_coverage, centers=centers, first=first)
            picked = np.concatenate([picked, rows[chosen]])
            picked_utility = np.concatenate([picked_utility, distances])
            concept = np.concatenate([concept, np.full(n_coverage, -1, np.int64)])
        reasons = np.array(["uncertain"] * n_uncertain + ["coverage"] * n_coverage, dtype=object)
        # Alternate the halves in rank order: a batch labeled only in part still has both kinds.
        order = np.argsort(np.r_[2 * np.arange(n_uncertain), 2 * np.arange(n_coverage) + 1], kind="stable")
        return self._selection(pool, picked[order], picked_utility[order], concept[order], reason=reasons[order])


def _standardised(X: np.ndarray):
    """``X`` with zero-mean, unit-deviation columns (constant columns left at 0) and the map that did it."""
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = X.std(axis=0, dtype=np.float64).astype(np.float32)
    std[std == 0] = 1.0

    def scale(A: np.ndarray) -> np.ndarray:
        return (np.asarray(A, dtype=np.float32) - mean) / std

    return scale(X), scale

"""Uncertainty sampling: least confidence, margin and entropy.

Each measure is a pure function in two forms: over class distributions (rows of
``(n, n_classes)`` summing to 1) and ``binary_*`` over per-concept P(present), where a concept's
distribution is ``[1 - p, p]``. All return a utility where higher means more uncertain, with the
definitions (and floating-point operations) of Settles (2009) as implemented by
scikit-activeml's ``uncertainty_scores``, natural logarithm for entropy.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from mlci.strategies.base import UtilityStrategy

__all__ = [
    "least_confidence",
    "margin",
    "entropy",
    "binary_least_confidence",
    "binary_margin",
    "binary_entropy",
    "UNCERTAINTY_MEASURES",
    "LeastConfidence",
    "Margin",
    "Entropy",
]


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """``1 - max_k p_k`` per row of ``proba`` (n, n_classes)."""
    proba = np.asarray(proba)
    return 1 - proba.max(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """``1 - (p_(1) - p_(2))`` per row: one minus the gap between the two most probable classes."""
    top2 = -np.partition(-np.asarray(proba), 1, axis=1)[:, :2]
    return 1 - np.abs(top2[:, 0] - top2[:, 1])


def _p_log_p(p: np.ndarray) -> np.ndarray:
    # np.log (not scipy's xlogy) so that values match scikit-activeml bit for bit.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * np.log(p)
    return np.where(p > 0, out, 0)


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum_k p_k log p_k`` per row (nats; ``0 log 0 = 0``)."""
    return -_p_log_p(np.asarray(proba)).sum(axis=1)


def binary_least_confidence(p: np.ndarray) -> np.ndarray:
    """:func:`least_confidence` of ``[1 - p, p]``, elementwise over an array of P(present)."""
    p = np.asarray(p)
    return 1 - np.maximum(p, 1 - p)


def binary_margin(p: np.ndarray) -> np.ndarray:
    """:func:`margin` of ``[1 - p, p]``, elementwise: ``1 - |p - (1 - p)|``."""
    p = np.asarray(p)
    return 1 - np.abs(p - (1 - p))


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """:func:`entropy` of ``[1 - p, p]``, elementwise (nats, at most ``log 2``)."""
    p = np.asarray(p)
    q = 1 - p
    return -(_p_log_p(q) + _p_log_p(p))


#: Binary measures by name, with the largest value each can take (used to put them on [0, 1]).
UNCERTAINTY_MEASURES = {
    "least_confidence": (binary_least_confidence, 0.5),
    "margin": (binary_margin, 1.0),
    "entropy": (binary_entropy, float(np.log(2.0))),
}


class _Uncertainty(UtilityStrategy):
    reason = "uncertain"
    measure: ClassVar[str]

    def __init__(self, *, policy: str = "max", quotas=None):
        self.policy = policy
        self.quotas = quotas

    def utility(self, pool, labeled, available, rng):
        return UNCERTAINTY_MEASURES[self.measure][0](self._proba(pool))


class LeastConfidence(_Uncertainty):
    """Least-confidence sampling: the clips whose predicted answer is least probable.

    Lewis & Gale (1994), "A sequential algorithm for training text classifiers"; Settles (2009),
    "Active learning literature survey", sec. 3.1. Per concept ``1 - max(p, 1 - p)``, combined
    across concepts by ``policy`` (see :mod:`mlci.strategies.ranking`).
    """

    measure = "least_confidence"


class Margin(_Uncertainty):
    """Margin sampling: the clips where the two answers are closest in probability.

    Scheffer, Decomain & Wrobel (2001), "Active hidden Markov models for information extraction".
    Per concept ``1 - |2p - 1|``, combined across concepts by ``policy``.
    """

    measure = "margin"


class Entropy(_Uncertainty):
    """Entropy sampling: the clips whose predicted distribution has the most entropy.

    Settles (2009), "Active learning literature survey", sec. 3.1 (after Shannon, 1948). Per
    concept the binary entropy of ``p``, combined across concepts by ``policy``.
    """

    measure = "entropy"

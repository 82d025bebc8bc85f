"""Orderings that exist only inside simulations: they read the true labels of unlabeled clips.

The seed notebook's "inlier" and "outlier" orderings ranked unlabeled clips by the distance
between the model's score and the clip's *true* label. No real labeling round can do that, so
they are kept here as named upper/lower bounds (:class:`OracleInlier`, :class:`OracleOutlier`),
deliberately outside :mod:`mlci.strategies`: they are not :class:`~mlci.strategies.QueryStrategy`
subclasses, are not in its registry (``get_strategy("oracle_inlier")`` raises), and cannot rank a
:class:`~mlci.strategies.Pool`, which carries no labels. They take the truth as an explicit argument.
"""

from __future__ import annotations

import numpy as np

from mlci.strategies.ranking import top_k

__all__ = ["OracleInlier", "OracleOutlier", "oracle_distance"]


def oracle_distance(proba: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``|score - true label|`` per clip, averaged over concept columns: how wrong the model is."""
    proba = np.asarray(proba, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if proba.shape != truth.shape:
        raise ValueError(f"proba and truth must have the same shape, got {proba.shape} and {truth.shape}")
    d = np.abs(proba - truth)
    return d if d.ndim == 1 else d.mean(axis=1)


class _Oracle:
    reads_truth = True
    sign: float

    def __init__(self):
        pass

    def rank(self, proba: np.ndarray, truth: np.ndarray, batch_size: int, available: np.ndarray | None = None) -> np.ndarray:
        """Pool positions of the next ``batch_size`` clips, best first (ties: lower position first).

        Parameters
        ----------
        proba : ndarray of shape (n_pool,) or (n_pool, n_concepts)
            The current model's scores.
        truth : ndarray of {0, 1}, same shape
            The true labels of the pool: this is the leak that makes the ordering an oracle.
        batch_size : int
        available : ndarray of bool of shape (n_pool,), default=None
        """
        return top_k(self.sign * oracle_distance(proba, truth), batch_size, available)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OracleInlier(_Oracle):
    """Oracle bound (simulation only): clips the model already gets right first, ``|p - y|`` ascending.

    The seed notebook's "inlier" ordering. It confirms what the model knows and is expected to
    learn slowly; small batches of it made the seed's curves oscillate.
    """

    sign = -1.0


class OracleOutlier(_Oracle):
    """Oracle bound (simulation only): clips the model gets most wrong first, ``|p - y|`` descending.

    The seed notebook's "outlier" ordering: the errors a perfect critic would pick.
    """

    sign = 1.0

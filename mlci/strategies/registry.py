"""Strategies by name, so configuration can choose one: ``get_strategy("margin", policy="round_robin")``."""

from __future__ import annotations

from mlci.strategies.base import QueryStrategy
from mlci.strategies.diversity import CoreSet, KMeansDiversity
from mlci.strategies.exceptions import UnknownStrategyError
from mlci.strategies.hybrid import MarginCoverage, RankedBatch
from mlci.strategies.label_spreading import LabelSpreadingEntropy
from mlci.strategies.outlier import IsolationForestAnomaly, LocalOutlier
from mlci.strategies.random_sampling import RandomSampling
from mlci.strategies.score_order import NegativeFirst, PositiveFirst
from mlci.strategies.uncertainty import Entropy, LeastConfidence, Margin

__all__ = ["STRATEGIES", "get_strategy"]

#: Registered name -> strategy class.
STRATEGIES: dict[str, type[QueryStrategy]] = {
    "random": RandomSampling,
    "least_confidence": LeastConfidence,
    "margin": Margin,
    "entropy": Entropy,
    "positive": PositiveFirst,
    "negative": NegativeFirst,
    "anomaly": IsolationForestAnomaly,
    "local_outlier": LocalOutlier,
    "label_spreading_entropy": LabelSpreadingEntropy,
    "kmeans_diversity": KMeansDiversity,
    "coreset": CoreSet,
    "ranked_batch": RankedBatch,
    "margin_coverage": MarginCoverage,
}


def get_strategy(name: str, **params) -> QueryStrategy:
    """The strategy registered as ``name``, constructed with ``params`` and validated.

    Raises
    ------
    UnknownStrategyError
        When no strategy has that name (the message lists the known ones).
    TypeError
        When a parameter is not one the strategy takes.
    ValueError
        When a parameter value is not allowed.
    """
    try:
        cls = STRATEGIES[name]
    except (KeyError, TypeError):
        raise UnknownStrategyError(name, sorted(STRATEGIES)) from None
    try:
        strategy = cls(**params)
    except TypeError as exc:
        raise TypeError(f"strategy {name!r} does not take parameters {sorted(params)}: {exc}") from None
    strategy.validate_params()
    return strategy

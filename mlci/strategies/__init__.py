"""Query strategies: which unlabeled clips are most worth a person's time next.

Every strategy implements :meth:`QueryStrategy.query` over a :class:`Pool` (unlabeled clips: keys,
features, per-concept scores, and no labels) and returns a :class:`Selection` in rank order.
Choose one by name with :func:`get_strategy`; see ``docs/strategies.md``.
"""

from mlci.strategies.base import QueryStrategy, UtilityStrategy
from mlci.strategies.diversity import (
    CoreSet,
    KMeansDiversity,
    greedy_k_center,
    min_sq_distances,
)
from mlci.strategies.exceptions import (
    LabelLeakError,
    MissingScoresError,
    NotEnoughLabelsError,
    PoolExhaustedError,
    StrategyError,
    UnknownStrategyError,
)
from mlci.strategies.hybrid import MarginCoverage, RankedBatch
from mlci.strategies.label_spreading import LabelSpreadingEntropy
from mlci.strategies.linear_scoring import linear_proba, stack_linear
from mlci.strategies.outlier import IsolationForestAnomaly, LocalOutlier
from mlci.strategies.pool import LabeledSet, Pool, Selection
from mlci.strategies.random_sampling import RandomSampling
from mlci.strategies.ranking import POLICIES, concept_quotas, rank_by_policy, top_k
from mlci.strategies.registry import STRATEGIES, get_strategy
from mlci.strategies.score_order import NegativeFirst, PositiveFirst
from mlci.strategies.uncertainty import (
    Entropy,
    LeastConfidence,
    Margin,
    binary_entropy,
    binary_least_confidence,
    binary_margin,
    entropy,
    least_confidence,
    margin,
)

__all__ = [
    "QueryStrategy",
    "UtilityStrategy",
    "Pool",
    "LabeledSet",
    "Selection",
    "STRATEGIES",
    "get_strategy",
    "POLICIES",
    "top_k",
    "rank_by_policy",
    "concept_quotas",
    "RandomSampling",
    "LeastConfidence",
    "Margin",
    "Entropy",
    "PositiveFirst",
    "NegativeFirst",
    "IsolationForestAnomaly",
    "LocalOutlier",
    "LabelSpreadingEntropy",
    "KMeansDiversity",
    "CoreSet",
    "RankedBatch",
    "MarginCoverage",
    "least_confidence",
    "margin",
    "entropy",
    "binary_least_confidence",
    "binary_margin",
    "binary_entropy",
    "greedy_k_center",
    "min_sq_distances",
    "linear_proba",
    "stack_linear",
    "StrategyError",
    "PoolExhaustedError",
    "MissingScoresError",
    "NotEnoughLabelsError",
    "LabelLeakError",
    "UnknownStrategyError",
]

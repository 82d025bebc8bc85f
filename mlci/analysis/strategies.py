"""Strategies as the simulator runs them: every registered query strategy, plus simulation-only orderings.

A strategy is named by a spec string, ``"name"`` or ``"name:param=value,param=value"`` (e.g.
``"margin"``, ``"anomaly:n_estimators=50"``, ``"fixed_order:by=margin"``). Names are those of
:data:`mlci.strategies.STRATEGIES` plus three that exist only here:

``fixed_order``
    One order decided after the start set and never revised (``by=random``, the default: a random
    order; ``by=<strategy>``: that strategy's ranking of the whole pool by the start-set model).
    Question 1 compares re-ranking strategies with it.
``oracle_inlier`` / ``oracle_outlier``
    The seed's orderings by ``|score - true label|`` (see :mod:`mlci.analysis.oracles`).

Strategies that never look at labels or scores (random, anomaly, local outlier, core-set, a
random fixed order) choose the same clips for every concept, so the engine runs them once per
repetition for all concepts together (``label_free``); the others run per concept.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.csgraph import laplacian as csgraph_laplacian
from sklearn.neighbors import NearestNeighbors

from mlci.analysis.exceptions import UnknownSimulationStrategyError
from mlci.analysis.oracles import OracleInlier, OracleOutlier
from mlci.strategies import (
    STRATEGIES,
    CoreSet,
    IsolationForestAnomaly,
    LabeledSet,
    LabelSpreadingEntropy,
    LocalOutlier,
    Pool,
    QueryStrategy,
    RandomSampling,
    get_strategy,
)
from mlci.strategies.label_spreading import spread_entropy
from mlci.strategies.ranking import top_k

__all__ = [
    "SEED_STRATEGIES",
    "SIMULATION_ONLY",
    "FixedOrder",
    "OracleStrategy",
    "RegisteredStrategy",
    "RoundState",
    "SimulationStrategy",
    "make_simulation_strategy",
    "parse_spec",
    "simulation_strategy_names",
]

#: Names that exist only in the simulator (never in :data:`mlci.strategies.STRATEGIES`).
SIMULATION_ONLY = ("fixed_order", "oracle_inlier", "oracle_outlier")
#: The seed notebook's seven orderings, by their names here.
SEED_STRATEGIES = {
    "anomaly": "anomaly",
    "entropy": "label_spreading_entropy",
    "random": "random",
    "outlier": "oracle_outlier",
    "inlier": "oracle_inlier",
    "positive": "positive",
    "negative": "negative",
}
_LABEL_FREE = (RandomSampling, IsolationForestAnomaly, LocalOutlier, CoreSet)


@dataclass
class RoundState:
    """What a strategy may use in one simulated round (positions index the repetition's pool).

    ``truth`` is the pool's true labels: only oracle strategies receive it (``reads_truth``).
    """

    pool: Pool
    labeled: np.ndarray  # pool positions, in the order they were labeled
    y_labeled: np.ndarray  # (n_labeled, n_concepts) labels of those clips
    available: np.ndarray  # bool (n_pool,): not yet labeled
    proba: np.ndarray  # (n_pool, n_concepts): current model scores of every pool clip
    random_state: int
    cache: dict = field(default_factory=dict)  # per-repetition work shared between runs
    truth: np.ndarray | None = None


class SimulationStrategy(ABC):
    """A strategy as the engine drives it: ``select`` returns pool positions for the next batch."""

    label_free: bool = False
    reads_truth: bool = False

    def __init__(self, spec: str):
        self.spec = spec

    def reset(self) -> None:
        """Forget per-run state (called before each simulated run)."""

    @abstractmethod
    def select(self, state: RoundState, batch_size: int) -> np.ndarray:
        """Pool positions of the next ``batch_size`` clips, in rank order, all available."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class RegisteredStrategy(SimulationStrategy):
    """A strategy of :mod:`mlci.strategies`, called exactly as a real round calls it."""

    def __init__(self, spec: str, strategy: QueryStrategy):
        super().__init__(spec)
        self.strategy = strategy
        self.label_free = isinstance(strategy, _LABEL_FREE)

    def select(self, state, batch_size):
        pool = state.pool if self.label_free else state.pool.with_scores(state.proba)
        keys = state.pool.keys
        labeled = LabeledSet(keys[state.labeled], state.pool.X[state.labeled], state.y_labeled)
        selection = self.strategy.query(
            pool,
            labeled=labeled,
            batch_size=batch_size,
            exclude=keys[state.labeled],
            random_state=state.random_state,
        )
        return selection.indices


class SpreadingEntropy(RegisteredStrategy):
    """:class:`~mlci.strategies.LabelSpreadingEntropy` (knn kernel) with its graph built once per repetition.

    The strategy spreads labels over labeled + pool clips: in a simulation that is always the same
    set of clips (the repetition's pool), so the k-nearest-neighbour graph and its normalised
    Laplacian are the same every round. Building them once and running only the spreading
    iterations per round gives the same ranking as the strategy itself (checked in the tests),
    at a fraction of the cost.
    """

    def _graph(self, state):
        s = self.strategy
        n = len(state.pool)
        k = min(s.n_neighbors, n - 1)
        key = ("knn_laplacian", k)
        if key not in state.cache:
            # As sklearn.semi_supervised.LabelSpreading._build_graph does, on the pool's float32 X.
            nn = NearestNeighbors(n_neighbors=k).fit(state.pool.X)
            affinity = nn.kneighbors_graph(nn._fit_X, k, mode="connectivity")
            lap = -csgraph_laplacian(affinity, normed=True)
            lap.data[lap.row == lap.col] = 0.0
            state.cache[key] = lap.tocsr()
        return state.cache[key]

    def select(self, state, batch_size):
        if state.y_labeled.shape[1] != 1:  # the engine runs it per concept; several go the generic way
            return super().select(state, batch_size)
        s = self.strategy
        y = state.y_labeled
        n = len(state.pool)
        utility = np.zeros((n, 1))
        for j in range(1):
            if np.unique(y[:, j]).size < 2:
                continue  # one class spreads nothing: utility 0, as in the strategy
            graph = self._graph(state)
            dist = np.zeros((n, 2))
            dist[state.labeled, y[:, j].astype(np.int64)] = 1.0
            static = dist * (1 - s.alpha)
            previous = np.zeros_like(dist)
            for _ in range(s.max_iter):
                if np.abs(dist - previous).sum() < 1e-3:  # LabelSpreading's default tol
                    break
                previous = dist
                dist = s.alpha * (graph @ dist) + static
            norm = dist.sum(axis=1, keepdims=True)
            norm[norm == 0] = 1
            utility[:, j] = spread_entropy(dist / norm)
        return top_k(utility[:, 0], batch_size, state.available)


class OracleStrategy(SimulationStrategy):
    """An oracle ordering (reads the pool's true labels): simulation only."""

    reads_truth = True

    def __init__(self, spec: str, oracle):
        super().__init__(spec)
        self.oracle = oracle

    def select(self, state, batch_size):
        if state.truth is None:
            raise ValueError(f"{self.spec} reads the true labels of the pool, but the round state has none")
        return self.oracle.rank(state.proba, state.truth, batch_size, state.available)


class FixedOrder(SimulationStrategy):
    """One order decided after the start set, never revised (question 1's "no re-ranking" arm).

    ``by="random"`` shuffles the pool once (its random stream is its own, not the ``random``
    strategy's); ``by=<strategy>`` ranks the whole pool once with that strategy and the
    start-set model.
    """

    def __init__(self, spec: str, by: SimulationStrategy | None):
        super().__init__(spec)
        self.by = by
        self.label_free = by is None or by.label_free
        self.reads_truth = by is not None and by.reads_truth
        self._order: np.ndarray | None = None

    def reset(self) -> None:
        self._order = None

    def select(self, state, batch_size):
        if self._order is None:
            candidates = np.flatnonzero(state.available)
            if self.by is None:
                self._order = np.random.default_rng(state.random_state).permutation(candidates)
            else:
                self._order = self.by.select(state, candidates.size)
        order = self._order[state.available[self._order]]
        if order.size < batch_size:
            raise ValueError(f"{self.spec}: {order.size} clips left in the fixed order, {batch_size} requested")
        return order[:batch_size]


def _value(text: str):
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"name:a=1,b=x"`` -> ``("name", {"a": 1, "b": "x"})`` (ints, floats, None, booleans parsed)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"strategy must be a non-empty string like 'margin' or 'anomaly:n_estimators=50', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"strategy {spec!r}: parameter {part!r} is not key=value")
        params[key.strip()] = _value(value.strip())
    return name.strip(), params


def simulation_strategy_names() -> list[str]:
    """Every name :func:`make_simulation_strategy` accepts."""
    return sorted(STRATEGIES) + list(SIMULATION_ONLY)


def make_simulation_strategy(spec: str) -> SimulationStrategy:
    """The simulation strategy named by ``spec`` (see the module docstring).

    Raises
    ------
    UnknownSimulationStrategyError
        Unknown name.
    TypeError, ValueError
        A parameter the strategy does not take, or a value it does not allow.
    """
    name, params = parse_spec(spec)
    if name in ("oracle_inlier", "oracle_outlier"):
        if params:
            raise TypeError(f"strategy {name!r} takes no parameters, got {sorted(params)}")
        return OracleStrategy(spec, OracleInlier() if name == "oracle_inlier" else OracleOutlier())
    if name == "fixed_order":
        by = params.pop("by", "random")
        if by in (None, "random") and not params:
            return FixedOrder(spec, None)
        if by in ("fixed_order",):
            raise ValueError(f"strategy {spec!r}: by must name another strategy, got {by!r}")
        inner = ":".join([str(by), ",".join(f"{k}={v}" for k, v in params.items())]) if params else str(by)
        return FixedOrder(spec, make_simulation_strategy(inner))
    if name not in STRATEGIES:
        raise UnknownSimulationStrategyError(name, simulation_strategy_names())
    strategy = get_strategy(name, **params)
    if isinstance(strategy, LabelSpreadingEntropy) and strategy.kernel == "knn":
        return SpreadingEntropy(spec, strategy)
    return RegisteredStrategy(spec, strategy)


def strategy_seed(*parts) -> int:
    """A 32-bit seed from ints and strings (strings by CRC-32, so it is stable across processes)."""
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])

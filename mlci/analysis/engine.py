"""The simulation engine: replay labeling rounds on clips whose labels are already known.

Protocol of one repetition (:func:`prepare_repetition`):

1. a stratified held-out **test split** (``test_size`` of the clips) that never enters the pool;
2. the rest is the **pool**, put in a random order; the **start set** is the first
   ``schedule.sizes[0]`` clips of that order (chosen at random, shared by every concept and
   strategy of the repetition, so comparisons are paired);
3. a fixed random **stop set** of pool clips (the stopping criteria watch predictions on it);
4. a **reference model** trained on the whole pool (the score the labels-to-target summaries
   aim at).

Then, per strategy and schedule (:func:`run_unit`), every round: train (L2 logistic regression,
:mod:`mlci.analysis.linear`), score the pool and the test split, evaluate on the test split and on
the remaining pool (the seed's metrics, :mod:`mlci.analysis.metrics`), record the stopping
signals (:mod:`mlci.analysis.stopping`), rank the pool with the strategy and take the next batch.
Repetitions differ by seed only. Pool positions double as the tie-break order of every ranking,
so ties fall in a random (but reproducible) order.

Work is split into :class:`Unit` s (strategy, schedule, repetition, concepts) that run
independently: serially, in processes (:func:`simulate` with ``n_jobs``), or as mapped Prefect
tasks (``flows/analysis.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from mlci.analysis.exceptions import NotEnoughDataError
from mlci.analysis.linear import fit_logistic
from mlci.analysis.metrics import METRICS, column_metrics
from mlci.analysis.schedules import Schedule, parse_schedule
from mlci.analysis.stopping import (
    mean_uncertainty,
    oof_average_precision,
    prediction_kappa,
)
from mlci.analysis.strategies import RoundState, make_simulation_strategy, strategy_seed
from mlci.strategies import Pool

__all__ = [
    "CURVE_COLUMNS",
    "Repetition",
    "SimulationConfig",
    "SimulationData",
    "SimulationResult",
    "Unit",
    "collect_result",
    "make_data",
    "plan_units",
    "prepare_repetition",
    "reference_frame",
    "run_unit",
    "simulate",
    "sort_curves",
]

#: Columns of the curves table, one row per (strategy, schedule, repetition, concept, round).
CURVE_COLUMNS = (
    ["strategy", "schedule", "repetition", "concept", "round", "labels", "n_positive"]
    + [f"test_{m}" for m in METRICS]
    + [f"pool_{m}" for m in METRICS]
    + ["kappa", "uncertainty", "oof_ap", "seconds"]
)


@dataclass(frozen=True, eq=False)
class SimulationData:
    """Clips with known labels: the input of every simulation.

    Attributes
    ----------
    keys : ndarray of str of shape (n_clips,)
    X : ndarray of float64 of shape (n_clips, n_features)
    Y : ndarray of int8 of shape (n_clips, n_concepts)
    concepts : tuple of str
    skipped : dict of str to str
        Concepts left out by :func:`make_data`, with the reason.
    """

    keys: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    concepts: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"SimulationData(n_clips={len(self.keys)}, n_features={self.X.shape[1]}, concepts={list(self.concepts)})"


def make_data(
    keys: Sequence[str] | None,
    X,
    Y,
    concepts: Sequence[str] | None = None,
    *,
    min_positives: int = 5,
) -> SimulationData:
    """Check and package features and labels; concepts too rare to simulate are skipped, not fatal.

    Parameters
    ----------
    keys : sequence of str of length n_clips, or None
        Clip keys (None: ``"0"``, ``"1"``, ...).
    X : array-like of shape (n_clips, n_features)
    Y : array-like of {0, 1} of shape (n_clips, n_concepts) or (n_clips,)
    concepts : sequence of str, default=None
        Concept names (None: ``"c0"``, ``"c1"``, ...).
    min_positives : int, default=5
        A concept needs this many positives *and* negatives (some for the test split, some for the
        pool); rarer ones are listed in ``skipped`` with their counts.

    Raises
    ------
    ValueError
        Shapes that do not match, labels other than 0/1, non-finite features, duplicate keys.
    NotEnoughDataError
        When no concept is left.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X must be (n_clips, n_features) and Y (n_clips, n_concepts), got {X.shape} and {Y.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"X has {int((~np.isfinite(X)).sum())} non-finite values")
    if Y.size and not np.isin(Y, (0, 1)).all():
        raise ValueError(f"Y must hold 0/1 labels, got values {np.unique(Y)[:5].tolist()}")
    n = X.shape[0]
    keys = np.asarray([str(i) for i in range(n)] if keys is None else list(keys), dtype=object)
    if keys.shape != (n,):
        raise ValueError(f"keys must have one entry per clip ({n}), got {keys.shape[0]}")
    if len(set(keys)) != n:
        raise ValueError("keys must be unique")
    concepts = tuple(f"c{j}" for j in range(Y.shape[1])) if concepts is None else tuple(concepts)
    if len(concepts) != Y.shape[1]:
        raise ValueError(f"concepts must name the {Y.shape[1]} columns of Y, got {len(concepts)} names")
    keep, skipped = [], {}
    for j, name in enumerate(concepts):
        pos = int(Y[:, j].sum())
        if min(pos, n - pos) < min_positives:
            skipped[name] = f"{pos} positives and {n - pos} negatives; needs at least {min_positives} of each"
        else:
            keep.append(j)
    if not keep:
        raise NotEnoughDataError(f"no concept can be simulated: {skipped}")
    return SimulationData(keys, X, Y[:, keep].astype(np.int8), tuple(concepts[j] for j in keep), skipped)


@dataclass(frozen=True)
class SimulationConfig:
    """Protocol parameters shared by every unit of an analysis.

    Parameters
    ----------
    repetitions : int, default=5
    seed : int, default=0
        Everything random derives from it (splits, start sets, strategies' own draws).
    test_size : float, default=0.25
        Share of clips held out for testing.
    C : float, default=1.0
        Inverse regularisation of the logistic regression (scikit-learn's ``C``).
    evaluate_pool : bool, default=True
        Also evaluate on the remaining unlabeled pool (what the seed reported).
    stopping : bool, default=True
        Record the stopping signals (kappa on the stop set, pool uncertainty, out-of-fold AP).
    stop_set_size : int, default=1000
    oof_folds : int, default=5
        Folds of the out-of-fold AP (0: not computed).
    blas_threads : int, default=1
        BLAS threads per unit; parallelism comes from running units side by side.
    """

    repetitions: int = 5
    seed: int = 0
    test_size: float = 0.25
    C: float = 1.0
    evaluate_pool: bool = True
    stopping: bool = True
    stop_set_size: int = 1000
    oof_folds: int = 5
    blas_threads: int = 1

    def validate(self) -> None:
        if isinstance(self.repetitions, bool) or not isinstance(self.repetitions, int) or self.repetitions < 1:
            raise ValueError(f"repetitions must be an int >= 1, got {self.repetitions!r}")
        if not 0 < self.test_size < 1:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size!r}")
        if not self.C > 0:
            raise ValueError(f"C must be > 0, got {self.C!r}")
        if self.oof_folds != 0 and self.oof_folds < 2:
            raise ValueError(f"oof_folds must be 0 (off) or >= 2, got {self.oof_folds!r}")
        if self.stop_set_size < 1:
            raise ValueError(f"stop_set_size must be >= 1, got {self.stop_set_size!r}")


@dataclass(frozen=True, eq=False)
class Repetition:
    """One repetition's split of the data (positions into :class:`SimulationData` rows).

    Attributes
    ----------
    index : int
    pool : ndarray of int64
        Pool clips in the repetition's random order (the start set is its head).
    test : ndarray of int64
    stop : ndarray of int64
        Positions *within the pool* of the stop set.
    reference : dict of str to ndarray of shape (n_concepts,)
        Test metrics of the model trained on the whole pool.
    """

    index: int
    pool: np.ndarray
    test: np.ndarray
    stop: np.ndarray
    reference: dict[str, np.ndarray]


def _strata(Y: np.ndarray) -> np.ndarray:
    """Label-combination codes for a stratified split; combinations seen once join the commonest."""
    _, codes, counts = np.unique(Y, axis=0, return_inverse=True, return_counts=True)
    codes = codes.ravel()
    rare = counts[codes] < 2
    if rare.any():
        codes = codes.copy()
        codes[rare] = -1
        if rare.sum() < 2:
            codes[rare] = np.argmax(counts)
    return codes


def prepare_repetition(data: SimulationData, index: int, config: SimulationConfig) -> Repetition:
    """Split, order and reference model of repetition ``index`` (a pure function of the seed).

    Raises
    ------
    NotEnoughDataError
        When a concept ends up without positives or negatives in the test split or the pool.
    """
    n = len(data.keys)
    seed = strategy_seed(config.seed, index, "split")
    rng = np.random.default_rng(seed)
    positions = np.arange(n)
    try:
        pool, test = train_test_split(positions, test_size=config.test_size, random_state=seed, stratify=_strata(data.Y))
    except ValueError:
        # More label combinations than test clips: stratify on the rarest concept alone.
        rarest = int(np.argmin(np.minimum(data.Y.sum(axis=0), n - data.Y.sum(axis=0))))
        pool, test = train_test_split(positions, test_size=config.test_size, random_state=seed, stratify=data.Y[:, rarest])
    for name, part in (("test split", test), ("pool", pool)):
        pos = data.Y[part].sum(axis=0)
        bad = [c for c, p, size in zip(data.concepts, pos, [len(part)] * len(pos)) if p == 0 or p == size]
        if bad:
            raise NotEnoughDataError(
                f"repetition {index}: the {name} ({len(part)} clips) has a single class for {bad}; "
                "use more clips, a different test_size, or drop those concepts"
            )
    pool = rng.permutation(pool)
    stop = np.sort(rng.permutation(len(pool))[: min(config.stop_set_size, len(pool))])
    with threadpool_limits(config.blas_threads):
        fit = fit_logistic(data.X[pool], data.Y[pool], C=config.C)
        reference = column_metrics(data.Y[test], fit.predict(data.X[test]))
    return Repetition(index, pool.astype(np.int64), np.sort(test).astype(np.int64), stop.astype(np.int64), reference)


@dataclass(frozen=True)
class Unit:
    """One independent piece of work: a strategy and schedule on one repetition, for some concepts."""

    strategy: str
    schedule: str
    repetition: int
    concepts: tuple[int, ...]


def plan_units(
    strategies: Sequence[str],
    schedules: Sequence[str],
    n_concepts: int,
    repetitions: int,
    *,
    concepts_per_unit: int | None = None,
) -> list[Unit]:
    """Every unit of an analysis, most expensive strategies first (for load balance).

    A label-free strategy chooses the same clips for every concept, so its unit always holds all
    concepts (splitting it would repeat the same queries); the others are split into chunks of
    ``concepts_per_unit`` concepts (None: all in one unit).

    Raises
    ------
    UnknownSimulationStrategyError, ValueError
        For a strategy or schedule that does not parse.
    """
    units = []
    chunk = n_concepts if concepts_per_unit is None else max(1, int(concepts_per_unit))
    for spec in strategies:
        strategy = make_simulation_strategy(spec)
        for sched in schedules:
            parse_schedule(sched)
            for rep in range(repetitions):
                if strategy.label_free:
                    units.append(Unit(spec, str(sched), rep, tuple(range(n_concepts))))
                else:
                    for start in range(0, n_concepts, chunk):
                        units.append(Unit(spec, str(sched), rep, tuple(range(start, min(n_concepts, start + chunk)))))
    heavy = ("anomaly", "label_spreading", "local_outlier", "kmeans", "ranked_batch", "coreset")
    return sorted(units, key=lambda u: not any(h in u.strategy for h in heavy))


def _fold_weights(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray | None:
    """(n, k) training masks of a stratified k-fold (k = min(folds, positives, negatives)), or None."""
    n_pos = int(y.sum())
    k = min(folds, n_pos, len(y) - n_pos)
    if k < 2:
        return None
    fold = np.empty(len(y), dtype=np.int64)
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(idx.size) % k
    return (fold[:, None] != np.arange(k)[None, :]).astype(np.float64)


def run_unit(data: SimulationData, repetition: Repetition, unit: Unit, config: SimulationConfig) -> pd.DataFrame:
    """Simulate one unit; return its rows of the curves table (:data:`CURVE_COLUMNS`)."""
    with threadpool_limits(config.blas_threads):
        return _run_unit(data, repetition, unit, config)


def _run_unit(data, repetition, unit, config) -> pd.DataFrame:
    strategy = make_simulation_strategy(unit.strategy)
    schedule: Schedule = parse_schedule(unit.schedule)
    rep = repetition
    Xp, Yp = data.X[rep.pool], data.Y[rep.pool]
    Xt, Yt = data.X[rep.test], data.Y[rep.test]
    pool = Pool(data.keys[rep.pool], Xp.astype(np.float32))
    counts = schedule.label_counts(len(rep.pool))
    cache: dict = {}
    groups = [list(unit.concepts)] if strategy.label_free else [[j] for j in unit.concepts]
    columns: dict[str, list] = {c: [] for c in CURVE_COLUMNS}
    for cols in groups:
        strategy.reset()
        _run(strategy, schedule, counts, cols, data, rep, Xp, Yp, Xt, Yt, pool, cache, config, unit, columns)
    return pd.DataFrame(columns, columns=list(CURVE_COLUMNS))


def _run(strategy, schedule, counts, cols, data, rep, Xp, Yp, Xt, Yt, pool, cache, config, unit, out) -> None:
    n_pool = len(rep.pool)
    labeled = np.arange(counts[0], dtype=np.int64)  # the start set: head of the random pool order
    is_labeled = np.zeros(n_pool, dtype=bool)
    is_labeled[labeled] = True
    yp, yt = Yp[:, cols], Yt[:, cols]
    coef = intercept = None
    previous_stop = None
    for r, n_labels in enumerate(counts):
        start = time.perf_counter()
        y_l = yp[labeled]
        fit = fit_logistic(Xp[labeled], y_l, C=config.C, coef_init=coef, intercept_init=intercept)
        coef, intercept = fit.coef, fit.intercept
        p_pool = fit.predict(Xp)
        test = column_metrics(yt, fit.predict(Xt))
        remaining = ~is_labeled
        if config.evaluate_pool and remaining.any():
            pool_m = column_metrics(yp[remaining], p_pool[remaining])
        else:
            pool_m = {m: np.full(len(cols), np.nan) for m in METRICS}
        if config.stopping:
            stop_pred = p_pool[rep.stop] >= 0.5
            kappa = prediction_kappa(previous_stop, stop_pred) if previous_stop is not None else np.full(len(cols), np.nan)
            previous_stop = stop_pred
            uncertainty = mean_uncertainty(p_pool[remaining]) if remaining.any() else np.full(len(cols), np.nan)
            if config.oof_folds:
                rng = np.random.default_rng(strategy_seed(config.seed, rep.index, unit.strategy, unit.schedule, r, "oof"))
                oof = np.array([
                    oof_average_precision(Xp[labeled], y_l[:, k], _fold_weights(y_l[:, k], config.oof_folds, rng),
                                          C=config.C, coef_init=coef[k], intercept_init=intercept[k])
                    for k in range(len(cols))
                ])
            else:
                oof = np.full(len(cols), np.nan)
        else:
            kappa = uncertainty = oof = np.full(len(cols), np.nan)
        if r + 1 < len(counts):
            state = RoundState(
                pool=pool,
                labeled=labeled,
                y_labeled=y_l,
                available=remaining,
                proba=p_pool,
                random_state=strategy_seed(config.seed, rep.index, unit.strategy, unit.schedule, r),
                cache=cache,
                truth=yp if strategy.reads_truth else None,
            )
            batch = np.asarray(strategy.select(state, int(counts[r + 1] - n_labels)), dtype=np.int64)
            if is_labeled[batch].any() or np.unique(batch).size != batch.size:
                raise RuntimeError(f"{unit.strategy} chose a labeled or repeated clip in round {r}")
            labeled = np.concatenate([labeled, batch])
            is_labeled[batch] = True
        seconds = (time.perf_counter() - start) / len(cols)
        n_pos = y_l.sum(axis=0)
        for k, j in enumerate(cols):
            out["strategy"].append(unit.strategy)
            out["schedule"].append(unit.schedule)
            out["repetition"].append(rep.index)
            out["concept"].append(data.concepts[j])
            out["round"].append(r)
            out["labels"].append(int(n_labels))
            out["n_positive"].append(int(n_pos[k]))
            for m in METRICS:
                out[f"test_{m}"].append(float(test[m][k]))
                out[f"pool_{m}"].append(float(pool_m[m][k]))
            out["kappa"].append(float(kappa[k]))
            out["uncertainty"].append(float(uncertainty[k]))
            out["oof_ap"].append(float(oof[k]))
            out["seconds"].append(seconds)


@dataclass
class SimulationResult:
    """Everything a simulation produced.

    Attributes
    ----------
    curves : pandas.DataFrame
        :data:`CURVE_COLUMNS`, one row per (strategy, schedule, repetition, concept, round).
    reference : pandas.DataFrame
        Test metrics of the whole-pool model: repetition, concept, ``ap``, ``auc``, ...
    config : SimulationConfig
    concepts : tuple of str
    strategies, schedules : tuple of str
        In the order they were given (the first schedule is the one the report answers on).
    n_pool, n_test : int
        Clips in each repetition's pool and test split.
    skipped : dict of str to str
    seconds : float
        Wall time of the simulation.
    """

    curves: pd.DataFrame
    reference: pd.DataFrame
    config: SimulationConfig
    concepts: tuple[str, ...]
    strategies: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()
    n_pool: int = 0
    n_test: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = float("nan")


def reference_frame(data: SimulationData, repetitions: Sequence[Repetition]) -> pd.DataFrame:
    """The reference (whole-pool) model's test metrics, one row per (repetition, concept)."""
    rows = []
    for rep in repetitions:
        for j, concept in enumerate(data.concepts):
            rows.append({"repetition": rep.index, "concept": concept, **{m: float(rep.reference[m][j]) for m in METRICS}})
    return pd.DataFrame(rows)


def simulate(
    data: SimulationData,
    strategies: Sequence[str],
    schedules: Sequence[str | Schedule] = ("doubling5",),
    config: SimulationConfig | None = None,
    *,
    n_jobs: int = 1,
    concepts_per_unit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run every (strategy, schedule, repetition) on ``data``; in ``n_jobs`` processes if > 1.

    Parameters
    ----------
    data : SimulationData
        From :func:`make_data`.
    strategies : sequence of str
        Strategy specs (:func:`mlci.analysis.strategies.make_simulation_strategy`).
    schedules : sequence of str or Schedule, default=("doubling5",)
    config : SimulationConfig, default=None
    n_jobs : int, default=1
        Worker processes (joblib); units are independent, so results do not depend on it.
    concepts_per_unit : int, default=None
        See :func:`plan_units`.
    progress : callable, default=None
        Called with 1 after each unit (serial runs only).

    Returns
    -------
    SimulationResult
    """
    config = config or SimulationConfig()
    config.validate()
    names = [str(parse_schedule(s)) for s in schedules]
    if len(set(strategies)) != len(strategies) or len(set(names)) != len(names):
        raise ValueError(f"strategies and schedules must not repeat, got {list(strategies)} and {names}")
    started = time.perf_counter()
    reps = [prepare_repetition(data, r, config) for r in range(config.repetitions)]
    units = plan_units(strategies, names, len(data.concepts), config.repetitions, concepts_per_unit=concepts_per_unit)
    if n_jobs == 1:
        parts = []
        for u in units:
            parts.append(run_unit(data, reps[u.repetition], u, config))
            if progress:
                progress(1)
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs)(delayed(run_unit)(data, reps[u.repetition], u, config) for u in units)
    return collect_result(data, reps, parts, config, strategies, names, time.perf_counter() - started)


def collect_result(
    data: SimulationData,
    repetitions: Sequence[Repetition],
    parts: Sequence[pd.DataFrame],
    config: SimulationConfig,
    strategies: Sequence[str],
    schedules: Sequence[str],
    seconds: float = float("nan"),
) -> SimulationResult:
    """Assemble the units' curve tables (in any order) into a :class:`SimulationResult`."""
    curves = sort_curves(pd.concat(list(parts), ignore_index=True))
    return SimulationResult(
        curves=curves,
        reference=reference_frame(data, repetitions),
        config=config,
        concepts=data.concepts,
        strategies=tuple(strategies),
        schedules=tuple(str(s) for s in schedules),
        n_pool=len(repetitions[0].pool) if repetitions else 0,
        n_test=len(repetitions[0].test) if repetitions else 0,
        skipped=dict(data.skipped),
        seconds=seconds,
    )


def sort_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Curves in a canonical row order (so results compare equal however units were scheduled)."""
    return curves.sort_values(["strategy", "schedule", "repetition", "concept", "round"], kind="stable").reset_index(drop=True)


def with_config(config: SimulationConfig | None, **changes) -> SimulationConfig:
    """``config`` (or the default) with ``changes`` applied."""
    return replace(config or SimulationConfig(), **changes)

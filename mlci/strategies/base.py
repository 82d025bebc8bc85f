"""The query-strategy interface: one abstract class, one method, ``query``."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

from mlci.strategies.exceptions import (
    LabelLeakError,
    MissingScoresError,
    NotEnoughLabelsError,
    PoolExhaustedError,
)
from mlci.strategies.pool import LabeledSet, Pool, Selection
from mlci.strategies.ranking import (
    available_mask,
    check_batch_size,
    check_policy,
    rank_by_policy,
)

__all__ = ["QueryStrategy", "UtilityStrategy", "as_generator", "seed_from", "available_rows", "scatter"]


def as_generator(random_state) -> np.random.Generator:
    """A ``numpy.random.Generator`` from None, an int, a Generator or a legacy RandomState."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**32 - 1, dtype=np.uint64))
    try:
        return np.random.default_rng(random_state)
    except TypeError as exc:
        raise TypeError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}") from exc


def seed_from(rng: np.random.Generator) -> int:
    """An int seed for a scikit-learn estimator, drawn from ``rng``."""
    return int(rng.integers(2**31 - 1))


def available_rows(X: np.ndarray, available: np.ndarray | None) -> np.ndarray:
    """The rows of ``X`` that may be selected (``X`` itself, uncopied, when all may)."""
    return X if available is None else X[available]


def scatter(values: np.ndarray, available: np.ndarray | None) -> np.ndarray:
    """Per-clip values computed on the available rows, back at pool positions (``-inf`` elsewhere)."""
    if available is None:
        return values
    out = np.full((available.size,) + values.shape[1:], -np.inf)
    out[available] = values
    return out


class QueryStrategy(ABC):
    """Chooses which unlabeled clips are most worth labeling next.

    Subclasses implement :meth:`query`. Their ``__init__`` only stores its keyword arguments under
    the same names (scikit-learn style); parameters are checked by :meth:`validate_params`, which
    ``query`` calls first and :func:`~mlci.strategies.get_strategy` calls at construction.
    """

    #: What a clip chosen by this strategy is offered for (the batch table's ``reason``).
    reason: ClassVar[str] = "uncertain"

    @abstractmethod
    def query(
        self,
        pool: Pool,
        *,
        labeled: LabeledSet | None = None,
        batch_size: int,
        exclude: Iterable[str] = (),
        random_state=None,
    ) -> Selection:
        """Choose ``batch_size`` clips of ``pool``, best first.

        Parameters
        ----------
        pool : Pool
            Unlabeled clips (no labels by construction).
        labeled : LabeledSet, default=None
            Clips with consensus labels, for strategies that fit on them or measure distance to them.
        batch_size : int
            Number of clips to return.
        exclude : iterable of str, default=()
            Keys never to select (e.g. clips in a batch that is still out).
        random_state : None, int or numpy.random.Generator, default=None
            Seed of any randomness; with an int the selection is reproducible.

        Returns
        -------
        Selection

        Raises
        ------
        PoolExhaustedError
            When fewer than ``batch_size`` clips remain after exclusions.
        """

    def validate_params(self) -> None:
        """Raise ValueError naming a parameter whose value is not allowed (default: nothing to check)."""

    def get_params(self) -> dict:
        """The constructor parameters and their current values (for logs and batch manifests)."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # Shared checks: every query starts here.
    def _prepare(self, pool, labeled, batch_size, exclude) -> tuple[int, np.ndarray | None]:
        if isinstance(pool, LabeledSet):
            raise LabelLeakError(f"{type(self).__name__}.query got a LabeledSet as pool: a pool carries no labels")
        if not isinstance(pool, Pool):
            raise TypeError(f"pool must be a Pool, got {type(pool).__name__}")
        if labeled is not None:
            if not isinstance(labeled, LabeledSet):
                raise TypeError(f"labeled must be a LabeledSet or None, got {type(labeled).__name__}")
            if len(labeled) and labeled.X.shape[1] != pool.X.shape[1]:
                raise ValueError(
                    f"labeled has {labeled.X.shape[1]} features but the pool has {pool.X.shape[1]}"
                )
        self.validate_params()
        batch_size = check_batch_size(batch_size)
        available = available_mask(pool.keys, exclude)
        n_available = len(pool) if available is None else int(available.sum())
        if n_available < batch_size:
            raise PoolExhaustedError(n_available, batch_size)
        return batch_size, available

    def _proba(self, pool: Pool) -> np.ndarray:
        if pool.proba is None:
            raise MissingScoresError(type(self).__name__)
        return pool.proba

    def _labeled(self, labeled: LabeledSet | None, minimum: int) -> LabeledSet:
        got = 0 if labeled is None else len(labeled)
        if got < minimum:
            raise NotEnoughLabelsError(type(self).__name__, minimum, got)
        return labeled

    def _selection(self, pool: Pool, indices, utility, concept=None, reason=None) -> Selection:
        indices = np.asarray(indices, dtype=np.int64)
        reasons = np.full(indices.size, reason or self.reason, dtype=object) if np.ndim(reason) == 0 else reason
        return Selection(
            indices=indices,
            keys=pool.keys[indices],
            utility=np.asarray(utility, dtype=np.float64),
            reason=np.asarray(reasons, dtype=object),
            concept=np.full(indices.size, -1, dtype=np.int64) if concept is None else np.asarray(concept, np.int64),
        )


class UtilityStrategy(QueryStrategy):
    """A strategy that scores every clip and takes the best ``batch_size`` (per the policy).

    Subclasses implement :meth:`utility`. Those that score per concept take ``policy`` and
    ``quotas`` parameters (see :mod:`mlci.strategies.ranking`).
    """

    @abstractmethod
    def utility(self, pool: Pool, labeled: LabeledSet | None, available: np.ndarray | None, rng) -> np.ndarray:
        """Utility per clip, shape (n_clips,) or (n_clips, n_concepts); higher = more worth labeling.

        Entries of unavailable clips are ignored (a strategy may leave them ``-inf``).
        """

    def validate_params(self) -> None:
        if hasattr(self, "policy"):
            check_policy(self.policy, self.quotas)

    def query(self, pool, *, labeled=None, batch_size, exclude=(), random_state=None) -> Selection:
        batch_size, available = self._prepare(pool, labeled, batch_size, exclude)
        utility = self.utility(pool, labeled, available, as_generator(random_state))
        indices, selected, concept = rank_by_policy(
            utility,
            batch_size,
            available=available,
            policy=getattr(self, "policy", "max"),
            quotas=getattr(self, "quotas", None),
        )
        return self._selection(pool, indices, selected, concept)

    query.__doc__ = QueryStrategy.query.__doc__

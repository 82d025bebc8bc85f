"""Errors raised by query strategies; each message carries the numbers or names that explain it."""

from __future__ import annotations

__all__ = [
    "StrategyError",
    "PoolExhaustedError",
    "MissingScoresError",
    "NotEnoughLabelsError",
    "LabelLeakError",
    "UnknownStrategyError",
]


class StrategyError(Exception):
    """Base class of every query-strategy error."""


class PoolExhaustedError(StrategyError, ValueError):
    """Fewer selectable clips than the batch asks for (after exclusions)."""

    def __init__(self, available: int, requested: int):
        self.available, self.requested = available, requested
        super().__init__(f"pool exhausted: {available} available, {requested} requested")


class MissingScoresError(StrategyError, ValueError):
    """The strategy ranks by model scores but the pool has none (``pool.proba is None``)."""

    def __init__(self, strategy: str):
        self.strategy = strategy
        super().__init__(
            f"{strategy} ranks by per-concept probabilities but the pool has none (pool.proba is None); "
            "score the pool first, e.g. with mlci.strategies.linear_scoring.linear_proba"
        )


class NotEnoughLabelsError(StrategyError, ValueError):
    """The strategy is fitted on labeled clips and got too few of them."""

    def __init__(self, strategy: str, required: int, got: int):
        self.strategy, self.required, self.got = strategy, required, got
        super().__init__(f"{strategy} needs at least {required} labeled clips, got {got}")


class LabelLeakError(StrategyError, TypeError):
    """Labels were offered where only unlabeled data is allowed (a :class:`~mlci.strategies.Pool`)."""


class UnknownStrategyError(StrategyError, KeyError):
    """No strategy is registered under the name."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"unknown query strategy {name!r}; known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return self.args[0]

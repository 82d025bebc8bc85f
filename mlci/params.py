"""Checks of the flows' parameters, run before any lock, write or registration.

A nightly with a misspelt strategy used to take the lock, train and register a model version,
then fail at the round. Every flow and every CLI command now calls these checks first. The valid
values come from the registries themselves (strategies, estimators, consensus methods,
modalities), so there is one list of each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "ParameterError",
    "check_nightly_params",
    "check_round_params",
    "consensus_methods",
    "estimators",
    "modalities",
    "strategies",
]


class ParameterError(ValueError):
    """One or more flow parameters are invalid; the message lists every problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def strategies() -> list[str]:
    """Names of the registered query strategies."""
    from mlci.strategies import STRATEGIES

    return sorted(STRATEGIES)


def estimators() -> list[str]:
    """Names of the per-concept estimators."""
    from mlci.models import ESTIMATORS

    return sorted(ESTIMATORS)


def consensus_methods() -> list[str]:
    """Names of the consensus methods."""
    from mlci.consensus import METHODS

    return list(METHODS)


def modalities() -> list[str]:
    """Feature modalities a model can train on."""
    from mlci.models import MODALITIES

    return list(MODALITIES)


def _choice(problems: list[str], name: str, value: Any, valid: Callable[[], list[str]]) -> None:
    names = valid()
    if value not in names:
        problems.append(f"{name} must be one of {', '.join(names)}, but got {value!r}")


def _number(problems: list[str], name: str, value: Any, *, low: float, high: float | None = None,
            integer: bool = False, low_inclusive: bool = True) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and <= {high}" if high is not None else "")
        problems.append(f"{name} must be {'an integer' if integer else 'a number'} {bound}, but got {value!r}")


def _round_problems(*, strategy: str, strategy_params: dict[str, Any] | None, batch_size: Any,
                    relabel_share: Any, open_batch_days: Any, random_state: Any) -> list[str]:
    problems: list[str] = []
    if strategy not in strategies():
        _choice(problems, "strategy", strategy, strategies)
    else:
        from mlci.strategies import get_strategy

        try:
            get_strategy(strategy, **dict(strategy_params or {}))
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    _number(problems, "batch_size", batch_size, low=1, integer=True)
    _number(problems, "relabel_share", relabel_share, low=0, high=1)
    _number(problems, "open_batch_days", open_batch_days, low=0, low_inclusive=False)
    _number(problems, "random_state", random_state, low=0, integer=True)
    return problems


def _store_problems(store: str | None) -> list[str]:
    if store is None:
        return []
    from mlci.config import Settings

    try:
        Settings(store=store).open_store()
    except (ValueError, OSError) as exc:
        return [f"store {store!r}: {exc}"]
    return []


def check_round_params(
    *,
    store: str | None = None,
    strategy: str,
    strategy_params: dict[str, Any] | None = None,
    batch_size: Any,
    relabel_share: Any,
    modality: str = "combined",
    open_batch_days: Any = 7.0,
    random_state: Any = 0,
) -> None:
    """Check the round's parameters; raise :class:`ParameterError` listing every problem."""
    problems = _store_problems(store)
    problems += _round_problems(strategy=strategy, strategy_params=strategy_params, batch_size=batch_size,
                                relabel_share=relabel_share, open_batch_days=open_batch_days,
                                random_state=random_state)
    _choice(problems, "modality", modality, modalities)
    if problems:
        raise ParameterError(problems)


def check_nightly_params(
    *,
    store: str | None = None,
    strategy: str,
    strategy_params: dict[str, Any] | None = None,
    batch_size: Any,
    relabel_share: Any,
    consensus_method: str,
    estimator: str,
    modality: str,
    tolerance: Any,
    open_batch_days: Any,
    lock_ttl_hours: Any,
    random_state: Any,
) -> None:
    """Check every nightly parameter; raise :class:`ParameterError` listing every problem."""
    problems = _store_problems(store)
    problems += _round_problems(strategy=strategy, strategy_params=strategy_params, batch_size=batch_size,
                                relabel_share=relabel_share, open_batch_days=open_batch_days,
                                random_state=random_state)
    _choice(problems, "consensus_method", consensus_method, consensus_methods)
    _choice(problems, "estimator", estimator, estimators)
    _choice(problems, "modality", modality, modalities)
    _number(problems, "tolerance", tolerance, low=0)
    _number(problems, "lock_ttl_hours", lock_ttl_hours, low=0, low_inclusive=False)
    if problems:
        raise ParameterError(problems)

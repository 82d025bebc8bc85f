"""Checks of the flows' parameters, run before any lock, write or registration.

A nightly with a misspelt strategy used to take the lock, train and register a model version,
then fail at the round. Every flow and every CLI command now starts with :func:`settings_for_run`,
which applies the run's parameters to the settings and checks the result. The valid
values come from the registries themselves (strategies, estimators, consensus methods,
modalities), so there is one list of each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mlci.config import AdvisorSettings, RoundSettings, Settings, TrainingSettings

__all__ = [
    "ParameterError",
    "check_params",
    "settings_for_run",
    "consensus_methods",
    "estimators",
    "modalities",
    "modality_problem",
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


def modality_problem(modality: Any) -> str | None:
    """Why ``modality`` is not one a model can train on, or None: one of :func:`modalities`, or one
    of them beside imported embeddings (``combined+embeddings:<source>``, docs/features.md)."""
    if isinstance(modality, str) and "+" in modality:
        from mlci.features.imported import split_embeddings_modality

        try:
            split_embeddings_modality(modality)
        except ValueError as exc:
            return str(exc)
        return None
    problems: list[str] = []
    _choice(problems, "modality", modality, modalities)
    return problems[0] if problems else None


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


def _round_problems(problems: list[str], config: RoundSettings) -> None:
    if config.strategy not in strategies():
        _choice(problems, "strategy", config.strategy, strategies)
    else:
        from mlci.strategies import get_strategy

        try:
            get_strategy(config.strategy, **dict(config.strategy_params or {}))
        except (TypeError, ValueError) as exc:
            problems.append(str(exc))
    _number(problems, "batch_size", config.batch_size, low=1, integer=True)
    _number(problems, "relabel_share", config.relabel_share, low=0, high=1)
    _number(problems, "open_batch_days", config.open_batch_days, low=0, low_inclusive=False)


def _training_problems(problems: list[str], config: TrainingSettings) -> None:
    _choice(problems, "consensus_method", config.consensus_method, consensus_methods)
    _choice(problems, "estimator", config.estimator, estimators)
    problem = modality_problem(config.modality)
    if problem:
        problems.append(problem)
    _number(problems, "tolerance", config.tolerance, low=0)
    _number(problems, "min_new_labels", config.min_new_labels, low=1, integer=True)


def _advisor_problems(problems: list[str], config: AdvisorSettings) -> None:
    from mlci.advisor import ADVICE_RULES

    _choice(problems, "stop_rule", config.stop_rule, lambda: list(ADVICE_RULES))
    _number(problems, "kappa_threshold", config.kappa_threshold, low=0, high=1, low_inclusive=False)
    _number(problems, "stop_window", config.stop_window, low=1, integer=True)
    _number(problems, "uncertainty_threshold", config.uncertainty_threshold, low=0, high=1)
    _number(problems, "plateau_delta", config.plateau_delta, low=0)
    _number(problems, "min_positives", config.min_positives, low=1, integer=True)
    _number(problems, "stop_set_size", config.stop_set_size, low=1, integer=True)
    if config.label_budget is not None:
        _number(problems, "label_budget", config.label_budget, low=1, integer=True)


def _store_problems(problems: list[str], settings: Settings) -> None:
    if settings.store is None:
        return
    try:
        settings.open_store()
    except (ValueError, OSError) as exc:
        problems.append(f"store {settings.store!r}: {exc}")


def check_params(settings: Settings) -> None:
    """Check the store and every section of ``settings``; raise :class:`ParameterError` listing
    every problem."""
    problems: list[str] = []
    _store_problems(problems, settings)
    _round_problems(problems, settings.round)
    _training_problems(problems, settings.training)
    _number(problems, "lock_ttl_hours", settings.schedule.lock_ttl_hours, low=0, low_inclusive=False)
    _advisor_problems(problems, settings.advisor)
    _number(problems, "random_state", settings.random_state, low=0, integer=True)
    if problems:
        raise ParameterError(problems)


def settings_for_run(store: str | None, **parameters: Any) -> Settings:
    """The settings a run uses: ``MLCI_*``, with ``store`` and every parameter that is not None applied.

    Flows call it first, and the command line before it starts a flow, so a bad parameter and a
    bad ``MLCI_*`` default get the same message before anything is locked, written or registered.

    Raises
    ------
    ParameterError
        Listing every problem, a setting that does not validate included.
    """
    from pydantic import ValidationError

    try:
        settings = Settings.for_store(store)
    except ValidationError as exc:  # inputs are hidden; messages redact URLs (mlci.config)
        raise ParameterError([f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None
    settings = settings.with_overrides(**parameters)
    check_params(settings)
    return settings

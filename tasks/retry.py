"""Retry conditions shared by the tasks: retry I/O failures, never failures caused by the input."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["retry_only", "retry_unless"]

#: Exceptions that say the input is wrong: a retry would fail the same way.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, LookupError)


def _raised(state) -> BaseException | None:
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as err:  # an unreadable result: treat it as I/O
            exc = err
    return exc if isinstance(exc, BaseException) else None


def retry_only(*io_errors: type[BaseException]) -> Callable:
    """A Prefect ``retry_condition_fn`` that retries only when the task raised one of ``io_errors``."""

    def condition(task, task_run, state) -> bool:
        return isinstance(_raised(state), io_errors)

    return condition


def retry_unless(*input_errors: type[BaseException]) -> Callable:
    """A Prefect ``retry_condition_fn`` that retries unless the task raised one of ``input_errors``
    (or one of :data:`INPUT_ERRORS`)."""
    dont_retry = INPUT_ERRORS + input_errors

    def condition(task, task_run, state) -> bool:
        return not isinstance(_raised(state), dont_retry)

    return condition

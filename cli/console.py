"""What a flow command shows while it runs: one line per step by default, Prefect's log with ``--verbose``.

Tasks mark the log record that ends a step (:func:`mlci.reporting.ends_step`) and the records that
report progress (:func:`mlci.reporting.reports_progress`). By default :func:`flow_console` prints
each step's record as one line, redraws a single progress line on a terminal, and lowers Prefect's
and MLflow's own console output to warnings. The run's whole log still reaches Prefect's API (the
UI shows it): only what the terminal shows changes. With ``verbose``, Prefect's console is left as
it is. Either way an expected error's traceback stays out of the console (the run's log keeps it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from typing import Annotated, TextIO

import typer

from cli.common import command_errors, is_expected
from mlci.reporting import PROGRESS, STEP

__all__ = ["VerboseOption", "flow_console", "quiet_prefect_and_mlflow"]

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Print Prefect's log of the run (default: one line per step).")
]

# Prefect builds its console handler from this variable when it sets up logging (at the first run).
_PREFECT_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
_MLFLOW_LEVEL = "MLFLOW_LOGGING_LEVEL"


@contextlib.contextmanager
def flow_console(*, verbose: bool = False, progress_line: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """Run a flow inside: quiet console unless ``verbose``; expected errors end the command in one line.

    ``progress_line`` False: the command draws its own progress bar (progress records are not shown).
    """
    quiet = _QuietExpectedTracebacks()
    with contextlib.ExitStack() as stack:
        if not verbose:
            stack.enter_context(_one_line_per_step(stream or sys.stderr, progress_line))
        for handler in _prefect_consoles():  # importing a flow has set Prefect's logging up
            handler.addFilter(quiet)
            stack.callback(handler.removeFilter, quiet)
        with command_errors():
            yield


def quiet_prefect_and_mlflow() -> None:
    """Cut Prefect's and MLflow's console output to warnings, for the rest of the process (Prefect
    reports stopping its temporary server at exit, after the command's work)."""
    os.environ[_PREFECT_CONSOLE_LEVEL] = os.environ[_MLFLOW_LEVEL] = "WARNING"
    for handler in _prefect_consoles():
        handler.setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


@contextlib.contextmanager
def _one_line_per_step(stream: TextIO, progress_line: bool) -> Iterator[None]:
    quiet_prefect_and_mlflow()
    steps = _StepLines(stream, progress_line=progress_line)
    logging.getLogger().addHandler(steps)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(steps)
        steps.close()


class _StepLines(logging.Handler):
    """Prints the records that end a step, one line each; redraws one progress line on a terminal."""

    def __init__(self, stream: TextIO, *, progress_line: bool = True) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.tty = stream.isatty()
        self.progress_line = progress_line and self.tty
        self._progress_shown = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno != logging.INFO:
            return  # warnings and errors: Prefect's console prints them
        try:
            if hasattr(record, STEP):
                self._clear_progress()
                self.stream.write(self._fit(f"  {record.getMessage()}") + "\n")
            elif hasattr(record, PROGRESS) and self.progress_line:
                done, total, unit = getattr(record, PROGRESS)
                self._clear_progress()
                self.stream.write(self._fit(f"  {getattr(record, 'flow_name', '')} {done}/{total} {unit}"))
                self._progress_shown = True
            else:
                return
            self.stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._clear_progress()
            self.stream.flush()
        super().close()

    def _clear_progress(self) -> None:
        if self._progress_shown:
            self.stream.write("\r\x1b[K")
            self._progress_shown = False

    def _fit(self, line: str) -> str:
        # A terminal gets one line per step (the whole message is in Prefect's log); a file all of it.
        if not self.tty:
            return line
        width = shutil.get_terminal_size().columns
        return line if len(line) <= width else line[: width - 1] + "…"


class _QuietExpectedTracebacks(logging.Filter):
    """Drops the traceback (not the line) of log records about an expected error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_expected(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def _prefect_consoles() -> list[logging.Handler]:
    # Prefect's console handler sits on the root logger (and on uvicorn's and fastapi's).
    return [h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"]

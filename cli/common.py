"""What every ``mlci`` command shares: the ``--store`` option, settings, one-line errors, tables.

Errors a user can cause or fix (a bad store, an unreachable server, missing labels) end a command
with one line, ``error: <what happened>: <what to do>``, on stderr and exit status 1; every URL in it
is redacted (:mod:`mlci.redact`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, NoReturn, Optional

import typer

from mlci import params
from mlci.config import RoundSettings, ScheduleSettings, Settings, TrainingSettings
from mlci.redact import redact_text

__all__ = [
    "BatchSizeOption",
    "ConsensusMethodOption",
    "EXIT_INCOMPLETE",
    "EXIT_SKIPPED",
    "EstimatorOption",
    "ExtractorOption",
    "ExtractorParamOption",
    "JsonOption",
    "LockTtlOption",
    "ModalityOption",
    "OpenBatchDaysOption",
    "RandomStateOption",
    "RelabelShareOption",
    "StoreOption",
    "StrategyOption",
    "StrategyParamOption",
    "ToleranceOption",
    "checked_settings",
    "command_errors",
    "configured_default",
    "describe",
    "fail",
    "is_expected",
    "one_of",
    "open_store_for",
    "parse_params",
    "print_json",
    "print_table",
    "registry_choice",
    "run_settings",
    "settings_for",
]

#: Exit status of a flow command that ran to the end but skipped work (see docs/operations.md).
EXIT_INCOMPLETE = 3
#: Exit status of a run that did nothing because another run holds the store lock.
EXIT_SKIPPED = 4


def registry_choice(load: Callable[[], Sequence[str]]) -> Callable[[str], str]:
    """A typer ``parser`` accepting one of a registry's names, read on first use (the registries
    import scikit-learn, which a command that does not take the option should not pay for)."""

    def parse(value: str) -> str:
        names = list(load())
        if value not in names:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(names)}")
        return value

    return parse


def one_of(*names: str) -> Callable[[str], str]:
    """A typer ``parser`` accepting one of ``names`` (a wrong value is refused with the list)."""
    return registry_choice(lambda: names)


StoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URI (folder, file://..., s3://bucket/prefix). Default: MLCI_STORE."),
]
# Options default to None: "as configured". The help shows the variable and its built-in default,
# read from the settings sections, so no default is spelled twice. Valid names are read from the
# registries when an option is parsed: a wrong name is refused with the list.
def configured_default(section: type, name: str) -> str:
    """Help text of an option that defaults to a setting: its variable and built-in default."""
    prefix = {RoundSettings: "ROUND", TrainingSettings: "TRAINING", ScheduleSettings: "SCHEDULE"}[section]
    return f"MLCI_{prefix}__{name.upper()} or {section.model_fields[name].get_default(call_default_factory=True)}"


StrategyOption = Annotated[
    Optional[str], typer.Option("--strategy", parser=registry_choice(params.strategies), metavar="NAME",
                                show_default=configured_default(RoundSettings, "strategy"),
                                help="Query strategy (docs/strategies.md).")
]
EstimatorOption = Annotated[
    Optional[str], typer.Option("--estimator", parser=registry_choice(params.estimators), metavar="NAME",
                                show_default=configured_default(TrainingSettings, "estimator"),
                                help="Per-concept classifier (docs/models.md).")
]
ConsensusMethodOption = Annotated[
    Optional[str], typer.Option("--consensus-method", parser=registry_choice(params.consensus_methods),
                                metavar="NAME", show_default=configured_default(TrainingSettings, "consensus_method"),
                                help="How annotators' answers become one label (docs/labels.md).")
]


def _modality(value: str) -> str:
    if "+" not in value:
        return registry_choice(params.modalities)(value)
    problem = params.modality_problem(value)  # beside imported embeddings: combined+embeddings:<source>
    if problem:
        raise typer.BadParameter(problem)
    return value


ModalityOption = Annotated[
    Optional[str], typer.Option("--modality", parser=_modality, metavar="NAME",
                                show_default=configured_default(TrainingSettings, "modality"),
                                help="Features to train on (audio, video or combined; combined+embeddings:<source> "
                                     "adds imported embeddings).")
]
BatchSizeOption = Annotated[
    Optional[int], typer.Option("--batch-size", min=1, show_default=configured_default(RoundSettings, "batch_size"),
                                help="Clips per batch.")
]
RelabelShareOption = Annotated[
    Optional[float], typer.Option("--relabel-share", min=0, max=1,
                                  show_default=configured_default(RoundSettings, "relabel_share"),
                                  help="Share of the batch for clips whose consensus is uncertain.")
]
ToleranceOption = Annotated[
    Optional[float], typer.Option("--tolerance", min=0, show_default=configured_default(TrainingSettings, "tolerance"),
                                  help="Macro AP a challenger may lose against the champion and be promoted.")
]
LockTtlOption = Annotated[
    Optional[float], typer.Option("--lock-ttl-hours", min=0.01,
                                  show_default=configured_default(ScheduleSettings, "lock_ttl_hours"),
                                  help="A lock older than this is stale; a lock whose process is gone "
                                  "(same host) is taken over at once.")
]
ExtractorOption = Annotated[
    Optional[str], typer.Option("--extractor", help="Feature extractor: a registered name or package.module:Class.",
                                show_default=configured_default(TrainingSettings, "extractor"))
]
ExtractorParamOption = Annotated[
    Optional[list[str]], typer.Option("--param", metavar="NAME=VALUE", help="Extractor parameter; repeatable.")
]
StrategyParamOption = Annotated[
    Optional[list[str]], typer.Option("--strategy-param", metavar="NAME=VALUE",
                                      help="Query strategy parameter (docs/strategies.md); repeatable.")
]
OpenBatchDaysOption = Annotated[
    Optional[float], typer.Option("--open-batch-days", min=0, show_default=configured_default(RoundSettings, "open_batch_days"),
                                  help="Days a published batch's unanswered clips are not offered again.")
]
RandomStateOption = Annotated[
    Optional[int], typer.Option("--random-state", min=0, show_default="MLCI_RANDOM_STATE or 0",
                                help="Seed of cross-validation, estimators and strategies.")
]


def parse_params(pairs: list[str] | None, option: str = "--param") -> dict:
    """``["sample_fps=4", "skip_loop_filter=false"]`` -> ``{"sample_fps": 4, "skip_loop_filter": False}``.

    Values are read as JSON when they parse (numbers, true/false, null), else kept as strings.
    """
    params: dict = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{option} must look like name=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[name.strip()] = value
    return params


def run_settings(store: str | None, **parameters: Any) -> Settings:
    """The settings a command's flow will run with (:func:`mlci.params.settings_for_run`); a problem
    ends the command with one ``error:`` line listing every problem."""
    try:
        return params.settings_for_run(store, **parameters)
    except params.ParameterError as exc:
        fail(str(exc))


def checked_settings(store: str | None, **parameters: Any) -> Settings:
    """:func:`run_settings` on a store that exists: a bad run ends here, before Prefect starts."""
    settings = run_settings(store, **parameters)
    open_store_for(settings)
    return settings


def fail(message: str) -> NoReturn:
    """Print a one-line, redacted error and exit with status 1 (no stack trace for expected errors)."""
    line = " ".join(redact_text(str(message)).split())
    typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is an error of the input, the configuration or the environment (not a bug)."""
    if type(exc).__module__.split(".", 1)[0] == "mlci":
        return True
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is not None and isinstance(exc, mlflow_exceptions.MlflowException):
        return True
    if isinstance(exc, (KeyError, IndexError)):  # a missing key from outside mlci is a bug
        return False
    # ImportError: an optional package (an extractor's, prefect-dask) that is not installed.
    return isinstance(exc, (OSError, ValueError, LookupError, ImportError))


def describe(exc: BaseException) -> str:
    """The message of ``exc`` for an ``error:`` line (settings errors name their variable)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        error = exc.errors(include_input=False)[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        return f"MLCI_{str(error['loc'][0]).upper()}: {message}"
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]  # str(KeyError) would quote it
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def command_errors() -> Iterator[None]:
    """Turn expected errors raised in the block into :func:`fail` (flows run in :func:`cli.console.flow_console`)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        if not is_expected(exc):
            raise
        fail(describe(exc))


def settings_for(store: str | None) -> Settings:
    """Settings from the environment, with ``--store`` applied; a bad setting ends the command."""
    with command_errors():
        return Settings.for_store(store)


def open_store_for(settings: Settings, *, create: bool = False):
    """The configured store, which must exist unless ``create`` (only ``demo-data`` creates a store).

    A mistyped folder would otherwise become a new empty store; an unreachable endpoint, a missing
    bucket or an invalid URI ends the command with one line.
    """
    with command_errors():
        return settings.open_store(must_exist=not create)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]


def _cell(value) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if hasattr(value, "strftime"):  # a time: to the second, its zone as an offset
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    return str(value)


def _clip(text: str, width: int) -> str:
    # Cut the middle: a reason code leads a message and a file name ends a path; both stay readable.
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def print_table(df, *, max_width: int = 60) -> None:
    """A table through rich: numbers right-aligned to 3 decimals, missing values as ``-``.

    Piped into a file or another program, lines are never wrapped (a log keeps whole rows).
    """
    import pandas as pd
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = sys.stdout.isatty()
    table = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False, header_style="bold")
    for column in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column])
        table.add_column(str(column), justify="right" if numeric else "left", no_wrap=True)
    for row in df.itertuples(index=False):
        table.add_row(*(_clip(_cell(v), max_width) for v in row))
    if tty:
        Console(soft_wrap=False).print(table)
        return
    console = Console(file=io.StringIO(), width=100_000, color_system=None)
    console.print(table)
    typer.echo("\n".join(line.rstrip() for line in console.file.getvalue().splitlines()))


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (NaN becomes null; timestamps become ISO strings)."""
    import json
    import math

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if hasattr(value, "item"):  # a numpy scalar
            return clean(value.item())
        return value

    typer.echo(json.dumps(clean(data), indent=2))

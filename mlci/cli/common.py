"""What every ``mlci`` command shares: the ``--store`` option, settings, one-line errors, tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Optional

import typer

from mlci import params
from mlci.config import Settings

__all__ = [
    "EXIT_INCOMPLETE",
    "EXIT_SKIPPED",
    "BatchSizeOption",
    "ConsensusMethodOption",
    "EstimatorOption",
    "LockTtlOption",
    "ModalityOption",
    "RelabelShareOption",
    "StoreOption",
    "StrategyOption",
    "fail",
    "print_table",
    "registry_choice",
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


StoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URI (folder, file://..., s3://bucket/prefix). Default: MLCI_STORE."),
]
# The valid names are read from the registries when an option is parsed, so help texts do not
# repeat them: a wrong name is refused with the list.
StrategyOption = Annotated[
    str, typer.Option("--strategy", parser=registry_choice(params.strategies), metavar="NAME",
                      help="Query strategy (docs/strategies.md).")
]
EstimatorOption = Annotated[
    str, typer.Option("--estimator", parser=registry_choice(params.estimators), metavar="NAME",
                      help="Per-concept classifier (docs/models.md).")
]
ConsensusMethodOption = Annotated[
    str, typer.Option("--consensus-method", parser=registry_choice(params.consensus_methods), metavar="NAME",
                      help="How annotators' answers become one label (docs/labels.md).")
]
ModalityOption = Annotated[
    str, typer.Option("--modality", parser=registry_choice(params.modalities), metavar="NAME",
                      help="Features to train on (audio, video or combined).")
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Clips per batch.")]
RelabelShareOption = Annotated[
    float, typer.Option("--relabel-share", min=0, max=1, help="Share of the batch for relabeling.")
]
LockTtlOption = Annotated[
    float, typer.Option("--lock-ttl-hours", min=0.01, help="A lock older than this is stale; a lock whose "
                        "process is gone (same host) is taken over at once.")
]


def settings_for(store: str | None) -> Settings:
    """Settings from the environment, with ``--store`` applied."""
    return Settings(store=store) if store else Settings()


def fail(message: str) -> None:
    """Print a one-line error and exit with status 1 (no stack trace for expected errors)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value == value else "-"
    return str(value)


def _clip(text: str, width: int) -> str:
    # Cut the middle: a reason code leads a message and a file name ends a path; both stay readable.
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def print_table(df, *, max_width: int = 60) -> None:
    """A plain aligned table (readable in logs, no extra dependency)."""
    cols = [str(c) for c in df.columns]
    rows = [[_clip(_cell(v), max_width) for v in row] for row in df.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)))

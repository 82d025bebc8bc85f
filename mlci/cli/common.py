"""What every ``mlci`` command shares: the ``--store`` option, settings, one-line errors, tables."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlci.config import Settings

__all__ = ["StoreOption", "settings_for", "fail", "print_table"]

StoreOption = Annotated[
    Optional[str],
    typer.Option("--store", help="Store URI (folder, file://..., s3://bucket/prefix). Default: MLCI_STORE."),
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

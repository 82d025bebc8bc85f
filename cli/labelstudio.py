"""``mlci labelstudio``: the catalog's project, publishing batches, pulling answers, status.

Each command is one library call (no Prefect): quick to run by hand between nightly runs, which do
the same two steps themselves when ``MLCI_LABEL_STUDIO_URL`` is set (docs/labelstudio.md).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.common import (
    StoreOption,
    command_errors,
    open_store_for,
    print_table,
    settings_for,
)

__all__ = ["app"]

app = typer.Typer(rich_markup_mode=None, help="Label Studio: the project, publishing batches, pulling answers (docs/labelstudio.md).",
                  no_args_is_help=True)


def _connect(store: str | None, *, create: bool = True):
    settings = settings_for(store)
    target = open_store_for(settings)
    from mlci.catalog import ClassCatalog
    from mlci.labelstudio import LabelStudioClient, ensure_project

    with command_errors():
        client = LabelStudioClient.from_settings(settings)
        project = ensure_project(client, ClassCatalog.from_json(settings.class_catalog),
                                 title=settings.label_studio_project, question=settings.labeling_question,
                                 create=create)
    return settings, target, client, project


@app.command("setup")
def setup_command(store: StoreOption = None) -> None:
    """Find or create the project of the class catalog (its interface generated from the catalog)."""
    settings, _, _, project = _connect(store)
    typer.echo(f"project {project['title']!r} (id {project['id']}): "
               f"{settings.label_studio_url.rstrip('/')}/projects/{project['id']}")


@app.command("publish")
def publish_command(
    round_ids: Annotated[Optional[list[str]], typer.Argument(
        help="Batches to publish. Default: every batch still out that is not in Label Studio yet.")] = None,
    store: StoreOption = None,
) -> None:
    """Import batches' tasks, with the model's predictions, into the project (each batch once)."""
    from datetime import timedelta

    from mlci.labelstudio import import_batch, rounds_to_import

    settings, target, client, project = _connect(store)
    with command_errors():
        if not round_ids:
            round_ids = rounds_to_import(target, open_for=timedelta(days=settings.round.open_batch_days))
        if not round_ids:
            typer.echo("nothing to publish: every batch still out is in Label Studio")
        for round_id in round_ids:
            typer.echo(import_batch(target, client, int(project["id"]), round_id).summary())


@app.command("pull")
def pull_command(store: StoreOption = None) -> None:
    """Write the project's new and changed answers under labels/ (ingested by `mlci labels ingest` or the nightly)."""
    from mlci.labelstudio import pull_annotations

    _, target, client, project = _connect(store, create=False)
    with command_errors():
        typer.echo(pull_annotations(target, client, int(project["id"])).summary())


@app.command("status")
def status_command(store: StoreOption = None) -> None:
    """The project, and per batch: tasks in Label Studio, tasks annotated, answers pulled (as of the last pull)."""
    from mlci.batches import published_rounds
    from mlci.labelstudio import batch_status

    settings, target, client, project = _connect(store, create=False)
    with command_errors():
        user = client.whoami()
        table = batch_status(target, [rid for rid, _ in published_rounds(target)])
    typer.echo(f"Label Studio {settings.label_studio_url} as user {user.get('id')}; "
               f"project {project['title']!r} (id {project['id']})")
    if table.empty:
        typer.echo("no batches published yet")
    else:
        print_table(table)

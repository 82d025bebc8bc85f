"""The ``mlci`` command line.

Every command takes ``--store`` (default: ``MLCI_STORE`` or ``./.mlci/store``). Commands that run a
flow import it lazily, so ``import mlci`` never imports Prefect.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlci.config import Settings

app = typer.Typer(
    name="mlci",
    help="Active learning for video clips: features, consensus labels, models, labeling batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

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


@app.command("demo-data")
def demo_data(
    store: StoreOption = None,
    clips: Annotated[int, typer.Option("--clips", min=1, help="Number of clips.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same corpus.")] = 0,
    duration: Annotated[float, typer.Option("--duration", min=0.5, help="Clip length in seconds.")] = 4.0,
    size: Annotated[str, typer.Option("--size", help="Frame size WxH, both even.")] = "160x120",
) -> None:
    """Write the demo corpus (clips, annotators' label files, ground truth) into the store."""
    from tqdm import tqdm

    from mlci.demo import DemoCorpusSpec, generate_demo_corpus
    from mlci.storage import StorageError

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"--size must look like 160x120, got {size!r}")
    settings = settings_for(store)
    spec = DemoCorpusSpec(
        n_clips=clips, seed=seed, duration=duration, size=(width, height), base_url=settings.clip_base_url
    )
    try:
        spec.validate()
        target = settings.open_store()
        with tqdm(total=clips, unit="clip", desc="encoding clips") as bar:
            summary = generate_demo_corpus(target, spec, progress=bar.update)
    except (ValueError, FileExistsError, StorageError) as exc:
        fail(str(exc))
    typer.echo(summary.format())


@app.command("demo")
def demo(store: StoreOption = None) -> None:
    """The main job on the embedded default: build the demo corpus and summarise it."""
    demo_data(store=store)
    settings = settings_for(store)
    typer.echo(f"\nstore: {settings.store_uri}")
    typer.echo(f"MLflow tracking store: {settings.tracking_uri}")


def main() -> None:  # pragma: no cover - console entry point
    app()

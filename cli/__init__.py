"""The ``mlci`` command line.

Every command takes ``--store`` (default: ``MLCI_STORE`` or ``./.mlci/store``); the store must
exist, except for ``demo-data`` and ``demo``, which create it. Commands that run a flow import it
lazily, so ``mlci --help`` and listing commands stay fast. Expected errors end a command with one ``error:``
line (:mod:`cli.common`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.analysis import analysis_command
from cli.common import (
    EXIT_INCOMPLETE,
    EXIT_SKIPPED,
    BatchSizeOption,
    ConsensusMethodOption,
    EstimatorOption,
    ExtractorOption,
    ExtractorParamOption,
    JsonOption,
    LockTtlOption,
    ModalityOption,
    OpenBatchDaysOption,
    RandomStateOption,
    RelabelShareOption,
    StoreOption,
    StrategyOption,
    StrategyParamOption,
    ToleranceOption,
    checked_settings,
    command_errors,
    describe,
    fail,
    open_store_for,
    parse_params,
    print_json,
    print_table,
    settings_for,
)
from cli.console import VerboseOption, flow_console
from cli.detect import detect_command
from cli.features import features_command
from cli.labels import app as labels_app
from cli.labels import consensus_command
from cli.labelstudio import app as labelstudio_app
from cli.models import models_command, relocate_command, train_command
from cli.serve import serve_command
from cli.status import status_command
from mlci.redact import redact_url

# rich_markup_mode=None: click's plain help, where a flag reads as a flag (typer's rich panels print a
# "<bool>" value beside every flag) - the look of the MLflow and Prefect server CLIs' help.
app = typer.Typer(
    rich_markup_mode=None,
    name="mlci",
    help="Active learning for video clips: features, consensus labels, models, labeling batches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import mlci

        typer.echo(f"mlci {mlci.__version__}")
        raise typer.Exit()


@app.callback()
def _environment(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print mlci's version and exit.")] = False,
) -> None:
    """Active learning for video clips: features, consensus labels, models, labeling batches."""
    from pydantic import ValidationError

    from mlci.config import Settings, apply_mlflow_environment
    from mlci.orchestrator import apply_prefect_environment

    try:
        settings = Settings()
    except ValidationError as exc:
        fail(describe(exc))
    # Before any command imports Prefect, which reads its settings once at import.
    apply_prefect_environment(settings.home)
    # MLflow reads its HTTP limits from the environment on every request (and served runs inherit it).
    apply_mlflow_environment(settings)

@app.command("demo-data")
def demo_data(
    store: StoreOption = None,
    clips: Annotated[int, typer.Option("--clips", min=1, help="Number of clips.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same corpus.")] = 0,
    duration: Annotated[float, typer.Option("--duration", min=0.5, help="Clip length in seconds.")] = 4.0,
    size: Annotated[str, typer.Option("--size", help="Frame size WxH, both even.")] = "160x120",
    video_minutes: Annotated[float, typer.Option("--video-minutes", min=0, max=120, help="Minutes of the long demo video for `mlci detect` (0: none).")] = 2.0,
) -> None:
    """Write the demo corpus (clips, annotators' label files, ground truth, a long video) into the store."""
    from tqdm import tqdm

    from mlci.demo import DemoCorpusSpec, generate_demo_corpus

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        fail(f"--size must look like 160x120, got {size!r}")
    settings = settings_for(store)
    spec = DemoCorpusSpec(
        n_clips=clips, seed=seed, duration=duration, size=(width, height), base_url=settings.clip_base_url,
        video_minutes=video_minutes,
    )
    with command_errors():
        spec.validate()
        target = open_store_for(settings, create=True)  # the one command that makes a new store
        with tqdm(total=clips, unit="clip", desc="encoding clips") as bar:
            summary = generate_demo_corpus(target, spec, progress=bar.update)
    typer.echo(summary.format())


@app.command("nightly")
def nightly_command(
    store: StoreOption = None,
    strategy: StrategyOption = None,
    strategy_param: StrategyParamOption = None,
    batch_size: BatchSizeOption = None,
    relabel_share: RelabelShareOption = None,
    open_batch_days: OpenBatchDaysOption = None,
    consensus_method: ConsensusMethodOption = None,
    estimator: EstimatorOption = None,
    modality: ModalityOption = None,
    extractor: ExtractorOption = None,
    param: ExtractorParamOption = None,
    tolerance: ToleranceOption = None,
    lock_ttl_hours: LockTtlOption = None,
    random_state: RandomStateOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the nightly flow once: labels, features, consensus, train and gate, publish a batch.

    Exit status: 0 done, 1 error, 3 ran to the end but skipped work (see the summary),
    4 skipped because another run holds the store lock.
    """
    try:
        strategy_params = parse_params(strategy_param, "--strategy-param") or None
        extractor_params = parse_params(param) or None
    except ValueError as exc:
        fail(str(exc))
    options = dict(strategy=strategy, strategy_params=strategy_params, batch_size=batch_size,
                   relabel_share=relabel_share, open_batch_days=open_batch_days, consensus_method=consensus_method,
                   estimator=estimator, modality=modality, extractor=extractor, extractor_params=extractor_params,
                   tolerance=tolerance, lock_ttl_hours=lock_ttl_hours, random_state=random_state)
    checked_settings(store, **options)
    from flows.nightly import nightly

    with flow_console(verbose=verbose):
        summary = nightly(store=store, **options, trigger="manual")
    typer.echo(summary.to_markdown())
    if summary.status == "skipped":
        raise typer.Exit(EXIT_SKIPPED)
    if summary.status == "incomplete":
        typer.secho(f"warning: the run skipped work: {summary.warnings[-1]}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_INCOMPLETE)


@app.command("round")
def round_command(
    store: StoreOption = None,
    strategy: StrategyOption = None,
    batch_size: BatchSizeOption = None,
    relabel_share: RelabelShareOption = None,
    modality: ModalityOption = None,
    random_state: RandomStateOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Publish a labeling batch from the current consensus and the champion model."""
    options = dict(strategy=strategy, batch_size=batch_size, relabel_share=relabel_share, modality=modality,
                   random_state=random_state)
    checked_settings(store, **options)
    from flows.round import round_flow

    with flow_console(verbose=verbose):
        result = round_flow(store=store, **options)
    typer.echo(result.summary())
    print_table(result.batch.head(10))


@app.command("unlock")
def unlock_command(
    name: Annotated[str, typer.Argument(help="Lock name.")] = "nightly",
    store: StoreOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Release a store lock by hand (after a crash on another host; a dead process on this host is handled)."""
    import getpass
    import socket

    from mlci.locks import StoreLock

    lock = StoreLock(settings_for(store).open_store(), name)
    holder = lock.holder()
    if holder is None or holder.released:
        typer.echo(f"lock {name!r} is not held")
        return
    if not yes:
        typer.confirm(f"release lock {name!r} held by {holder.describe()}?", abort=True)
    lock.force_release(by=f"{getpass.getuser()}@{socket.gethostname()}")
    typer.echo(f"released lock {name!r} (was held by {holder.owner})")


@app.command("batches")
def batches_command(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List published batches and how many of their clips have come back labeled."""
    target = open_store_for(settings_for(store))
    from mlci.batches import list_batches
    from mlci.labels import load_annotations

    with command_errors():
        listing = list_batches(target, load_annotations(target, current=False))
        if not listing.empty:
            from mlci.labelstudio import batch_status

            in_label_studio = batch_status(target, listing["round_id"])
            if in_label_studio["ls_project"].any():  # columns only for teams that use Label Studio
                listing = listing.merge(in_label_studio, on="round_id", how="left")
    if as_json:
        print_json(listing.to_dict(orient="records"))
    elif listing.empty:
        typer.echo("no batches published yet")
    else:
        print_table(listing)


@app.command("demo")
def demo(store: StoreOption = None, verbose: VerboseOption = False) -> None:
    """The main job on the embedded default: the demo corpus, then one nightly round."""
    demo_data(store=store)
    settings = settings_for(store)
    from flows.nightly import nightly

    with flow_console(verbose=verbose):
        summary = nightly(store=settings.store_uri, trigger="manual")
    model, batch = summary.model, summary.batch
    typer.echo("")
    typer.echo(f"batch: {batch.location} ({batch.n_clips} clips{f': {batch.why()}' if batch.reasons else ''}; "
               f"round {batch.round_id})")
    print_table(_read_batch_top(settings, batch.round_id))
    typer.echo(
        f"model: {model.name} version {model.version} ({'champion' if model.is_champion else 'challenger'}); "
        f"cross-validated macro AP {model.metrics.get('cv_macro_ap', float('nan')):.3f}, "
        f"macro ROC AUC {model.metrics.get('cv_macro_roc_auc', float('nan')):.3f}"
    )
    for key, name in model.classes:
        typer.echo(f"  {name:<16} AP {model.metrics.get(f'cv_ap_{key}', float('nan')):.3f}  "
                   f"[{model.class_status.get(name, '-')}]")
    mlci_bin = Path(sys.executable).parent / "mlci"
    typer.echo(f"\nwhere each concept appears in a 2-minute video: {mlci_bin} detect videos/demo/")
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    typer.echo(f"MLflow UI: {mlflow_bin} ui "
               f"--backend-store-uri {redact_url(settings.tracking_uri)} --host 127.0.0.1 --port 5000")


def _read_batch_top(settings, round_id: str, n: int = 10):
    import io

    import pandas as pd

    from mlci.layout import batch_key

    data = settings.open_store().read_bytes(batch_key(round_id, "batch.csv"))
    return pd.read_csv(io.BytesIO(data))[["rank", "key", "utility", "reason"]].head(n)


app.add_typer(labels_app, name="labels")
app.add_typer(labelstudio_app, name="labelstudio")
app.command("features")(features_command)
app.command("consensus")(consensus_command)
app.command("train")(train_command)
app.command("models")(models_command)
app.command("analysis")(analysis_command)
app.command("detect")(detect_command)
app.command("serve")(serve_command)
app.command("status")(status_command)
app.command("relocate")(relocate_command)


def main() -> None:  # pragma: no cover - console entry point
    app()

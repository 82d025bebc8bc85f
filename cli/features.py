"""``mlci features``: run the features flow with a progress bar and print what it did.

A plain typer command callback; ``cli/__init__.py`` registers it. Prefect and the flow are
imported inside, so ``import cli`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (
    EXIT_INCOMPLETE,
    ExtractorOption,
    ExtractorParamOption,
    StoreOption,
    command_errors,
    fail,
    open_store_for,
    parse_params,
    settings_for,
)
from cli.console import VerboseOption, flow_console

__all__ = ["features_command", "import_model_command"]

_SHOW_QUARANTINED = 20


def features_command(
    store: StoreOption = None,
    extractor: ExtractorOption = None,
    param: ExtractorParamOption = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Clips per task and per shard.")] = 16,
    dask_address: Annotated[Optional[str], typer.Option("--dask-address", help="Dask scheduler to run on (default: MLCI_DASK_ADDRESS).")] = None,
    local_cluster: Annotated[bool, typer.Option("--local-cluster", help="Start a local Dask cluster for the run.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Parallel chunks (threads), or local cluster processes (default: MLCI_WORKERS, else the usable cores).")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Decoder threads per clip.")] = 1,
    log_every: Annotated[int, typer.Option("--log-every", min=1, help="Log progress every N clips.")] = 50,
    verbose: VerboseOption = False,
) -> None:
    """Compute audio and video features of new or changed clips; broken clips go to quarantine."""
    from tqdm import tqdm

    try:
        params = parse_params(param)
    except ValueError as exc:
        fail(str(exc))
    settings = settings_for(store).with_overrides(extractor=extractor, extractor_params=params or None)
    target = open_store_for(settings)  # a bad store ends here, before Prefect starts

    from flows.features import features as features_flow
    from flows.features import reporting_progress
    from mlci.features import list_quarantined

    extractor, params = settings.training.extractor, settings.training.extractor_params
    bars: list = []

    def progress(done: int, total: int, quarantined: int) -> None:
        if not bars:  # created once the plan is known, so the rate ignores flow start-up
            bars.append(tqdm(total=total, unit="clip", desc="features", dynamic_ncols=True))
        bar = bars[0]
        bar.set_postfix(quarantined=quarantined, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()  # before the step's closing line

    def close() -> None:
        for bar in bars:
            bar.close()

    with flow_console(verbose=verbose, progress_line=False):  # the bar shows progress
        try:
            with reporting_progress(progress):
                report = features_flow(
                    store=settings.store_uri,
                    extractor=extractor,
                    params=params,
                    chunk_size=chunk_size,
                    dask_address=dask_address,
                    local_cluster=local_cluster,
                    n_workers=workers,
                    threads=threads,
                    log_every=log_every,
                )
            quarantined = list_quarantined(target, extractor=extractor, params=params)
        finally:  # before an error line, so that it starts a line of its own
            close()
    typer.echo(report.format())
    if len(quarantined):
        typer.echo(f"quarantined clips ({len(quarantined)}; retried when their content changes):")
        for row in quarantined.head(_SHOW_QUARANTINED).itertuples(index=False):
            typer.echo(f"  {row.key}  [{row.error_kind}] {row.message[:120]}")
        if len(quarantined) > _SHOW_QUARANTINED:
            typer.echo(f"  ... and {len(quarantined) - _SHOW_QUARANTINED} more")
    if not report.complete:
        typer.secho(f"warning: {report.n_failed} clips were not computed ({len(report.failed_chunks)} chunk(s) "
                    "failed after their retries); the next run computes them", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_INCOMPLETE)


def import_model_command(
    model_uri: Annotated[str, typer.Argument(help="The registered model: models:/<name>/<version> or models:/<name>@<alias>.")],
    key: Annotated[str, typer.Argument(help="Store key to copy it to, ending in .onnx (the sidecar goes beside it as .json).")],
    sidecar: Annotated[Optional[Path], typer.Option("--sidecar", exists=True, dir_okay=False,
                                                    help="Sidecar JSON file (default: the model's MLflow metadata mlci_sidecar).")] = None,
    store: StoreOption = None,
) -> None:
    """Copy an ONNX embedder registered in MLflow, with its sidecar, into the store for `--extractor onnx`."""
    import json

    settings = settings_for(store)
    target = open_store_for(settings)
    from mlci.features.onnx import import_registered_model

    fields = None
    if sidecar:
        try:
            fields = json.loads(sidecar.read_text())
        except ValueError as exc:
            fail(f"--sidecar {sidecar} is not JSON ({exc}): give the sidecar's fields as a JSON object (docs/features.md)")
    with command_errors():
        model_key, sidecar_key = import_registered_model(settings.tracking_uri, model_uri, target, key, sidecar=fields)
    typer.echo(f"{model_uri} -> {model_key} (sidecar {sidecar_key}); use it with "
               f"mlci features --extractor onnx --param image_model={model_key} (or audio_model=, as its kind says)")

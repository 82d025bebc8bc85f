"""``mlci detect``: run the detection flow over a video or a prefix of videos, with a progress bar.

A plain typer command callback; ``cli/__init__.py`` registers it. Prefect and the flow are
imported inside, so ``import cli`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.common import (
    EXIT_INCOMPLETE,
    StoreOption,
    fail,
    open_store_for,
    parse_params,
    settings_for,
)
from cli.console import VerboseOption, flow_console

__all__ = ["detect_command", "parse_thresholds"]


def parse_thresholds(values: list[str] | None) -> dict[str, float] | float | None:
    """``["0.6"]`` -> 0.6 (every concept); ``["halloween=0.6", "holiday=0.4"]`` -> a dict."""
    if not values:
        return None
    pairs = [v.partition("=") for v in values]
    try:
        if len(values) == 1 and not pairs[0][1]:
            return float(values[0])
        if all(sep and name.strip() for name, sep, _ in pairs):
            return {name.strip(): float(value) for name, _, value in pairs}
    except ValueError:
        pass
    raise ValueError(f"--threshold takes one number for every concept, or concept=number pairs; got {values}")


def detect_command(
    source: Annotated[str, typer.Argument(help="A video's key, or a prefix of videos, in the store.")] = "videos/",
    store: StoreOption = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Registered model (default: MLCI_REGISTERED_MODEL_NAME).")] = None,
    version: Annotated[Optional[str], typer.Option("--version", help="Model version (default: the champion).")] = None,
    window: Annotated[float, typer.Option("--window", min=0.1, help="Window length in seconds (a multiple of the feature window).")] = 3.0,
    hop: Annotated[float, typer.Option("--hop", min=0.05, help="Seconds between window starts.")] = 1.5,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", help="Enter threshold: one number, or concept=number (repeatable). Default: the training run's.")] = None,
    hysteresis: Annotated[float, typer.Option("--hysteresis", min=0.0, max=0.99, help="A segment stays open down to threshold minus this.")] = 0.1,
    min_duration: Annotated[float, typer.Option("--min-duration", min=0.0, help="Drop segments shorter than this (seconds).")] = 2.0,
    max_gap: Annotated[float, typer.Option("--max-gap", min=0.0, help="Join segments at most this far apart (seconds).")] = 1.5,
    floor: Annotated[float, typer.Option("--floor", min=0.0, max=0.99, help="Leave window rows scoring below this out of windows.csv.")] = 0.1,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="Extractor parameter name=value, as the model was trained with; repeatable.")] = None,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Decoder threads per video.")] = 1,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Videos detected at once (default: MLCI_WORKERS, else the usable cores).")] = None,
    local_cluster: Annotated[bool, typer.Option("--local-cluster", help="Detect videos in a local Dask cluster's processes (faster than threads for several videos).")] = False,
    dask_address: Annotated[Optional[str], typer.Option("--dask-address", help="Dask scheduler to run on (default: MLCI_DASK_ADDRESS).")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Find where each concept appears in long videos: timed windows, merged segments, a JSON document per video."""
    from tqdm import tqdm

    try:
        params = parse_params(param)
        thresholds = parse_thresholds(threshold)
    except ValueError as exc:
        fail(str(exc))
    settings = settings_for(store)
    open_store_for(settings)  # a bad store ends here, before Prefect starts

    from flows.detect import detect, reporting_progress

    bars: list = []
    seen: dict[str, tuple[float, float]] = {}

    def progress(key: str, done: float, total: float | None) -> None:
        seen[key] = (done, max(total or 0.0, done))
        if not bars:
            bars.append(tqdm(total=0, unit="s", unit_scale=True, desc="detect", dynamic_ncols=True,
                             bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of video [{elapsed}<{remaining}]"))
        bar = bars[0]
        bar.total = sum(t for _, t in seen.values())
        bar.update(sum(d for d, _ in seen.values()) - bar.n)

    with flow_console(verbose=verbose, progress_line=False):  # the bar shows progress
        try:
            with reporting_progress(progress):
                report = detect(
                    source=source, store=settings.store_uri, model_name=model, version=version, window=window, hop=hop,
                    thresholds=thresholds, hysteresis=hysteresis, min_duration=min_duration, max_gap=max_gap,
                    floor=floor, extractor_params=params or None, threads=threads, n_workers=workers,
                    local_cluster=local_cluster, dask_address=dask_address,
                )
        finally:  # before an error line, so that it starts a line of its own
            for bar in bars:
                bar.close()
    typer.echo(report.format())
    if not report.complete:
        typer.secho("warning: some videos were not fully detected (see above); damaged or unreadable videos are "
                    "retried when their content changes", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_INCOMPLETE)

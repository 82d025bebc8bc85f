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
    is_expected,
    open_store_for,
    parse_params,
    print_json,
    print_table,
    settings_for,
)
from cli.console import VerboseOption, flow_console
from cli.detect import detect_command
from cli.features import features_command, import_model_command
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
    """Published batches and what each bought: answers back, hours to answer, positives per concept
    vs the pool prior, disagreement, flipped relabels, the next model's change in cross-validated AP."""
    settings = settings_for(store)
    target = open_store_for(settings)
    from mlci.batches import batch_yield, lineage_table
    from mlci.labels import load_annotations

    versions = _registered_versions(settings)
    with command_errors():
        annotations = load_annotations(target, current=False)
        table = batch_yield(target, lineage_table(target, annotations, versions), annotations, versions)
        if not table.empty:
            from mlci.labelstudio import batch_status

            in_label_studio = batch_status(target, table["round_id"])
            if in_label_studio["ls_project"].any():  # columns only for teams that use Label Studio
                table = table.merge(in_label_studio, on="round_id", how="left")
    if as_json:
        # pandas' missing values (NA of the string and Int64 columns, NaN, NaT) become null.
        print_json(table.astype(object).where(table.notna(), None).to_dict(orient="records"))
    elif table.empty:
        typer.echo("no batches published yet")
    else:
        print_table(_yield_lines(table), max_width=40)
        typer.echo("per concept: positives per 100 answered clips / pool prior per 100; ΔCV_AP: the first model "
                   "trained on the answers vs the one that chose the batch (docs/flows.md#lineage-and-yield)")


def _registered_versions(settings):
    """The registered versions as :func:`mlci.batches.lineage_table` takes them; none when MLflow has
    no database yet, and none with a warning when it cannot be read (the batches are still listed)."""
    from mlci.batches import versions_frame
    from mlci.models.exceptions import TrackingStoreNotFoundError
    from mlci.models.versions import list_versions

    try:
        infos = list_versions(settings.tracking_uri, settings.registered_model_name)
    except TrackingStoreNotFoundError:
        infos = []  # nothing trained yet
    except Exception as exc:
        if not is_expected(exc):
            raise
        typer.secho(f"warning: model versions not read, model columns left blank: {describe(exc)}",
                    fg=typer.colors.YELLOW, err=True)
        infos = []
    return versions_frame(infos)


def _yield_lines(table):
    """The yield table as one short line per batch (the full table is ``--json``)."""
    import math
    from datetime import datetime, timezone

    import pandas as pd

    def missing(value) -> bool:
        return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))

    def per_100(value) -> str:
        return "-" if missing(value) else f"{value:.0f}"

    now = datetime.now(timezone.utc)
    concepts = [c[len("positives_per_100_"):] for c in table.columns if c.startswith("positives_per_100_")]
    rows = []
    for r in table.to_dict(orient="records"):
        row = {
            "round_id": r["round_id"],
            "age": _age(now - r["created_at"]),
            "strategy": "-" if missing(r["strategy"]) else r["strategy"],
            "answered": f"{r['n_answered']}/{r['n_clips']}",
            "hours": "-" if missing(r["hours_to_answer"]) else f"{r['hours_to_answer']:.1f}",
        }
        for c in concepts:
            positives = r[f"positives_per_100_{c}"]
            row[c] = "-" if missing(positives) else f"{per_100(positives)}/{per_100(r[f'prior_per_100_{c}'])}"
        row["disagree"] = "-" if missing(r["disagreement_rate"]) else f"{100 * r['disagreement_rate']:.0f}%"
        row["flipped"] = "-" if missing(r["relabels_flipped"]) else str(r["relabels_flipped"])
        if missing(r["next_model_version"]):
            row["ΔCV_AP"] = "-"
        else:
            delta = r["delta_cv_ap"]
            row["ΔCV_AP"] = f"v{r['next_model_version']}" + ("" if missing(delta) else f" {delta:+.3f}")
        rows.append(row)
    return pd.DataFrame(rows)


def _age(elapsed) -> str:
    """``45m``, ``5h``, ``3d``: how long ago, in its largest whole unit."""
    minutes = int(elapsed.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)}m"
    return f"{minutes // 60}h" if minutes < 24 * 60 else f"{minutes // (24 * 60)}d"


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
app.command("import-model")(import_model_command)
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

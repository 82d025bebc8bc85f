"""``mlci labels ingest`` and ``mlci consensus``: ingest label files, merge annotators.

``app`` is the ``labels`` sub-app and ``consensus_command`` a plain typer command callback;
``mlci/cli/__init__.py`` registers both. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mlci.cli.common import StoreOption, command_errors, fail, open_store_for, print_table, settings_for

__all__ = ["app", "ingest_command", "consensus_command"]

app = typer.Typer(help="Label files: ingest and validate.", no_args_is_help=True)

@app.command("ingest")
def ingest_command(
    paths: Annotated[
        Optional[list[Path]], typer.Argument(help="Extra local label files or folders (the store's labels/ is always read).")
    ] = None,
    store: StoreOption = None,
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="flat, label_studio, label_studio_min or csv (default: detect per file)."),
    ] = None,
    empty: Annotated[str, typer.Option("--empty", help="An empty label list: 'skip' (no answer) or 'negative'.")] = "skip",
    choice_name: Annotated[
        Optional[str], typer.Option("--choice-name", help="Label Studio choices control (from_name) to read.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 2 if any file or record was rejected.")] = False,
    show_rejected: Annotated[int, typer.Option("--show-rejected", min=0, help="Rejected records to list per file.")] = 5,
) -> None:
    """Read, validate and ingest label files; print a short validation table."""
    from mlci.catalog import ClassCatalog
    from mlci.labels import FORMATS, ingest_labels

    if fmt is not None and fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if empty not in ("skip", "negative"):
        fail(f"--empty must be 'skip' or 'negative'; got {empty!r}")
    settings = settings_for(store)
    target = open_store_for(settings)
    with command_errors():
        catalog = ClassCatalog.from_json(settings.class_catalog)
        report = ingest_labels(target, catalog, base_url=settings.clip_base_url, paths=list(paths or []), fmt=fmt,
                               empty=empty, choice_name=choice_name)
    if not report.files:
        typer.echo(f"no label files under {target.uri}/labels/ and no paths given")
        return
    print_table(report.to_frame())
    for f in report.files:
        for rec in f.rejected[:show_rejected]:
            typer.echo(f"  rejected {f.source} {rec['location'] or rec['index']}: {rec['reason']}: {rec['message']}")
        if len(f.rejected) > show_rejected:
            typer.echo(f"  ... {len(f.rejected) - show_rejected} more rejected in {f.source} (see the report)")
    s = report.summary()
    typer.echo(
        f"{s['files']} files: {s['new']} new, {s['already_ingested']} already ingested, {s['rejected_files']} rejected; "
        f"{s['accepted']} answers accepted, {s['rejected']} rejected; report {report.report_key}"
    )
    if strict and (report.n_rejected_files or report.n_rejected):
        raise typer.Exit(2)


def consensus_command(
    store: StoreOption = None,
    method: Annotated[
        str, typer.Option("--method", help="dawid_skene, one_coin (sparse data) or majority.")
    ] = "dawid_skene",
    tie: Annotated[str, typer.Option("--tie", help="Label of a posterior of exactly 0.5: negative or positive.")] = "negative",
    tol: Annotated[float, typer.Option("--tol", min=0.0, help="EM convergence tolerance.")] = 1e-6,
    max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="EM step cap.")] = 500,
    band_low: Annotated[float, typer.Option("--band-low", help="Relabel band: lowest uncertain posterior.")] = 0.2,
    band_high: Annotated[float, typer.Option("--band-high", help="Relabel band: highest uncertain posterior.")] = 0.8,
) -> None:
    """Merge annotators into consensus labels for the current label snapshot; print agreement."""
    from mlci.consensus import METHODS, run_consensus

    if method not in METHODS:
        fail(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    target = open_store_for(settings_for(store))
    with command_errors():
        result = run_consensus(target, method=method, tie=tie, tol=tol, max_iter=max_iter, band=(band_low, band_high))
    fit = result.fit
    extra = f", EM {fit['n_iter']} steps{'' if fit.get('converged') else ' (NOT converged)'}" if fit else ""
    typer.echo(f"label snapshot {result.snapshot}: method {result.method}{extra}")
    print_table(result.summary())
    typer.echo(f"stored under consensus/{result.snapshot}/ ; {len(result.relabel)} relabel candidates")

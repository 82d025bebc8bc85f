"""``mlci labels ingest`` and ``mlci consensus``: ingest label files, merge annotators.

``app`` is the ``labels`` sub-app and ``consensus_command`` a plain typer command callback;
``cli/__init__.py`` registers both. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (
    EXIT_INCOMPLETE,
    StoreOption,
    command_errors,
    fail,
    one_of,
    open_store_for,
    print_table,
    registry_choice,
    settings_for,
)
from mlci import params

__all__ = ["app", "ingest_command", "consensus_command"]

app = typer.Typer(help="Label files: ingest and validate.", no_args_is_help=True, rich_markup_mode=None)

#: Exit status of ``labels ingest`` when some file or record was rejected and ``--strict`` is given.
EXIT_REJECTED = 2
#: Exit status of ``labels ingest`` when a file gave no answers at all, unless ``--allow-empty``:
#: like any command that ran to the end but left work undone.
EXIT_NO_ANSWERS = EXIT_INCOMPLETE


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
    empty: Annotated[str, typer.Option("--empty", parser=one_of("skip", "negative"), metavar="[skip|negative]", help="An empty label list: 'skip' (no answer) or 'negative'.")] = "skip",
    choice_name: Annotated[
        Optional[str], typer.Option("--choice-name", help="Label Studio choices control (from_name) to read.")
    ] = None,
    reingest: Annotated[
        Optional[list[str]],
        typer.Option("--reingest", help="Read this file again (local path or store key) for its answers not stored "
                                        "yet, whatever the settings; repeatable. Answers are never stored twice."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help=f"Exit with status {EXIT_REJECTED} if any file or record was rejected.")
    ] = False,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help=f"Exit with status 0, not {EXIT_NO_ANSWERS}, when a file gave no answers.")
    ] = False,
    show_rejected: Annotated[int, typer.Option("--show-rejected", min=0, help="Rejected records to list per file.")] = 5,
) -> None:
    """Read, validate and ingest label files; print a short validation table.

    Exit status: 0; 1 on an error; 2 with --strict when a file or record was rejected; 3 when a
    file gave no answers at all (every record rejected or skipped, or the file unreadable), unless
    --allow-empty.
    """
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
        report = ingest_labels(target, catalog, base_url=settings.clip_base_url,
                               files_root=settings.label_studio_files_root, paths=list(paths or []), fmt=fmt,
                               empty=empty, choice_name=choice_name, reingest=list(reingest or []))
    if not report.files:
        typer.echo(f"no label files under {target.uri}/labels/ and no paths given")
        return
    print_table(report.to_frame())
    for f in report.files:
        for rec in f.rejected[:show_rejected]:
            typer.echo(f"  rejected {f.source} {rec['location'] or rec['index']}: {rec['reason']}: {rec['message']}")
        if len(f.rejected) > show_rejected:
            typer.echo(f"  ... {len(f.rejected) - show_rejected} more rejected in {f.source} (see the report)")
        if f.status == "duplicate":
            typer.echo(f"  duplicate {f.source}: the same answers as {f.duplicate_of} (other bytes); "
                       "not added again, so no second annotator")
        missing = [n for n in f.notes if n["reason"] == "clip_not_in_store"]
        if missing:
            shown = ", ".join(repr(n["key"]) for n in missing[:3])
            typer.echo(f"  {len(missing)} answers in {f.source} name clips not in the store (kept): {shown}"
                       f"{', ...' if len(missing) > 3 else ''}")
    s = report.summary()
    typer.echo(
        f"{s['files']} files: {s['new']} new, {s['retried']} retried, {s['already_ingested']} already ingested, "
        f"{s['duplicates']} duplicates, {s['rejected_files']} rejected; {s['accepted']} answers accepted "
        f"({s['answers_new']} new), {s['rejected']} rejected; report {report.report_key}"
    )
    if strict and (report.n_rejected_files or report.n_rejected):
        raise typer.Exit(EXIT_REJECTED)
    if report.without_answers and not allow_empty:
        typer.secho(
            f"error: no answers accepted from {len(report.without_answers)} file(s) ({', '.join(report.without_answers[:3])}"
            f"{', ...' if len(report.without_answers) > 3 else ''}); fix the cause above (e.g. MLCI_CLIP_BASE_URL) and run "
            "again: rejected answers are read again when the settings change (or with --reingest PATH); "
            "--allow-empty accepts this",
            fg=typer.colors.RED, err=True,
        )
        raise typer.Exit(EXIT_NO_ANSWERS)


def consensus_command(
    store: StoreOption = None,
    method: Annotated[
        str, typer.Option("--method", parser=registry_choice(params.consensus_methods), metavar="NAME", help="dawid_skene, one_coin (sparse data) or majority.")
    ] = "dawid_skene",
    tie: Annotated[str, typer.Option("--tie", parser=one_of("negative", "positive"), metavar="[negative|positive]", help="Label of a posterior of exactly 0.5: negative or positive.")] = "negative",
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

"""``mlci analysis``: run the analysis flow (simulated labeling on known labels) and print its answers."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import (
    ModalityOption,
    StoreOption,
    describe,
    fail,
    one_of,
    open_store_for,
    settings_for,
)
from cli.console import VerboseOption, flow_console
from mlci.redact import redact_url

__all__ = ["analysis_command"]


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(";" if ";" in text else ",") if t.strip()]
    return items or None


def analysis_command(
    store: StoreOption = None,
    source: Annotated[
        str, typer.Option("--source", parser=one_of("consensus", "truth"), metavar="[consensus|truth]", help="Labels to simulate on: 'consensus' (latest snapshot) or 'truth' (demo corpus).")
    ] = "consensus",
    strategies: Annotated[
        str | None,
        typer.Option("--strategies", help="Comma-separated strategy specs (e.g. random,margin,fixed_order). "
                                          "Use ';' between specs that carry parameters. Default: all."),
    ] = None,
    schedule: Annotated[
        list[str] | None,
        typer.Option("--schedule", help="Query schedule, repeatable: doubling5, 20x20, 50x8, 100x4 or a list like "
                                        "5,5,10. Default: the seed's four."),
    ] = None,
    repetitions: Annotated[int, typer.Option("--repetitions", min=1, help="Repetitions (differ by seed).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice; same seed, same results.")] = 0,
    min_positives: Annotated[
        int, typer.Option("--min-positives", min=1, help="Concepts with fewer positives are left out (and named).")
    ] = 5,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Consensus snapshot (default: latest).")] = None,
    modality: ModalityOption = None,
    no_consensus_study: Annotated[bool, typer.Option("--no-consensus-study", help="Skip question 3.")] = False,
    local_cluster: Annotated[
        bool, typer.Option("--local-cluster", help="Run the simulations on a local Dask cluster of worker processes.")
    ] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Threads, or processes with --local-cluster (default: MLCI_WORKERS, else the usable cores).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run again even if this analysis is already in MLflow.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Simulate labeling strategies on labels you already have and answer the seed's four questions."""
    from mlci.analysis import (
        UnknownSimulationStrategyError,
        make_simulation_strategy,
        parse_schedule,
    )

    specs = _split(strategies)
    try:
        for spec in specs or []:
            make_simulation_strategy(spec)
        for sched in schedule or []:
            parse_schedule(sched)
    except (UnknownSimulationStrategyError, ValueError, TypeError) as exc:
        fail(describe(exc))
    settings = settings_for(store)
    open_store_for(settings)  # a bad store ends here, before Prefect starts
    from flows.analysis import analysis

    with flow_console(verbose=verbose):
        outcome = analysis(
            store=settings.store_uri,
            source=source,
            strategies=specs,
            schedules=schedule or None,
            repetitions=repetitions,
            seed=seed,
            min_positives=min_positives,
            snapshot=snapshot,
            modality=modality,
            run_consensus_study=not no_consensus_study,
            local_cluster=local_cluster,
            n_workers=workers,
            force=force,
        )
    state = "already in MLflow, nothing recomputed" if outcome.reused else f"done in {outcome.seconds:.0f} s"
    typer.echo(f"analysis {outcome.analysis_id}: {state}")
    typer.echo(f"  MLflow: {redact_url(outcome.tracking_uri)}  experiment {outcome.experiment_name}  run {outcome.run_id}")
    typer.echo(f"  report: {settings.store_uri.rstrip('/')}/{outcome.report_key}")
    if outcome.skipped_concepts:
        typer.echo("  concepts left out: " + "; ".join(f"{k} ({v})" for k, v in outcome.skipped_concepts.items()))
    titles = {"q1": "1. Re-ranking vs a fixed order", "q2": "2. Strategies", "q3": "3. Consensus", "q4": "4. Stopping"}
    for key, title in titles.items():
        if outcome.answers.get(key):
            typer.echo(f"\n{title}")
            for sentence in outcome.answers[key]:
                typer.echo(f"  - {sentence}")

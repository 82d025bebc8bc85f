"""The analysis flow: answer the seed notebook's four questions by simulating labeling on known labels.

1. load features and labels (consensus labels from the store, or the demo corpus's truth);
2. if an analysis with the same data and parameters is already in MLflow, return it (re-running
   changes nothing);
3. prepare each repetition (test split, pool order, stop set, whole-pool reference model);
4. simulate every (strategy x schedule x concept chunk x repetition) unit as mapped tasks, on
   local threads, a local Dask cluster of worker processes (``local_cluster``), or the Dask
   cluster at ``dask_address`` / ``MLCI_DASK_ADDRESS``;
5. run the consensus study (question 3) per repetition, mapped the same way;
6. summarise (AULC, labels to 90/95 %, paired tests, query depth, stopping rules);
7. draw the figures, write the tables and the generated report, log them to MLflow (a parent run
   with a nested run per strategy and schedule, metrics stepped by number of labels) and publish
   them once to ``reports/analysis/<analysis_id>/`` in the store;
8. leave the answers as a Prefect markdown artifact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed

import mlci
from flows.naming import dated_run_name
from flows.runners import make_task_runner
from mlci.analysis import SimulationConfig, collect_result, parse_schedule, plan_units
from mlci.analysis.data import data_fingerprint
from mlci.analysis.outputs import answers_markdown
from mlci.analysis.report import answers
from mlci.analysis.stopping import make_rules
from mlci.config import Settings, apply_mlflow_environment
from mlci.layout import analysis_key
from mlci.models.tracking import git_commit
from mlci.reporting import ends_step, reports_progress
from tasks.analysis import (
    consensus_study_task,
    find_analysis_run_task,
    load_analysis_data_task,
    prepare_repetition_task,
    record_analysis_task,
    simulate_units_task,
    summarise_analysis_task,
)

__all__ = ["DEFAULT_SCHEDULES", "DEFAULT_STRATEGIES", "AnalysisOutcome", "analysis"]

#: Every simulated strategy family, the seed's oracle bounds, and question 1's fixed orders.
#: (least_confidence and entropy are left out: on one concept at a time they rank exactly as margin.)
DEFAULT_STRATEGIES = (
    "random",
    "fixed_order",
    "fixed_order:by=margin",
    "margin",
    "margin_coverage",
    "positive",
    "negative",
    "anomaly",
    "local_outlier",
    "label_spreading_entropy",
    "kmeans_diversity",
    "coreset",
    "ranked_batch",
    "oracle_inlier",
    "oracle_outlier",
)
#: The seed's schedules: doubling from 5, and fixed depths 20x20, 50x8, 100x4.
DEFAULT_SCHEDULES = ("doubling5", "20x20", "50x8", "100x4")


@dataclass
class AnalysisOutcome:
    """What an analysis run produced (or found already done)."""

    analysis_id: str
    run_id: str
    experiment_name: str
    tracking_uri: str
    report_key: str
    reused: bool
    answers: dict[str, list[str]] = field(default_factory=dict)
    skipped_concepts: dict[str, str] = field(default_factory=dict)
    n_units: int = 0
    seconds: float = 0.0


def _results_in_order(futures: list, logger) -> list:
    """The futures' results in their order, logging progress as they finish (any order)."""
    position = {id(f): i for i, f in enumerate(futures)}
    results, every = [None] * len(futures), max(1, len(futures) // 20)
    for done, future in enumerate(as_completed(futures), 1):
        results[position[id(future)]] = future.result()
        if done % every == 0 or done == len(futures):
            logger.info("simulated %d/%d tasks", done, len(futures),
                        extra=reports_progress(done, len(futures), "simulation tasks"))
    return results


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@flow(name="analysis", flow_run_name=dated_run_name("analysis"), description="Simulate labeling on known labels and answer the seed notebook's four questions.")
def analysis(
    store: str | None = None,
    source: Literal["consensus", "truth"] = "consensus",
    strategies: list[str] | None = None,
    schedules: list[str] | None = None,
    repetitions: int = 5,
    seed: int = 0,
    test_size: float = 0.25,
    extractor: str | None = None,
    modality: str | None = None,
    snapshot: str | None = None,
    C: float = 1.0,
    concepts_per_task: int | None = None,
    units_per_task: int = 1,
    dask_address: str | None = None,
    local_cluster: bool = False,
    n_workers: int | None = None,
    stopping: bool = True,
    oof_folds: int = 5,
    kappa_threshold: float = 0.99,
    uncertainty_threshold: float = 0.05,
    plateau_delta: float = 0.01,
    run_consensus_study: bool = True,
    consensus_ks: list[int] | None = None,
    min_positives: int = 5,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
    force: bool = False,
    extractor_params: dict | None = None,
) -> AnalysisOutcome:
    """Run the analysis and return what it produced.

    ``store``, ``tracking_uri``, ``experiment_name`` and ``dask_address`` default to the settings
    (the experiment is ``<MLCI_EXPERIMENT_NAME>-analysis``). Simulation units run ``units_per_task``
    to a task on ``n_workers`` threads (``MLCI_WORKERS``, default the usable cores), or on a Dask
    cluster (``dask_address``, or a local one of ``n_workers`` processes with ``local_cluster``).
    With ``force`` an analysis already in MLflow is run and logged again. ``extractor_params``
    defaults to ``MLCI_TRAINING__EXTRACTOR_PARAMS``.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    settings = Settings.for_store(store).with_overrides(extractor=extractor, modality=modality, extractor_params=extractor_params)
    apply_mlflow_environment(settings)  # on a worker too: bounded waits on a dead server
    extractor, modality = settings.training.extractor, settings.training.modality
    tracking_uri = tracking_uri or settings.tracking_uri
    experiment_name = experiment_name or f"{settings.experiment_name}-analysis"
    strategies = list(strategies or DEFAULT_STRATEGIES)
    schedules = [str(parse_schedule(s)) for s in (schedules or DEFAULT_SCHEDULES)]
    consensus_ks = sorted(set(consensus_ks or [1, 3, 5]))
    config = SimulationConfig(
        repetitions=repetitions, seed=seed, test_size=test_size, C=C, stopping=stopping,
        oof_folds=oof_folds if stopping else 0,
    )
    config.validate()
    rules = make_rules(kappa_threshold=kappa_threshold, uncertainty_threshold=uncertainty_threshold, plateau_delta=plateau_delta)

    data, description = load_analysis_data_task(
        settings, source=source, extractor=extractor, modality=modality, snapshot=snapshot, min_positives=min_positives,
        extractor_params=settings.training.extractor_params or None,
    )
    params = {
        "source": source, "strategies": strategies, "schedules": schedules, "repetitions": repetitions, "seed": seed,
        "test_size": test_size, "extractor": extractor, "modality": modality, "C": C, "stopping": stopping,
        "oof_folds": config.oof_folds, "kappa_threshold": kappa_threshold,
        "uncertainty_threshold": uncertainty_threshold, "plateau_delta": plateau_delta,
        "consensus_study": run_consensus_study, "consensus_ks": consensus_ks, "min_positives": min_positives,
    }
    # The code version is part of the analysis id: the same data and parameters under changed code
    # may give other numbers, so they are a new analysis.
    params["code"] = git_commit() or f"mlci {mlci.__version__}"
    analysis_id = data_fingerprint(data, params)
    existing = None if force else find_analysis_run_task(tracking_uri, experiment_name, analysis_id)
    if existing:
        logger.info("analysis %s is already in MLflow (run %s); nothing to do", analysis_id, existing,
                    extra=ends_step("analysis"))
        return AnalysisOutcome(analysis_id, existing, experiment_name, tracking_uri,
                               analysis_key(analysis_id, "report.md"), reused=True,
                               skipped_concepts=dict(data.skipped), seconds=time.perf_counter() - started)

    reps = [f.result() for f in prepare_repetition_task.map(unmapped(data), list(range(repetitions)), unmapped(config))]
    units = plan_units(strategies, schedules, len(data.concepts), repetitions, concepts_per_unit=concepts_per_task)
    groups = _chunks(units, max(1, units_per_task))
    logger.info("analysis %s: %d clips, %d concepts, %d units in %d tasks", analysis_id, len(data.keys),
                len(data.concepts), len(units), len(groups))
    runner = make_task_runner(dask_address=dask_address or settings.dask_address, local_cluster=local_cluster,
                              n_workers=n_workers or settings.n_workers)
    consensus = None
    with runner:
        sims = runner.map(simulate_units_task, {"data": unmapped(data), "repetitions": unmapped(reps),
                                                "units": groups, "config": unmapped(config)})
        if run_consensus_study:
            studies = runner.map(consensus_study_task, {
                "data": unmapped(data), "repetition": reps, "config": unmapped(config),
                "ks": unmapped(consensus_ks), "methods": unmapped(["majority", "dawid_skene", "one_coin"]),
            })
            consensus = pd.concat([f.result() for f in studies], ignore_index=True)
        parts = _results_in_order(sims, logger)
    result = collect_result(data, reps, parts, config, strategies, schedules, time.perf_counter() - started)
    summary = summarise_analysis_task(result, consensus, stopping_rules=rules)
    run_id, report_key = record_analysis_task(
        settings, summary, result, analysis_id=analysis_id, tracking_uri=tracking_uri,
        experiment_name=experiment_name, run_name=f"analysis {analysis_id}", params=params,
        data_description=description,
    )
    blocks = answers(summary, result)
    create_markdown_artifact(
        f"# Analysis {analysis_id}\n\nMLflow run `{run_id}`, report `{report_key}`\n\n" + answers_markdown(summary, result),
        key="analysis-answers", description=f"analysis {analysis_id}",
    )
    return AnalysisOutcome(analysis_id, run_id, experiment_name, tracking_uri, report_key, reused=False,
                           answers=blocks, skipped_concepts=dict(data.skipped), n_units=len(units),
                           seconds=time.perf_counter() - started)

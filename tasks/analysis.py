"""Prefect tasks of the analysis flow: thin wrappers around :mod:`mlci.analysis`.

Tasks that touch the store or MLflow retry on I/O errors only; the simulation tasks are pure
functions of their inputs and do not retry (a bad input fails the same way twice).
"""

from __future__ import annotations

import tempfile

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.analysis import (
    Repetition,
    SimulationConfig,
    SimulationData,
    Unit,
    prepare_repetition,
    run_unit,
)
from mlci.analysis.consensus_study import DEFAULT_PROFILES, consensus_study
from mlci.analysis.data import load_analysis_data
from mlci.analysis.engine import SimulationResult
from mlci.analysis.outputs import (
    find_analysis_run,
    log_to_mlflow,
    publish_outputs,
    write_outputs,
)
from mlci.analysis.summarise import AnalysisSummary, summarise_analysis
from mlci.config import Settings
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = [
    "consensus_study_task",
    "find_analysis_run_task",
    "load_analysis_data_task",
    "prepare_repetition_task",
    "record_analysis_task",
    "simulate_units_task",
    "summarise_analysis_task",
]


def _simulation_name() -> str:
    # Which strategies and repetitions a mapped simulation task runs, e.g. "simulate-margin,random-r0-2".
    from prefect.runtime import task_run

    units = task_run.parameters.get("units") or []
    strategies = ",".join(sorted({u.strategy for u in units}))
    reps = sorted({u.repetition for u in units})
    return f"simulate-{strategies}-r{reps[0]}" + (f"-{reps[-1]}" if len(reps) > 1 else "") if units else "simulate"


@task(name="load-analysis-data", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(), cache_policy=NO_CACHE)
def load_analysis_data_task(
    settings: Settings,
    *,
    source: str = "consensus",
    extractor: str = "basic",
    modality: str = "combined",
    snapshot: str | None = None,
    min_positives: int = 5,
    extractor_params: dict | None = None,
) -> tuple[SimulationData, str]:
    """Features and labels of the clips that have both (:func:`mlci.analysis.data.load_analysis_data`)."""
    from mlci.catalog import ClassCatalog

    data, description = load_analysis_data(
        settings.open_store(), source=source, concepts=ClassCatalog.from_json(settings.class_catalog).names,
        extractor=extractor, modality=modality, snapshot=snapshot, min_positives=min_positives, params=extractor_params,
    )
    logger = get_run_logger()
    logger.info(description)
    if data.skipped:
        logger.warning("concepts left out: %s", data.skipped)
    return data, description


@task(name="find-analysis-run", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(), cache_policy=NO_CACHE)
def find_analysis_run_task(tracking_uri: str, experiment_name: str, analysis_id: str) -> str | None:
    """The finished MLflow run of this exact analysis (same data and parameters), if any."""
    return find_analysis_run(tracking_uri, experiment_name, analysis_id)


@task(name="prepare-repetition", task_run_name="prepare-repetition-{index}", cache_policy=NO_CACHE)
def prepare_repetition_task(data: SimulationData, index: int, config: SimulationConfig) -> Repetition:
    """Split, pool order, stop set and whole-pool reference model of one repetition."""
    return prepare_repetition(data, index, config)


@task(name="simulate-units", task_run_name=_simulation_name, cache_policy=NO_CACHE)
def simulate_units_task(
    data: SimulationData, repetitions: list[Repetition], units: list[Unit], config: SimulationConfig
) -> pd.DataFrame:
    """Curves of some (strategy, schedule, repetition, concepts) units (:func:`mlci.analysis.run_unit`)."""
    parts = [run_unit(data, repetitions[u.repetition], u, config) for u in units]
    return pd.concat(parts, ignore_index=True)


@task(name="consensus-study", task_run_name="consensus-study-{repetition.index}", cache_policy=NO_CACHE)
def consensus_study_task(
    data: SimulationData, repetition: Repetition, config: SimulationConfig, ks: list[int], methods: list[str]
) -> pd.DataFrame:
    """Question 3 on one repetition (:func:`mlci.analysis.consensus_study.consensus_study`)."""
    return consensus_study(data, [repetition], config, profiles=DEFAULT_PROFILES, ks=ks, methods=methods)


@task(name="summarise-analysis", cache_policy=NO_CACHE)
def summarise_analysis_task(
    result: SimulationResult, consensus: pd.DataFrame | None, *, stopping_rules: dict | None = None
) -> AnalysisSummary:
    """Every summary table (:func:`mlci.analysis.summarise.summarise_analysis`)."""
    return summarise_analysis(result, consensus, stopping_rules=stopping_rules)


@task(name="record-analysis", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(), cache_policy=NO_CACHE)
def record_analysis_task(
    settings: Settings,
    summary: AnalysisSummary,
    result: SimulationResult,
    *,
    analysis_id: str,
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    params: dict,
    data_description: str,
) -> tuple[str, str]:
    """Draw, write, log to MLflow and publish to the store; return (parent run id, report key)."""
    with tempfile.TemporaryDirectory(prefix="mlci-analysis-") as tmp:
        write_outputs(summary, result, tmp, title=f"Labeling analysis {analysis_id}", data_description=data_description)
        run_id = log_to_mlflow(
            summary, result, tmp, tracking_uri=tracking_uri, experiment_name=experiment_name,
            analysis_id=analysis_id, run_name=run_name, params=params,
        )
        written = publish_outputs(settings.open_store(), analysis_id, tmp)
    report_key = next(k for k in written if k.endswith("/report.md"))
    get_run_logger().info("analysis %s: MLflow run %s, report %s (%d files new)", analysis_id, run_id, report_key,
                          sum(written.values()), extra=ends_step("analysis"))
    return run_id, report_key

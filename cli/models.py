"""``mlci train`` and ``mlci models``: run the ``train`` flow on the store; list registered versions.

The functions are plain typer command callbacks; ``cli/__init__.py`` registers them. Heavy
imports (MLflow, Prefect, the flows) happen inside, so ``import cli`` stays fast.
"""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from cli.common import (
    EstimatorOption,
    ExtractorOption,
    JsonOption,
    ModalityOption,
    RandomStateOption,
    StoreOption,
    ToleranceOption,
    checked_settings,
    command_errors,
    configured_default,
    one_of,
    print_json,
    print_table,
    settings_for,
)
from cli.console import VerboseOption, flow_console
from mlci.config import TrainingSettings
from mlci.redact import redact_url

__all__ = ["train_command", "models_command"]

def train_command(
    store: StoreOption = None,
    extractor: ExtractorOption = None,
    modality: ModalityOption = None,
    snapshot: Annotated[Optional[str], typer.Option("--snapshot", help="Consensus label snapshot (default: latest).")] = None,
    estimator: EstimatorOption = None,
    c: Annotated[Optional[float], typer.Option("--C", help="Inverse regularisation (logistic regression, linear SVM).")] = None,
    class_weight: Annotated[Optional[str], typer.Option("--class-weight", parser=one_of("balanced", "none"), metavar="[balanced|none]", help="Weight classes by inverse frequency (default: none).")] = None,
    calibration: Annotated[str, typer.Option("--calibration", parser=one_of("none", "sigmoid", "isotonic"), metavar="[none|sigmoid|isotonic]", help="none, sigmoid or isotonic.")] = "none",
    weight_by_posterior: Annotated[bool, typer.Option("--weight-by-posterior", help="Weight labels by consensus confidence.")] = False,
    trigger: Annotated[str, typer.Option("--trigger", parser=one_of("manual", "nightly"), metavar="[manual|nightly]", help="manual or nightly (recorded on the run).")] = "manual",
    tolerance: ToleranceOption = None,
    min_new_labels: Annotated[Optional[int], typer.Option("--min-new-labels", min=1, help="New labels needed to compare on them.", show_default=configured_default(TrainingSettings, "min_new_labels"))] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 5,
    random_state: RandomStateOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train one classifier per concept on the latest consensus, log it to MLflow, register it, gate promotion."""
    from mlci.models.tracking import class_keys

    training_options = dict(extractor=extractor, modality=modality, estimator=estimator, tolerance=tolerance,
                            min_new_labels=min_new_labels)
    checked_settings(store, **training_options, random_state=random_state)
    params: dict = {}
    if c is not None:
        params["C"] = c
    if class_weight is not None:
        params["class_weight"] = None if class_weight == "none" else class_weight
    from flows.training import train_flow

    with flow_console(verbose=verbose):
        result = train_flow(
            store=store,
            **training_options,
            snapshot=snapshot,
            estimator_params=params,
            calibration=None if calibration == "none" else calibration,
            weight_by_posterior=weight_by_posterior,
            trigger=trigger,
            n_splits=folds,
            random_state=random_state,
        )
    typer.echo(
        f"{'reused' if result.reused else 'registered'} {result.model_name} version {result.model_version} "
        f"(run {result.run_id}; {int(result.metrics['n_clips'])} clips)"
    )
    keys = class_keys(list(result.class_status))
    for cls, status in result.class_status.items():
        ap = result.metrics.get(f"cv_ap_{keys[cls]}")
        typer.echo(f"  {cls:<20} {status:<18} AP {'-' if ap is None else f'{ap:.3f}'}")
    typer.echo(f"  cross-validated macro AP {result.metrics.get('cv_macro_ap', math.nan):.3f}")
    typer.echo(f"{'promoted to champion' if result.promoted else 'not promoted'}: {result.decision.reason}")


def models_command(
    store: StoreOption = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Registered model name (default: MLCI_REGISTERED_MODEL_NAME).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List registered model versions with their aliases and cross-validated macro metrics, newest first."""
    from mlci.models.versions import list_versions

    settings = settings_for(store)
    model_name = name or settings.registered_model_name
    with command_errors():
        versions = list_versions(settings.tracking_uri, model_name)
    if as_json:
        print_json([_version_record(v) for v in versions])
        return
    if not versions:
        typer.echo(f"no versions of {model_name!r} in {redact_url(settings.tracking_uri)}")
        return
    import pandas as pd

    print_table(pd.DataFrame([{
        "version": int(v.version),
        "aliases": ",".join(v.aliases) or "-",
        "cv_macro_ap": v.metrics.get("macro_ap"),
        "cv_roc_auc": v.metrics.get("macro_roc_auc"),
        "cv_f1": v.metrics.get("macro_f1"),
        "trigger": v.tags.get("mlci.trigger", "-"),
        "decision": v.tags.get("mlci.promotion.reason", ""),
    } for v in versions]), max_width=100)


def relocate_command() -> None:
    """After moving or copying MLCI_HOME: point its MLflow database at the artifacts beside it."""
    from mlci.models.sqlite_store import relocate_store

    settings = settings_for(None)
    with command_errors():
        changed = relocate_store(settings.tracking_uri)
    if not any(changed.values()):
        typer.echo(f"nothing to do: {redact_url(settings.tracking_uri)} already uses the artifacts beside it")
        return
    typer.echo("relocated: " + ", ".join(f"{n} {table}" for table, n in changed.items() if n))


def _version_record(v) -> dict:
    from datetime import datetime, timezone

    return {
        "name": v.name, "version": int(v.version), "aliases": list(v.aliases), "run_id": v.run_id,
        "created_at": datetime.fromtimestamp(v.created_at_ms / 1000, timezone.utc).isoformat(),
        "trigger": v.tags.get("mlci.trigger"), "decision": v.tags.get("mlci.promotion.reason"),
        "cv_metrics": dict(v.metrics),
    }

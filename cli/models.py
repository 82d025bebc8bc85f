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
    ModalityOption,
    RandomStateOption,
    StoreOption,
    ToleranceOption,
    checked_settings,
    command_errors,
    configured_default,
    settings_for,
)
from mlci.config import TrainingSettings
from mlci.redact import redact_url

__all__ = ["train_command", "models_command"]

def train_command(
    store: StoreOption = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", help="Feature extractor.", show_default=configured_default(TrainingSettings, "extractor"))] = None,
    modality: ModalityOption = None,
    snapshot: Annotated[Optional[str], typer.Option("--snapshot", help="Consensus label snapshot (default: latest).")] = None,
    estimator: EstimatorOption = None,
    c: Annotated[Optional[float], typer.Option("--C", help="Inverse regularisation (logistic regression, linear SVM).")] = None,
    class_weight: Annotated[Optional[str], typer.Option("--class-weight", help="'balanced' or omit.")] = None,
    calibration: Annotated[str, typer.Option("--calibration", help="none, sigmoid or isotonic.")] = "none",
    weight_by_posterior: Annotated[bool, typer.Option("--weight-by-posterior", help="Weight labels by consensus confidence.")] = False,
    trigger: Annotated[str, typer.Option("--trigger", help="manual or nightly (recorded on the run).")] = "manual",
    tolerance: ToleranceOption = None,
    min_new_labels: Annotated[Optional[int], typer.Option("--min-new-labels", min=1, help="New labels needed to compare on them.", show_default=configured_default(TrainingSettings, "min_new_labels"))] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 5,
    random_state: RandomStateOption = None,
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

    with command_errors(flow=True):
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
        ap = result.metrics.get(f"ap_{keys[cls]}")
        typer.echo(f"  {cls:<20} {status:<18} AP {'-' if ap is None else f'{ap:.3f}'}")
    typer.echo(f"  macro AP {result.metrics.get('macro_ap', math.nan):.3f}")
    typer.echo(f"{'promoted to champion' if result.promoted else 'not promoted'}: {result.decision.reason}")


def models_command(
    store: StoreOption = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Registered model name (default: MLCI_REGISTERED_MODEL_NAME).")] = None,
) -> None:
    """List registered model versions with their aliases and macro metrics, newest first."""
    from mlci.models import list_versions

    settings = settings_for(store)
    model_name = name or settings.registered_model_name
    with command_errors():
        versions = list_versions(settings.tracking_uri, model_name)
    if not versions:
        typer.echo(f"no versions of {model_name!r} in {redact_url(settings.tracking_uri)}")
        return
    typer.echo(f"{'version':>7}  {'aliases':<22} {'macro_ap':>8} {'roc_auc':>8} {'f1':>6}  {'trigger':<8} decision")
    for v in versions:
        m = v.metrics
        typer.echo(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<22} {_num(m.get('macro_ap')):>8} "
            f"{_num(m.get('macro_roc_auc')):>8} {_num(m.get('macro_f1')):>6}  {v.tags.get('mlci.trigger', '-'):<8} "
            f"{v.tags.get('mlci.promotion.reason', '')}"
        )


def _num(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

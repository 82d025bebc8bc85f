"""Registered model versions as plain data, and the names their runs' metrics carry.

Light on purpose (no MLflow, no scikit-learn): the command line's listings import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CV_PREFIX",
    "METRICS",
    "ModelVersionInfo",
    "check_model_name",
    "cross_validated",
    "list_versions",
    "with_cv_prefix",
]

#: The alias of the version the nightly scores the pool with (moved only by the promotion gate).
CHAMPION = "champion"
#: The alias of the latest trained version.
CHALLENGER = "challenger"
#: The binary metrics of the evaluation, per concept and as ``macro_<metric>``.
METRICS = ("ap", "roc_auc", "accuracy", "precision", "recall", "f1")
#: Prefix of the MLflow metrics of the cross-validated (out-of-fold) evaluation: ``cv_macro_ap``,
#: ``cv_ap_<concept>``. What the gate measured on other data says so in its reason
#: (``new_labels_macro_ap``).
CV_PREFIX = "cv_"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version: aliases, run, tags and the run's cross-validated macro metrics
    (``metrics["macro_ap"]`` is the run's ``cv_macro_ap``)."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    created_at_ms: int = 0


def cross_validated(run_metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's cross-validated metrics without their prefix (``macro_ap``, ``ap_<concept>``).

    Runs logged before the prefix existed logged these names bare; they are read as well.
    """
    prefixed = {k[len(CV_PREFIX):]: v for k, v in run_metrics.items() if k.startswith(CV_PREFIX)}
    if prefixed:
        return prefixed
    return {k: v for k, v in run_metrics.items() if k.startswith(tuple(f"{m}_" for m in ("macro", *METRICS)))}


def with_cv_prefix(run_metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's MLflow metrics with the cross-validated ones under their prefix (older runs' renamed)."""
    cv = cross_validated(run_metrics)
    bare = {k: v for k, v in run_metrics.items() if k not in cv and not k.startswith(CV_PREFIX)}
    return {**bare, **{f"{CV_PREFIX}{k}": v for k, v in cv.items()}}


def check_model_name(model_name: str) -> None:
    """Raise ``ValueError`` unless ``model_name`` is a non-empty string without quotes."""
    if not isinstance(model_name, str) or not model_name.strip() or any(q in model_name for q in "'\"`"):
        raise ValueError(f"model_name must be a non-empty string without quotes, but got {model_name!r}")


def list_versions(tracking_uri: str, model_name: str) -> list[ModelVersionInfo]:
    """Every version of ``model_name``, newest first, with aliases, tags and the run's cross-validated
    macro metrics ([] if none).

    A SQLite store is read directly (:func:`mlci.models.sqlite_store.read_versions`: no MLflow import,
    about a second for a listing); any other through MLflow's client.

    Raises
    ------
    TrackingStoreNotFoundError
        ``tracking_uri`` is a SQLite database that does not exist (it is not created).
    TrackingStoreMovedError
        A SQLite store whose folder was moved or copied (``mlci relocate``).
    TrackingUnreachableError
        The tracking server did not answer.
    """
    from mlci.models.sqlite_store import read_versions

    check_model_name(model_name)
    found = read_versions(tracking_uri, model_name)
    if found is not None:
        return found
    from mlci.models.registry import client_versions

    return client_versions(tracking_uri, model_name)

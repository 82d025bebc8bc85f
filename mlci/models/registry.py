"""MLflow I/O of models: log a trained model's run, register it, move aliases; reuse; load.

Training itself is :mod:`mlci.models.training`, the champion comparison
:mod:`mlci.models.comparison` and the gate :mod:`mlci.models.promotion`; ``flows/training.py``
composes them with the functions here. A run with the fingerprint of an earlier finished run is
found by :func:`find_reusable_run`, so a re-run with the same inputs changes nothing.

Registration survives the tracking server dying at any point: the run is logged and finished first,
the version is then created in one call carrying all its tags (``mlci.registration=pending``), and
the aliases move only after that, the tag becoming ``complete`` last. A registration left
unfinished is completed by the next call with the same inputs, never repeated (see
:func:`log_and_register`).

Models are only ever loaded through the registry (an alias or a version of a registered model),
from the skops file of the logged model, trusting exactly :data:`SKOPS_TRUSTED_TYPES`. The public
functions translate MLflow errors (:func:`~mlci.models.tracking.mlflow_errors`): no message carries
a tracking URI's password, and lookups never create a SQLite tracking database.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlci.models.comparison import ChampionComparison, ChampionSnapshot
from mlci.models.dataset import TrainingSet
from mlci.models.estimators import effective_calibration, resolve_estimator_params
from mlci.models.evaluation import Evaluation, plot_class_curves, plot_summary
from mlci.models.exceptions import (
    ModelError,
    ModelNotFoundError,
    UnsafeModelFormatError,
)
from mlci.models.multilabel import SKOPS_TRUSTED_TYPES, MultiLabelModel
from mlci.models.promotion import PromotionDecision
from mlci.models.schema import FeatureSpec, feature_spec_from
from mlci.models.tracking import (
    check_tracking_store,
    class_keys,
    clean_params,
    client_for,
    default_artifact_location,
    finite_metrics,
    get_or_create_experiment,
    git_commit,
    tracking_context,
    translates_mlflow_errors,
    write_json,
)
from mlci.models.training import TrainedModel, TrainingConfig
from mlci.models.versions import (
    CHALLENGER,
    CHAMPION,
    CV_PREFIX,
    METRICS,
    ModelVersionInfo,
    check_model_name,
    cross_validated,
    with_cv_prefix,
)
from mlci.redact import redact_text, redact_url

__all__ = [
    "TrainingResult",
    "ModelVersionInfo",
    "check_run_params",
    "run_fingerprint",
    "find_reusable_run",
    "load_champion",
    "log_and_register",
    "load_model",
    "resolve_version",
    "client_versions",
    "CHAMPION",
    "CHALLENGER",
    "TRIGGERS",
    "TRAINING_LABELS_ARTIFACT",
    "OOF_SCORES_ARTIFACT",
    "REGISTRATION_TAG",
    "ABANDONED_TAG",
]

TRIGGERS = ("manual", "nightly")
MODEL_ARTIFACT = "model"
TRAINING_LABELS_ARTIFACT = "training/labels.parquet"
OOF_SCORES_ARTIFACT = "evaluation/oof_scores.parquet"
_TAG = "mlci."
#: Version tag: "pending" from the version's creation until its aliases are set, then "complete".
#: A version without it was registered by older code, all in one go, and counts as complete.
REGISTRATION_TAG = f"{_TAG}registration"
PENDING, COMPLETE = "pending", "complete"
#: Run tag: why a run left RUNNING by a process that died was marked FAILED.
ABANDONED_TAG = f"{_TAG}abandoned"


@dataclass(frozen=True)
class TrainingResult:
    """A training run in MLflow: what :func:`log_and_register` logged, or :func:`find_reusable_run` found.

    Attributes
    ----------
    run_id : str
    model_name : str
    model_version : str
        The registered version (alias ``challenger``; also ``champion`` when promoted).
    metrics : dict
        The run's MLflow metrics: cross-validated per concept ``cv_<metric>_<class>`` and
        ``cv_macro_<metric>``, and the gate's ``promotion_*`` numbers.
    class_status : dict
        ``class -> "trained" | "too_few_positives" | "too_few_negatives"`` of the final model.
    promoted : bool
    decision : PromotionDecision
    reused : bool
        True when an earlier finished run with identical inputs was returned instead of training
        (or, by :func:`log_and_register`, instead of logging a second run).
    """

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    class_status: dict[str, str]
    promoted: bool
    decision: PromotionDecision
    reused: bool = False


# -- registry lookups ------------------------------------------------------------------------


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


def _version_by_alias(client: MlflowClient, model_name: str, alias: str):
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise


def _aliases_by_version(client: MlflowClient, model_name: str) -> dict[str, tuple[str, ...]]:
    # search_model_versions leaves aliases empty in some stores; the registered model has them all.
    try:
        aliases = client.get_registered_model(model_name).aliases or {}
    except MlflowException as exc:
        if _not_found(exc):
            return {}
        raise
    out: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        out.setdefault(str(version), []).append(alias)
    return {v: tuple(sorted(a)) for v, a in out.items()}


def _info(client: MlflowClient, mv, aliases: tuple[str, ...] | None = None) -> ModelVersionInfo:
    try:
        run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    except MlflowException:
        run_metrics = {}
    metrics = {k: v for k, v in cross_validated(run_metrics).items() if k.startswith("macro_")}
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id or "",
        aliases=aliases if aliases is not None else tuple(sorted(getattr(mv, "aliases", ()) or ())),
        tags=dict(mv.tags or {}),
        metrics=metrics,
        created_at_ms=int(mv.creation_timestamp or 0),
    )


@translates_mlflow_errors
def resolve_version(
    tracking_uri: str, model_name: str, *, alias: str | None = CHAMPION, version: str | int | None = None
) -> ModelVersionInfo:
    """The registered version named by ``version``, else by ``alias``.

    Raises
    ------
    ModelNotFoundError
        No such registered model, alias or version (``TrackingStoreNotFoundError``: no such SQLite database).
    TrackingUnreachableError
        The tracking server did not answer.
    """
    check_model_name(model_name)
    check_tracking_store(tracking_uri)
    client = client_for(tracking_uri)
    try:
        if version is not None:
            mv = client.get_model_version(model_name, str(version))
        elif alias:
            mv = client.get_model_version_by_alias(model_name, alias)
        else:
            raise ValueError("give alias or version")
    except MlflowException as exc:
        if _not_found(exc):
            what = f"version {version}" if version is not None else f"alias {alias!r}"
            raise ModelNotFoundError(
                f"registered model {model_name!r} has no {what} at {redact_url(tracking_uri)}"
            ) from None
        raise
    return _info(client, mv, _aliases_by_version(client, model_name).get(str(mv.version), ()))


@translates_mlflow_errors
def client_versions(tracking_uri: str, model_name: str) -> list[ModelVersionInfo]:
    """:func:`mlci.models.versions.list_versions` of a store that is not SQLite, through MLflow's client."""
    check_model_name(model_name)
    check_tracking_store(tracking_uri)
    client = client_for(tracking_uri)
    versions = client.search_model_versions(f"name = '{model_name}'")
    aliases = _aliases_by_version(client, model_name)
    infos = [_info(client, mv, aliases.get(str(mv.version), ())) for mv in versions]
    return sorted(infos, key=lambda i: int(i.version), reverse=True)


@translates_mlflow_errors
def load_model(
    tracking_uri: str, model_name: str, *, alias: str | None = CHAMPION, version: str | int | None = None
) -> MultiLabelModel:
    """Load a registered model (``models:/<name>@<alias>`` or ``models:/<name>/<version>``).

    The alias is resolved to its version first, so the model loaded is the version that
    :func:`resolve_version` reports. Only skops files are read, trusting exactly
    :data:`~mlci.models.multilabel.SKOPS_TRUSTED_TYPES`; a pickled model is refused.

    Raises
    ------
    ModelNotFoundError
        No such model, alias or version.
    UnsafeModelFormatError
        The model is not a skops file, or holds types outside the trusted list.
    """
    info = resolve_version(tracking_uri, model_name, alias=alias, version=version)
    return _load_registered(tracking_uri, model_name, info.version)


def _load_registered(tracking_uri: str, model_name: str, version: str) -> MultiLabelModel:
    import mlflow.artifacts
    import skops.io
    import yaml
    from skops.io.exceptions import UntrustedTypesFoundException

    with tempfile.TemporaryDirectory(prefix="mlci-model-") as tmp:
        # The models:/ resolver reads the process-wide registry URI, whatever is passed here.
        with tracking_context(tracking_uri):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{model_name}/{version}",
                    dst_path=tmp,
                    tracking_uri=tracking_uri,
                    registry_uri=tracking_uri,
                )
            )
        mlmodel = local / "MLmodel"
        if not mlmodel.is_file():
            raise UnsafeModelFormatError(f"model {model_name!r} version {version} has no MLmodel file")
        flavor = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")).get("flavors") or {}).get("sklearn") or {}
        fmt, filename = flavor.get("serialization_format"), flavor.get("pickled_model")
        if fmt != "skops" or not filename:
            raise UnsafeModelFormatError(
                f"model {model_name!r} version {version} is serialized as {fmt!r}; mlci only loads skops models"
            )
        path = local / filename
        if not path.is_file() or path.resolve().parent != local.resolve():
            raise UnsafeModelFormatError(f"model {model_name!r} version {version} has no skops file {filename!r}")
        try:
            model = skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
        except UntrustedTypesFoundException as exc:
            raise UnsafeModelFormatError(
                f"model {model_name!r} version {version} holds types mlci does not trust: {exc}"
            ) from exc
    if not isinstance(model, MultiLabelModel):
        raise UnsafeModelFormatError(
            f"model {model_name!r} version {version} is a {type(model).__name__}, not a MultiLabelModel"
        )
    return model


# -- training runs: reuse, the champion, logging and registration -----------------------------


def check_run_params(*, model_name: str, trigger: str) -> None:
    """Raise ``ValueError`` unless ``model_name`` is a usable registered-model name and ``trigger`` known."""
    check_model_name(model_name)
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, but got {trigger!r}")


def run_fingerprint(
    training_set: TrainingSet,
    config: TrainingConfig,
    feature_schema: Any,
    *,
    model_name: str,
    label_snapshot_id: str | None,
    tolerance: float,
    min_new_labels: int,
) -> str:
    """SHA-256 of everything a training run depends on: equal fingerprints give equal runs.

    Recorded as the run tag ``mlci.fingerprint``; :func:`find_reusable_run` looks runs up by it.
    """
    spec = feature_spec_from(feature_schema)
    model = config.make_model(training_set.classes, spec)
    params = {k: v for k, v in model.get_params().items() if k != "feature_schema"}
    payload = {
        "training_set": training_set.fingerprint(),
        "params": params,
        "features": spec.as_dict(),
        "weighted": config.sample_weight(training_set) is not None,
        "n_splits": config.n_splits,
        "threshold": config.threshold,
        "random_state": config.random_state,
        "model_name": model_name,
        "label_snapshot_id": label_snapshot_id,
        "tolerance": tolerance,
        "min_new_labels": min_new_labels,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@translates_mlflow_errors
def find_reusable_run(
    tracking_uri: str,
    *,
    experiment_name: str,
    model_name: str,
    fingerprint: str,
    artifact_location: str | None = None,
) -> TrainingResult | None:
    """The latest finished run of ``experiment_name`` with ``fingerprint``, its registration completed, or None.

    Returning it instead of training again makes a re-run with the same inputs change nothing.
    A registration that an earlier process left unfinished (the tracking server died) is completed
    first, with the decision recorded on the run:

    * the run's version is still ``mlci.registration=pending``: its aliases are set, then the tag
      becomes ``complete``. An alias only moves forward: a version newer than this one keeps it;
    * the run has no version (the server died between the run and the registration): the run's
      logged model is registered, with the version tags rebuilt from the run's tags and metrics,
      and then completed the same way. A run without a logged model gives None (train again).

    Versions without the ``mlci.registration`` tag (registered by older code) count as complete.
    Runs with ``fingerprint`` still RUNNING (left by a process that died) are marked FAILED, with
    the tag ``mlci.abandoned`` naming the run returned. The experiment is created (with
    ``artifact_location``) if it does not exist yet.
    """
    check_model_name(model_name)
    client = client_for(tracking_uri)
    experiment_id = _experiment_id(client, tracking_uri, experiment_name, artifact_location)
    run = _latest_finished_run(client, experiment_id, fingerprint)
    return None if run is None else _resume(client, experiment_id, model_name, fingerprint, run)


def _latest_finished_run(client: MlflowClient, experiment_id: str, fingerprint: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{_TAG}fingerprint` = '{fingerprint}' and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def _run_version(client: MlflowClient, model_name: str, run_id: str):
    """The newest version registered from ``run_id``, or None."""
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def _registration_done(client: MlflowClient, model_name: str, run) -> bool:
    mv = _run_version(client, model_name, run.info.run_id)
    return mv is not None and (mv.tags or {}).get(REGISTRATION_TAG) != PENDING


def _resume(client: MlflowClient, experiment_id: str, model_name: str, fingerprint: str, run) -> TrainingResult | None:
    """``run`` (finished) as a reused result, its registration completed first; None if it logged no model."""
    run_id = run.info.run_id
    # The comparison's note shares the decision's tag prefix but is no part of the decision.
    decision = PromotionDecision.from_tags({k: v for k, v in run.data.tags.items() if k != f"{_TAG}promotion.note"})
    mv = _run_version(client, model_name, run_id)
    if mv is None:
        model_id = _logged_model_id(client, run)
        if model_id is None:
            return None
        tags = _version_tags(decision, run.data.tags, cross_validated(run.data.metrics).get("macro_ap"))
        version = _create_version(client, model_name, run_id, model_id, tags, decision)
        _complete_registration(client, model_name, run_id, version, decision)
    else:
        version = str(mv.version)
        if (mv.tags or {}).get(REGISTRATION_TAG) == PENDING:
            _complete_registration(client, model_name, run_id, version, decision)
    _close_abandoned_runs(client, experiment_id, fingerprint, successor=run_id)
    classes = json.loads(run.data.params.get("classes", "[]"))
    keys = class_keys(classes)
    if f"{_TAG}class_status" in run.data.tags:
        status = json.loads(run.data.tags[f"{_TAG}class_status"])
    else:  # runs logged before the statuses were grouped: one tag per concept
        status = {cls: run.data.tags.get(f"{_TAG}status.{keys[cls]}", "") for cls in classes}
    return TrainingResult(
        run_id=run_id,
        model_name=model_name,
        model_version=version,
        metrics=with_cv_prefix(run.data.metrics),
        class_status=status,
        promoted=decision.promote,
        decision=decision,
        reused=True,
    )


def _logged_model_id(client: MlflowClient, run) -> str | None:
    """Id of the model ``run`` logged under :data:`MODEL_ARTIFACT` (the newest finalized one), or None."""
    from mlflow.entities import LoggedModelStatus

    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"name = '{MODEL_ARTIFACT}' and source_run_id = '{run.info.run_id}'",
    )
    ready = [m for m in models if m.status == LoggedModelStatus.READY]
    return max(ready, key=lambda m: m.creation_timestamp).model_id if ready else None


@translates_mlflow_errors
def load_champion(tracking_uri: str, model_name: str) -> ChampionSnapshot | None:
    """The champion's logged metrics, training labels and model, or None when there is no champion.

    What cannot be read is left None with the reason (redacted) in the snapshot, so that the
    comparison can say why it fell back to cross-validated metrics.
    """
    check_model_name(model_name)
    client = client_for(tracking_uri)
    champion = _version_by_alias(client, model_name, CHAMPION)
    if champion is None:
        return None
    version, run_id = str(champion.version), champion.run_id
    try:
        metrics = cross_validated(client.get_run(run_id).data.metrics)
    except MlflowException as exc:
        return ChampionSnapshot(version, run_id, unavailable=f"champion run {run_id} unreadable: {redact_text(str(exc))}")
    try:
        with tempfile.TemporaryDirectory(prefix="mlci-champ-") as tmp:
            path = client.download_artifacts(run_id, TRAINING_LABELS_ARTIFACT, tmp)
            seen = pd.read_parquet(path)[["asset", "class"]]
    except (MlflowException, OSError) as exc:
        return ChampionSnapshot(
            version, run_id, metrics=metrics,
            unavailable=f"champion run has no {TRAINING_LABELS_ARTIFACT}: {redact_text(str(exc))}",
        )
    try:
        model = _load_registered(tracking_uri, model_name, version)
    except (ModelError, MlflowException, OSError) as exc:
        return ChampionSnapshot(version, run_id, metrics=metrics, seen_labels=seen, model_error=redact_text(str(exc)))
    return ChampionSnapshot(version, run_id, metrics=metrics, seen_labels=seen, model=model)


@translates_mlflow_errors
def log_and_register(
    training_set: TrainingSet,
    trained: TrainedModel,
    comparison: ChampionComparison,
    decision: PromotionDecision,
    *,
    tracking_uri: str,
    experiment_name: str,
    model_name: str,
    feature_schema: Any,
    fingerprint: str,
    label_snapshot_id: str | None = None,
    trigger: str = "manual",
    flow_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    tolerance: float = 0.0,
    min_new_labels: int = 50,
    artifact_location: str | None = None,
    store_uri: str | None = None,
) -> TrainingResult:
    """Log one MLflow run of a trained model, register it as ``challenger``, and ``champion`` if promoted.

    The run lists its training data as MLflow dataset inputs: the label snapshot (digest: the
    snapshot id) and the feature set (digest: its parameters' hash), located in ``store_uri``.

    The steps, each safe against the tracking server dying before or after it:

    1. inside the run: params, metrics, artifacts and the model (not yet registered); runs with
       ``fingerprint`` still RUNNING, left by a process that died, are marked FAILED with the tag
       ``mlci.abandoned`` naming this run. The run ends FINISHED;
    2. one call creates the version with all its tags, ``mlci.registration=pending`` among them,
       and the decision's reason as its description;
    3. the aliases move (``challenger``; ``champion`` if promoted), then the tag becomes ``complete``.

    If the server dies in 1, the run is left RUNNING (closed by the next call) and no version
    exists. If it dies after 1, the next call with the same inputs (this function, e.g. a retry of
    the task, or :func:`find_reusable_run`) does not log a second run: it registers the finished
    run's model or completes its pending version, with the decision recorded on the run, and
    returns that run (``reused=True``). So the ``champion`` alias only ever moves to a version
    created whole, and no version is left pending once a later call has returned. A call with the
    ``flow_run_id`` and ``fingerprint`` of an earlier finished run (a retry of the task in the same
    flow run) returns that run even when its registration completed, e.g. when only the answer to
    the last call was lost.

    Parameters
    ----------
    training_set : TrainingSet
    trained : TrainedModel
        From :func:`~mlci.models.training.train`.
    comparison : ChampionComparison
        From :func:`~mlci.models.comparison.compare_with_champion`.
    decision : PromotionDecision
        The gate's decision on ``comparison``.
    tracking_uri : str
        MLflow tracking (and registry) URI, e.g. ``sqlite:////abs/path/mlflow.db``.
    experiment_name, model_name : str
        MLflow experiment of the run; registered model name.
    feature_schema : object with ``extractor`` and ``version``
        Schema of ``training_set.X``.
    fingerprint : str
        From :func:`run_fingerprint` (tag ``mlci.fingerprint``).
    label_snapshot_id : str, default=None
        Consensus snapshot the labels come from.
    trigger : {"manual", "nightly"}, default="manual"
    flow_run_id : str, default=None
        Prefect flow run id, recorded as a tag (the caller reads it; no Prefect import here).
    tags : mapping, default=None
        Extra run tags.
    tolerance, min_new_labels : float, int
        The gate's parameters, recorded as run params.
    artifact_location : str, default=None
        Artifact root of a new experiment; default ``<db folder>/mlartifacts`` for a SQLite store,
        the server's default otherwise. An existing experiment keeps its own.

    Returns
    -------
    TrainingResult
    """
    check_run_params(model_name=model_name, trigger=trigger)
    tags = {str(k): str(v) for k, v in (tags or {}).items()}
    spec = feature_spec_from(feature_schema)
    model, evaluation, config = trained.model, trained.evaluation, trained.config
    client = client_for(tracking_uri)
    experiment_id = _experiment_id(client, tracking_uri, experiment_name, artifact_location)
    earlier = _latest_finished_run(client, experiment_id, fingerprint)
    retried = flow_run_id is not None and earlier is not None and (
        earlier.data.tags.get(f"{_TAG}prefect_flow_run_id") == str(flow_run_id))
    if earlier is not None and (retried or not _registration_done(client, model_name, earlier)):
        resumed = _resume(client, experiment_id, model_name, fingerprint, earlier)
        if resumed is not None:
            return resumed

    keys = class_keys(training_set.classes)
    params = _run_params(training_set, model, spec, label_snapshot_id, trained.weighted, keys,
                         n_splits=config.n_splits, threshold=config.threshold, tolerance=tolerance,
                         min_new_labels=min_new_labels)
    metrics = _run_metrics(evaluation, keys, training_set)
    metrics.update({
        "promoted": float(decision.promote),
        "promotion_n_compare": float(decision.n),
        "promotion_challenger": decision.numbers.get("challenger", math.nan),
        "promotion_champion": decision.numbers.get("champion", math.nan),
    })
    described = {  # on the run and on the version
        f"{_TAG}trigger": trigger,
        f"{_TAG}label_snapshot_id": label_snapshot_id or "none",
        f"{_TAG}feature_extractor": spec.extractor,
        f"{_TAG}feature_version": spec.version,
        f"{_TAG}modality": config.modality,
    }
    run_tags = {
        **described,
        f"{_TAG}fingerprint": fingerprint,
        f"{_TAG}training_set_sha256": training_set.fingerprint(),
        f"{_TAG}champion_before": comparison.champion_version if comparison.has_champion else "none",
        f"{_TAG}class_status": json.dumps(model.class_status_),
        **decision.as_tags(),
        **tags,
    }
    if comparison.note:
        run_tags[f"{_TAG}promotion.note"] = comparison.note
    run_tags["mlflow.note.content"] = _run_description(training_set, config, spec, label_snapshot_id, trigger,
                                                       evaluation.macro.get("macro_ap"), decision)
    commit = git_commit()
    if commit:
        run_tags["mlflow.source.git.commit"] = commit  # MLflow's own tag: the UI shows and links it
    if flow_run_id:
        run_tags[f"{_TAG}prefect_flow_run_id"] = str(flow_run_id)
    version_tags = _version_tags(decision, described, evaluation.macro.get("macro_ap"))

    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory(prefix="mlci-run-") as tmp:
        _write_artifacts(Path(tmp), training_set, evaluation, model, spec, keys, decision, comparison)
        example = np.ascontiguousarray(training_set.X[:2])
        signature = infer_signature(example, model.predict_proba(example))
        with tracking_context(tracking_uri):
            run_name = f"{trigger}-{config.estimator}-{config.modality}"
            with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags) as run:
                _close_abandoned_runs(client, experiment_id, fingerprint, successor=run.info.run_id)
                mlflow.log_params(clean_params(params))
                for dataset in _training_inputs(store_uri, label_snapshot_id, spec):
                    mlflow.log_input(dataset, context="training")
                mlflow.log_metrics(finite_metrics(metrics))
                mlflow.log_artifacts(tmp)
                info = mlflow.sklearn.log_model(
                    model,
                    name=MODEL_ARTIFACT,
                    signature=signature,
                    input_example=example,
                    serialization_format="skops",
                    skops_trusted_types=SKOPS_TRUSTED_TYPES,
                    pyfunc_predict_fn="predict_proba",
                    pip_requirements=_pip_requirements(),
                )
    version = _create_version(client, model_name, run.info.run_id, info.model_id, version_tags, decision)
    _complete_registration(client, model_name, run.info.run_id, version, decision)
    return TrainingResult(
        run_id=run.info.run_id,
        model_name=model_name,
        model_version=version,
        metrics=finite_metrics(metrics),
        class_status=trained.class_status,
        promoted=decision.promote,
        decision=decision,
    )


def _training_inputs(store_uri: str | None, label_snapshot_id: str | None, spec: FeatureSpec) -> list:
    """The label snapshot and the feature set as MLflow datasets (metadata and location, no data)."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    from mlci.layout import FEATURES_PREFIX, consensus_prefix

    cache_id = f"{spec.extractor}-v{spec.version}" + (f"-{spec.params_hash}" if spec.params_hash else "")
    base = (store_uri or "").rstrip("/")
    found = [
        (f"labels {label_snapshot_id or 'none'}", label_snapshot_id or "none",
         consensus_prefix(label_snapshot_id) if label_snapshot_id else "consensus/"),
        (f"features {cache_id}", spec.params_hash or f"v{spec.version}", f"{FEATURES_PREFIX}{cache_id}/"),
    ]
    with warnings.catch_warnings():  # MLflow warns that it guessed the source type from the URI
        warnings.simplefilter("ignore")
        return [MetaDataset(resolve_dataset_source(f"{base}/{key}" if base else key), name=name, digest=digest[:36])
                for name, digest, key in found]


def _experiment_id(client: MlflowClient, tracking_uri: str, experiment_name: str, artifact_location: str | None) -> str:
    with tracking_context(tracking_uri):
        return get_or_create_experiment(
            client, experiment_name, artifact_location=artifact_location or default_artifact_location(tracking_uri)
        )


def _version_tags(decision: PromotionDecision, described: Mapping[str, str], macro_ap) -> dict[str, str]:
    """A version's tags: the decision, what ``described`` (run tags) says of the inputs, the macro AP."""
    keys = ("trigger", "label_snapshot_id", "feature_extractor", "feature_version", "modality")
    tags = {**decision.as_tags(), **{f"{_TAG}{k}": described.get(f"{_TAG}{k}", "none") for k in keys}}
    if macro_ap is not None and np.isfinite(macro_ap):  # no tag says "nan"
        tags[f"{_TAG}{CV_PREFIX}macro_ap"] = f"{macro_ap:.6g}"
    return tags


#: The registered model's description in the MLflow UI.
_MODEL_DESCRIPTION = (
    "One binary classifier per concept on mlci's clip features, trained by the train and nightly flows. "
    "Alias `champion`: the version the nightly scores the pool with (moved only by the promotion gate); "
    "`challenger`: the latest trained version. Each version's description is its gate decision."
)


def _run_description(training_set: TrainingSet, config, spec, label_snapshot_id, trigger: str, macro_ap,
                     decision: PromotionDecision) -> str:
    """What the run did, in a sentence or two (the run's description in the MLflow UI)."""
    ap = "n/a" if macro_ap is None or not np.isfinite(macro_ap) else f"{macro_ap:.3f}"
    return (
        f"{trigger.capitalize()} training of {config.estimator} on {len(training_set)} clips "
        f"({int(np.count_nonzero(training_set.Y >= 0))} labels, snapshot {label_snapshot_id or 'none'}) with "
        f"{spec.extractor} v{spec.version} {config.modality} features; cross-validated macro AP {ap}. "
        f"Gate: {decision.reason}"
    )


def _create_version(client: MlflowClient, model_name: str, run_id: str, model_id: str, tags: dict[str, str],
                    decision: PromotionDecision) -> str:
    """Register the logged model ``model_id`` of ``run_id`` in one call, tagged pending; its version."""
    try:
        client.create_registered_model(model_name, description=_MODEL_DESCRIPTION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    # The source and model id mlflow.register_model gives a model logged by MLflow 3. A SQLite
    # registry looks the logged model up through the process-wide tracking URI.
    with tracking_context(client.tracking_uri):
        mv = client.create_model_version(
            model_name, source=f"models:/{model_id}", run_id=run_id, tags={**tags, REGISTRATION_TAG: PENDING},
            description=decision.reason, model_id=model_id,
        )
    return str(mv.version)


def _complete_registration(client: MlflowClient, model_name: str, run_id: str, version: str,
                           decision: PromotionDecision) -> None:
    """Step 3: ``challenger`` (and ``champion`` if promoted) to ``version``, then its tag to complete.

    First the run's other pending versions without an alias are deleted: copies of this one, left
    when MLflow's client re-sent a create whose answer was lost. An alias only moves forward: it
    stays on a version newer than ``version`` (registered while this registration was unfinished).
    """
    current = client.get_registered_model(model_name).aliases or {}
    aliased = {str(v) for v in current.values()}
    for mv in client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
        copy = str(mv.version)
        if copy != version and copy not in aliased and (mv.tags or {}).get(REGISTRATION_TAG) == PENDING:
            client.delete_model_version(model_name, copy)
    moves = [CHALLENGER, CHAMPION] if decision.promote else [CHALLENGER]
    for alias in moves:
        if alias not in current or int(current[alias]) <= int(version):
            client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, REGISTRATION_TAG, COMPLETE)


def _close_abandoned_runs(client: MlflowClient, experiment_id: str, fingerprint: str, *, successor: str) -> None:
    """Mark FAILED the runs with ``fingerprint`` still RUNNING (their process died), except ``successor``."""
    stale = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{_TAG}fingerprint` = '{fingerprint}' and attributes.status = 'RUNNING'",
    )
    for run in stale:
        if run.info.run_id != successor:
            client.set_tag(run.info.run_id, ABANDONED_TAG,
                           f"left RUNNING by a process that stopped; superseded by run {successor}")
            client.set_terminated(run.info.run_id, "FAILED")


def _pip_requirements() -> list[str]:
    """What the logged model needs to load, pinned to the versions that wrote it.

    Given explicitly because MLflow's inference of requirements re-imports the model in a
    subprocess (seconds per run). ``mlci`` provides :class:`MultiLabelModel`.
    """
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlci", "scikit-learn", "skops", "numpy", "scipy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def _run_params(training_set, model, spec, label_snapshot_id, weighted, keys, **extra) -> dict[str, Any]:
    resolved = resolve_estimator_params(model.estimator, model.estimator_params)
    params: dict[str, Any] = {
        "estimator": model.estimator,
        **{f"estimator.{k}": v for k, v in sorted(resolved.items())},
        "calibration": effective_calibration(model.estimator, model.calibration),
        "standardize": model.standardize,
        "modality": model.modality,
        "feature_extractor": spec.extractor,
        "feature_version": spec.version,
        "feature_params_hash": spec.params_hash,
        "n_features": int(training_set.X.shape[1]),
        "label_snapshot_id": label_snapshot_id,
        "n_clips": len(training_set),
        "classes": list(training_set.classes),
        "sample_weights": "consensus_posterior" if weighted else "none",
        "min_positives": model.min_positives,
        "min_negatives": model.min_negatives,
        "random_state": model.random_state,
        **extra,
    }
    for cls, counts in training_set.labels_per_class().items():
        params[f"labels_positive_{keys[cls]}"] = counts["positive"]
        params[f"labels_negative_{keys[cls]}"] = counts["negative"]
    return params


def _run_metrics(evaluation: Evaluation, keys: dict[str, str], training_set: TrainingSet) -> dict[str, float]:
    out: dict[str, float] = {}
    for _, row in evaluation.per_class.iterrows():
        for m in METRICS:
            out[f"{CV_PREFIX}{m}_{keys[row['class']]}"] = float(row[m])
    out.update({f"{CV_PREFIX}{k}": v for k, v in evaluation.macro.items()})
    out["n_clips"] = float(len(training_set))
    out["n_labels"] = float(np.count_nonzero(training_set.Y >= 0))
    out["n_classes_evaluated"] = float((evaluation.per_class["status"] == "evaluated").sum())
    return out


def _write_artifacts(root: Path, training_set, evaluation, model, spec, keys, decision, comparison) -> None:
    figures = root / "figures"
    figures.mkdir()
    for j, cls in enumerate(evaluation.classes):
        if evaluation.status[cls] != "evaluated":
            continue
        ok = np.isfinite(evaluation.scores[:, j])
        fig = plot_class_curves(evaluation.Y[ok, j], evaluation.scores[ok, j], cls, threshold=evaluation.threshold)
        fig.savefig(figures / f"roc_pr_{keys[cls]}.png", dpi=90)
    plot_summary(evaluation, title=f"{model.estimator} · {model.modality} · {spec.extractor} v{spec.version}").savefig(
        figures / "summary.png", dpi=90
    )
    ev = root / "evaluation"
    ev.mkdir()
    evaluation.oof_table(training_set.keys).to_parquet(ev / "oof_scores.parquet", index=False)
    evaluation.per_class.to_csv(ev / "per_class.csv", index=False)
    write_json(ev / "metrics.json", {
        "per_class": evaluation.per_class.to_dict(orient="records"),
        "macro": evaluation.macro,
        "threshold": evaluation.threshold,
        "thresholds": {c: t for c, t in zip(evaluation.per_class["class"], evaluation.per_class["threshold"]) if np.isfinite(t)},
        "class_status": model.class_status_,
        "definitions": "binary per concept on known labels with out-of-fold scores; macro = unweighted "
                       "mean over concepts with status 'evaluated' (see docs/models.md)",
    })
    tr = root / "training"
    tr.mkdir()
    training_set.labels_table().to_parquet(tr / "labels.parquet", index=False)
    write_json(tr / "summary.json", {
        "n_clips": len(training_set),
        "classes": list(training_set.classes),
        "labels_per_class": training_set.labels_per_class(),
        "feature_schema": {**spec.as_dict(), "modality": model.modality, "n_features": int(training_set.X.shape[1])},
        "missing_features": list(training_set.missing_features),
        "unknown_classes": list(training_set.unknown_classes),
        "training_set_sha256": training_set.fingerprint(),
    })
    promotion = json.loads(decision.to_json())
    promotion["note"] = comparison.note
    if comparison.per_class is not None:
        promotion["new_labels_per_class"] = comparison.per_class
    write_json(root / "promotion.json", promotion)

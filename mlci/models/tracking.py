"""MLflow plumbing shared by training and the registry: URIs, names, tags, run artifacts, errors.

Every error that leaves an MLflow call of mlci goes through :func:`mlflow_errors`: an unreachable
server becomes :class:`~mlci.models.exceptions.TrackingUnreachableError`, and no message keeps the
password of a tracking URI.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlci.models.exceptions import TrackingUnreachableError
from mlci.models.sqlite_store import (  # re-exported: the embedded store is one kind of tracking store
    check_store_location,
    check_tracking_store,
    default_artifact_location,
    sqlite_database,
)
from mlci.redact import redact_text, redact_url

__all__ = [
    "tracking_context",
    "client_for",
    "sanitize_name",
    "class_keys",
    "git_commit",
    "get_or_create_experiment",
    "default_artifact_location",
    "clean_params",
    "finite_metrics",
    "ui_links",
    "write_json",
    "sqlite_database",
    "check_tracking_store",
    "mlflow_errors",
    "translates_mlflow_errors",
]

# The fluent MLflow API (start_run, log_model) reads process-wide URIs; one lock keeps two trainings
# in threads of one process from logging to each other's store.
_LOCK = threading.RLock()
_SANITIZE = re.compile(r"[^a-z0-9]+")
# MLflow limits param values (6000 characters in MLflow 3); longer values are cut with a marker.
_PARAM_MAX = 6000


@contextlib.contextmanager
def tracking_context(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point the fluent MLflow API at ``tracking_uri`` (tracking and registry) for the block.

    The previous URIs are restored afterwards, so a library call never leaves MLflow pointed
    somewhere else (and never at MLflow's working-directory default).
    """
    if not tracking_uri or not isinstance(tracking_uri, str):
        raise ValueError(f"tracking_uri must be a non-empty string, but got {redact_url(tracking_uri)!r}")
    # MLflow has no public "unset" for the registry URI; its module global and environment variable
    # are saved and put back as they were.
    from mlflow.tracking._model_registry import utils as registry_utils

    _no_urls_on_stdout()
    with _LOCK:
        prev_tracking = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
        prev_registry = getattr(registry_utils, "_registry_uri", None)
        prev_registry_env = os.environ.get("MLFLOW_REGISTRY_URI")
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            yield client_for(tracking_uri)
        finally:
            mlflow.set_tracking_uri(prev_tracking)
            registry_utils._registry_uri = prev_registry
            if prev_registry_env is None:
                os.environ.pop("MLFLOW_REGISTRY_URI", None)
            else:
                os.environ["MLFLOW_REGISTRY_URI"] = prev_registry_env


def client_for(tracking_uri: str) -> MlflowClient:
    """A client whose tracking and registry both use ``tracking_uri``; refuses a SQLite store that was
    moved or copied without ``mlci relocate`` (:func:`mlci.models.sqlite_store.check_store_location`)."""
    check_store_location(tracking_uri)
    _no_urls_on_stdout()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _no_urls_on_stdout() -> None:
    # When a run ends on a tracking server, MLflow writes "View run ... at: <tracking URI>/#/..." to
    # stdout, password included. mlci reports its runs itself; a user's explicit setting is kept.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def sanitize_name(name: str) -> str:
    """Lower-case ``name`` with every run of other characters than ``a-z0-9`` as one ``_``."""
    return _SANITIZE.sub("_", str(name).casefold()).strip("_") or "class"


def class_keys(classes: Sequence[str]) -> dict[str, str]:
    """Unique metric-name suffix per class: ``"Gift Giving" -> "gift_giving"`` (``_2`` on clashes)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in classes:
        key, i = sanitize_name(name), 2
        while key in used:
            key, i = f"{sanitize_name(name)}_{i}", i + 1
        used.add(key)
        out[name] = key
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """Commit hash of the git checkout holding ``path`` (default: this package), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def _unreachable_reason(exc: BaseException | None) -> str | None:
    """Why the HTTP client gave up, or None if ``exc`` (or what caused it) is no connection failure."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, requests.exceptions.RequestException):
            if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
                return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
            if isinstance(exc, requests.exceptions.RetryError):
                return "error responses"
            return "could not connect"
        exc = exc.__cause__ or exc.__context__
    return None


def _translated(exc: MlflowException, tracking_uri: str) -> Exception:
    reason = _unreachable_reason(exc.__cause__ or exc.__context__)
    if reason is not None:
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
        return TrackingUnreachableError(
            f"MLflow tracking server {redact_url(tracking_uri)} unreachable after {retries} retries ({reason}): "
            "check MLCI_MLFLOW_TRACKING_URI and that the server is up"
        )
    # The same exception, so callers keep its type and error_code; only the message changes.
    message = redact_text(exc.message)
    exc.message, exc.args = message, (message,)
    return exc


@contextlib.contextmanager
def mlflow_errors(tracking_uri: str) -> Iterator[None]:
    """Within the block, MLflow errors carry no password and an unreachable server says so.

    Raises
    ------
    TrackingUnreachableError
        The server did not answer (connection refused, timeout, 5xx after MLflow's retries).
    MlflowException
        The original error (same type and ``error_code``) with its message redacted.
    """
    try:
        yield
    except MlflowException as exc:
        # 'from None': a traceback never shows the original, unredacted error.
        raise _translated(exc, tracking_uri) from None


def translates_mlflow_errors(func):
    """Decorator: run ``func`` inside :func:`mlflow_errors` of its ``tracking_uri`` argument."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        tracking_uri = signature.bind_partial(*args, **kwargs).arguments.get("tracking_uri", "")
        with mlflow_errors(str(tracking_uri)):
            return func(*args, **kwargs)

    return wrapper


def get_or_create_experiment(client: MlflowClient, name: str, *, artifact_location: str | None = None) -> str:
    """Id of the experiment called ``name``, created if absent (and restored if deleted)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"experiment_name must be a non-empty string, but got {name!r}")
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except mlflow.exceptions.MlflowException:
            # Another process created it between the lookup and the create.
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def clean_params(params: Mapping[str, object]) -> dict[str, str]:
    """Params as MLflow strings (None -> "none", dicts/lists as JSON), cut to MLflow's length limit.

    A float that is NaN (not measured) is left out: no param says "nan".
    """
    out = {}
    for key, value in params.items():
        if isinstance(value, float) and math.isnan(value):
            continue
        if value is None:
            text = "none"
        elif isinstance(value, (dict, list, tuple)):
            text = json.dumps(value, sort_keys=True, default=str)
        else:
            text = str(value)
        out[key] = text if len(text) <= _PARAM_MAX else text[: _PARAM_MAX - 12] + "...[cut]"
    return out


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite entries (a metric that is NaN was not measured and is left out of the run)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def ui_links(tracking_uri: str, run_id: str, model_name: str, version: str) -> tuple[str, str] | None:
    """Addresses of a run and a model version in the MLflow UI of a tracking server, without any
    credentials; None for a database URI (its UI has no fixed address: ``mlflow ui`` serves it)."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/#/runs/{run_id}", f"{base}/#/models/{quote(model_name)}/versions/{version}"


def write_json(path: Path, obj) -> Path:
    """Write ``obj`` as indented JSON (NaN as null) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_nan_to_none(obj), indent=2, sort_keys=True, default=str), encoding="utf-8")
    return path


def _nan_to_none(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj

"""The one settings object, read from ``MLCI_*`` environment variables and an optional ``.env``.

Every setting has a local default, so the demo needs nothing set. Credentials are deliberately
absent: S3 access uses the standard AWS credential chain (environment, profile, instance role)
and nothing here ever reads, logs or echoes them. A password inside a URL setting (an MLflow server
with basic auth) is redacted from the settings' repr and from validation errors.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlci.redact import redact_text

__all__ = [
    "Settings",
    "RoundSettings",
    "TrainingSettings",
    "ScheduleSettings",
    "AdvisorSettings",
    "DEFAULT_CLIP_BASE_URL",
    "DEFAULT_LABELING_QUESTION",
    "default_class_catalog",
    "usable_cores",
    "apply_mlflow_environment",
]

#: Base of the clip URLs the demo corpus writes into its label files. ``.invalid`` is a reserved
#: top-level domain: the URL names a clip, it is never fetched.
DEFAULT_CLIP_BASE_URL = "https://clips.mlci.invalid/"

#: The labeling question of the seed's ``question.html``; its concept list comes from the catalog.
DEFAULT_LABELING_QUESTION = (
    "Please pick all of the labels that correspond to at least two seconds of video in this clip; "
    "matching audio or music alone is not sufficient."
)


def default_class_catalog() -> Path:
    """Path of the class catalog shipped with the package (a copy of the seed's ``classes.json``)."""
    return Path(str(resources.files("mlci") / "data" / "classes.json"))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without affinity masks
        return os.cpu_count() or 1


class _Section(BaseModel):
    # Values are checked against the registries by mlci.params when a flow starts, where an
    # explicit parameter and a configured default get the same one-line error.
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoundSettings(_Section):
    """How a round chooses and publishes the next batch (``MLCI_ROUND__<NAME>``)."""

    strategy: str = Field(default="margin_coverage", description="Query strategy (see docs/strategies.md).")
    strategy_params: dict[str, Any] = Field(
        default_factory=dict, description='Strategy parameters, as JSON: {"policy": "round_robin"}.'
    )
    batch_size: int = Field(default=50, description="Clips per published batch.")
    relabel_share: float = Field(
        default=0.1, description="Share of a batch given to labeled clips whose consensus is uncertain."
    )
    open_batch_days: float = Field(
        default=7.0, description="Days a published batch's unanswered clips stay out of the pool."
    )


class TrainingSettings(_Section):
    """What the nightly trains on and how (``MLCI_TRAINING__<NAME>``)."""

    consensus_method: str = Field(default="dawid_skene", description="How annotators' answers are merged.")
    estimator: str = Field(default="logistic_regression", description="Per-concept estimator.")
    modality: str = Field(
        default="combined",
        description="Features a model trains and scores on: audio, video, combined, or e.g. combined+embeddings:<source>.",
    )
    extractor: str = Field(default="basic", description="Feature extractor name or package.module:Class.")
    extractor_params: dict[str, Any] = Field(
        default_factory=dict, description="Extractor parameters, as JSON (the extractor's defaults when empty)."
    )
    tolerance: float = Field(
        default=0.0, description="Macro AP a challenger may lose against the champion and still be promoted."
    )
    min_new_labels: int = Field(
        default=50, description="Labels the champion never saw needed to compare the two on them (else on CV)."
    )


class ScheduleSettings(_Section):
    """When the nightly runs and how long its lock lives (``MLCI_SCHEDULE__<NAME>``)."""

    cron: str = Field(default="0 2 * * *", description="Cron schedule of the nightly run.")
    timezone: str = Field(default="UTC", description="IANA timezone of the cron schedule.")
    lock_ttl_hours: float = Field(
        default=6.0, description="Hours after which a nightly's store lock counts as stale."
    )


class AdvisorSettings(_Section):
    """The nightly's stop advice per concept (``MLCI_ADVISOR__<NAME>``; docs/advisor.md)."""

    stop_rule: str = Field(
        default="stabilizing_predictions",
        description="Rule that says stop: stabilizing_predictions, oof_plateau or overall_uncertainty.",
    )
    kappa_threshold: float = Field(default=0.99, description="Kappa between successive models that counts as stable.")
    stop_window: int = Field(default=3, description="Nights the kappa rule and the OOF plateau look back over.")
    uncertainty_threshold: float = Field(default=0.05, description="Pool uncertainty (bits) that counts as done.")
    plateau_delta: float = Field(default=0.01, description="OOF AP gain over the window that counts as a plateau.")
    min_positives: int = Field(
        default=10, description="Positives and negatives a concept needs before it may be advised to stop."
    )
    label_budget: int | None = Field(
        default=None, description="Labeled clips the team will pay for; every concept stops when spent (none: no budget)."
    )
    stop_set_size: int = Field(default=1000, description="Pool clips in the fixed stop set (chosen on the first night).")
    reassign_stopped: bool = Field(
        default=True, description="A concept advised to stop gives its share of the next batch to the others."
    )


class Settings(BaseSettings):
    """Configuration of one mlci installation.

    Parameters are read from ``MLCI_<NAME>`` environment variables (case-insensitive) and from a
    ``.env`` file in the working directory; keyword arguments override both. The sections
    ``round``, ``training`` and ``schedule`` read ``MLCI_<SECTION>__<NAME>``; they are the one
    source of the flows' and commands' defaults (a parameter left as None takes them).
    See ``docs/configuration.md`` for every variable.
    """

    # hide_input_in_errors: a rejected value may hold a password, and validation errors get logged.
    model_config = SettingsConfigDict(
        env_prefix="MLCI_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    home: Path = Field(
        default=Path(".mlci"),
        description="Folder for local state: the default store and MLflow database.",
    )
    store: str | None = Field(
        default=None,
        description="Store URI: a folder path, file://..., or s3://bucket/prefix. Default: <home>/store.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto, ...). Default: AWS."
    )
    s3_region: str = Field(default="us-east-1", description="S3 region name.")
    s3_max_attempts: int = Field(
        default=5, ge=1, description="Attempts per S3 call (botocore standard retry mode)."
    )
    s3_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds an S3 call waits for a connection, per attempt."
    )
    s3_read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds an S3 call waits for an answer, per attempt."
    )
    clip_base_url: str = Field(
        default=DEFAULT_CLIP_BASE_URL,
        description="URL prefix that label files use for clips; maps to the store's clips/ prefix.",
    )
    label_studio_files_root: Path | None = Field(
        default=None,
        description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT as seen from mlci; maps /data/local-files/?d= "
        "clip references to keys of a folder store under it. Default: such references are refused.",
    )
    labeling_question: str = Field(
        default=DEFAULT_LABELING_QUESTION,
        description="Question shown above the clip in the Label Studio labeling interface.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: sqlite:///<abs home>/mlflow.db.",
    )
    mlflow_timeout: int = Field(
        default=30, ge=1, description="Seconds an MLflow HTTP request waits for a connection or an answer."
    )
    mlflow_max_retries: int = Field(
        default=2, ge=0, description="Retries of a failed MLflow HTTP request (with MLflow's backoff)."
    )
    experiment_name: str = Field(default="mlci", description="MLflow experiment name.")
    registered_model_name: str = Field(
        default="mlci-concepts", description="MLflow registered model name."
    )
    class_catalog: Path = Field(
        default_factory=default_class_catalog,
        description="JSON list of {class, definition, primary} records.",
    )
    label_studio_url: str | None = Field(
        default=None, description="Address of the Label Studio server that batches are published to."
    )
    # SecretStr: shown as '**********' in the repr, in errors and in logs.
    label_studio_token: SecretStr | None = Field(
        default=None,
        description="Label Studio personal access token (or legacy token) of the user mlci acts as.",
    )
    label_studio_project: str = Field(
        default="mlci", description="Title of the Label Studio project of the class catalog (found or created)."
    )
    dask_address: str | None = Field(
        default=None, description="Address of a Dask scheduler to run tasks on."
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Parallel tasks on the local runner (feature chunks, simulations) or processes of a "
        "local Dask cluster. Default: the usable CPU cores.",
    )

    random_state: int = Field(default=0, description="Seed of cross-validation, estimators and strategies.")
    round: RoundSettings = Field(default_factory=RoundSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    advisor: AdvisorSettings = Field(default_factory=AdvisorSettings)

    @classmethod
    def for_store(cls, store: str | None) -> Settings:
        """Settings from the environment, with ``store`` (a flow's or command's parameter) if given."""
        return cls(store=store) if store else cls()

    def with_overrides(self, **parameters: Any) -> Settings:
        """A copy with a run's parameters applied; a parameter that is None means "as configured".

        Each name is ``random_state`` or a field of one section (``strategy`` -> ``round``,
        ``estimator`` -> ``training``, ``lock_ttl_hours`` -> ``schedule``, ...). Values are not
        validated here: :func:`mlci.params.settings_for_run` checks the result.
        """
        unknown = sorted(set(parameters) - _ROUTABLE)
        if unknown:
            raise TypeError(f"no setting named {unknown}; known: {sorted(_ROUTABLE)}")
        given = {name: value for name, value in parameters.items() if value is not None}
        update: dict[str, Any] = {}
        if "random_state" in given:
            update["random_state"] = given.pop("random_state")
        for section in _SECTIONS:
            config = getattr(self, section)
            mine = {name: given.pop(name) for name in list(given) if name in type(config).model_fields}
            if mine:
                update[section] = config.model_copy(update=mine)
        return self.model_copy(update=update)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        # Resolved once so that every default derived from it is absolute and does not move with cwd.
        return value.expanduser().resolve()

    @field_validator("label_studio_files_root", mode="after")
    @classmethod
    def _absolute_files_root(cls, value: Path | None) -> Path | None:
        # Compared with the store's resolved folder, so resolved the same way.
        return value.expanduser().resolve() if value is not None else None

    @field_validator("clip_base_url", mode="after")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("s3_endpoint_url", mode="after")
    @classmethod
    def _plain_endpoint(cls, value: str | None) -> str | None:
        from mlci.storage import check_endpoint_url

        return check_endpoint_url(value)

    def __repr_args__(self):
        # Logs and tracebacks show settings; URL settings may carry a password.
        for name, value in super().__repr_args__():
            yield name, redact_text(value) if isinstance(value, str) else value

    @cached_property
    def store_uri(self) -> str:
        """Store URI with the default applied."""
        return self.store or str(self.home / "store")

    @cached_property
    def tracking_uri(self) -> str:
        """MLflow tracking URI with the default applied (never MLflow's own cwd default)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @cached_property
    def n_workers(self) -> int:
        """Local parallelism with the default applied."""
        return self.workers or usable_cores()

    def open_store(self, uri: str | None = None, *, must_exist: bool = False):
        """The configured store, or the store at ``uri`` with this configuration's S3 options.

        With ``must_exist`` a store that is not there raises :class:`~mlci.storage.StoreNotFoundError`
        instead of being created by the first write (see :func:`mlci.storage.open_store`).
        """
        from mlci.storage import DEFAULT_IO_THREADS, open_store

        return open_store(
            uri or self.store_uri,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            max_attempts=self.s3_max_attempts,
            connect_timeout=self.s3_connect_timeout,
            read_timeout=self.s3_read_timeout,
            must_exist=must_exist,
            # Every local worker may share one store: never fewer pooled connections than workers.
            io_threads=max(DEFAULT_IO_THREADS, self.n_workers),
        )

    def mlflow_environment(self) -> dict[str, str]:
        """MLflow's HTTP client limits as the environment variables MLflow reads on every request,
        and no "Downloading artifacts" progress bars on the console (mlci shows its own progress)."""
        return {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow_timeout),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow_max_retries),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }


_SECTIONS = ("round", "training", "schedule", "advisor")
#: Every name :meth:`Settings.with_overrides` takes.
_ROUTABLE = frozenset(
    {"random_state"}
    | set(RoundSettings.model_fields) | set(TrainingSettings.model_fields) | set(ScheduleSettings.model_fields)
    | set(AdvisorSettings.model_fields)
)


def apply_mlflow_environment(settings: Settings, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :meth:`Settings.mlflow_environment` in ``environ`` (default: ``os.environ``) where unset.

    MLflow's own defaults (7 retries, 120 s per request) keep a command waiting about 4 minutes on
    an unreachable server. Variables the user set are kept. Returns what was set.
    """
    environ = os.environ if environ is None else environ
    missing = {k: v for k, v in settings.mlflow_environment().items() if k not in environ}
    environ.update(missing)
    return missing

"""Settings: defaults, MLCI_ variables, .env, and the docs listing every variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mlci.catalog import ClassCatalog
from mlci.config import ScheduleSettings, Settings, usable_cores
from mlci.tables import TABLES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_defaults_are_local_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings(_env_file=None)
    assert s.home == tmp_path / ".mlci"
    assert s.store_uri == str(tmp_path / ".mlci" / "store")
    assert s.tracking_uri == f"sqlite:///{tmp_path / '.mlci' / 'mlflow.db'}"
    assert ClassCatalog.from_json(s.class_catalog).names[0] == "holiday"


def test_environment_and_dotenv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MLCI_EXPERIMENT_NAME=from-dotenv\nMLCI_S3_MAX_ATTEMPTS=9\n")
    monkeypatch.setenv("MLCI_STORE", "s3://bucket/prefix")
    monkeypatch.setenv("MLCI_CLIP_BASE_URL", "https://media.example.com/clips")
    s = Settings()
    assert s.store_uri == "s3://bucket/prefix"
    assert s.experiment_name == "from-dotenv" and s.s3_max_attempts == 9
    assert s.clip_base_url == "https://media.example.com/clips/"
    assert s.open_store().bucket == "bucket"


def test_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("MLCI_S3_MAX_ATTEMPTS", "zero")
    with pytest.raises(ValidationError, match="s3_max_attempts"):
        Settings(_env_file=None)


def test_workers_default_to_the_usable_cores_and_read_mlci_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLCI_WORKERS", raising=False)
    assert Settings(_env_file=None).n_workers == usable_cores() >= 1
    monkeypatch.setenv("MLCI_WORKERS", "3")
    assert Settings(_env_file=None).n_workers == 3


def test_zero_workers_is_refused(monkeypatch):
    monkeypatch.setenv("MLCI_WORKERS", "0")
    with pytest.raises(ValidationError, match="workers"):
        Settings(_env_file=None)


def test_repr_shows_configuration_but_no_credentials(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    text = repr(Settings(_env_file=None))
    assert "experiment_name='mlci'" in text and "very-secret-value" not in text


def test_docs_list_every_variable_and_table():
    config_doc = (DOCS / "configuration.md").read_text()
    for name, info in Settings.model_fields.items():
        section = info.default_factory() if info.default_factory else None
        if isinstance(section, BaseModel):  # MLCI_ROUND__BATCH_SIZE, ...
            for field in type(section).model_fields:
                assert f"`MLCI_{name.upper()}__{field.upper()}`" in config_doc, (name, field)
        else:
            assert f"`MLCI_{name.upper()}`" in config_doc, name
    arch = (DOCS / "architecture.md").read_text()
    for table in TABLES.values():
        assert f"`{table.name}`" in arch, table.name


def test_sections_read_nested_variables_and_parameters_override_them(monkeypatch):
    monkeypatch.setenv("MLCI_ROUND__BATCH_SIZE", "12")
    monkeypatch.setenv("MLCI_ROUND__STRATEGY_PARAMS", '{"policy": "round_robin"}')
    monkeypatch.setenv("MLCI_SCHEDULE__CRON", "30 3 * * *")
    settings = Settings(_env_file=None)
    assert settings.round.batch_size == 12 and settings.round.strategy_params == {"policy": "round_robin"}
    assert settings.schedule.cron == "30 3 * * *" and settings.training.estimator == "logistic_regression"
    run = settings.with_overrides(batch_size=None, strategy="random", estimator="linear_svm", random_state=7)
    assert (run.round.batch_size, run.round.strategy, run.random_state) == (12, "random", 7)  # None: as configured
    assert run.training.estimator == "linear_svm" and run.training.modality == "combined"
    assert settings.round.strategy == "margin_coverage" and settings.training.estimator == "logistic_regression"  # untouched
    with pytest.raises(TypeError, match=r"no setting named \['batch_sise'\]"):
        settings.with_overrides(batch_sise=3)


def test_a_bad_configured_default_fails_the_run_like_a_bad_parameter(monkeypatch, tmp_path):
    from mlci.params import ParameterError, settings_for_run

    monkeypatch.setenv("MLCI_HOME", str(tmp_path))
    monkeypatch.setenv("MLCI_ROUND__STRATEGY", "nonsense")
    with pytest.raises(ParameterError, match="strategy must be one of .*but got 'nonsense'"):
        settings_for_run(None)
    assert settings_for_run(None, strategy="random").round.strategy == "random"  # a parameter wins
    monkeypatch.setenv("MLCI_ROUND__BATCH_SIZE", "many")
    with pytest.raises(ParameterError, match="round.batch_size: Input should be a valid integer"):
        settings_for_run(None)


def test_for_store_applies_only_a_given_store(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCI_STORE", str(tmp_path / "configured"))
    assert Settings.for_store(None).store_uri == str(tmp_path / "configured")
    assert Settings.for_store(str(tmp_path / "given")).store_uri == str(tmp_path / "given")


def test_prefect_yaml_schedules_the_nightly_at_the_configured_default():
    import yaml

    spec = yaml.safe_load((DOCS.parent / "prefect.yaml").read_text())
    [nightly] = [d for d in spec["deployments"] if d["name"] == "nightly"]
    [schedule] = nightly["schedules"]
    defaults = ScheduleSettings()
    assert (schedule["cron"], schedule["timezone"]) == (defaults.cron, defaults.timezone)
    # Nothing else is fixed in the file: the worker's MLCI_* settings decide.
    assert nightly["parameters"] == {"trigger": "nightly"}

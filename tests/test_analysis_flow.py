"""The analysis flow end to end (real Prefect runs, SQLite MLflow, a real demo store), its MLflow layout and CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
import typer
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from mlci.analysis import SimulationConfig, make_data, simulate
from mlci.analysis.outputs import (
    find_analysis_run,
    log_to_mlflow,
    publish_outputs,
    write_outputs,
)
from mlci.analysis.summarise import summarise_analysis

STRATEGIES = ["random", "fixed_order", "margin", "oracle_outlier"]


@pytest.fixture(scope="module")
def small_result():
    X, y = load_digits(return_X_y=True)
    X = X[:240] / np.linalg.norm(X[:240], axis=1, keepdims=True)
    data = make_data(None, X, (y[:240, None] == np.array([3, 7])).astype(int), ["three", "seven"])
    result = simulate(data, STRATEGIES, ["5,5,10,10", "10x3"], SimulationConfig(repetitions=2, oof_folds=3))
    return result, summarise_analysis(result)


def test_mlflow_parent_and_nested_runs_with_metrics_stepped_by_labels(small_result, tracking_uri, tmp_path):
    from mlflow import MlflowClient

    result, summary = small_result
    folder = tmp_path / "out"
    written = write_outputs(summary, result, folder, metrics=("ap",))
    assert "report.md" in written and any(k.startswith("figures/learning_curves_") for k in written)
    run_id = log_to_mlflow(summary, result, folder, tracking_uri=tracking_uri, experiment_name="t-analysis",
                           analysis_id="abc123", params={"repetitions": 2})
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("t-analysis")
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert {r.data.tags["strategy"] for r in children} == set(STRATEGIES)
    assert len(children) == len(STRATEGIES) * 2  # one per (strategy, schedule)
    child = next(r for r in children if r.data.tags["strategy"] == "margin" and r.data.tags["schedule"] == "5,5,10,10")
    history = client.get_metric_history(child.info.run_id, "ap_macro")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [5, 10, 20, 30]
    assert "ap_three" in child.data.metrics and "aulc_macro" in child.data.metrics
    expected = result.curves.query("strategy == 'margin' and schedule == '5,5,10,10' and labels == 30")
    assert {m.step: m.value for m in history}[30] == pytest.approx(expected["test_ap"].mean())
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.md", "report.html", "figures", "tables"} <= artifacts
    # The HTML report stands alone in MLflow's artifact viewer: every figure the markdown links is inlined.
    page = (folder / "report.html").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", (folder / "report.md").read_text())
    assert linked and page.count('src="data:image/png;base64,') == len(linked) and "figures/" not in page
    assert "<table>" in page and page.startswith("<!DOCTYPE html>")
    assert client.get_run(run_id).info.status == "FINISHED"
    assert find_analysis_run(tracking_uri, "t-analysis", "abc123") == run_id
    assert find_analysis_run(tracking_uri, "t-analysis", "other") is None


def test_publish_outputs_writes_once(store, tmp_path):
    folder = tmp_path / "out"
    (folder / "figures").mkdir(parents=True)
    (folder / "report.md").write_text("# r\n")
    (folder / "figures" / "a.png").write_bytes(b"png")
    first = publish_outputs(store, "id1", folder)
    assert first == {"reports/analysis/id1/figures/a.png": True, "reports/analysis/id1/report.md": True}
    (folder / "report.md").write_text("# changed\n")
    assert not any(publish_outputs(store, "id1", folder).values())
    assert store.read_text("reports/analysis/id1/report.md") == "# r\n"  # never overwritten


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """A tiny demo corpus with computed features (about 4 s)."""
    from mlci.demo import DemoCorpusSpec, generate_demo_corpus
    from mlci.features import compute_features
    from mlci.storage import open_store

    root = tmp_path_factory.mktemp("analysis-demo")
    store = open_store(str(root / "store"))
    generate_demo_corpus(store, DemoCorpusSpec(n_clips=80, duration=1.0, size=(32, 32), fps=8, sample_rate=8000), n_jobs=2)
    compute_features(store)
    return root


def test_analysis_data_from_consensus_labels_and_from_truth(demo_store):
    from mlci.analysis.data import load_analysis_data
    from mlci.catalog import ClassCatalog
    from mlci.config import Settings
    from mlci.consensus import SnapshotNotFoundError, run_consensus
    from mlci.labels import ingest_labels
    from mlci.storage import open_store

    store = open_store(str(demo_store / "store"))
    catalog = ClassCatalog.from_json(Settings(_env_file=None).class_catalog)
    with pytest.raises(SnapshotNotFoundError, match="no consensus stored"):
        load_analysis_data(store, source="consensus", concepts=catalog.names)  # nothing computed yet
    ingest_labels(store, catalog, base_url=Settings(_env_file=None).clip_base_url)
    run_consensus(store)
    data, text = load_analysis_data(store, source="consensus", concepts=catalog.names, min_positives=3)
    assert 0 < len(data.keys) < 80  # only the labeled clips (the demo labels about 60 %)
    assert list(data.concepts) == [c for c in catalog.names if c in data.concepts]
    assert "consensus labels of snapshot" in text
    truth, _ = load_analysis_data(store, source="truth", min_positives=3)
    assert len(truth.keys) == 80
    with pytest.raises(ValueError, match="source must be one of"):
        load_analysis_data(store, source="oracle")


def test_analysis_flow_logs_publishes_and_does_nothing_the_second_time(prefect_harness, demo_store, monkeypatch):
    from mlflow import MlflowClient

    from cli.analysis import analysis_command
    from flows.analysis import analysis
    from mlci.storage import open_store

    monkeypatch.setenv("MLCI_HOME", str(demo_store / "home"))
    store_uri = str(demo_store / "store")
    tracking_uri = f"sqlite:///{demo_store / 'home' / 'mlflow.db'}"
    (demo_store / "home").mkdir(exist_ok=True)
    kwargs = {"store": store_uri, "source": "truth", "strategies": ["random", "fixed_order", "margin"],
              "schedules": ["5,5,10,10"], "repetitions": 2, "min_positives": 3}
    outcome = analysis(**kwargs)
    assert not outcome.reused and outcome.experiment_name == "mlci-analysis"
    assert outcome.tracking_uri == tracking_uri
    store = open_store(store_uri)
    report = store.read_text(outcome.report_key)
    assert "## 3. Which consensus method" in report and "dawid_skene" in report
    assert store.exists(f"reports/analysis/{outcome.analysis_id}/tables/versus_random.csv")
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.get_run(outcome.run_id)
    assert parent.data.tags["mlci.analysis_id"] == outcome.analysis_id
    assert outcome.answers["q1"] and outcome.answers["q4"]

    again = analysis(**kwargs)
    assert again.reused and again.run_id == outcome.run_id
    exp = client.get_experiment_by_name("mlci-analysis")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`mlci.kind` = 'analysis'")
    assert len(parents) == 1

    # The CLI finds the same analysis (same data and parameters) and recomputes nothing.
    stored = {key: store.stat(key).identity for key in store.list(f"reports/analysis/{outcome.analysis_id}/")}
    n_runs = len(client.search_runs([exp.experiment_id]))  # the parent and its nested runs
    app = typer.Typer()
    app.command("analysis")(analysis_command)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["analysis", "--store", store_uri, "--source", "truth", "--strategies",
                              "random,fixed_order,margin", "--schedule", "5,5,10,10", "--repetitions", "2",
                              "--min-positives", "3"])
    assert res.exit_code == 0, res.output
    assert f"analysis {outcome.analysis_id}: already in MLflow, nothing recomputed" in res.output
    assert f"run {outcome.run_id}" in res.output
    assert len(client.search_runs([exp.experiment_id], filter_string="tags.`mlci.kind` = 'analysis'")) == 1
    assert len(client.search_runs([exp.experiment_id])) == n_runs
    assert {key: store.stat(key).identity for key in store.list(f"reports/analysis/{outcome.analysis_id}/")} == stored


def test_cli_rejects_bad_strategy_and_source_without_running():
    from cli.analysis import analysis_command

    app = typer.Typer()
    app.command("analysis")(analysis_command)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    res = runner.invoke(app, ["analysis", "--strategies", "random,oracle_psychic"])
    assert res.exit_code == 1 and "unknown strategy 'oracle_psychic'" in res.output
    res = runner.invoke(app, ["analysis", "--source", "guess"])  # refused when parsed (click's usage error)
    assert res.exit_code == 2 and "'guess' is not one of: consensus, truth" in " ".join(res.output.split())
    res = runner.invoke(app, ["analysis", "--schedule", "20y20"])
    assert res.exit_code == 1 and "unknown schedule '20y20'" in res.output

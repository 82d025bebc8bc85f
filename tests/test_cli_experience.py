"""The command line as a user sees it, in child processes: a flow command prints one line per step
(``--verbose`` brings Prefect's log back), a re-run with nothing new says so, listings answer as
tables or ``--json``, and wrong choices are refused when the command line is parsed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlci.demo import DemoCorpusSpec, generate_demo_corpus
from mlci.storage import open_store

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PREFECT_LINE = re.compile(r"\| (INFO|DEBUG) +\| ")


@pytest.fixture(scope="module")
def workspace(prefect_harness, tmp_path_factory):
    """A small demo store with its own home (SQLite MLflow inside), and a runner of ``mlci`` in it."""
    from prefect.settings import get_current_settings

    root = tmp_path_factory.mktemp("cli-experience")
    generate_demo_corpus(open_store(str(root / "store")),
                         DemoCorpusSpec(n_clips=40, seed=5, duration=1.5, size=(64, 48), video_minutes=0), n_jobs=2)
    # Without the console levels an earlier in-process command set for the rest of its process.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_", "PREFECT_LOGGING_"))}
    env.update(MLCI_HOME=str(root / "home"), MLCI_STORE=str(root / "store"),
               PREFECT_API_URL=str(get_current_settings().api.url), COLUMNS="200")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "mlci"), *args], env=env, cwd=root, capture_output=True, text=True,
                              timeout=600)

    first = run("nightly", "--batch-size", "8", "--relabel-share", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    return run, first


def test_a_flow_command_prints_one_line_per_step_then_the_summary(workspace):
    _, first = workspace
    steps = first.stderr.splitlines()
    # labels, features, consensus, training, model, advice, batch: one line each, no Prefect or MLflow INFO lines.
    assert [line.split()[0] for line in steps] == ["label", "features", "consensus", "out-of-fold", "model", "stop",
                                                   "round"], \
        first.stderr
    assert not [line for line in steps if PREFECT_LINE.search(line) or "INFO" in line]
    summary = first.stdout.splitlines()
    assert summary[0] == "# mlci nightly round"
    assert re.fullmatch(r"\*\*v1 promoted to champion; batch r-[0-9a-f]+ published \(8 clips\)\*\*", summary[2])


def test_a_rerun_with_nothing_new_says_so_and_verbose_shows_prefects_log(workspace):
    run, first = workspace
    again = run("nightly", "--batch-size", "8", "--relabel-share", "0", "--verbose")
    assert again.returncode == 0, again.stderr[-3000:]
    round_id = re.search(r"batch (r-[0-9a-f]+) published", first.stdout).group(1)
    assert f"**no new labels: champion v1 kept; batch {round_id} already published**" in again.stdout
    assert "Promoted to champion" not in again.stdout  # the first night's decision is not this run's
    assert "No new decision: nothing new to train on, version 1 reused" in again.stdout
    task_lines = [line for line in again.stderr.splitlines() if "| INFO    | Task run '" in line]
    assert len(task_lines) > 10  # Prefect's own console log is back


def test_listings_answer_as_tables_and_as_json(workspace):
    run, first = workspace
    models = run("models")
    assert models.returncode == 0, models.stderr
    header, row = models.stdout.splitlines()[:2]
    assert header.split() == ["version", "aliases", "cv_macro_ap", "cv_roc_auc", "cv_f1", "trigger", "decision"]
    assert row.split()[:2] == ["1", "challenger,champion"] and re.fullmatch(r"0\.\d{3}", row.split()[2])

    [version] = json.loads(run("models", "--json").stdout)
    assert version["version"] == 1 and version["aliases"] == ["challenger", "champion"]
    assert version["trigger"] == "manual" and 0 < version["cv_metrics"]["macro_ap"] <= 1
    assert set(version) == {"name", "version", "aliases", "run_id", "created_at", "trigger", "decision", "cv_metrics"}

    [batch] = json.loads(run("batches", "--json").stdout)
    assert batch["round_id"] in first.stdout and batch["n_clips"] == 8 and batch["n_answered"] == 0
    assert batch["created_at"].endswith("+00:00") and batch["model_version"] == "1"
    table = run("batches").stdout.splitlines()
    assert table[0].split()[:4] == ["round_id", "age", "strategy", "answered"]
    assert table[1].split()[:4] == [batch["round_id"], "0m", "margin_coverage", "0/8"]


@pytest.mark.parametrize(
    ("args", "option", "valid"),
    [
        (["train", "--calibration", "platt"], "--calibration", "none, sigmoid, isotonic"),
        (["train", "--trigger", "cron"], "--trigger", "manual, nightly"),
        (["nightly", "--strategy", "smartest"], "--strategy", "margin"),
        (["nightly", "--consensus-method", "vote"], "--consensus-method", "dawid_skene"),
        (["consensus", "--method", "vote"], "--method", "dawid_skene"),
        (["analysis", "--source", "gold"], "--source", "consensus, truth"),
    ],
    ids=["calibration", "trigger", "strategy", "consensus-method", "consensus", "source"],
)
def test_a_wrong_choice_is_refused_at_parse_time_with_the_valid_values(workspace, args, option, valid):
    run, _ = workspace
    done = run(*args)
    assert done.returncode == 2 and done.stdout == ""  # click's usage error: nothing ran
    message = " ".join(line.strip("│ ") for line in done.stderr.splitlines())
    assert f"Invalid value for '{option}'" in message and valid in message, done.stderr


def test_flow_and_task_runs_have_readable_names(workspace):
    from datetime import datetime, timezone

    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentTaskRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        nights = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["nightly"])))
        features = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["features"])),
                                         flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(
                                             is_null_=False)))
        chunks = [t.name for t in client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[r.id for r in features])))]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert f"nightly-{today}-manual" in {r.name for r in nights}
    assert features and all(re.fullmatch(rf"features-{today}-\d{{4}}", r.name) for r in features)
    assert "features-chunk-0" in chunks


def test_status_shows_champion_labels_batches_and_nightly_runs(workspace):
    run, first = workspace
    done = run("status", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout)
    assert status["champion"]["version"] == 1 and 0 < status["champion"]["cv_metrics"]["macro_ap"] <= 1
    labels = status["labels"]
    assert labels["clips"] > 0 and set(labels["per_concept"]) == {"holiday", "halloween", "gift giving",
                                                                  "family moments", "shopping scenes"}
    [batch] = status["batches"]
    assert batch["round_id"] in first.stdout and (batch["n_returned"], batch["n_clips"]) == (0, 8)
    advice = status["advice"]
    assert advice["model_version"] == "1" and advice["rule"] == "stabilizing_predictions"
    assert {c["concept"]: c["verdict"] for c in advice["concepts"]} == dict.fromkeys(labels["per_concept"], "keep labeling")
    assert status["lock"] is None
    assert any(r["name"].endswith("-manual") and r["state"] == "Completed" for r in status["nightly_runs"]["last"])
    assert status["nightly_runs"]["next"] is None

    text = run("status").stdout.splitlines()
    assert text[2].startswith("champion   mlci-concepts v1 (of 1), registered ") and "cv macro AP 0." in text[2]
    assert any(line.startswith("batches    1 published, 1 open:") for line in text)
    assert any(line.strip().startswith(batch["round_id"]) and line.endswith("0/8 answered") for line in text)
    assert "advice     for v1 (stabilizing_predictions; docs/advisor.md):" in text
    assert any(line.split()[:3] == ["holiday", "keep", "labeling"] for line in text)
    assert text[-1] == "next run   none scheduled (see `mlci serve`)" and len(text) < 32
    assert done.stderr == ""  # no Prefect log lines, even from its temporary server


def test_status_names_what_it_could_not_read_and_shows_the_rest(workspace, tmp_path):
    run, _ = workspace
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    store = json.loads(run("status", "--json", "--no-prefect").stdout)["store"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    env.update(MLCI_HOME=str(tmp_path / "home"), MLCI_STORE=store, MLCI_MLFLOW_TRACKING_URI=missing)
    done = subprocess.run([str(BIN / "mlci"), "status", "--no-prefect"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("champion   unknown: no MLflow database at ")
    assert any(line.startswith("labels     ") and "clips in snapshot" in line for line in lines)
    assert "nightly    unknown: not asked (--no-prefect)" in lines

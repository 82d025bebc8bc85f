"""`mlci labels ingest` / `mlci consensus` commands, and the Prefect tasks around the library."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from cli.labels import app as labels_app
from cli.labels import consensus_command

SEED_BASE = "https://vmlr-workshop.STORAGE/"


def cli() -> typer.Typer:
    # The same wiring cli/__init__.py uses: a labels sub-app and a consensus command.
    main = typer.Typer()
    main.add_typer(labels_app, name="labels")
    main.command("consensus")(consensus_command)
    return main


def test_cli_ingest_and_consensus(tmp_path, seed_labels_path):
    store = str(tmp_path / "store")
    (tmp_path / "store").mkdir()  # commands other than demo-data use a store, they never create one
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    env = {"MLCI_CLIP_BASE_URL": SEED_BASE, "MLCI_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    res = runner.invoke(cli(), ["labels", "ingest", "--store", store, str(seed_labels_path), str(bad)], env=env)
    assert res.exit_code == 3, res.output  # bad.json gave no answers
    assert "labels_final.json" in res.output and "ingested" in res.output and "not_text" in res.output
    assert "998 answers accepted (998 new)" in res.output
    assert res.output.count("error: no answers accepted from 1 file(s)") == 1
    res = runner.invoke(cli(), ["labels", "ingest", "--store", store, "--allow-empty", str(seed_labels_path), str(bad)],
                        env=env)
    assert res.exit_code == 0, res.output
    assert "998 answers accepted (0 new)" in res.output and "error" not in res.output
    res = runner.invoke(cli(), ["labels", "ingest", "--store", store, "--strict", str(bad)], env=env)
    assert res.exit_code == 2
    res = runner.invoke(cli(), ["labels", "ingest", "--store", store, "--format", "xml"], env=env)
    assert res.exit_code == 1 and "--format must be one of" in res.output

    res = runner.invoke(cli(), ["consensus", "--store", store, "--method", "majority"], env=env)
    assert res.exit_code == 0, res.output
    assert "label snapshot" in res.output and "family moments" in res.output and "413" in res.output
    res = runner.invoke(cli(), ["consensus", "--store", store], env=env)  # another method, same snapshot
    assert res.exit_code == 1 and "refusing to overwrite" in res.output


def test_prefect_tasks_in_a_flow(prefect_harness, tmp_path, seed_labels_path):
    from prefect import flow

    from mlci.config import Settings
    from tasks.consensus import compute_consensus_task
    from tasks.labels import ingest_labels_task

    settings = Settings(home=tmp_path / "home", clip_base_url=SEED_BASE, _env_file=None)
    store = settings.open_store()
    store.write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())

    @flow(name="labels-test")
    def labels_flow():
        report = ingest_labels_task(settings)
        result = compute_consensus_task(settings, method="majority")
        return report, result

    report, result = labels_flow()
    assert report.n_new == 1 and report.n_accepted == 998
    assert result.method == "majority" and len(result.labels) == 998 * 5
    manifest = json.loads(store.read_text(f"consensus/{result.snapshot}/manifest.json"))
    assert manifest["positives"]["holiday"] == 318


def _mlci(*args, env):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([Path(sys.executable).parent / "mlci", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_wrong_base_url_exits_3_then_fixed_reads_the_answers_again(tmp_path, seed_labels_path):
    import os

    from mlci.storage import open_store

    store = open_store(str(tmp_path / "store"))
    store.write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCI_")}
    env.update(MLCI_HOME=str(tmp_path / "home"), MLCI_STORE=str(tmp_path / "store"))

    wrong = _mlci("labels", "ingest", env=env)  # MLCI_CLIP_BASE_URL not set yet
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith("error: no answers accepted from 1 file(s)")
    assert "Traceback" not in wrong.stderr and "unresolvable_clip_ref=1000" in wrong.stdout
    assert _mlci("labels", "ingest", "--allow-empty", env=env).returncode == 0

    env["MLCI_CLIP_BASE_URL"] = SEED_BASE
    fixed = _mlci("labels", "ingest", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "retried" in fixed.stdout and "998 answers accepted (998 new)" in fixed.stdout
    before = {k: store.read_bytes(k) for k in store.list("")}
    again = _mlci("labels", "ingest", "--reingest", "labels/labels_final.json", env=env)
    assert again.returncode == 0 and "998 answers accepted (0 new)" in again.stdout
    assert {k: store.read_bytes(k) for k in store.list("")} == before

    # The same export under a new name, in other bytes: a duplicate, said so, not a second annotator.
    records = json.loads(seed_labels_path.read_text())[::-1]
    (tmp_path / "labels_final (copy).json").write_text(json.dumps(records, indent=2))
    dup = _mlci("labels", "ingest", str(tmp_path / "labels_final (copy).json"), env=env)
    assert dup.returncode == 0, dup.stdout + dup.stderr
    assert "the same answers as labels/labels_final.json (other bytes); not added again" in dup.stdout
    assert "1 duplicates" in dup.stdout and "998 answers accepted (0 new)" in dup.stdout  # counted once

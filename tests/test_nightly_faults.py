"""The nightly when things go wrong: a cut connection, a killed run, a held lock, bad parameters.

Each run is a real flow run on the Prefect test server against a real store (S3 over HTTP through
a proxy that cuts connections, or a folder), with real clips and a real MLflow store.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from cli.common import EXIT_INCOMPLETE, EXIT_SKIPPED
from mlci.demo import DemoCorpusSpec, generate_demo_corpus
from mlci.locks import StoreLock
from mlci.models import list_versions
from mlci.params import ParameterError
from mlci.storage import open_store

pytestmark = pytest.mark.slow

CORPUS = DemoCorpusSpec(n_clips=48, seed=21, duration=1.5, size=(64, 48))


@pytest.fixture
def env(prefect_harness, tmp_path, monkeypatch):
    """MLCI_* variables of a fresh installation in tmp_path; returns a function to point it at a store."""
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLCI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLCI_MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLCI_S3_MAX_ATTEMPTS", "2")
    return {"tracking_uri": tracking_uri, "tmp": tmp_path}


def _local_corpus(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "store"))
    generate_demo_corpus(store, CORPUS, n_jobs=2)
    monkeypatch.setenv("MLCI_STORE", str(tmp_path / "store"))
    return store


def test_a_failed_feature_chunk_makes_an_incomplete_run_that_says_so(env, cutting_proxy, s3_endpoint, monkeypatch):
    bucket = "mlci-faults"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/store", endpoint_url=s3_endpoint)
    generate_demo_corpus(store, CORPUS, n_jobs=2)
    monkeypatch.setenv("MLCI_STORE", f"s3://{bucket}/store")
    monkeypatch.setenv("MLCI_S3_ENDPOINT_URL", cutting_proxy.url)

    # The third chunk of clips (16 of 48) cannot write its features: the connection is cut.
    cutting_proxy.cut(r"^PUT /mlci-faults/store/features/[^ ]*/clips/part-[^ ]*-00002\.parquet")
    night = CliRunner().invoke(app, ["nightly", "--batch-size", "6", "--relabel-share", "0"])
    assert night.exit_code == EXIT_INCOMPLETE, night.output
    assert cutting_proxy.cut_requests >= 3  # botocore's attempts, times the task's tries
    assert "# mlci nightly round (INCOMPLETE)" in night.output
    assert "16 clips have no features and were left out of the pool" in night.output
    assert "2: EndpointUnreachableError" in night.output  # the failed chunk and why
    assert "warning: the run skipped work" in night.output
    [round_id] = {k.split("/")[1] for k in store.list("batches/")}
    manifest = json.loads(store.read_text(f"batches/{round_id}/manifest.json"))
    assert manifest["incomplete_pool"]["clips_without_features"] == 16
    assert list(manifest["incomplete_pool"]["failed_chunks"]) == ["2"]
    batch = pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{round_id}/batch.csv")))
    assert len(batch) == 6

    # Healed: the next run computes the 16 clips, is complete, and publishes from the whole pool.
    cutting_proxy.cut(None)
    again = CliRunner().invoke(app, ["nightly", "--batch-size", "6", "--relabel-share", "0"])
    assert again.exit_code == 0, again.output
    assert "INCOMPLETE" not in again.output and "16 computed" in again.output
    rounds = {k.split("/")[1] for k in store.list("batches/")}
    [new_round] = rounds - {round_id}
    assert "incomplete_pool" not in json.loads(store.read_text(f"batches/{new_round}/manifest.json"))


def test_bad_parameters_fail_before_anything_is_locked_written_or_registered(env, tmp_path, monkeypatch):
    from flows.nightly import nightly

    store = _local_corpus(tmp_path, monkeypatch)
    with pytest.raises(ParameterError) as caught:
        nightly(strategy="nonsense", batch_size=0, estimator="forest", modality="smell", consensus_method="vote")
    message = str(caught.value)
    assert "strategy must be one of" in message and "'nonsense'" in message and "margin" in message
    assert "batch_size must be an integer >= 1, but got 0" in message
    assert "estimator must be one of" in message and "modality must be one of" in message
    assert "consensus_method must be one of" in message
    assert store.list("locks/") == [] and store.list("annotations/") == [] and store.list("features/") == []
    assert not (tmp_path / "mlflow.db").exists()

    with pytest.raises(ParameterError, match="store 'gs://bucket/x': unsupported store URI scheme 'gs'"):
        nightly(store="gs://bucket/x")

    # The command line refuses them while parsing, listing the valid names.
    for args, expected in (
        (["nightly", "--strategy", "nonsense"], "'nonsense' is not one of: anomaly, coreset"),
        (["nightly", "--estimator", "forest"], "'forest' is not one of: hist_gradient_boosting, linear_svm"),
        (["round", "--modality", "smell"], "'smell' is not one of: audio, video, combined"),
        (["serve", "--strategy", "x"], "'x' is not one of:"),
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich draws a box
        assert expected in text, result.output
    assert store.list("locks/") == []


def test_a_run_held_by_a_live_process_is_skipped_with_who_and_since(env, tmp_path, monkeypatch):
    store = _local_corpus(tmp_path, monkeypatch)
    holder = StoreLock(store, "nightly", owner="nightly-on-other-host")
    holder.acquire()
    try:
        result = CliRunner().invoke(app, ["nightly"])
    finally:
        holder.release()
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert "lock 'nightly' is held by nightly-on-other-host since 20" in result.output
    assert store.list("features/") == [] and store.list("annotations/") == []


def test_a_killed_run_does_not_block_the_next_night(env, tmp_path, monkeypatch):
    """kill -9 of a nightly that holds the lock: the next run on this host takes the lock over at once."""
    from prefect.settings import PREFECT_API_URL

    from flows.nightly import nightly

    store = _local_corpus(tmp_path, monkeypatch)
    child_env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    code = "from flows.nightly import nightly; nightly(batch_size=6, relabel_share=0.0)"
    victim = subprocess.Popen([sys.executable, "-c", code], env=child_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not store.list("locks/nightly/"):
        assert victim.poll() is None and time.monotonic() < deadline, "the victim never took the lock"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    [lock_key] = store.list("locks/nightly/")
    assert json.loads(store.read_text(lock_key))["pid"] == victim.pid

    summary = nightly(batch_size=6, relabel_share=0.0)
    assert summary.status == "completed"
    assert any("took over the store lock" in w and f":{victim.pid}:" in w for w in summary.warnings)
    taken = json.loads(store.read_text("locks/nightly/0000000001.json"))
    assert taken["replaced"]["why"] == "holder process is gone"
    assert summary.batch.published and summary.batch.n_clips == 6
    assert [v.version for v in list_versions(env["tracking_uri"], "mlci-concepts")] == ["1"]

"""The nightly flow end to end: Prefect test server, S3 over HTTP (moto), SQLite MLflow, real clips.

One corpus lives through three nights, in order:
1. night 1 registers version 1 as champion and publishes batch 1 (a corrupt clip is quarantined);
2. batch 1 is answered as the simulated annotators would; two night-2 runs start together and
   exactly one publishes; the next run is not blocked by a crashed run's stale lock;
3. night 3 with nothing new publishes nothing and registers nothing;
then ``mlci train`` registers a version through the ``train`` flow, and reuses it when run again.

Each night the gate's decision and reason are checked against the numbers and the registry.
"""

from __future__ import annotations

import io
import json
import re
import threading
from datetime import datetime, timedelta, timezone

import boto3
import pandas as pd
import pytest
from mlflow import MlflowClient

from annotators import answer_batch
from mlci.demo import DemoCorpusSpec, generate_demo_corpus
from mlci.reporting import ModelStep
from mlci.storage import open_store

pytestmark = pytest.mark.slow

BATCH_SIZE = 12


@pytest.fixture(scope="module")
def env(prefect_harness, s3_endpoint, tmp_path_factory):
    """MLCI_* settings for the flows: an S3 store on moto, a SQLite MLflow store in a temp dir."""
    bucket = "mlci-nightly"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    home = tmp_path_factory.mktemp("nightly-home")
    values = {
        "MLCI_STORE": f"s3://{bucket}/store",
        "MLCI_S3_ENDPOINT_URL": s3_endpoint,
        "MLCI_HOME": str(home),
        "MLCI_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    store = open_store(values["MLCI_STORE"], endpoint_url=s3_endpoint)
    generate_demo_corpus(store, DemoCorpusSpec(n_clips=48, seed=11, duration=1.5, size=(64, 48)), n_jobs=2)
    store.write_bytes("clips/demo/broken.mp4", b"\x00\x00\x00\x18ftypmp42 truncated")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        yield values, store


def _run(**params):
    from flows.nightly import nightly

    return nightly(batch_size=BATCH_SIZE, relabel_share=0.0, **params)


def _versions(env_values):
    from mlci.models import list_versions

    return list_versions(env_values["MLCI_MLFLOW_TRACKING_URI"], "mlci-concepts")


#: The gate's reason when a champion exists (mlci.models.promotion.decide_promotion).
GATE = re.compile(
    r"challenger (?P<measured>new_labels|cv)_macro_ap=(?P<challenger>[0-9.]+) is (?P<verb>at least as good as|worse than) "
    r"champion (?P=measured)_macro_ap=(?P<champion>[0-9.]+) \(tolerance 0\) "
    r"(?:on (?P<new>\d+) labels the champion never saw|on cross-validated metrics \(.+\))"
)


def _assert_gate_recorded(env_values, model: ModelStep) -> None:
    """The version's MLflow tags and aliases say what the nightly summary says."""
    from mlci.models import resolve_version

    info = resolve_version(env_values["MLCI_MLFLOW_TRACKING_URI"], "mlci-concepts", version=model.version)
    assert info.tags["mlci.promotion.reason"] == model.decision
    assert info.tags["mlci.promotion.promote"] == str(model.promoted).lower()
    assert ("champion" in info.aliases) == model.promoted
    assert info.metrics["macro_ap"] == pytest.approx(model.metrics["cv_macro_ap"])


def test_three_nights(env):
    values, store = env

    # Night 1: first model becomes champion, batch 1 is published, the broken clip is quarantined.
    first = _run()
    assert first.status == "completed"
    assert first.model.version == "1" and first.model.promoted
    assert first.model.decision == "no champion yet: the first model becomes champion"
    _assert_gate_recorded(values, first.model)
    assert first.batch.published and first.batch.n_clips == BATCH_SIZE
    assert first.features.quarantined >= 1
    batch1 = pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{first.batch.round_id}/batch.csv")))
    assert len(batch1) == BATCH_SIZE and batch1["key"].is_unique
    assert "clips/demo/broken.mp4" not in set(batch1["key"])
    tasks = json.loads(store.read_text(f"batches/{first.batch.round_id}/tasks.json"))
    assert tasks[0]["predictions"][0]["model_version"] == "mlci-concepts/1"
    [v1] = _versions(values)
    assert "champion" in v1.aliases

    # A crashed run left a lock behind that has expired by now.
    store.write_bytes(
        "locks/nightly/0000009000.json",
        json.dumps({"owner": "crashed", "acquired_at": "2026-01-01T00:00:00+00:00",
                    "expires_at": (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()}).encode(),
    )

    # Night 2: batch 1 comes back; two runs start together and exactly one publishes.
    answer_batch(store, first.batch.round_id, "batch-1", seed=1)
    results: list = []
    barrier = threading.Barrier(2)

    def night_two():
        barrier.wait()
        results.append(_run())

    threads = [threading.Thread(target=night_two) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    completed = [r for r in results if r.status == "completed"]
    assert len(results) == 2
    assert sum(r.batch.published for r in results) == 1
    second = next(r for r in completed if r.batch.published)
    assert second.model.version == "2" and not second.model.reused
    # The gate compared version 2 with champion version 1, and its decision follows from its numbers.
    gate = GATE.fullmatch(second.model.decision)
    assert gate, second.model.decision
    m = second.model.metrics
    assert float(gate["challenger"]) == pytest.approx(m["promotion_challenger"], abs=1e-4)
    assert float(gate["champion"]) == pytest.approx(m["promotion_champion"], abs=1e-4)
    assert (gate["verb"] == "at least as good as") == second.model.promoted
    assert second.model.promoted == (m["promotion_challenger"] >= m["promotion_champion"] - 1e-12)
    assert (gate["measured"] == "new_labels") == (gate["new"] is not None)
    if gate["new"] is None:  # compared on cross-validated metrics: version 1's own macro AP
        assert m["promotion_champion"] == pytest.approx(_versions(values)[1].metrics["macro_ap"])
    else:
        assert int(gate["new"]) == m["promotion_n_compare"] >= 50
    _assert_gate_recorded(values, second.model)
    batch2 = pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{second.batch.round_id}/batch.csv")))
    assert not set(batch2["key"]) & set(batch1["key"])
    versions = _versions(values)
    assert [v.version for v in versions] == ["2", "1"]
    assert "challenger" in versions[0].aliases
    assert any("champion" in v.aliases for v in versions)

    # Night 3: nothing new.
    before = {k: store.stat(k).identity for k in store.list("batches/")}
    third = _run()
    assert third.status == "completed"
    assert not third.batch.published and third.model.reused
    # The reused run's decision is night 2's, read back from MLflow.
    assert (third.model.version, third.model.promoted, third.model.decision) == (
        "2", second.model.promoted, second.model.decision)
    assert [v.version for v in _versions(values)] == ["2", "1"]
    assert {k: store.stat(k).identity for k in store.list("batches/")} == before

    # The CLI sees the same state: both batches listed with batch 1 answered; the round alone
    # with the nightly's parameters finds its batch already out.
    from typer.testing import CliRunner

    from cli import app

    listing = CliRunner().invoke(app, ["batches"])
    assert listing.exit_code == 0, listing.output
    row1 = next(line for line in listing.output.splitlines() if first.batch.round_id in line)
    assert row1.split()[3] == f"{BATCH_SIZE}/{BATCH_SIZE}"  # answered / clips
    assert second.batch.round_id in listing.output
    alone = CliRunner().invoke(app, ["round", "--batch-size", str(BATCH_SIZE), "--relabel-share", "0"])
    assert alone.exit_code == 0, alone.output
    assert "already published" in alone.output
    assert {k: store.stat(k).identity for k in store.list("batches/")} == before

    # Each batch is one MLflow run saying which strategy chose each clip; re-runs added none.
    client = MlflowClient(values["MLCI_MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("mlci-batches")
    runs = {r.data.tags["mlci.round_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {first.batch.round_id, second.batch.round_id}
    for result, batch in ((first, batch1), (second, batch2)):
        run = runs[result.batch.round_id]
        assert run.info.status == "FINISHED" and run.data.params["strategy"] == "margin_coverage"
        assert run.data.tags["mlci.model"] == f"mlci-concepts/{result.model.champion_version}"
        counts = batch["reason"].value_counts().to_dict()
        assert set(counts) == {"uncertain", "coverage"}
        assert {k.removeprefix("clips_"): int(v) for k, v in run.data.metrics.items()} == counts
        logged = pd.read_csv(client.download_artifacts(run.info.run_id, "batch.csv"))
        assert logged[["key", "reason"]].equals(batch[["key", "reason"]])
        # The stop advice of the night: a picture per concept and the verdicts, as on the version.
        pictures = {a.path for a in client.list_artifacts(run.info.run_id, "advisor")}
        assert pictures == {"advisor/advice.json", *(f"advisor/{key}.png" for key, _ in result.model.classes)}
        verdicts = {c: v for c, v, _ in result.advice.concepts}
        assert {key: run.data.tags[f"mlci.advice.{key}"] for key, _ in result.model.classes} == {
            key: verdicts[name] for key, name in result.model.classes}

    # Version 2 is the first trained on batch 1's answers, and says so; version 1 on none.
    from mlci.models import resolve_version

    v2 = resolve_version(values["MLCI_MLFLOW_TRACKING_URI"], "mlci-concepts", version="2")
    assert v2.tags["mlci.batches_first_used"] == first.batch.round_id
    assert client.get_run(v2.run_id).data.tags["mlci.batches_first_used"] == first.batch.round_id
    assert resolve_version(values["MLCI_MLFLOW_TRACKING_URI"], "mlci-concepts", version="1").tags[
        "mlci.batches_first_used"] == "none"
    assert v2.tags["mlci.advice.rule"] == "stabilizing_predictions"
    assert {name: v2.tags[f"mlci.advice.{key}"] for key, name in second.model.classes} == {
        c: v for c, v, _ in second.advice.concepts}

    # `mlci train` runs the same training step in the `train` flow: a new version (its estimator
    # parameters are recorded as given, {} rather than the nightly's none), then reuse.
    trained = CliRunner().invoke(app, ["train", "--trigger", "nightly"])
    assert trained.exit_code == 0, trained.output
    assert "registered mlci-concepts version 3 (run " in trained.output
    v3 = _versions(values)[0]
    assert v3.version == "3" and "challenger" in v3.aliases
    assert v3.tags["mlci.promotion.reason"] in trained.output and v3.tags["mlci.trigger"] == "nightly"
    run_tags = MlflowClient(values["MLCI_MLFLOW_TRACKING_URI"]).get_run(v3.run_id).data.tags
    assert run_tags["mlci.prefect_flow_run_id"]  # a Prefect flow run, as the nightly's
    again = CliRunner().invoke(app, ["train", "--trigger", "nightly"])
    assert again.exit_code == 0, again.output
    assert f"reused mlci-concepts version 3 (run {v3.run_id};" in again.output
    assert [v.version for v in _versions(values)] == ["3", "2", "1"]

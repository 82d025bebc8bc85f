"""The production topology of infra/local started for real, the nightly deployed from prefect.yaml.

A Prefect worker runs each triggered nightly with the Dask task runner on the stack's Dask
scheduler, against an MLflow server (PostgreSQL backend, S3 artifacts served through it) and an S3
store (moto's server). Results are read back through each service's own client. Then four faults,
each ending with nothing lost and a next run that succeeds. ``make test-stack`` runs this module
(``pytest tests/stack --stack``); the tests share one stack and one corpus and run in file order,
each night starting from what the one before left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient

from annotators import answer_batch
from mlci.demo import DemoCorpusSpec, generate_demo_corpus, load_truth
from mlci.features import compute_features, load_features
from mlci.layout import BATCHES_PREFIX, batch_key
from mlci.storage import open_store

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "local" / "stack.py"
BIN = Path(sys.executable).parent
MODEL = "mlci-concepts"
CORPUS = DemoCorpusSpec(n_clips=48, seed=11, duration=1.5, size=(64, 48))
NEW_CLIPS = 32  # per faulted night: two feature chunks of 16, so a fault can hit one while the other runs
# What the team tunes (prefect.yaml fixes none of it): the worker and the Dask workers read it.
TUNING = {
    "MLCI_ROUND__BATCH_SIZE": "12",
    "MLCI_ROUND__RELABEL_SHARE": "0",
    # Short S3 timeouts, so a frozen endpoint is retried within the test's seconds, not minutes.
    "MLCI_S3_CONNECT_TIMEOUT": "2",
    "MLCI_S3_READ_TIMEOUT": "4",
}
TIMINGS: dict[str, float] = {}


@dataclass
class Stack:
    dir: Path
    env: dict[str, str]
    open_rounds: list[str] = field(default_factory=list)
    nights: int = 0
    truth: pd.DataFrame | None = None  # of every clip, the new nights' included

    # --- the stack itself ---
    def command(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(STACK), *args, "--dir", str(self.dir)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **TUNING})
        assert not check or done.returncode == 0, done.stdout + done.stderr
        return done

    def pids(self, service: str) -> list[int]:
        return json.loads((self.dir / "stack.json").read_text())["pids"][service]

    @property
    def api(self) -> str:
        return self.env["PREFECT_API_URL"]

    @property
    def mlflow(self) -> MlflowClient:
        return MlflowClient(self.env["MLCI_MLFLOW_TRACKING_URI"])

    @property
    def store(self):
        return open_store(self.env["MLCI_STORE"], endpoint_url=self.env["MLCI_S3_ENDPOINT_URL"])

    @property
    def s3(self):
        return boto3.client("s3", endpoint_url=self.env["MLCI_S3_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    # --- Prefect, through its REST API ---
    def post(self, path: str, body: dict) -> object:
        response = requests.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def trigger(self) -> str:
        """A run of nightly/nightly, created as the scheduler creates one: the deployment's own parameters."""
        deployment = requests.get(f"{self.api}/deployments/name/nightly/nightly", timeout=30).json()
        return self.post(f"/deployments/{deployment['id']}/create_flow_run", {})["id"]

    def flow_run(self, run_id: str) -> dict:
        return requests.get(f"{self.api}/flow_runs/{run_id}", timeout=30).json()

    def wait(self, run_id: str, timeout: float = 300, states=("COMPLETED", "FAILED", "CRASHED", "CANCELLED")) -> dict:
        deadline = time.monotonic() + timeout
        while (run := self.flow_run(run_id))["state_type"] not in states:
            assert time.monotonic() < deadline, f"flow run {run_id} still {run['state_type']}:\n{self.worker_log()}"
            time.sleep(1)
        return run

    def run_night(self, timeout: float = 300) -> dict:
        """Trigger a run and wait for its end; the batch it publishes is open from then on."""
        started, rounds = time.monotonic(), self.rounds()
        run = self.wait(self.trigger(), timeout)
        run["wall_seconds"] = time.monotonic() - started
        self.published(rounds)
        return run

    def running_task(self, name: str, flow_run_id: str, timeout: float = 180) -> dict:
        """Wait for a task run named ``name-*`` of this flow run (or its subflows) to be running."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.post("/task_runs/filter", {
                "task_runs": {"name": {"like_": name}, "state": {"type": {"any_": ["RUNNING"]}}},
                "sort": "EXPECTED_START_TIME_DESC", "limit": 5})
            if found:
                return found[0]
            assert self.flow_run(flow_run_id)["state_type"] in ("SCHEDULED", "PENDING", "RUNNING"), \
                f"the run ended before any {name} task ran"
            assert time.monotonic() < deadline, f"no {name} task ran within {timeout} s"
            time.sleep(0.3)

    def artifacts(self, flow_run_id: str) -> dict[str, dict]:
        found = self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        return {a["key"]: a for a in found if a.get("key")}

    def worker_log(self) -> str:
        return (self.dir / "logs" / "worker.log").read_text(errors="replace")[-4000:]

    # --- the store and the registry ---
    def objects(self) -> dict[str, str]:
        bucket = self.env["MLCI_STORE"].removeprefix("s3://").split("/")[0]
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    def rounds(self) -> set[str]:
        keys = self.store.list(BATCHES_PREFIX)
        return {k.split("/")[1] for k in keys if k.endswith("/manifest.json")}

    def versions(self) -> list:
        return sorted(self.mlflow.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))

    def champion(self) -> str | None:
        try:
            return self.mlflow.get_model_version_by_alias(MODEL, "champion").version
        except Exception:  # noqa: BLE001 - no champion yet
            return None

    # --- what happens between nights ---
    def new_night(self, tmp: Path, clips: int = NEW_CLIPS) -> list[str]:
        """Annotators answer every open batch; ``clips`` new clips arrive. Returns their keys."""
        self.nights += 1
        store = self.store
        if self.truth is None:
            self.truth = load_truth(store)
        answered = sum(answer_batch(store, round_id, f"night-{self.nights}-{round_id}", seed=self.nights,
                                    truth=self.truth) for round_id in self.open_rounds)
        assert answered or not self.open_rounds, "no clip of the open batches could be answered"
        self.open_rounds = []
        if not clips:
            return []
        source = open_store(str(tmp / f"night-{self.nights}"))
        generate_demo_corpus(source, DemoCorpusSpec(n_clips=clips, seed=100 + self.nights, duration=1.5,
                                                    size=(64, 48)), n_jobs=2)
        rename = {key: key.replace("clips/", f"clips/night-{self.nights}/", 1) for key in source.list("clips/")}
        for key, new in rename.items():
            store.write_bytes(new, source.read_bytes(key))
        self.truth = pd.concat([self.truth, load_truth(source).assign(key=lambda t: t["key"].map(rename))])
        return sorted(rename.values())

    def published(self, before: set[str]) -> list[str]:
        """Batches published since ``before``; they stay open until the next night answers them."""
        new = sorted(self.rounds() - before)
        self.open_rounds += [r for r in new if r not in self.open_rounds]
        return new


def _processes_with(variable: str) -> list[int]:
    """Live processes (zombies aside) whose environment holds ``variable``, written ``NAME=value``."""
    needle, found = variable.encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0") and \
                        (entry / "stat").read_text().split()[2] != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("stack")
    stack = Stack(directory, {})
    started = time.monotonic()
    try:
        stack.command("up")
        TIMINGS["up"] = time.monotonic() - started
        for line in stack.command("env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            stack.env[key] = value.strip("'")
        generate_demo_corpus(stack.store, CORPUS, n_jobs=2)
        # Deploy exactly as docs/operations.md tells a team to.
        done = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **stack.env})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield stack
    finally:
        stack.command("down", check=False)
        assert _processes_with(f"MLCI_STACK_DIR={stack.dir.resolve()}") == [], "processes of the stack outlived `down`"
        ports = json.loads((stack.dir / "stack.json").read_text())["ports"] if (stack.dir / "stack.json").exists() else {}
        for name, port in ports.items():
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        stack.command("down", "--purge", check=False)


def _feature_rows(store, keys: list[str]) -> np.ndarray:
    """Stored features of ``keys``, in order; raises when any clip has none."""
    return load_features(store, modality="combined", keys=keys)[1]


def _reference_features(stack: Stack, keys: list[str], tmp: Path) -> np.ndarray:
    """The same clips' features computed without any fault: the library, in this process."""
    reference = open_store(str(tmp / "reference"))
    store = stack.store
    for key in keys:
        reference.write_bytes(key, store.read_bytes(key))
    compute_features(reference)
    return _feature_rows(reference, keys)


def _nothing_lost(before: dict[str, str], after: dict[str, str]) -> None:
    lost = sorted(k for k in before if k not in after)
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert not lost and not changed, f"lost {lost[:5]}, overwritten {changed[:5]}"


def _dask_counts(stack: Stack) -> dict[str, int]:
    from distributed import Client

    def counts(dask_scheduler):
        prefix = dask_scheduler.task_prefixes.get("compute_feature_chunk_task")
        return dict(prefix.state_counts) if prefix is not None else {}  # a prefix with no live task is falsy

    with Client(stack.env["MLCI_DASK_ADDRESS"], timeout=10) as client:
        return client.run_on_scheduler(counts)


# --- the nightly on the stack ---------------------------------------------------------------------


def test_the_nightly_deployed_from_prefect_yaml_runs_on_the_stack(stack):
    rounds, dask_before = stack.rounds(), _dask_counts(stack)
    run = stack.run_night()
    TIMINGS["stack"] = run["wall_seconds"]
    assert run["state_type"] == "COMPLETED", stack.worker_log()

    # Prefect: the run, its summary artifact; the feature chunks ran on the stack's Dask scheduler.
    artifacts = stack.artifacts(run["id"])
    assert "nightly-summary" in artifacts and "Promoted to champion" in artifacts["nightly-summary"]["data"]
    chunks = _dask_counts(stack).get("memory", 0) - dask_before.get("memory", 0)
    assert chunks == 3, f"{chunks} feature chunks ran on the Dask cluster, expected 3 (48 clips / 16)\n{stack.worker_log()}"

    # S3: one batch of the configured size.
    [round_id] = stack.published(rounds)
    batch = stack.store.read_text(batch_key(round_id, "batch.csv")).strip().splitlines()
    assert len(batch) == 1 + 12

    # MLflow server: the run with its metrics, version 1 as champion, artifacts served from S3.
    [version] = stack.versions()
    assert (version.version, stack.champion()) == ("1", "1")
    mlflow_run = stack.mlflow.get_run(version.run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["mlci.prefect_flow_run_id"] == run["id"]
    assert 0 < mlflow_run.data.metrics["cv_macro_ap"] <= 1
    assert mlflow_run.info.artifact_uri.startswith("mlflow-artifacts:")  # clients never touch S3 for artifacts
    names = {a.path for a in stack.mlflow.list_artifacts(version.run_id)}
    assert {"evaluation", "figures", "training", "promotion.json"} <= names, names
    served = Path(stack.mlflow.download_artifacts(version.run_id, "promotion.json", tempfile.mkdtemp()))
    objects = stack.s3.list_objects_v2(Bucket="mlci-mlflow", Prefix="artifacts/")["Contents"]
    [stored] = [o["Key"] for o in objects if o["Key"].endswith(f"{version.run_id}/artifacts/promotion.json")]
    assert stack.s3.get_object(Bucket="mlci-mlflow", Key=stored)["Body"].read() == served.read_bytes()


def test_a_second_trigger_publishes_nothing_and_registers_nothing(stack):
    rounds, versions, objects = stack.rounds(), len(stack.versions()), stack.objects()
    run = stack.run_night()
    assert run["state_type"] == "COMPLETED", stack.worker_log()
    assert stack.rounds() == rounds and len(stack.versions()) == versions
    _nothing_lost(objects, stack.objects())


def test_overhead_of_the_services_against_the_embedded_default(stack, tmp_path):
    # The same corpus, the same tuning, on the embedded default: folder store, SQLite MLflow,
    # Prefect's temporary server (its database migrated beforehand, as after a first run).
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLCI_"))}
    env.update(TUNING, MLCI_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    generate_demo_corpus(open_store(str(home / "store")), CORPUS, n_jobs=2)
    migrated = subprocess.run([str(BIN / "prefect"), "server", "database", "upgrade", "-y"], env=env,
                              capture_output=True, text=True, timeout=300)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-2000:]
    started = time.monotonic()
    done = subprocess.run([str(BIN / "mlci"), "nightly"], env=env, capture_output=True, text=True, timeout=600)
    TIMINGS["embedded"] = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nnightly on {CORPUS.n_clips} clips: stack {TIMINGS['stack']:.1f} s (trigger to Completed, "
          f"worker + Dask + MLflow server + PostgreSQL + S3), embedded default {TIMINGS['embedded']:.1f} s "
          f"(`mlci nightly`); ratio {TIMINGS['stack'] / TIMINGS['embedded']:.2f}; stack up took {TIMINGS['up']:.0f} s")


# --- faults -------------------------------------------------------------------------------------------


def test_a_dask_worker_killed_during_feature_extraction(stack, tmp_path):
    from distributed import Client

    new = stack.new_night(tmp_path)
    rounds, objects, counts = stack.rounds(), stack.objects(), _dask_counts(stack)
    run_id = stack.trigger()
    stack.running_task("features-chunk-%", run_id)
    with Client(stack.env["MLCI_DASK_ADDRESS"], timeout=10) as client:
        pids = client.run(os.getpid)  # the worker processes (their nannies restart them)
        busy = client.processing()
        victim = next((address for address, keys in busy.items() if keys), next(iter(pids)))
        os.kill(pids[victim], signal.SIGKILL)
    run = stack.wait(run_id)
    assert run["state_type"] == "COMPLETED", stack.worker_log()
    after = _dask_counts(stack)
    assert after.get("processing", 0) - counts.get("processing", 0) > 2, "no chunk was rerun after the kill"
    assert np.allclose(_feature_rows(stack.store, new), _reference_features(stack, new, tmp_path), rtol=1e-6, atol=0)
    stack.published(rounds)
    with Client(stack.env["MLCI_DASK_ADDRESS"], timeout=10) as client:
        client.wait_for_workers(2, timeout=60)
    _nothing_lost(objects, stack.objects())
    assert stack.run_night()["state_type"] == "COMPLETED"


def test_s3_unreachable_for_seconds_during_a_run(stack, tmp_path):
    new = stack.new_night(tmp_path)
    rounds, objects = stack.rounds(), stack.objects()
    run_id = stack.trigger()
    stack.running_task("features-chunk-%", run_id)
    [s3] = stack.pids("s3")
    os.kill(s3, signal.SIGSTOP)  # the endpoint answers nothing: a partition, not a refusal
    try:
        time.sleep(10)  # more than two read timeouts of the worker's clients
    finally:
        os.kill(s3, signal.SIGCONT)
    thawed = datetime.now(timezone.utc)
    run = stack.wait(run_id)
    assert run["state_type"] == "COMPLETED", stack.worker_log()
    assert datetime.fromisoformat(run["end_time"]) > thawed  # it was still running while S3 was frozen
    assert len(_feature_rows(stack.store, new)) == len(new)
    assert stack.published(rounds), "the run published no batch"
    _nothing_lost(objects, stack.objects())
    assert stack.run_night()["state_type"] == "COMPLETED"


def test_mlflow_down_when_the_flow_logs(stack, tmp_path):
    stack.new_night(tmp_path, clips=0)  # new answers: a model to train, log and register
    versions, champion = [v.version for v in stack.versions()], stack.champion()
    experiment = stack.mlflow.get_experiment_by_name("mlci").experiment_id
    rounds, objects = stack.rounds(), stack.objects()
    run_id = stack.trigger()
    deadline = time.monotonic() + 240
    while not stack.mlflow.search_runs([experiment], "attributes.status = 'RUNNING'"):
        assert stack.flow_run(run_id)["state_type"] in ("SCHEDULED", "PENDING", "RUNNING"), "no MLflow run was opened"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    [mlflow_server] = stack.pids("mlflow")
    os.killpg(mlflow_server, signal.SIGKILL)  # while the run logs its artifacts and model
    run = stack.wait(run_id)
    stack.command("up")  # brings back what is down: the MLflow server, on the same database

    # Nothing half-registered, the champion where it was.
    assert [v.version for v in stack.versions()] == versions
    assert stack.champion() == champion
    stack.published(rounds)
    _nothing_lost(objects, stack.objects())
    assert run["state_type"] in ("COMPLETED", "FAILED"), run["state_type"]

    # The next run registers normally and closes the run the dead server left open.
    after = stack.run_night()
    assert after["state_type"] == "COMPLETED", stack.worker_log()
    registered = stack.versions()
    assert len(registered) == len(versions) + 1
    assert stack.mlflow.get_run(registered[-1].run_id).info.status == "FINISHED"
    assert not stack.mlflow.search_runs([experiment], "attributes.status = 'RUNNING'")
    stack.published(rounds)


def test_the_worker_killed_mid_run(stack, tmp_path):
    new = stack.new_night(tmp_path)
    rounds, objects = stack.rounds(), stack.objects()
    run_id = stack.trigger()
    stack.running_task("features-chunk-%", run_id)
    # The machine running the worker dies: the worker and the flow run's process with it.
    victims = _processes_with(f"PREFECT__FLOW_RUN_ID={run_id}")
    assert victims, "the flow run's process was not found"
    [worker] = stack.pids("worker")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    os.killpg(worker, signal.SIGKILL)

    # Prefect's zombie detection (the stack's automation) marks the silent run Crashed.
    crashed = stack.wait(run_id, timeout=240)
    assert crashed["state_type"] == "CRASHED", crashed["state_type"]
    stack.command("up")  # a new worker
    after = stack.run_night()
    assert after["state_type"] == "COMPLETED", stack.worker_log()
    assert "lock" in stack.artifacts(after["id"])["nightly-summary"]["data"]  # it says it took the lock over
    assert len(_feature_rows(stack.store, new)) == len(new)
    assert stack.published(rounds), "the next run published no batch"
    _nothing_lost(objects, stack.objects())

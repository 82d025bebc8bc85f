"""Schedules that fire, on a machine where nothing has run before.

A new user's story, in order:
1. the first command that runs a flow, with an empty home directory and no Prefect state, starts
   Prefect's temporary server cleanly and keeps Prefect's database under ``MLCI_HOME``;
2. ``mlci serve`` starts a real Prefect server with its scheduler, and a scheduled nightly run
   completes; stopping ``serve`` stops everything it started;
3. ``prefect.yaml`` deployed to a real ``prefect server start`` with a process worker: the
   scheduler creates the nightly's runs from its schedules and the worker completes one.
Each run is checked where it leaves its results: the batch in the store, the version in MLflow.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import httpx
import pandas as pd
import pytest

from mlci.demo import DemoCorpusSpec, generate_demo_corpus
from mlci.models import list_versions
from mlci.orchestrator import (
    LocalPrefectServer,
    PrefectServerError,
    apply_prefect_environment,
)
from mlci.storage import open_store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CORPUS = DemoCorpusSpec(n_clips=48, seed=5, duration=1.5, size=(64, 48))
BATCH_SIZE = 12
PROBLEMS = re.compile(r"Traceback|ERROR|database is locked|Timed out", re.IGNORECASE)


def _new_machine_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who never ran Prefect or mlci: nothing PREFECT_* or MLCI_*, empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLCI_"))}
    env.update(HOME=str(home), **extra)
    return env


def _scheduled_runs(api: str, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _deployment(api: str, name: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/{name}", timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_for_completed_run(api: str, deployment_id: str, timeout: float, log: Path) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = _scheduled_runs(api, deployment_id)
        except httpx.TransportError:  # the server's SQLite is busy while the run writes: ask again
            time.sleep(2)
            continue
        finished = [r for r in runs if r["state_type"] in {"COMPLETED", "FAILED", "CRASHED"}]
        if finished:
            assert finished[0]["state_type"] == "COMPLETED", log.read_text()[-3000:]
            return finished[0]
        time.sleep(2)
    raise AssertionError(f"no scheduled run completed in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _check_batch_and_model(store, tracking_uri: str, *, n_clips: int | None) -> None:
    [round_id] = {k.split("/")[1] for k in store.list("batches/")}
    batch = pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{round_id}/batch.csv")))
    assert batch["key"].is_unique and batch["key"].str.startswith("clips/").all()
    if n_clips is not None:
        assert len(batch) == n_clips
    tasks = json.loads(store.read_text(f"batches/{round_id}/tasks.json"))
    assert len(tasks) == len(batch)
    assert tasks[0]["predictions"][0]["model_version"] == "mlci-concepts/1"
    [version] = list_versions(tracking_uri, "mlci-concepts")
    assert version.version == "1" and "champion" in version.aliases


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A new machine's first flow run: ``mlci features`` with an empty HOME and no Prefect state."""
    root = tmp_path_factory.mktemp("new-machine")
    home, mlci_home = root / "home", root / "mlci"
    home.mkdir()
    store = open_store(str(root / "store"))
    generate_demo_corpus(store, CORPUS, n_jobs=2)
    env = _new_machine_env(home, MLCI_HOME=str(mlci_home), MLCI_STORE=str(root / "store"))
    done = subprocess.run([BIN / "mlci", "features"], env=env, cwd=root, capture_output=True, text=True,
                          timeout=400)
    # A copy of the migrated Prefect database, taken before anything else uses it.
    template = root / "prefect-template"
    shutil.copytree(mlci_home / "prefect", template)
    return {"root": root, "home": home, "mlci_home": mlci_home, "store": store, "env": env,
            "done": done, "prefect_template": template}


def test_first_flow_run_on_a_new_home_is_clean(first_run):
    done = first_run["done"]
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "48 clips listed" in output or "computed: 48" in output
    assert not PROBLEMS.search(output), output[-3000:]
    # Prefect's state is where make clean removes it, and nothing was written to the user's home.
    assert (first_run["mlci_home"] / "prefect" / "prefect.db").is_file()
    assert list(first_run["home"].iterdir()) == []


def test_mlci_serve_runs_the_nightly_on_its_schedule_and_stops_what_it_started(first_run):
    root, env, store = first_run["root"], first_run["env"], first_run["store"]
    log = root / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen(
            [BIN / "mlci", "serve", "--cron", "* * * * *", "--port", "0",
             "--batch-size", str(BATCH_SIZE), "--relabel-share", "0"],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT,
        )
    port = None
    try:
        deadline = time.monotonic() + 200
        while not (match := re.search(r"Prefect UI: http://127\.0\.0\.1:(\d+)/deployments/deployment/([0-9a-f-]+)",
                                      log.read_text())):
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        port, deployment_id = int(match[1]), match[2]
        api = f"http://127.0.0.1:{port}/api"
        assert "next run 20" in log.read_text()  # the server has the next run on its calendar
        assert _deployment(api, "nightly/mlci-serve")["id"] == deployment_id
        # The UI (in the browser) is told where this server's API is, not Prefect's default port 4200.
        assert httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()["api_url"] == api

        run = _wait_for_completed_run(api, deployment_id, timeout=200, log=log)
        assert run["auto_scheduled"] and run["parameters"]["batch_size"] == BATCH_SIZE
    finally:
        code = _stop(serve, signal.SIGINT)  # what Ctrl-C sends
        if code is None and port:  # serve had to be killed: its server (own process group) is still up
            _kill_matching(f"--port {port}")
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Prefect server stopped" in output
    assert not PROBLEMS.search(output), output[-3000:]
    assert not _port_answers(port)
    assert not [cmd for _, cmd in _processes() if f"--port {port}" in cmd]

    _check_batch_and_model(store, f"sqlite:///{first_run['mlci_home'] / 'mlflow.db'}", n_clips=BATCH_SIZE)


def _stop(process: subprocess.Popen, sig: int, timeout: float = 90) -> int | None:
    """Send ``sig`` and wait; a process still alive after ``timeout`` is killed (and ``None`` returned)."""
    process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def _kill_matching(fragment: str) -> None:
    for pid, cmdline in _processes():
        if fragment in cmdline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _processes() -> list[tuple[int, str]]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append((int(cmdline.parent.name), cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except OSError:
            continue
    return found


def test_prefect_yaml_schedule_fires_on_a_server_with_a_worker(first_run, s3_endpoint, monkeypatch, tmp_path):
    # A production-like server: `prefect server start` with its scheduler looping every 2 s
    # (default 60 s), started from the migrated database to save the migration's half minute.
    prefect_home = tmp_path / "prefect"
    shutil.copytree(first_run["prefect_template"], prefect_home)
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "2")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    bucket = "mlci-scheduled"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/store", endpoint_url=s3_endpoint)
    generate_demo_corpus(store, CORPUS, n_jobs=2)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    with LocalPrefectServer(prefect_home, port=0) as server:
        api = server.api_url
        env = _new_machine_env(
            first_run["home"], PREFECT_HOME=str(prefect_home), PREFECT_API_URL=api, MLCI_PROJECT_DIR=str(ROOT),
            PREFECT_WORKER_QUERY_SECONDS="2", MLCI_HOME=str(tmp_path / "mlci"), MLCI_STORE=f"s3://{bucket}/store",
            MLCI_S3_ENDPOINT_URL=s3_endpoint, MLCI_MLFLOW_TRACKING_URI=tracking_uri,
            MLCI_ROUND__BATCH_SIZE="9",  # the worker's configuration decides what prefect.yaml leaves out
        )
        prefect = [sys.executable, "-m", "prefect"]
        for command in (["work-pool", "create", "mlci-process", "--type", "process"],
                        ["--no-prompt", "deploy", "--all"]):
            done = subprocess.run([*prefect, *command], env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

        nightly, analysis = _deployment(api, "nightly/nightly"), _deployment(api, "analysis/analysis")
        [cron] = [s["schedule"] for s in nightly["schedules"]]
        assert cron == {"cron": "0 2 * * *", "timezone": "UTC", "day_or": True}
        assert nightly["work_pool_name"] == "mlci-process"
        assert nightly["global_concurrency_limit"]["limit"] == 1
        assert nightly["parameters"] == {"trigger": "nightly"}
        assert analysis["schedules"][0]["schedule"]["cron"] == "0 4 * * 0"

        # The scheduler put prefect.yaml's own schedule on the calendar: the next nights at 02:00 UTC.
        deadline = time.monotonic() + 60
        while not (runs := _scheduled_runs(api, nightly["id"])):
            assert time.monotonic() < deadline, "the scheduler created no run for nightly/nightly"
            time.sleep(1)
        starts = [datetime.fromisoformat(r["expected_start_time"]) for r in runs]
        assert all(s > datetime.now(timezone.utc) and (s.hour, s.minute) == (2, 0) for s in starts)
        assert all(r["auto_scheduled"] and r["state_type"] == "SCHEDULED" for r in runs)

        # A second schedule a few seconds ahead; the worker must pick its run and complete it.
        log = tmp_path / "worker.log"
        with open(log, "w") as out:
            worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "mlci-process"], env=env,
                                      cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            anchor = (datetime.now(timezone.utc) + timedelta(seconds=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
            done = subprocess.run([*prefect, "deployment", "schedule", "create", "nightly/nightly",
                                   "--interval", "3600", "--anchor-date", anchor],
                                  env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            run = _wait_for_completed_run(api, nightly["id"], timeout=240, log=log)
        finally:
            # How a Prefect worker shuts down is Prefect's business; only make sure it is gone.
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        assert run["auto_scheduled"]
        assert datetime.fromisoformat(run["expected_start_time"]) == datetime.fromisoformat(anchor)
        assert run["parameters"] == {**nightly["parameters"]}

        # `mlci serve` against this server: it starts no server of its own, serves its own
        # deployment, and leaves prefect.yaml's deployment as it was.
        log = tmp_path / "serve.log"
        with open(log, "w") as out:
            serve = subprocess.Popen([BIN / "mlci", "serve", "--cron", "0 3 * * *"], env=env, cwd=tmp_path,
                                     stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "Prefect UI:" not in log.read_text():
                assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        finally:
            code = _stop(serve, signal.SIGTERM)  # what a service manager sends
        assert code == 0, log.read_text()[-3000:]
        output = log.read_text()
        assert f"Prefect UI: {api.removesuffix('/api')}/deployments/" in output
        assert "starting a Prefect server" not in output and "Prefect server stopped" not in output
        served = _deployment(api, "nightly/mlci-serve")
        assert [s["schedule"]["cron"] for s in served["schedules"]] == ["0 3 * * *"]
        assert served["paused"]  # when serve stopped: no runs pile up while nothing serves them
        after = _deployment(api, "nightly/nightly")
        assert after["work_pool_name"] == "mlci-process" and not after["paused"]
        assert sorted(s["schedule"].get("cron", "interval") for s in after["schedules"] if s["active"]) == \
            ["0 2 * * *", "interval"]

    assert not _port_answers(int(api.split(":")[2].split("/")[0]))
    _check_batch_and_model(store, tracking_uri, n_clips=9)


def test_busy_port_is_a_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PrefectServerError, match=f"port {port} on 127.0.0.1 is in use.*--port.*PREFECT_API_URL"):
            LocalPrefectServer(tmp_path, port=port).start()
    assert not (tmp_path / "server.log").exists()  # nothing was started


def test_a_bad_schedule_is_refused_before_anything_starts(tmp_path):
    env = _new_machine_env(tmp_path, MLCI_HOME=str(tmp_path / "mlci"))
    done = subprocess.run([BIN / "mlci", "serve", "--cron", "61 * * * *"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: --cron '61 * * * *'") and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "mlci" / "prefect" / "server.log").exists()


def test_users_own_prefect_settings_win(tmp_path):
    environ = {"PREFECT_HOME": "/srv/prefect", "PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    applied = apply_prefect_environment(tmp_path / "mlci", environ)
    assert environ["PREFECT_HOME"] == "/srv/prefect" and environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "true"
    assert applied == {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    assert not (tmp_path / "mlci").exists()

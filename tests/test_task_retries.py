"""Tasks retry I/O failures and never bad input: watched on real task runs (their run counts)."""

from __future__ import annotations

import threading
import time

import pytest
from prefect import flow

from mlci.config import Settings
from tasks.labels import ingest_labels_task

SEED_BASE = "https://vmlr-workshop.STORAGE/"


def _run_count(state) -> int:
    """Attempts of the task run, as the server recorded them once it has the final state (task run
    updates reach the server as events, a moment after the flow returned)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_task_run(state.state_details.task_run_id)
            if run.state_type == state.type or time.monotonic() > deadline:
                return run.run_count
            time.sleep(0.5)


@flow(name="retries-test")
def _ingest_once(settings: Settings):
    # A short delay: the test waits for the retries it expects. In a dict, so that a failed task
    # state is handed back rather than failing the flow.
    return {"state": ingest_labels_task.with_options(retry_delay_seconds=2)(settings, return_state=True)}


def test_a_cut_connection_is_retried_and_the_labels_arrive(prefect_harness, cutting_proxy, s3_bucket, tmp_path,
                                                           seed_labels_path):
    settings = Settings(home=tmp_path, store=f"s3://{s3_bucket}/store", s3_endpoint_url=cutting_proxy.url,
                        s3_max_attempts=1, clip_base_url=SEED_BASE, _env_file=None)
    settings.open_store().write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())
    cutting_proxy.cut(r"^PUT /[^ ]*/annotations/history/")  # storing the answers fails

    def heal_after_first_cut():
        deadline = time.monotonic() + 60
        while cutting_proxy.cut_requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cutting_proxy.cut(None)

    healer = threading.Thread(target=heal_after_first_cut)
    healer.start()
    state = _ingest_once(settings)["state"]
    healer.join()
    assert cutting_proxy.cut_requests >= 1
    assert state.is_completed() and _run_count(state) == 2  # failed once, retried once
    report = state.result()
    assert report.n_new == 1 and report.n_accepted == 998


def test_a_bad_catalog_fails_once_without_retries(prefect_harness, tmp_path, seed_labels_path):
    catalog = tmp_path / "classes.json"
    catalog.write_text('{"not": "a list"}')
    settings = Settings(home=tmp_path, class_catalog=catalog, clip_base_url=SEED_BASE, _env_file=None)
    settings.open_store().write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())
    state = _ingest_once(settings)["state"]
    assert state.is_failed() and _run_count(state) == 1  # retries=2, yet a single attempt
    with pytest.raises(ValueError, match="must be a non-empty JSON list"):
        state.result()

"""The flows' task runner: threads by default, a Dask cluster on request — tested by running tasks on it."""

from __future__ import annotations

import os
import threading

import pytest
from prefect import flow, task

from flows.runners import make_task_runner


@task
def _wait_for_partner(barrier: threading.Barrier) -> int:
    # Passes only when the other task runs at the same time: proves two parallel workers.
    barrier.wait(timeout=30)
    return threading.get_ident()


@task
def _where() -> tuple[int, str]:
    from distributed import get_worker

    return os.getpid(), get_worker().address


def test_the_default_runner_runs_n_workers_tasks_at_once(prefect_harness):
    @flow
    def parallel(n: int) -> set[int]:
        barrier = threading.Barrier(n)
        with make_task_runner(n_workers=n) as runner:
            futures = [runner.submit(_wait_for_partner, parameters={"barrier": barrier}) for _ in range(n)]
            return {f.result() for f in futures}

    assert len(parallel(2)) == 2  # two threads, both waiting on each other: neither timed out


@pytest.mark.slow
def test_a_local_cluster_runs_tasks_in_other_processes_on_loopback(prefect_harness):
    @flow
    def on_cluster() -> set[tuple[int, str]]:
        with make_task_runner(local_cluster=True, n_workers=2) as runner:
            return {runner.submit(_where, parameters={}).result() for _ in range(4)}

    places = on_cluster()
    assert places and os.getpid() not in {pid for pid, _ in places}  # worker processes, not this one
    assert all(address.startswith("tcp://127.0.0.1:") for _, address in places)  # on loopback only


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_bad_worker_counts_are_refused(bad):
    with pytest.raises(ValueError, match="n_workers must be an int >= 1"):
        make_task_runner(n_workers=bad)

"""Task runners the flows run their parallel tasks on: local threads, or a Dask cluster.

One place for the choice, so the features and analysis flows (and any flow that fans out) run
their tasks the same way and report to the same Prefect server.
"""

from __future__ import annotations

import os

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = ["make_task_runner", "worker_environment"]


def worker_environment() -> dict[str, str]:
    """Environment for Dask worker processes started by this flow: the Prefect API they report to.

    Without ``PREFECT_API_URL`` every worker process would start a temporary Prefect server of its
    own; pointing them at the flow's server (a configured one, or the temporary one this process
    started) keeps all task runs in one place.
    """
    from prefect.settings import get_current_settings

    env = {}
    url = get_current_settings().api.url
    if not url:
        try:
            from prefect.server.api.server import SubprocessASGIServer

            server = SubprocessASGIServer()
            url = server.api_url if server.running else None
        except Exception:  # noqa: BLE001 - no temporary server: workers fall back to their own
            url = None
    if url:
        env["PREFECT_API_URL"] = str(url)
    if os.environ.get("PREFECT_HOME"):
        env["PREFECT_HOME"] = os.environ["PREFECT_HOME"]
    return env


def make_task_runner(
    *, dask_address: str | None = None, local_cluster: bool = False, n_workers: int
) -> TaskRunner:
    """The task runner for the chunk tasks.

    Parameters
    ----------
    dask_address : str, default=None
        Scheduler address of an existing Dask cluster (``tcp://host:8786``): use prefect-dask's
        ``DaskTaskRunner`` on it.
    local_cluster : bool, default=False
        Without an address, start a local Dask cluster of ``n_workers`` single-threaded worker
        processes on 127.0.0.1 for the run.
    n_workers : int
        Threads of the default runner, or processes of the local cluster.
    """
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an int >= 1, got {n_workers!r}")
    if dask_address or local_cluster:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as exc:  # pragma: no cover - a pinned dependency
            raise ImportError("Dask runs need prefect-dask: pip install 'prefect-dask==0.3.7'") from exc
        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": "127.0.0.1:0",
                "env": worker_environment(),
            },
        )
    # Threads: decoding (FFmpeg) and most numpy work release the GIL, see docs/features.md.
    return ThreadPoolTaskRunner(max_workers=n_workers)

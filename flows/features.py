"""The features flow: audio and video features of every new or changed clip.

1. plan: list ``clips/``, read content identities, reuse every (clip, identity) already computed
   or quarantined, split the rest into chunks;
2. compute: one ``compute-feature-chunk`` task per chunk on the task runner — local threads by
   default, a Dask cluster when ``dask_address`` (or ``MLCI_DASK_ADDRESS``) is given, or a local
   Dask cluster started for the run (``local_cluster=True``); progress is logged every
   ``log_every`` clips; a chunk that fails after its retries is named in the report with its
   reason (``report.complete`` is False), the rest goes on, and its clips are computed next run;
3. commit: write the active index (only if it changed) and return the run report.

Run again with nothing new, it computes nothing and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from flows.naming import dated_run_name
from flows.runners import make_task_runner
from mlci.config import Settings
from mlci.features import ChunkResult, FeatureRunReport
from mlci.reporting import reports_progress
from tasks.features import (
    commit_feature_run_task,
    compute_feature_chunk_task,
    plan_feature_run_task,
)

__all__ = ["features", "reporting_progress"]

#: Progress callback: ``progress(done, total, quarantined)`` with counts of clips in this run.
Progress = Callable[[int, int, int], None]

# Not a flow parameter: parameters travel with the run context to every Dask worker, and a
# callback holding a progress bar neither pickles nor belongs there.
_PROGRESS: ContextVar[Progress | None] = ContextVar("mlci_features_progress", default=None)


def _current_progress() -> Progress | None:
    # A module function (pickled by reference) rather than the ContextVar itself: Prefect ships
    # the flow function, by value, inside the run context it sends to Dask workers.
    return _PROGRESS.get()


@contextmanager
def reporting_progress(callback: Progress) -> Iterator[None]:
    """Within the block, the ``features`` flow calls ``callback(done, total, quarantined)`` as chunks finish."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


@flow(name="features", flow_run_name=dated_run_name("features"), description="Audio and video features of new or changed clips; broken clips are quarantined.")
def features(
    store: str | None = None,
    extractor: str | None = None,
    params: dict | None = None,
    chunk_size: int = 16,
    dask_address: str | None = None,
    local_cluster: bool = False,
    n_workers: int | None = None,
    threads: int = 1,
    log_every: int = 50,
) -> FeatureRunReport:
    """Bring the store's features up to date and return the run report.

    Parameters
    ----------
    store : str, default=None
        Store URI; ``MLCI_STORE`` when None.
    extractor : str, default=None
        Registered extractor name or ``"package.module:Class"``; ``MLCI_TRAINING__EXTRACTOR`` when None.
    params : dict, default=None
        Extractor parameters; ``MLCI_TRAINING__EXTRACTOR_PARAMS`` when None.
    chunk_size : int, default=16
        Clips per task (and per shard).
    dask_address : str, default=None
        Dask scheduler to run the chunks on; ``MLCI_DASK_ADDRESS`` when None.
    local_cluster : bool, default=False
        Start a local Dask cluster for the run (ignored when an address is set).
    n_workers : int, default=None
        Parallel chunks on the local runner, or worker processes of the local cluster;
        ``MLCI_WORKERS`` (by default the usable cores) when None.
    threads : int, default=1
        Decoder threads per clip.
    log_every : int, default=50
        Log progress every this many clips (see also :func:`reporting_progress`).
    """
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be an int >= 1, got {log_every!r}")
    settings = Settings.for_store(store).with_overrides(extractor=extractor, extractor_params=params)
    logger = get_run_logger()
    progress = _current_progress()
    plan = plan_feature_run_task(settings, extractor=settings.training.extractor,
                                 params=settings.training.extractor_params)
    chunks = plan.chunks(chunk_size)
    total = len(plan.todo)
    if progress is not None:
        progress(0, total, 0)

    results: list[ChunkResult] = []
    failed: dict[int, str] = {}
    if chunks:
        address = dask_address or settings.dask_address
        runner = make_task_runner(
            dask_address=address, local_cluster=local_cluster, n_workers=n_workers or settings.n_workers
        )
        logger.info("computing %d clips in %d chunks on %s", total, len(chunks), type(runner).__name__)
        done = quarantined = 0
        next_log = log_every
        with runner:
            futures = {
                runner.submit(
                    compute_feature_chunk_task,
                    parameters={
                        "settings": settings,
                        "items": items,
                        "extractor": plan.extractor,
                        "params": plan.params,
                        "run_id": plan.run_id,
                        "chunk": n,
                        "threads": threads,
                    },
                ): n
                for n, items in enumerate(chunks)
            }
            for future in as_completed(list(futures)):
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a failed chunk is reported, retried next run
                    n = futures[future]
                    failed[n] = f"{type(exc).__name__}: {exc}"
                    logger.error("feature chunk %d (%d clips) failed after its retries: %s",
                                 n, len(chunks[n]), failed[n])
                    continue
                results.append(result)
                done += result.n_done
                quarantined += result.n_quarantined
                if progress is not None:
                    progress(done, total, quarantined)
                if done >= next_log or done == total:
                    logger.info("features: %d/%d clips done, %d quarantined", done, total, quarantined,
                                extra=reports_progress(done, total, "clips"))
                    next_log = (done // log_every + 1) * log_every
    return commit_feature_run_task(settings, plan, sorted(results, key=lambda r: r.chunk), failed)

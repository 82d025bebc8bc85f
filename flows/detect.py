"""The detection flow: where in long videos each concept appears, by a registered model version.

1. load the model version (the champion unless ``version`` is given) with its extractor and a
   threshold per concept, refusing a model trained on other features than the configured extractor;
2. plan: list the videos at ``source`` (a key or a prefix); skip those with a complete result for
   these settings and those quarantined earlier with the same content;
3. detect: one ``detect-video`` task per video on the task runner (local threads by default, Dask
   when ``dask_address`` or ``MLCI_DASK_ADDRESS`` is set): decode once, score sliding windows,
   merge them into segments, write ``detections/<model>/<version>/<video>/<id>/``;
4. report: a ``detections`` artifact listing the segments per video.

Run again with the same model version on the same videos, it changes nothing.
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed

from flows.runners import make_task_runner
from mlci.config import apply_mlflow_environment
from mlci.detect import (
    FAILED,
    DetectionConfig,
    DetectionReport,
    SegmentRule,
    VideoResult,
    Windowing,
    report_detection,
)
from mlci.params import settings_for_run
from tasks.detect import (
    detect_video_task,
    load_detector_task,
    plan_detection_task,
    reporting_progress,
)

__all__ = ["detect", "reporting_progress"]


@flow(name="detect", flow_run_name="detect-{source}", description="Run a registered model over long videos in sliding windows; write timed detections and merged segments.")
def detect(
    source: str = "videos/",
    store: str | None = None,
    model_name: str | None = None,
    version: str | None = None,
    window: float = 3.0,
    hop: float = 1.5,
    thresholds: dict[str, float] | float | None = None,
    hysteresis: float = 0.1,
    min_duration: float = 2.0,
    max_gap: float = 1.5,
    floor: float = 0.1,
    extractor: str | None = None,
    extractor_params: dict | None = None,
    threads: int = 1,
    n_workers: int | None = None,
    local_cluster: bool = False,
    dask_address: str | None = None,
) -> DetectionReport:
    """Detect the model's concepts in every video at ``source`` and return the run report.

    Parameters
    ----------
    source : str, default="videos/"
        A video's key, or a prefix of videos, in the store.
    store : str, default=None
        Store URI; ``MLCI_STORE`` when None.
    model_name : str, default=None
        Registered model; ``MLCI_REGISTERED_MODEL_NAME`` when None.
    version : str, default=None
        Model version; the ``champion`` alias when None.
    window, hop : float, default=3.0, 1.5
        Window length and the step between window starts, in seconds.
    thresholds : float or dict, default=None
        Enter threshold for every concept, or per concept; by default the training run's
        (F1-optimal on its out-of-fold scores).
    hysteresis, min_duration, max_gap : float, default=0.1, 2.0, 1.5
        Segments: stay open down to ``threshold - hysteresis``; drop those shorter than
        ``min_duration`` seconds; join those at most ``max_gap`` seconds apart.
    floor : float, default=0.1
        Window rows scoring below this are left out of ``windows.csv``.
    extractor, extractor_params : default=None
        The feature extractor; ``MLCI_TRAINING__EXTRACTOR`` / ``..._PARAMS`` when None. It must be
        the one the model was trained on.
    threads : int, default=1
        Decoder threads per video. One: frame-threaded decoding made a 360p video slower on two
        cores (benchmarks/detect.py); the cores go to several videos at once instead.
    n_workers : int, default=None
        Videos detected at once; ``MLCI_WORKERS`` (by default the usable cores) when None.
    local_cluster : bool, default=False
        Detect the videos in a local Dask cluster's processes instead of threads: two videos on
        two cores go 1.9x as fast as one in processes, 1.4x in threads (the analysis holds the GIL).
    dask_address : str, default=None
        Dask scheduler to run the videos on; ``MLCI_DASK_ADDRESS`` when None.
    """
    settings = settings_for_run(store, extractor=extractor, extractor_params=extractor_params)
    apply_mlflow_environment(settings)
    logger = get_run_logger()
    config = DetectionConfig(Windowing(window, hop), SegmentRule(hysteresis, min_duration, max_gap), floor)
    detector = load_detector_task(settings, model_name=model_name or settings.registered_model_name, version=version,
                                  thresholds=thresholds)
    plan = plan_detection_task(settings, detector, source, config)
    workers = n_workers or settings.n_workers
    results = []
    if plan.todo:
        runner = make_task_runner(dask_address=dask_address or settings.dask_address, local_cluster=local_cluster,
                                  n_workers=min(workers, len(plan.todo)))
        with runner:
            futures = {
                runner.submit(detect_video_task, parameters={"settings": settings, "item": item, "detector": detector,
                                                             "config": config, "threads": threads}): item
                for item in plan.todo
            }
            for future in as_completed(list(futures)):
                try:
                    results.append(future.result())
                except Exception as exc:  # noqa: BLE001 - one video failing after its retries does not stop the rest
                    key = futures[future].key
                    logger.error("%s: failed after its retries (detected next run): %s: %s", key, type(exc).__name__, exc)
                    results.append(VideoResult(key, FAILED, error=f"{type(exc).__name__}: {exc}"))
    report = report_detection(plan, detector, results)
    create_markdown_artifact(report.to_markdown(), key="detections",
                             description=f"detect: {detector.model_name} v{detector.version} on {source}")
    return report


if __name__ == "__main__":  # pragma: no cover - `python flows/detect.py` for a quick local run
    print(detect(source=os.environ.get("MLCI_DETECT_SOURCE", "videos/")).format())

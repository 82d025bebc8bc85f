"""Prefect tasks of the detection flow: thin wrappers around :mod:`mlci.detect`.

The per-video task may run on a Dask worker: it takes the :class:`~mlci.config.Settings` and the
loaded :class:`~mlci.detect.Detector` (both picklable) and opens the store itself. Retrying it is
safe: a result's files are written with ``write_if_absent``, its manifest last.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.config import Settings
from mlci.detect import (
    DetectError,
    DetectionConfig,
    DetectionPlan,
    Detector,
    VideoItem,
    VideoResult,
    detect_video,
    load_detector,
    plan_detection,
)
from mlci.detect.run import Progress
from mlci.models import ModelError
from tasks.retry import retry_unless

__all__ = ["detect_video_task", "load_detector_task", "plan_detection_task", "reporting_progress"]

# Not a parameter: a callback holding a progress bar neither pickles nor belongs in a run's
# parameters. Tasks on local threads see the caller's value (Prefect copies the context into
# them); on Dask workers there is none.
_PROGRESS: ContextVar[Progress | None] = ContextVar("mlci_detect_progress", default=None)


@contextmanager
def reporting_progress(callback: Progress) -> Iterator[None]:
    """Within the block, detection calls ``callback(key, seconds_done, seconds_total)`` as videos decode."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


@task(name="load-detector", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(DetectError, ModelError), cache_policy=NO_CACHE)
def load_detector_task(
    settings: Settings, *, model_name: str, version: str | None = None, thresholds: dict[str, float] | float | None = None
) -> Detector:
    """The model version, its extractor and thresholds (:func:`mlci.detect.load_detector`)."""
    detector = load_detector(
        settings.tracking_uri, model_name, version=version, extractor=settings.training.extractor,
        params=settings.training.extractor_params, thresholds=thresholds, store=settings.open_store(),
    )
    get_run_logger().info(
        "%s v%s (%s features, %s): thresholds %s", detector.model_name, detector.version,
        detector.extractor.schema.cache_id, detector.modality,
        ", ".join(f"{c} {t:.2f} ({detector.threshold_sources[c]})" for c, t in detector.thresholds.items()),
    )
    return detector


@task(name="plan-detection", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless(DetectError), cache_policy=NO_CACHE)
def plan_detection_task(settings: Settings, detector: Detector, source: str, config: DetectionConfig) -> DetectionPlan:
    """Which videos at ``source`` need detecting (:func:`mlci.detect.plan_detection`)."""
    plan = plan_detection(settings.open_store(), detector, source, config)
    get_run_logger().info("%s: %d video(s) to detect, %d already done, %d quarantined earlier",
                          source, len(plan.todo), len(plan.done), len(plan.quarantined))
    return plan


@task(name="detect-video", task_run_name="detect-{item.key}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless(DetectError), cache_policy=NO_CACHE)
def detect_video_task(
    settings: Settings, item: VideoItem, detector: Detector, config: DetectionConfig, *, threads: int = 1
) -> VideoResult:
    """Detect one video and write its result (:func:`mlci.detect.detect_video`)."""
    result = detect_video(settings.open_store(), item, detector, config, threads=threads, progress=_PROGRESS.get())
    logger = get_run_logger()
    if result.error:
        logger.warning("%s: %s: %s", item.key, result.status, result.error)
    logger.info("%s: %s, %.0f s of video in %.1f s, %d segment(s)", item.key, result.status, result.duration,
                result.seconds, len(result.segments))
    return result

"""Detection: run a registered model over long videos in sliding windows, merge windows into segments.

Typical use::

    from mlci.detect import DetectionConfig, detect_videos, load_detector

    detector = load_detector(tracking_uri, "mlci-concepts")          # the champion
    report = detect_videos(store, detector, "videos/", DetectionConfig())
    print(report.format())

See ``docs/detect.md``.
"""

from mlci.detect.exceptions import DetectError, DetectionSchemaError, NoVideosError
from mlci.detect.model import THRESHOLD_SOURCES, Detector, load_detector
from mlci.detect.outputs import (
    EXTRACTOR_NAME,
    SOURCE_EVENTS,
    DetectionOutput,
    window_table,
)
from mlci.detect.run import (
    DETECTED,
    FAILED,
    PARTIAL,
    QUARANTINED,
    SKIPPED,
    DetectionConfig,
    DetectionPlan,
    DetectionReport,
    VideoItem,
    VideoResult,
    detect_video,
    detect_videos,
    plan_detection,
    report_detection,
)
from mlci.detect.segments import SegmentRule, merge_segments, window_slices
from mlci.detect.windows import MAX_GRIDS, WindowAssembler, Windowing

__all__ = [
    "DETECTED",
    "FAILED",
    "EXTRACTOR_NAME",
    "MAX_GRIDS",
    "PARTIAL",
    "QUARANTINED",
    "SKIPPED",
    "SOURCE_EVENTS",
    "THRESHOLD_SOURCES",
    "DetectError",
    "DetectionConfig",
    "DetectionOutput",
    "DetectionPlan",
    "DetectionReport",
    "DetectionSchemaError",
    "Detector",
    "NoVideosError",
    "SegmentRule",
    "VideoItem",
    "VideoResult",
    "WindowAssembler",
    "Windowing",
    "detect_video",
    "detect_videos",
    "load_detector",
    "merge_segments",
    "plan_detection",
    "report_detection",
    "window_slices",
    "window_table",
]

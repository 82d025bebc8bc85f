"""What a detection writes per video: the flattener CSV, the segments, a JSON document, a manifest.

Every file goes in with ``write_if_absent`` and the manifest last, so a folder with a manifest is
complete, and a run cut short leaves nothing a reader takes for a result. The folder's name is a
digest of everything the result depends on (video content, model version, features, windows,
thresholds, segment rule): another setting writes another folder, never over this one.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import mlci
from mlci.layout import DETECTION_FILES, detection_key
from mlci.storage import Store
from mlci.tables import DETECTION_WINDOWS, SEGMENTS, conform, json_bytes

__all__ = ["EXTRACTOR_NAME", "SOURCE_EVENTS", "DetectionOutput", "detection_id", "window_table", "write_outputs"]

#: The ``extractor`` column of the flattener CSV and of the JSON document's config.
EXTRACTOR_NAME = "mlci_detect"
#: ``source_event`` of each model modality.
SOURCE_EVENTS = {"audio": "audio", "video": "video", "combined": "audiovisual"}


def detection_id(settings: dict[str, Any]) -> str:
    """12 hex digits naming one result: a digest of the canonical JSON of ``settings``."""
    return hashlib.sha256(json_bytes(settings)).hexdigest()[:12]


def window_table(
    starts: np.ndarray,
    ends: np.ndarray,
    scores: np.ndarray,
    concepts: list[str],
    thresholds: dict[str, float],
    *,
    floor: float,
    modality: str,
    model_name: str,
    version: str,
) -> pd.DataFrame:
    """The :data:`~mlci.tables.DETECTION_WINDOWS` rows: each window and concept scoring at least ``floor``."""
    rows = []
    for j in range(len(starts)):
        for c, concept in enumerate(concepts):
            score = float(scores[j, c])
            if score < floor:
                continue
            details = {"model": model_name, "version": version, "window": j,
                       "threshold": round(thresholds[concept], 4), "above": score >= thresholds[concept]}
            rows.append({
                "time_begin": round(float(starts[j]), 3),
                "time_end": round(float(ends[j]), 3),
                "time_event": round(float(starts[j] + ends[j]) / 2, 3),
                "source_event": SOURCE_EVENTS[modality],
                "tag_type": "tag",
                "tag": concept,
                "score": round(score, 4),
                "details": json.dumps(details, sort_keys=True),
                "extractor": EXTRACTOR_NAME,
            })
    return conform(pd.DataFrame(rows, columns=list(DETECTION_WINDOWS.columns)), DETECTION_WINDOWS)


@dataclass
class DetectionOutput:
    """One video's result, ready to write."""

    model_name: str
    version: str
    video_key: str
    detection_id: str
    windows: pd.DataFrame
    segments: pd.DataFrame
    manifest: dict[str, Any]

    def key(self, name: str) -> str:
        return detection_key(self.model_name, self.version, self.video_key, self.detection_id, name)

    def document(self) -> dict[str, Any]:
        """The JSON document in the seed extractor's shape: ``config`` and timed ``results``."""
        m = self.manifest
        return {
            "config": {
                "version": mlci.__version__,
                "extractor": EXTRACTOR_NAME,
                "input": self.video_key,
                "timestamp": m["created_at"],
                "model": {"name": self.model_name, "version": self.version, "run_id": m["model"]["run_id"]},
                "features": m["features"],
                "windows": m["windows"],
                "thresholds": m["thresholds"],
            },
            "results": [
                {"time_begin": r.time_begin, "time_end": r.time_end, "score": r.score, "class": r.tag}
                for r in self.windows.itertuples(index=False)
            ],
            "segments": [
                {"time_begin": r.time_begin, "time_end": r.time_end, "score": r.score_peak,
                 "score_mean": r.score_mean, "class": r.tag}
                for r in self.segments.itertuples(index=False)
            ],
            "error": m["error"],
        }


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def write_outputs(store: Store, out: DetectionOutput) -> bool:
    """Write the result's files, manifest last; return whether the manifest was written by this call."""
    files = {
        "windows.csv": _csv(conform(out.windows, DETECTION_WINDOWS)),
        "segments.csv": _csv(conform(out.segments, SEGMENTS)),
        "detections.json": json_bytes(out.document()),
    }
    for name in DETECTION_FILES[:-1]:
        store.write_if_absent(out.key(name), files[name])
    return store.write_if_absent(out.key("manifest.json"), json_bytes(out.manifest))

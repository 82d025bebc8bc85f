"""A detection run: which videos need work, and the detection of one video from decode to files.

:func:`plan_detection` and :func:`detect_video` are separate so that an orchestrator can map the
second over videos (``tasks/detect.py`` does); :func:`detect_videos` runs both in this process.

One video is decoded once and never held whole: the extractor hands out completed windows,
:class:`~mlci.detect.windows.WindowAssembler` pools them into detection windows, and those are
scored in batches. What stays in memory grows with the number of windows (a few numbers each), not
with the frames. A video whose tail is damaged keeps the detections up to the damage and records
the error; a video with nothing decodable is quarantined as in the features flow, and retried
only when its content changes.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlci.detect.exceptions import NoVideosError
from mlci.detect.model import Detector
from mlci.detect.outputs import (
    DetectionOutput,
    detection_id,
    window_table,
    write_outputs,
)
from mlci.detect.segments import SegmentRule, merge_segments
from mlci.detect.windows import WindowAssembler, Windowing
from mlci.features import FeatureExtractor, MediaError
from mlci.features.cache import CacheLayout, quarantine_records, to_parquet_bytes
from mlci.features.exceptions import EXTRACTOR_ERROR
from mlci.features.run import MEDIA_SUFFIXES
from mlci.layout import DETECTION_FILES, detection_key
from mlci.storage import ObjectNotFoundError, StorageError, Store
from mlci.tables import QUARANTINE, SEGMENTS, conform

__all__ = [
    "DETECTED",
    "FAILED",
    "PARTIAL",
    "QUARANTINED",
    "SKIPPED",
    "DetectionConfig",
    "DetectionPlan",
    "DetectionReport",
    "VideoItem",
    "VideoResult",
    "detect_video",
    "detect_videos",
    "plan_detection",
    "report_detection",
]

#: Outcomes of one video.
DETECTED, PARTIAL, QUARANTINED, SKIPPED, FAILED = "detected", "partial", "quarantined", "skipped", "failed"
#: Windows scored per call to the model.
_BATCH = 512
_MESSAGE_LIMIT = 500

Progress = Callable[[str, float, float | None], None]


@dataclass(frozen=True)
class DetectionConfig:
    """How videos are windowed, which scores are kept and how windows become segments.

    Parameters
    ----------
    windowing : Windowing, default=Windowing()
        3 s windows every 1.5 s.
    rule : SegmentRule, default=SegmentRule()
    floor : float, default=0.1
        Window rows scoring below this are left out of ``windows.csv``.
    """

    windowing: Windowing = field(default_factory=Windowing)
    rule: SegmentRule = field(default_factory=SegmentRule)
    floor: float = 0.1

    def check(self, base: float) -> None:
        self.windowing.check(base)
        self.rule.check()
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float)) or not 0.0 <= self.floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {self.floor!r}")

    def to_dict(self) -> dict[str, Any]:
        w, r = self.windowing, self.rule
        return {"length": w.length, "hop": w.hop, "floor": self.floor, "hysteresis": r.hysteresis,
                "min_duration": r.min_duration, "max_gap": r.max_gap}


@dataclass
class VideoItem:
    """One video to detect: its key, content identity and the name of its result folder."""

    key: str
    identity: str
    detection_id: str


@dataclass
class DetectionPlan:
    """What a run will do: plain data, so that it travels between tasks.

    Attributes
    ----------
    todo : list of VideoItem
        Videos to detect, sorted by key.
    done : dict of str to str
        Videos with a complete result for these settings -> its folder.
    quarantined : dict of str to str
        Videos quarantined earlier with this content -> the reason.
    n_ignored : int
        Objects under the prefix that are not videos (by suffix).
    """

    source: str
    todo: list[VideoItem]
    done: dict[str, str]
    quarantined: dict[str, str]
    n_ignored: int = 0


@dataclass
class VideoResult:
    """What detecting one video did."""

    key: str
    status: str
    folder: str | None = None
    duration: float = 0.0
    n_windows: int = 0
    segments: pd.DataFrame = field(default_factory=lambda: conform(pd.DataFrame(columns=list(SEGMENTS.columns)), SEGMENTS))
    error: str | None = None
    seconds: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of video per wall-clock second."""
        return self.duration / self.seconds if self.seconds > 0 else math.nan


def _settings(detector: Detector, config: DetectionConfig, identity: str) -> dict[str, Any]:
    return {
        "identity": identity,
        "model": detector.model_name,
        "version": detector.version,
        "features": detector.extractor.schema.cache_id,
        "modality": detector.modality,
        "thresholds": {c: round(t, 6) for c, t in detector.thresholds.items()},
        **config.to_dict(),
    }


def plan_detection(store: Store, detector: Detector, source: str, config: DetectionConfig) -> DetectionPlan:
    """The videos at ``source`` (one key, or every video under a prefix) and what each needs.

    Raises
    ------
    NoVideosError
        Nothing with a video suffix at ``source``.
    """
    config.check(detector.window)
    extractor = detector.extractor
    if len(config.windowing.offsets(detector.window)) > 1 and type(extractor).stream is FeatureExtractor.stream:
        # The default stream extracts whole files on the grid at 0 only.
        raise ValueError(f"the {extractor.name!r} extractor cannot shift its windows: use a hop that is a "
                         f"multiple of its window ({detector.window:g} s)")
    if source.lower().endswith(MEDIA_SUFFIXES) and store.exists(source):
        keys_all = [source]
    else:
        keys_all = store.list(source if source.endswith("/") or not source else source + "/")
    keys = [k for k in keys_all if k.lower().endswith(MEDIA_SUFFIXES)]
    if not keys:
        raise NoVideosError(f"no video under {source!r} in {store.uri} ({len(keys_all)} other objects): "
                            f"give a key or prefix of videos ({', '.join(MEDIA_SUFFIXES)})")
    layout = CacheLayout(detector.extractor.schema)
    bad = quarantine_records(store, layout)
    reasons = {(k, i): f"[{kind}] {msg}" for k, i, kind, msg in zip(bad["key"], bad["identity"], bad["error_kind"], bad["message"])}
    todo, done, quarantined = [], {}, {}
    for key in sorted(keys):
        try:
            identity = store.stat(key).identity
        except ObjectNotFoundError:  # deleted since the listing
            continue
        if (key, identity) in reasons:
            quarantined[key] = reasons[(key, identity)]
            continue
        did = detection_id(_settings(detector, config, identity))
        manifest = detection_key(detector.model_name, detector.version, key, did, "manifest.json")
        if store.exists(manifest):
            done[key] = manifest.rsplit("/", 1)[0] + "/"
        else:
            todo.append(VideoItem(key, identity, did))
    return DetectionPlan(source, todo, done, quarantined, len(keys_all) - len(keys))


def _score_stream(
    path, detector: Detector, config: DetectionConfig, *, threads: int, on_progress: Callable[[float], None] | None
):
    assembler = WindowAssembler(config.windowing, detector.window, detector.modality)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pending = 0

    def score_pending() -> None:
        nonlocal pending
        starts, ends, X = assembler.take()
        if len(starts):
            parts.append((starts, ends, detector.score(X)))
        pending = 0

    def on_block(block) -> None:
        nonlocal pending
        before = assembler.next_window
        assembler.add(block)
        pending += assembler.next_window - before
        if pending >= _BATCH:
            score_pending()
        if on_progress is not None and block.n_windows:
            on_progress(float(block.end[-1]))

    end = detector.extractor.stream(path, on_block, offsets=config.windowing.offsets(detector.window), threads=threads)
    assembler.finish()
    score_pending()
    k = len(detector.concepts)
    starts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    ends = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    scores = np.vstack([p[2] for p in parts]) if parts else np.zeros((0, k))
    return starts, ends, scores, end


def detect_video(
    store: Store,
    item: VideoItem,
    detector: Detector,
    config: DetectionConfig,
    *,
    threads: int = 1,
    progress: Progress | None = None,
) -> VideoResult:
    """Detect the concepts in one video and write its result folder (or quarantine it).

    Storage errors raise (the caller may retry; written files are kept and the result is the
    same). ``progress(key, seconds_done, seconds_total)`` is called as the decode advances
    (``seconds_total`` is the container's declared duration, None if it declares none).
    """
    t0 = time.perf_counter()
    result = VideoResult(item.key, DETECTED)
    try:
        with store.local_copy(item.key) as path:
            total = _declared_duration(path)

            def on_progress(seconds: float) -> None:
                if progress is not None:
                    progress(item.key, seconds, total)

            starts, ends, scores, end = _score_stream(path, detector, config, threads=threads, on_progress=on_progress)
    except ObjectNotFoundError:
        result.status, result.error = SKIPPED, "vanished since the plan"
        return result
    except StorageError:
        raise
    except Exception as exc:  # nothing decodable, or an extractor bug: quarantined like a clip
        kind, message = (exc.kind, str(exc)) if isinstance(exc, MediaError) else (EXTRACTOR_ERROR, f"{type(exc).__name__}: {exc}")
        _quarantine(store, detector, item, kind, message)
        result.status, result.error, result.seconds = QUARANTINED, f"[{kind}] {message}", time.perf_counter() - t0
        return result

    if _changed(store, item):  # the result would be filed under content it was not computed from
        result.status, result.error = SKIPPED, "changed or vanished during the run (detected next run)"
        return result
    concepts = detector.concepts
    segments = [
        merge_segments(starts, ends, scores[:, c], threshold=detector.thresholds[concept], rule=config.rule, tag=concept)
        for c, concept in enumerate(concepts)
    ]
    segments_df = pd.concat(segments, ignore_index=True) if segments else result.segments
    windows_df = window_table(starts, ends, scores, concepts, detector.thresholds, floor=config.floor,
                              modality=detector.modality, model_name=detector.model_name, version=detector.version)
    error = None if end.error is None else {"kind": end.error.kind, "message": str(end.error)[:_MESSAGE_LIMIT],
                                            "decoded_seconds": round(end.duration, 3)}
    manifest = {
        "detection_id": item.detection_id,
        "video": {"key": item.key, "identity": item.identity, "duration": round(end.duration, 3),
                  "has_audio": end.has_audio, "has_video": end.has_video},
        "model": {"name": detector.model_name, "version": detector.version, "run_id": detector.run_id,
                  "modality": detector.modality, "skipped_concepts": detector.skipped},
        "features": detector.extractor.schema.to_dict() | {"cache_id": detector.extractor.schema.cache_id},
        "windows": asdict(config.windowing) | {"n_windows": int(len(starts)), "floor": config.floor},
        "segments": asdict(config.rule) | {"n_segments": int(len(segments_df))},
        "thresholds": {c: {"enter": round(t, 4), "exit": round(max(0.0, t - config.rule.hysteresis), 4),
                           "source": detector.threshold_sources[c]} for c, t in detector.thresholds.items()},
        "error": error,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": list(DETECTION_FILES[:-1]),
    }
    out = DetectionOutput(detector.model_name, detector.version, item.key, item.detection_id, windows_df, segments_df, manifest)
    write_outputs(store, out)
    result.status = PARTIAL if error else DETECTED
    result.folder = out.key("manifest.json").rsplit("/", 1)[0] + "/"
    result.duration, result.n_windows = end.duration, int(len(starts))
    result.segments, result.seconds = segments_df, time.perf_counter() - t0
    result.error = None if error is None else f"[{error['kind']}] {error['message']}"
    return result


def _changed(store: Store, item: VideoItem) -> bool:
    try:
        return store.stat(item.key).identity != item.identity
    except ObjectNotFoundError:
        return True


def _declared_duration(path) -> float | None:
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return container.duration / av.time_base if container.duration else None
    except (av.error.FFmpegError, OSError):
        return None


def _quarantine(store: Store, detector: Detector, item: VideoItem, kind: str, message: str) -> None:
    layout = CacheLayout(detector.extractor.schema)
    row = {"key": item.key, "identity": item.identity, "error_kind": kind, "message": message[:_MESSAGE_LIMIT],
           "detected_at": pd.Timestamp(datetime.now(UTC))}
    # Named by content, so that a retried task finds its own row instead of adding another.
    part = layout.quarantine_part("detect", hashlib.sha256(f"{item.key}\0{item.identity}".encode()).hexdigest()[:16])
    store.write_if_absent(part, to_parquet_bytes(pd.DataFrame([row]), QUARANTINE))


def detect_videos(
    store: Store,
    detector: Detector,
    source: str,
    config: DetectionConfig | None = None,
    *,
    threads: int = 1,
    progress: Progress | None = None,
) -> DetectionReport:
    """Plan and detect every video at ``source`` that needs it, one after the other, in this process."""
    config = config or DetectionConfig()
    plan = plan_detection(store, detector, source, config)
    results = [detect_video(store, item, detector, config, threads=threads, progress=progress) for item in plan.todo]
    return report_detection(plan, detector, results)


def report_detection(plan: DetectionPlan, detector: Detector, results: list[VideoResult]) -> DetectionReport:
    """The run's report from its plan and the results of its videos."""
    return DetectionReport(plan.source, detector.model_name, detector.version, sorted(results, key=lambda r: r.key),
                           plan.done, plan.quarantined, plan.n_ignored)


@dataclass
class DetectionReport:
    """What a detection run did, per video."""

    source: str
    model_name: str
    version: str
    results: list[VideoResult]
    done: dict[str, str]
    quarantined: dict[str, str]
    n_ignored: int = 0

    @property
    def complete(self) -> bool:
        """False when a video was quarantined, cut short by damage, or skipped this run."""
        return not self.quarantined and all(r.status == DETECTED for r in self.results)

    def counts(self) -> dict[str, int]:
        statuses = [r.status for r in self.results]
        return {"detected": statuses.count(DETECTED), "partial": statuses.count(PARTIAL),
                "quarantined": statuses.count(QUARANTINED) + len(self.quarantined),
                "already_done": len(self.done), "skipped": statuses.count(SKIPPED),
                "failed": statuses.count(FAILED)}

    def format(self, max_segments: int = 10) -> str:
        c = self.counts()
        lines = [
            f"detect {self.source} with {self.model_name} v{self.version}: {c['detected']} detected, "
            f"{c['partial']} partial, {c['quarantined']} quarantined, {c['already_done']} already done"
            + (f", {c['failed']} failed" if c["failed"] else "")
            + (f" ({self.n_ignored} non-video objects ignored)" if self.n_ignored else "")
        ]
        for r in self.results:
            if r.status in (DETECTED, PARTIAL):
                lines.append(f"  {r.key}: {r.duration:.0f} s, {len(r.segments)} segment(s), "
                             f"{r.realtime_factor:.0f}x real time -> {r.folder}")
                for s in r.segments.head(max_segments).itertuples(index=False):
                    lines.append(f"    {s.tag:<20} {_clock(s.time_begin)}-{_clock(s.time_end)}  "
                                 f"peak {s.score_peak:.2f}  mean {s.score_mean:.2f}")
                if len(r.segments) > max_segments:
                    lines.append(f"    ... {len(r.segments) - max_segments} more in {r.folder}segments.csv")
            if r.error:
                lines.append(f"  {r.key}: {r.status}: {r.error}")
        for key, reason in self.quarantined.items():
            lines.append(f"  {key}: quarantined earlier (retried when its content changes): {reason}")
        for key, folder in self.done.items():
            lines.append(f"  {key}: already done -> {folder}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The segments per video, for a Prefect artifact."""
        out = [f"# Detections: {self.model_name} v{self.version} on `{self.source}`", ""]
        for r in self.results:
            out.append(f"## `{r.key}` ({r.status}, {r.duration:.0f} s)")
            if r.error:
                out.append(f"Error: {r.error}")
            if len(r.segments):
                out.append("| concept | begin | end | peak | mean |")
                out.append("|---|---|---|---|---|")
                out += [f"| {s.tag} | {_clock(s.time_begin)} | {_clock(s.time_end)} | {s.score_peak:.2f} | {s.score_mean:.2f} |"
                        for s in r.segments.itertuples(index=False)]
            elif r.status in (DETECTED, PARTIAL):
                out.append("No segment.")
            if r.folder:
                out.append(f"Files: `{r.folder}`")
            out.append("")
        if self.done:
            out.append(f"Already done with these settings: {', '.join(f'`{k}`' for k in self.done)}")
        if self.quarantined:
            out.append(f"Quarantined earlier: {', '.join(f'`{k}`' for k in self.quarantined)}")
        return "\n".join(out)


def _clock(seconds: float) -> str:
    """``h:mm:ss.s`` (or ``m:ss.s``)."""
    m, s = divmod(float(seconds), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"

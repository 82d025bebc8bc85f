"""A feature run: plan which clips need work, compute them chunk by chunk, commit the active set.

The three steps are separate functions so that an orchestrator can map :func:`compute_feature_chunk`
over chunks on any executor (``tasks/features.py`` does, as Prefect tasks); :func:`compute_features`
runs them one after the other in this process.

Incremental by construction: a clip is identified by (key, content identity). The plan reuses
every (key, identity) some shard already holds — computed or quarantined — and schedules only the
rest. A quarantined clip is therefore retried only when its content changes (or the extractor's
version or parameters do, which is another cache). Each chunk writes its own shards, so an
interrupted run loses at most the chunks in flight; the next run picks the rest up.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlci.features.base import FeatureExtractor
from mlci.features.cache import (
    OK,
    QUARANTINED,
    CacheLayout,
    clip_rows_known,
    latest_index_key,
    publish_schema,
    read_parquet,
    to_parquet_bytes,
)
from mlci.features.exceptions import EXTRACTOR_ERROR, MediaError
from mlci.features.registry import resolve_extractor
from mlci.layout import CLIP_PREFIX
from mlci.storage import ObjectNotFoundError, StorageError, Store
from mlci.tables import (
    CLIP_FEATURES,
    FEATURE_INDEX,
    QUARANTINE,
    WINDOW_FEATURES,
    conform,
)

__all__ = [
    "MEDIA_SUFFIXES",
    "ChunkResult",
    "FeatureRunPlan",
    "FeatureRunReport",
    "commit_feature_run",
    "compute_feature_chunk",
    "compute_features",
    "new_run_id",
    "plan_feature_run",
]

#: Files under ``clips/`` with these suffixes are clips; anything else there is ignored (and counted).
MEDIA_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".m4a")
_MESSAGE_LIMIT = 500


def new_run_id() -> str:
    """A run id that sorts by start time: ``20260105T090000123456Z-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class FeatureRunPlan:
    """What a run will do. Plain data, so that it travels between tasks.

    Attributes
    ----------
    run_id : str
    extractor : str
        Registered name (or import path) of the extractor.
    params : dict
        Its parameters.
    cache_id : str
    listed : dict of str to str
        Every clip key under the prefix -> current content identity.
    reused : dict of str to tuple of (str, str)
        Listed clips whose (key, identity) already has a row -> (status, part).
    todo : list of (str, str)
        (key, identity) pairs to compute, sorted by key.
    n_ignored : int
        Objects under the prefix that are not clips (by suffix).
    previous_index : str or None
        Key of the latest active index when the run was planned.
    """

    run_id: str
    extractor: str
    params: dict
    cache_id: str
    listed: dict[str, str]
    reused: dict[str, tuple[str, str]]
    todo: list[tuple[str, str]]
    n_ignored: int = 0
    previous_index: str | None = None

    def chunks(self, chunk_size: int) -> list[list[tuple[str, str]]]:
        """``todo`` split into consecutive chunks of at most ``chunk_size`` clips."""
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        return [self.todo[i : i + chunk_size] for i in range(0, len(self.todo), chunk_size)]


@dataclass
class ChunkResult:
    """What one chunk did. ``entries`` maps key -> (identity, status, part) for the index."""

    chunk: int
    entries: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    n_computed: int = 0
    n_quarantined: int = 0
    quarantine_kinds: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why (vanished, changed during run)
    seconds: float = 0.0

    @property
    def n_done(self) -> int:
        return self.n_computed + self.n_quarantined + len(self.skipped)


@dataclass
class FeatureRunReport:
    """Outcome of a feature run."""

    run_id: str
    cache_id: str
    n_listed: int
    n_ignored: int
    n_reused: int
    n_computed: int
    n_quarantined_new: int
    quarantine_kinds: dict[str, int]
    n_active: int
    n_quarantined: int
    n_removed: int
    skipped: dict[str, str]
    index_key: str | None
    seconds: float
    failed_chunks: dict[int, str] = field(default_factory=dict)
    n_failed: int = 0

    @property
    def complete(self) -> bool:
        """False when a chunk failed after its retries: its clips have no features until the next run."""
        return not self.failed_chunks

    def counts(self) -> dict[str, int]:
        """The numbers a run summary shows: ``computed``, ``cached``, ``quarantined`` (active), ..."""
        return {
            "listed": self.n_listed,
            "computed": self.n_computed,
            "cached": self.n_reused,
            "quarantined": self.n_quarantined,
            "quarantined_new": self.n_quarantined_new,
            "active": self.n_active,
            "removed": self.n_removed,
            "skipped": len(self.skipped),
            "failed": self.n_failed,
            "failed_chunks": len(self.failed_chunks),
        }

    def format(self) -> str:
        lines = [
            f"features {self.cache_id} (run {self.run_id})",
            f"  clips listed: {self.n_listed} (+{self.n_ignored} non-clip objects ignored)",
            (
                f"  computed: {self.n_computed}, reused from cache: {self.n_reused}, "
                f"newly quarantined: {self.n_quarantined_new}"
            ),
            (
                f"  active set: {self.n_active} with features, {self.n_quarantined} quarantined, "
                f"{self.n_removed} dropped (no longer in the store)"
            ),
        ]
        if self.quarantine_kinds:
            lines.append("  quarantined this run: " + ", ".join(f"{k} {n}" for k, n in sorted(self.quarantine_kinds.items())))
        if self.skipped:
            lines.append(f"  skipped (will be retried): {len(self.skipped)}")
        if self.failed_chunks:
            lines.append(f"  FAILED: {self.n_failed} clips not computed (retried next run), "
                         f"{len(self.failed_chunks)} chunk(s) failed after their retries:")
            lines += [f"    chunk {n}: {why}" for n, why in sorted(self.failed_chunks.items())]
        lines.append(f"  index: {self.index_key or 'unchanged'}; {self.seconds:.1f} s")
        return "\n".join(lines)


def plan_feature_run(
    store: Store,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    prefix: str = CLIP_PREFIX,
    run_id: str | None = None,
) -> FeatureRunPlan:
    """List the clips, find their content identities, and decide which need computing.

    Also publishes the configuration's ``schema.json`` (once).
    """
    ex = resolve_extractor(extractor, params, store=store)
    layout = CacheLayout(ex.schema)
    publish_schema(store, layout)
    keys_all = store.list(prefix)
    keys = [k for k in keys_all if k.lower().endswith(MEDIA_SUFFIXES)]

    def identity(key: str) -> tuple[str, str | None]:
        try:
            return key, store.stat(key).identity
        except ObjectNotFoundError:  # deleted between list and stat
            return key, None

    with ThreadPoolExecutor(max_workers=store.io_threads) as pool:
        listed = {k: i for k, i in pool.map(identity, keys) if i is not None}

    previous = latest_index_key(store, layout)
    known: dict[tuple[str, str], tuple[str, str]] = {}
    if previous is not None:
        index = read_parquet(store, previous).to_pandas()
        known = {(k, i): (s, p) for k, i, s, p in zip(index["key"], index["identity"], index["status"], index["part"])}
    if any((k, i) not in known for k, i in listed.items()):
        known.update(clip_rows_known(store, layout))
    reused = {k: known[(k, i)] for k, i in listed.items() if (k, i) in known}
    todo = sorted((k, i) for k, i in listed.items() if k not in reused)
    return FeatureRunPlan(
        run_id=run_id or new_run_id(),
        extractor=extractor if isinstance(extractor, str) else ex.name,
        params=ex.get_params(),
        cache_id=layout.cache_id,
        listed=listed,
        reused=reused,
        todo=todo,
        n_ignored=len(keys_all) - len(keys),
        previous_index=previous,
    )


def compute_feature_chunk(
    store: Store,
    items: Sequence[tuple[str, str]],
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    run_id: str,
    chunk: int,
    threads: int = 1,
    on_clip: Callable[[str, str], None] | None = None,
) -> ChunkResult:
    """Compute the features of one chunk of clips and write its shards.

    Broken media never raise: such a clip becomes a QUARANTINE row. Storage errors do raise, so
    that the caller can retry the chunk; its shards are written with ``write_if_absent``, so a
    retried chunk keeps whatever an earlier attempt already stored.

    Parameters
    ----------
    store : Store
    items : sequence of (key, identity)
        Clips and the content identities the plan saw.
    extractor, params :
        As for :func:`plan_feature_run`.
    run_id : str
    chunk : int
        Chunk number (names the shards).
    threads : int, default=1
        Decoder threads per clip (does not change the features).
    on_clip : callable(key, outcome), default=None
        Called after each clip with ``"ok"``, ``"quarantined"`` or ``"skipped"``.
    """
    t_start = time.perf_counter()
    ex = resolve_extractor(extractor, params, store=store)
    layout = CacheLayout(ex.schema)
    result = ChunkResult(chunk=chunk)
    now = pd.Timestamp(datetime.now(UTC))
    clip_rows, window_rows, quarantine_rows = [], [], []
    vectors: dict[str, list[np.ndarray]] = {"audio": [], "video": [], "combined": []}
    window_vectors: dict[str, list[np.ndarray]] = {"audio": [], "video": []}

    for key, identity in items:
        features, error = None, None
        try:
            features = ex.featurize_clip(store, key, threads=threads)
        except ObjectNotFoundError:
            result.skipped[key] = "vanished"
        except MediaError as exc:
            error = (exc.kind, str(exc))
        except Exception as exc:
            if isinstance(exc, StorageError):
                raise
            error = (EXTRACTOR_ERROR, f"{type(exc).__name__}: {exc}")
        if key not in result.skipped and _changed(store, key, identity):
            result.skipped[key] = "changed during run"
        elif error is not None:
            kind, message = error
            quarantine_rows.append(
                {"key": key, "identity": identity, "error_kind": kind, "message": message[:_MESSAGE_LIMIT], "detected_at": now}
            )
            result.quarantine_kinds[kind] = result.quarantine_kinds.get(kind, 0) + 1
        elif features is not None:
            win = features.windows
            clip_rows.append(
                {
                    "key": key,
                    "identity": identity,
                    "has_audio": win.has_audio,
                    "has_video": win.has_video,
                    "duration": win.duration,
                    "n_windows": win.n_windows,
                    "computed_at": now,
                }
            )
            for name, rows in vectors.items():
                rows.append(getattr(features, name))
            for w in range(win.n_windows):
                window_rows.append(
                    {
                        "key": key,
                        "identity": identity,
                        "window": w,
                        "start": win.start[w],
                        "end": win.end[w],
                        "has_audio": bool(win.window_has_audio[w]),
                        "has_video": bool(win.window_has_video[w]),
                    }
                )
            window_vectors["audio"].append(win.audio)
            window_vectors["video"].append(win.video)
        if on_clip is not None:
            on_clip(key, "skipped" if key in result.skipped else QUARANTINED if error is not None else OK)

    schema = ex.schema
    if clip_rows:
        part = layout.clip_part(run_id, chunk)
        # Windows first: a clips shard never exists without its windows shard.
        store.write_if_absent(
            layout.window_part(run_id, chunk),
            to_parquet_bytes(
                pd.DataFrame(window_rows),
                WINDOW_FEATURES,
                {
                    "audio": np.concatenate(window_vectors["audio"]).reshape(len(window_rows), len(schema.audio_window)),
                    "video": np.concatenate(window_vectors["video"]).reshape(len(window_rows), len(schema.video_window)),
                },
            ),
        )
        store.write_if_absent(part, to_parquet_bytes(pd.DataFrame(clip_rows), CLIP_FEATURES, {n: np.stack(v) for n, v in vectors.items()}))
        for row in clip_rows:
            result.entries[row["key"]] = (row["identity"], OK, part)
        result.n_computed = len(clip_rows)
    if quarantine_rows:
        part = layout.quarantine_part(run_id, chunk)
        store.write_if_absent(part, to_parquet_bytes(pd.DataFrame(quarantine_rows), QUARANTINE))
        for row in quarantine_rows:
            result.entries[row["key"]] = (row["identity"], QUARANTINED, part)
        result.n_quarantined = len(quarantine_rows)
    result.seconds = time.perf_counter() - t_start
    return result


def _changed(store: Store, key: str, identity: str) -> bool:
    """Whether the object changed (or vanished) since the plan saw ``identity``."""
    try:
        return store.stat(key).identity != identity
    except ObjectNotFoundError:
        return True


def commit_feature_run(
    store: Store,
    plan: FeatureRunPlan,
    results: Sequence[ChunkResult],
    *,
    failed_chunks: Mapping[int, str] | None = None,
    started: float | None = None,
) -> FeatureRunReport:
    """Write the active index of the run (only if it differs from the latest one) and report.

    Clips of the plan that no chunk finished (skipped, or their chunk failed) are left out of the
    index, so the next run computes them. ``failed_chunks`` maps the number of each chunk that
    failed after its retries to the reason; the report names them and counts their clips.
    """
    ex = resolve_extractor(plan.extractor, plan.params, store=store)
    layout = CacheLayout(ex.schema)
    entries: dict[str, tuple[str, str, str]] = {k: (plan.listed[k], s, p) for k, (s, p) in plan.reused.items()}
    kinds: Counter[str] = Counter()
    skipped: dict[str, str] = {}
    for r in results:
        entries.update(r.entries)
        kinds.update(r.quarantine_kinds)
        skipped.update(r.skipped)
    unfinished = {k for k, _ in plan.todo} - set(entries) - set(skipped)
    index = pd.DataFrame(
        [{"key": k, "identity": i, "status": s, "part": p} for k, (i, s, p) in sorted(entries.items())],
        columns=list(FEATURE_INDEX.columns),
    )
    index = conform(index, FEATURE_INDEX)

    latest = latest_index_key(store, layout)
    previous_keys: set[str] = set()
    written = None
    same = False
    if latest is not None:
        prev = conform(read_parquet(store, latest).to_pandas(), FEATURE_INDEX)
        previous_keys = set(prev["key"])
        same = prev.sort_values("key").reset_index(drop=True).equals(index)
    if not same and (len(index) or latest is not None):
        key = layout.active_key(plan.run_id)
        store.write_if_absent(key, to_parquet_bytes(index, FEATURE_INDEX))
        written = key
    n_quarantined = int((index["status"] == QUARANTINED).sum())
    return FeatureRunReport(
        run_id=plan.run_id,
        cache_id=plan.cache_id,
        n_listed=len(plan.listed),
        n_ignored=plan.n_ignored,
        n_reused=len(plan.reused),
        n_computed=sum(r.n_computed for r in results),
        n_quarantined_new=sum(r.n_quarantined for r in results),
        quarantine_kinds=dict(sorted(kinds.items())),
        n_active=len(index) - n_quarantined,
        n_quarantined=n_quarantined,
        n_removed=len(previous_keys - set(plan.listed)),
        skipped=skipped,
        index_key=written,
        seconds=(time.perf_counter() - started) if started is not None else sum(r.seconds for r in results),
        failed_chunks=dict(failed_chunks or {}),
        n_failed=len(unfinished),
    )


def compute_features(
    store: Store,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    chunk_size: int = 16,
    prefix: str = CLIP_PREFIX,
    threads: int = 1,
    progress: Callable[[int, int, int], None] | None = None,
) -> FeatureRunReport:
    """Bring the features of every clip under ``prefix`` up to date, in this process.

    Parameters
    ----------
    store : Store
    extractor : str or FeatureExtractor, default="basic"
    params : dict, default=None
    chunk_size : int, default=16
        Clips per shard.
    prefix : str, default=mlci.layout.CLIP_PREFIX
    threads : int, default=1
        Decoder threads per clip.
    progress : callable(done, total, quarantined), default=None
        Called once the plan is known and after each clip, with counts of clips of this run.

    Returns
    -------
    FeatureRunReport
    """
    started = time.perf_counter()
    plan = plan_feature_run(store, extractor=extractor, params=params, prefix=prefix)
    # By name, the plan's parameters: they pin what the plan saw (e.g. a model's digest).
    ex = resolve_extractor(plan.extractor, plan.params, store=store) if isinstance(extractor, str) else resolve_extractor(extractor, store=store)
    total = len(plan.todo)
    counts = Counter()

    def on_clip(key: str, outcome: str) -> None:
        counts[outcome] += 1
        if progress is not None:
            progress(sum(counts.values()), total, counts[QUARANTINED])

    if progress is not None:
        progress(0, total, 0)
    results = [
        compute_feature_chunk(store, items, extractor=ex, run_id=plan.run_id, chunk=n, threads=threads, on_clip=on_clip)
        for n, items in enumerate(plan.chunks(chunk_size))
    ]
    return commit_feature_run(store, plan, results, started=started)

"""Ingestion of label files into the store's append-only annotations history.

Store layout written here::

    annotations/ingested/<content>-<pass>.json    one pass over a file's answers: settings, answers stored, report
    annotations/history/<content>-<pass>.parquet  ANNOTATIONS rows of the answers that pass stored
    reports/labels/ingest-<digest>.json           validation report of one run (content-addressed)

``<content>`` identifies a file's set of answers (:func:`mlci.labels.readers.content_id`: clip
reference, named annotator and labels of each answer, without times, etags or order), so the same
answers under another name or in a re-export are recognised. Each answer is stored at most once:
a pass stores only the answers no earlier pass stored. A file is read again when the settings that
decide its answers' fate (:class:`IngestSettings`) differ from every earlier pass and some of its
answers are not stored yet (rejected or skipped), or on request (``reingest``): so answers rejected
because of a configuration mistake are not lost, and nothing is stored twice.

Stores written before passes existed hold ``annotations/ingested/<file sha256>.json`` and
``annotations/history/<file sha256>.parquet``; they count as the first pass of their file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandas as pd

from mlci.catalog import NONE_OF_THE_ABOVE, ClassCatalog
from mlci.labels.exceptions import (
    CANCELLED,
    CLIP_NOT_IN_STORE,
    EMPTY_LABELS,
    UNREADABLE,
    LabelFileError,
)
from mlci.labels.normalize import EMPTY_POLICIES, FileReport, normalize_label_file
from mlci.labels.readers import FORMATS, RawLabelFile, content_id, read_label_file
from mlci.layout import (
    CLIP_PREFIX,
    HISTORY_PREFIX,
    LABELS_PREFIX,
    MARKER_PREFIX,
    history_shard_key,
    ingest_marker_key,
    label_report_key,
    legacy_history_shard_key,
    legacy_ingest_marker_key,
)
from mlci.storage import InvalidKeyError, StorageError, Store
from mlci.tables import ANNOTATIONS, conform, json_bytes, parquet_bytes

__all__ = [
    "IngestReport",
    "IngestSettings",
    "ingest_labels",
    "load_annotations",
    "current_view",
    "label_snapshot_id",
]

_KEY = list(ANNOTATIONS.key)


@dataclass(frozen=True)
class IngestSettings:
    """Everything besides a file's bytes that decides which of its answers are accepted.

    Its :meth:`fingerprint` is recorded with every pass; a file with answers not stored yet is
    read again when the fingerprint is new.
    """

    base_url: str | None
    store: str
    classes: tuple[str, ...]
    empty: str = "skip"
    fmt: str | None = None
    choice_name: str | None = None
    files_root: str | None = None

    def fingerprint(self) -> str:
        """16 hex digits of a sha256 over the settings."""
        fields = dataclasses.asdict(self)
        # Unset, files_root is left out: passes recorded before it existed keep their fingerprint.
        if fields["files_root"] is None:
            del fields["files_root"]
        return hashlib.sha256(json_bytes(fields)).hexdigest()[:16]


@dataclass
class IngestReport:
    """What one ingestion run found, per file and in total.

    ``files[i].status`` is ``ingested`` (answers read for the first time), ``retried`` (read again
    for the answers no earlier pass stored), ``already_ingested`` (nothing to read: see
    ``duplicate_of`` for a copy under another name), ``duplicate`` (the same answers as
    ``duplicate_of`` in other bytes: not added again) or ``rejected`` (the whole file).
    """

    files: list[FileReport] = field(default_factory=list)
    report_key: str | None = None

    def _count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_new(self) -> int:
        return self._count("ingested")

    @property
    def n_retried(self) -> int:
        return self._count("retried")

    @property
    def n_already_ingested(self) -> int:
        return self._count("already_ingested")

    @property
    def n_duplicates(self) -> int:
        return self._count("duplicate")

    @property
    def n_rejected_files(self) -> int:
        return self._count("rejected")

    def _distinct(self) -> list[FileReport]:
        """One report per set of answers: copies and duplicates count once."""
        return list({f.content or f"file:{f.source}": f for f in self.files}.values())

    @property
    def n_accepted(self) -> int:
        """Answers stored from the files of this run (each set of answers counted once)."""
        return sum(f.n_accepted for f in self._distinct())

    @property
    def n_rejected(self) -> int:
        return sum(f.n_rejected for f in self._distinct())

    @property
    def n_answers_new(self) -> int:
        """Answers stored by this run."""
        return sum(f.n_new for f in self.files)

    @property
    def n_rows_new(self) -> int:
        """Annotation rows stored by this run."""
        return sum(f.n_rows_new for f in self.files)

    @property
    def n_clip_not_in_store(self) -> int:
        """Accepted answers whose clip is not in the store (kept, flagged)."""
        return sum(f.notes_by_reason.get(CLIP_NOT_IN_STORE, 0) for f in self.files)

    @property
    def without_answers(self) -> list[str]:
        """Files none of whose answers is stored: all rejected or skipped, no answers, or unreadable."""
        return [f.source for f in self.files if f.n_accepted == 0]

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.rejected_by_reason)
        return dict(sorted(total.items()))

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.n_files,
            "new": self.n_new,
            "retried": self.n_retried,
            "already_ingested": self.n_already_ingested,
            "duplicates": self.n_duplicates,
            "rejected_files": self.n_rejected_files,
            "without_answers": len(self.without_answers),
            "accepted": self.n_accepted,
            "rejected": self.n_rejected,
            "answers_new": self.n_answers_new,
            "rows_new": self.n_rows_new,
            "clip_not_in_store": self.n_clip_not_in_store,
            "rejected_by_reason": self.rejected_by_reason,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per file: the short validation table the CLI prints."""
        rows = [
            {
                "source": f.source,
                "format": f.format or "-",
                "status": f.status,
                "read": f.n_read,
                "accepted": f.n_accepted,
                "new": f.n_new,
                "rejected": f.n_rejected,
                "skipped": f.n_skipped,
                "conflicts": f.notes_by_reason.get("none_of_the_above_conflict", 0),
                "empty": f.notes_by_reason.get(EMPTY_LABELS, 0),
                "no_clip": f.notes_by_reason.get(CLIP_NOT_IN_STORE, 0),
                "problems": _problems(f),
            }
            for f in self.files
        ]
        return pd.DataFrame(rows, columns=["source", "format", "status", "read", "accepted", "new", "rejected",
                                           "skipped", "conflicts", "empty", "no_clip", "problems"])

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "report_key": self.report_key, "files": [f.to_dict() for f in self.files]}


def _problems(f: FileReport) -> str:
    if f.error:
        return f.error
    parts = [f"{r}={n}" for r, n in f.rejected_by_reason.items()]
    if f.status == "duplicate":
        parts.insert(0, f"same answers as {f.duplicate_of}")
    return ", ".join(parts)


def _local_sources(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
            out.extend((str(f), f) for f in files)
        else:
            out.append((str(path), path))
    return out


class _ClipIndex:
    """The store's clip keys, listed once per run and only if asked for."""

    def __init__(self, store: Store):
        self._store = store
        self._keys: frozenset[str] | None = None

    def __call__(self) -> Collection[str]:
        if self._keys is None:
            self._keys = frozenset(self._store.list(CLIP_PREFIX))
        return self._keys


@dataclass
class _Pass:
    """One committed pass over a content (or a legacy marker)."""

    key: str
    settings: str | None  # fingerprint; None for a legacy marker
    stored: frozenset[str]
    ingested_at: str
    source: str
    sha256: str
    default_annotator: str
    report: FileReport
    shard: str | None


class _Ledger:
    """The store's pass markers and history shards, listed once per run and updated by its writes."""

    def __init__(self, store: Store):
        self.store = store
        self._markers: dict[str, list[str]] | None = None  # content -> marker keys
        self._legacy: set[str] = set()  # file sha256 of markers written before passes existed
        self._shards: set[str] = set()

    def _load(self) -> dict[str, list[str]]:
        if self._markers is None:
            self._markers = {}
            for key in self.store.list(MARKER_PREFIX):
                name = key[len(MARKER_PREFIX) :].removesuffix(".json")
                if "-" in name:
                    self._markers.setdefault(name.split("-", 1)[0], []).append(key)
                else:
                    self._legacy.add(name)
            self._shards = set(self.store.list(HISTORY_PREFIX))
        return self._markers

    def passes(self, content: str, sha: str, raw: RawLabelFile) -> list[_Pass]:
        """Committed passes over ``content`` (and the legacy marker of these bytes), oldest first.

        The marker of a pass is written before its shard, so a marker whose shard is missing is a
        pass that stopped half-way: its answers are not stored and it does not count.
        """
        out = []
        for key in self._load().get(content, []):
            m = json.loads(self.store.read_text(key))
            shard = history_shard_key(content, m["pass"]) if m["stored"] else None
            if shard is not None and shard not in self._shards:
                continue
            out.append(_Pass(key, m["settings"], frozenset(m["stored"]), m["ingested_at"], m["source"],
                             m["sha256"], m["default_annotator"], FileReport.from_dict(m["report"]), shard))
        if sha in self._legacy:
            out.append(self._legacy_pass(sha, raw))
        return sorted(out, key=lambda p: (p.ingested_at, p.key))

    def _legacy_pass(self, sha: str, raw: RawLabelFile) -> _Pass:
        key = legacy_ingest_marker_key(sha)
        report = FileReport.from_dict(json.loads(self.store.read_text(key)))
        answer_at = {r.location: r.answer for r in raw.records}
        not_stored = {r["location"] for r in report.rejected}
        # Empty answers were stored (as negatives) unless skipped; skipped ones add to the cancelled.
        if report.n_skipped > report.notes_by_reason.get(CANCELLED, 0):
            not_stored |= {n["location"] for n in report.notes if n["reason"] == EMPTY_LABELS}
        for note in report.notes:
            note.setdefault("answer", answer_at.get(note["location"], ""))
        stored = frozenset(r.answer for r in raw.records if r.location not in not_stored)
        shard = legacy_history_shard_key(sha)
        return _Pass(key, None, stored, report.ingested_at or "", report.source, sha,
                     PurePosixPath(report.source.replace("\\", "/")).name or report.source, report,
                     shard if shard in self._shards else None)

    def write_marker(self, content: str, pass_id: str, data: bytes) -> bool:
        key = ingest_marker_key(content, pass_id)
        wrote = self.store.write_if_absent(key, data)
        markers = self._load().setdefault(content, [])
        if key not in markers:
            markers.append(key)
        return wrote

    def write_shard(self, content: str, pass_id: str, data: bytes) -> bool:
        key = history_shard_key(content, pass_id)
        wrote = self.store.write_if_absent(key, data)
        self._load()
        self._shards.add(key)
        return wrote


def _recheck_clips(report: FileReport, clips: _ClipIndex) -> FileReport:
    """Drop ``clip_not_in_store`` notes whose clip has been uploaded since."""
    if not report.notes_by_reason.get(CLIP_NOT_IN_STORE):
        return report
    present = clips()
    report.notes = [n for n in report.notes if not (n["reason"] == CLIP_NOT_IN_STORE and n.get("key") in present)]
    report.notes_by_reason = dict(sorted(Counter(n["reason"] for n in report.notes).items()))
    return report


def _stored_assets(store: Store, passes: list[_Pass]) -> set[str]:
    out: set[str] = set()
    for p in passes:
        if p.shard is not None:
            out.update(pd.read_parquet(io.BytesIO(store.read_bytes(p.shard)), columns=["asset"])["asset"])
    return out


def _merged(prev: FileReport | None, new: FileReport, stored: frozenset[str], order: list[str]) -> FileReport:
    """The file's report after a pass: ``prev`` (the last pass) for the answers stored before, ``new``
    (this pass's validation of the others) for the rest."""
    out = dataclasses.replace(new)
    out.n_accepted = len(stored) + new.n_accepted
    out.n_read = len(stored) + new.n_read
    if prev is None:
        return out
    kept = [n for n in prev.notes if n.get("answer") in stored]
    out.notes = sorted(kept + new.notes, key=lambda n: n["index"])
    out.notes_by_reason = dict(sorted(Counter(n["reason"] for n in out.notes).items()))
    counts = Counter(prev.label_counts) + Counter(new.label_counts)
    out.label_counts = {c: counts[c] for c in [*order, NONE_OF_THE_ABOVE] if counts[c]}
    out.n_rows = prev.n_rows + new.n_rows
    return out


def _ingest_one(
    store: Store,
    catalog: ClassCatalog,
    source: str,
    data: bytes,
    *,
    settings: IngestSettings,
    now: datetime,
    force: bool,
    clips: _ClipIndex,
    ledger: _Ledger,
) -> FileReport:
    sha = hashlib.sha256(data).hexdigest()
    try:
        raw = read_label_file(data, source=source, fmt=settings.fmt, choice_name=settings.choice_name)
    except LabelFileError as exc:
        return FileReport(source=source, sha256=sha, status="rejected", error=f"{exc.reason}: {exc.message}",
                          rejected_by_reason={exc.reason: 1})
    ids = [r.answer for r in raw.records]
    content = content_id(ids) if ids else sha  # a file without answers is known by its bytes
    passes = ledger.passes(content, sha, raw)
    origin = passes[0] if passes else None
    stored = frozenset().union(*(p.stored for p in passes)) & set(ids)
    pending = [r for r in raw.records if r.answer not in stored]
    fingerprint = settings.fingerprint()
    tried = {p.settings for p in passes}
    if origin is not None and not (pending and (force or fingerprint not in tried)):
        report = FileReport.from_dict(passes[-1].report.to_dict())
        report.n_new = report.n_rows_new = 0
        report.status = "duplicate" if origin.sha256 != sha else "already_ingested"
        return _seen_as(report, source, sha, origin, clips)

    # A pass: validate the answers no earlier pass stored, store the accepted ones.
    default_annotator = origin.default_annotator if origin is not None else raw.default_annotator
    result = normalize_label_file(dataclasses.replace(raw, records=pending), catalog, store=store,
                                  base_url=settings.base_url,
                                  files_root=Path(settings.files_root) if settings.files_root else None,
                                  empty=settings.empty,
                                  default_annotator=default_annotator, clip_keys=clips)
    new = sorted(result.accepted)
    report = _merged(passes[-1].report if passes else None, result.report, stored, catalog.names)
    record = bool(new) or fingerprint not in tried
    report.sha256, report.content = sha, content
    report.ingested_at = now.isoformat() if record else passes[-1].report.ingested_at
    report.n_new, report.n_rows_new = len(new), len(result.annotations)
    if new:
        report.n_clips = len(_stored_assets(store, passes) | set(result.annotations["asset"]))
    elif passes:
        report.n_clips = passes[-1].report.n_clips
    report.status = "ingested" if origin is None else "retried"
    pass_id = hashlib.sha256(json_bytes([fingerprint, new])).hexdigest()[:16]
    marker = {
        "kind": "label-ingest-pass",
        "content": content,
        "pass": pass_id,
        "settings": fingerprint,
        "source": source,
        "sha256": sha,
        "default_annotator": default_annotator,
        "ingested_at": report.ingested_at,
        "stored": new,
        "report": report.to_dict(),
    }
    # A pass is recorded when it stores answers or tried settings not tried before; a forced pass
    # that found nothing new leaves no trace, so asking again changes nothing.
    if record:
        # The marker goes first and the shard commits the pass: a run that stops in between leaves
        # a marker that does not count (its shard is missing), and the next run redoes the pass.
        wrote = ledger.write_marker(content, pass_id, json_bytes(marker))
        if new:
            df = result.annotations
            df["ingested_at"] = pd.Timestamp(now).tz_convert("UTC")
            wrote = ledger.write_shard(content, pass_id, parquet_bytes(conform(df, ANNOTATIONS)))
        if not wrote:  # a concurrent run did this very pass first
            report.n_new = report.n_rows_new = 0
            report.status = "already_ingested"
    if origin is not None and origin.sha256 != sha:
        report.status = "duplicate"
    return _seen_as(report, source, sha, origin, clips)


def _seen_as(report: FileReport, source: str, sha: str, origin: _Pass | None, clips: _ClipIndex) -> FileReport:
    report.source, report.sha256 = source, sha
    report.duplicate_of = origin.source if origin is not None and origin.source != source else None
    return _recheck_clips(report, clips)


def _sources(
    store: Store, paths: Sequence[str | Path], reingest: Sequence[str | Path]
) -> tuple[list[tuple[str, Any]], set[str], list[FileReport]]:
    """(source, where) pairs to read, the sources to read again, and reports of reingest targets not found."""
    sources: dict[str, Any] = {
        key: key for key in store.list(LABELS_PREFIX) if not key.rsplit("/", 1)[-1].startswith(".")
    }
    for src, path in _local_sources(paths):
        sources.setdefault(src, path)
    force: set[str] = set()
    missing: list[FileReport] = []
    for item in reingest:
        path = Path(item).expanduser()
        if path.exists():
            for src, p in _local_sources([path]):
                sources.setdefault(src, p)
                force.add(src)
            continue
        try:
            found = store.exists(str(item))
        except InvalidKeyError:
            found = False
        if found:
            sources.setdefault(str(item), str(item))
            force.add(str(item))
        else:
            missing.append(FileReport(
                source=str(item), status="rejected", rejected_by_reason={UNREADABLE: 1},
                error=f"{UNREADABLE}: --reingest {str(item)!r} is neither a local file nor a key in {store.uri}",
            ))
    return list(sources.items()), force, missing


def ingest_labels(
    store: Store,
    catalog: ClassCatalog,
    *,
    base_url: str | None,
    files_root: str | Path | None = None,
    paths: Sequence[str | Path] | None = None,
    fmt: str | None = None,
    empty: Literal["skip", "negative"] = "skip",
    choice_name: str | None = None,
    reingest: Sequence[str | Path] = (),
    now: datetime | None = None,
) -> IngestReport:
    """Ingest every label file under the store's ``labels/`` prefix, plus local ``paths``.

    Each file is read (format detected unless ``fmt`` is given) and validated; its accepted
    answers are stored once, in a history shard of the pass that accepted them. A file is read
    again when some of its answers are not stored yet and the settings (base URL, files root, store,
    class catalog, ``empty``, ``fmt``, ``choice_name``) differ from every earlier pass, or when it is
    listed in ``reingest``; answers stored before are never stored again. A file with the same
    answers as an earlier one (a copy, or a re-export under a new name) adds nothing. A file that
    cannot be read at all is reported and the other files are still ingested. The run's
    validation report is stored under ``reports/labels/`` (content-addressed, so an identical
    re-run writes nothing).

    Parameters
    ----------
    store : Store
        Where the label files are read from and the annotations history is written to.
    catalog : ClassCatalog
        The classes labelers may tick.
    base_url : str or None
        URL prefix that label files use for clips (``Settings.clip_base_url``).
    files_root : str or Path or None, default=None
        Label Studio's local files root as seen from here (``Settings.label_studio_files_root``):
        ``/data/local-files/?d=`` references resolve under it; None refuses them.
    paths : sequence of str or Path, default=None
        Extra local files or folders (read recursively) to ingest.
    fmt : {"flat", "label_studio", "label_studio_min", "csv"} or None, default=None
        Format of every file; None detects each file's format.
    empty : {"skip", "negative"}, default="skip"
        How an empty label list is read; see :func:`mlci.labels.normalize_label_file`.
    choice_name : str or None, default=None
        Label Studio choices control to read; see :func:`mlci.labels.read_label_file`.
    reingest : sequence of str or Path, default=()
        Files to read again whatever the settings: local paths, or keys in the store.
    now : datetime or None, default=None
        Ingestion time stamped on new rows (``ingested_at``); None is the current UTC time.

    Returns
    -------
    IngestReport
    """
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, but got {empty!r}")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS} or None, but got {fmt!r}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    settings = IngestSettings(base_url=base_url, store=store.uri, classes=tuple(catalog.names), empty=empty,
                              fmt=fmt, choice_name=choice_name,
                              files_root=str(Path(files_root).expanduser().resolve()) if files_root else None)
    report = IngestReport()
    clips, ledger = _ClipIndex(store), _Ledger(store)
    sources, force, missing = _sources(store, list(paths or []), list(reingest))
    report.files.extend(missing)
    for source, where in sources:
        try:
            data = store.read_bytes(where) if isinstance(where, str) else where.read_bytes()
        except (OSError, StorageError) as exc:
            report.files.append(FileReport(source=source, status="rejected", error=f"{UNREADABLE}: {exc}",
                                           rejected_by_reason={UNREADABLE: 1}))
            continue
        report.files.append(
            _ingest_one(store, catalog, source, data, settings=settings, now=now, force=source in force, clips=clips,
                        ledger=ledger)
        )
    report.report_key = _write_run_report(store, report, params={"fmt": fmt, "empty": empty, "choice_name": choice_name,
                                                                 "base_url": base_url, "classes": catalog.names,
                                                                 **({"files_root": settings.files_root}
                                                                    if settings.files_root else {})})
    return report


_RUN_SPECIFIC = ("n_new", "n_rows_new")


def _write_run_report(store: Store, report: IngestReport, *, params: dict[str, Any]) -> str:
    files = []
    for f in sorted(report.files, key=lambda f: f.source):
        entry = {k: v for k, v in f.to_dict().items() if k not in _RUN_SPECIFIC}
        # The stored report describes the files, not this run: identical inputs give identical bytes.
        entry["status"] = f.status if f.status in ("rejected", "duplicate") else "ingested"
        files.append(entry)
    run_specific = ("new", "retried", "already_ingested", "answers_new", "rows_new")
    totals = {k: v for k, v in report.summary().items() if k not in run_specific}
    payload = {"kind": "label-ingest", "params": params, "totals": totals, "files": files}
    data = json_bytes(payload)
    key = label_report_key(hashlib.sha256(data).hexdigest()[:16])
    store.write_if_absent(key, data)
    return key


def current_view(history: pd.DataFrame) -> pd.DataFrame:
    """Each annotator's latest answer per (asset, class) from a history of ANNOTATIONS rows.

    Latest is decided by ``created_at`` (``ingested_at`` where it is unknown), then ``ingested_at``,
    then ``source_file`` and ``record_index``; the result is sorted by (asset, annotator, class).
    """
    if not len(history):
        return history.reset_index(drop=True)
    when = history["created_at"].fillna(history["ingested_at"])
    order = history.assign(_when=when).sort_values(
        ["_when", "ingested_at", "source_file", "record_index"], kind="mergesort", na_position="first"
    )
    latest = order.drop_duplicates(_KEY, keep="last").drop(columns="_when")
    return latest.sort_values(_KEY, kind="mergesort").reset_index(drop=True)


def load_annotations(store: Store, *, current: bool = True, max_workers: int = 8) -> pd.DataFrame:
    """The ANNOTATIONS table of the store.

    Parameters
    ----------
    store : Store
    current : bool, default=True
        True keeps each annotator's latest answer per (asset, class) (see :func:`current_view`);
        False returns the whole history, ordered by ingestion.
    max_workers : int, default=8
        Shards read in parallel (S3 latency dominates).

    Returns
    -------
    pandas.DataFrame
        Conformed to ``mlci.tables.ANNOTATIONS``; empty when nothing has been ingested.
    """
    keys = [k for k in store.list(HISTORY_PREFIX) if k.endswith(".parquet")]

    def read(key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(store.read_bytes(key)))

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(keys) or 1))) as pool:
        frames = list(pool.map(read, keys))
    if frames:
        history = pd.concat(frames, ignore_index=True)
    else:
        history = pd.DataFrame({c: pd.Series(dtype=d) for c, d in ANNOTATIONS.columns.items()})
    history = conform(history, ANNOTATIONS)
    if current:
        return current_view(history)
    return history.sort_values(["ingested_at", "source_file", "record_index"], kind="mergesort").reset_index(drop=True)


def label_snapshot_id(annotations: pd.DataFrame) -> str:
    """A stable id of a current annotations view: 16 hex digits of a sha256.

    Only (asset, annotator, class, value) enter the hash, in sorted order, so the same answers
    give the same id whatever their row order, source file or ingestion time.

    Raises
    ------
    ValueError
        Columns are missing, or (asset, annotator, class) repeats (a history, not a current view).
    """
    cols = [*_KEY, "value"]
    missing = [c for c in cols if c not in annotations.columns]
    if missing:
        raise ValueError(f"annotations must have columns {cols}; missing {missing}")
    df = annotations[cols]
    if df.duplicated(_KEY).any():
        raise ValueError(
            f"annotations repeat {int(df.duplicated(_KEY).sum())} (asset, annotator, class) keys; "
            "pass the current view (load_annotations(store, current=True))"
        )
    df = df.sort_values(_KEY, kind="mergesort")
    lines = (
        df["asset"].astype(str) + "\t" + df["annotator"].astype(str) + "\t" + df["class"].astype(str)
        + "\t" + df["value"].astype(int).astype(str)
    )
    return hashlib.sha256(lines.str.cat(sep="\n").encode("utf-8")).hexdigest()[:16]

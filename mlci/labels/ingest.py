"""Ingestion of label files into the store's append-only annotations history.

Store layout written here::

    annotations/history/<sha256>.parquet   ANNOTATIONS rows of one label file (by content hash)
    annotations/ingested/<sha256>.json     that file's validation report; marks it as ingested
    reports/labels/ingest-<digest>.json    validation report of one run (content-addressed)

A file is identified by the sha256 of its bytes, so ingesting a file again — under any name —
changes nothing, and a changed file adds a new shard while the old answers stay in the history.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mlci.catalog import ClassCatalog
from mlci.labels.exceptions import UNREADABLE, LabelFileError
from mlci.labels.normalize import FileReport, normalize_label_file
from mlci.labels.readers import read_label_file
from mlci.storage import ObjectNotFoundError, StorageError, Store
from mlci.tables import ANNOTATIONS, conform, json_bytes, parquet_bytes

__all__ = [
    "IngestReport",
    "ingest_labels",
    "load_annotations",
    "current_view",
    "label_snapshot_id",
    "LABELS_PREFIX",
    "HISTORY_PREFIX",
    "MARKER_PREFIX",
    "REPORT_PREFIX",
]

LABELS_PREFIX = "labels/"
HISTORY_PREFIX = "annotations/history/"
MARKER_PREFIX = "annotations/ingested/"
REPORT_PREFIX = "reports/labels/"
_KEY = list(ANNOTATIONS.key)


@dataclass
class IngestReport:
    """What one ingestion run found, per file and in total.

    ``files[i].status`` is ``ingested`` (new this run), ``already_ingested`` (same content seen
    before, possibly under another name: see ``duplicate_of``) or ``rejected`` (whole file).
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
    def n_already_ingested(self) -> int:
        return self._count("already_ingested")

    @property
    def n_rejected_files(self) -> int:
        return self._count("rejected")

    @property
    def n_accepted(self) -> int:
        return sum(f.n_accepted for f in self.files)

    @property
    def n_rejected(self) -> int:
        return sum(f.n_rejected for f in self.files)

    @property
    def n_rows_new(self) -> int:
        return sum(f.n_rows for f in self.files if f.status == "ingested")

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
            "already_ingested": self.n_already_ingested,
            "rejected_files": self.n_rejected_files,
            "accepted": self.n_accepted,
            "rejected": self.n_rejected,
            "rows_new": self.n_rows_new,
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
                "rejected": f.n_rejected,
                "skipped": f.n_skipped,
                "conflicts": f.notes_by_reason.get("none_of_the_above_conflict", 0),
                "empty": f.notes_by_reason.get("empty_labels", 0),
                "problems": f.error or ", ".join(f"{r}={n}" for r, n in f.rejected_by_reason.items()),
            }
            for f in self.files
        ]
        return pd.DataFrame(rows, columns=["source", "format", "status", "read", "accepted", "rejected",
                                           "skipped", "conflicts", "empty", "problems"])

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "report_key": self.report_key, "files": [f.to_dict() for f in self.files]}


def _local_sources(paths: list[str | Path]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
            out.extend((str(f), f) for f in files)
        else:
            out.append((str(path), path))
    return out


def _ingest_one(
    store: Store,
    catalog: ClassCatalog,
    source: str,
    data: bytes,
    *,
    base_url: str | None,
    fmt: str | None,
    empty: str,
    choice_name: str | None,
    now: datetime,
    seen: dict[str, str],
) -> FileReport:
    sha = hashlib.sha256(data).hexdigest()
    marker = f"{MARKER_PREFIX}{sha}.json"
    if sha in seen or store.exists(marker):
        try:
            stored = FileReport.from_dict(json.loads(store.read_text(marker)))
        except ObjectNotFoundError:
            # Same content twice in this run and its first copy was rejected as a whole.
            stored = FileReport(source=seen[sha], sha256=sha, status="rejected")
        stored.duplicate_of = stored.source if stored.source != source else None
        stored.source = source
        stored.status = "already_ingested" if stored.status != "rejected" else "rejected"
        return stored
    seen[sha] = source
    try:
        raw = read_label_file(data, source=source, fmt=fmt, choice_name=choice_name)
    except LabelFileError as exc:
        return FileReport(source=source, sha256=sha, status="rejected", error=f"{exc.reason}: {exc.message}",
                          rejected_by_reason={exc.reason: 1})
    result = normalize_label_file(raw, catalog, store=store, base_url=base_url, empty=empty)
    report = result.report
    report.sha256 = sha
    report.status = "ingested"
    report.ingested_at = now.isoformat()
    df = result.annotations
    if len(df):
        df["ingested_at"] = pd.Timestamp(now).tz_convert("UTC")
        store.write_if_absent(f"{HISTORY_PREFIX}{sha}.parquet", parquet_bytes(conform(df, ANNOTATIONS)))
    # The marker goes last: a run that stops before it leaves the file to be ingested again.
    if not store.write_if_absent(marker, json_bytes(report.to_dict())):
        report.status = "already_ingested"  # a concurrent run was first
    return report


def ingest_labels(
    store: Store,
    catalog: ClassCatalog,
    *,
    base_url: str | None,
    paths: list[str | Path] | None = None,
    fmt: str | None = None,
    empty: Literal["skip", "negative"] = "skip",
    choice_name: str | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Ingest every label file under the store's ``labels/`` prefix, plus local ``paths``.

    Each file is read (format detected unless ``fmt`` is given), validated, and its accepted
    answers written once as a history shard named by the sha256 of the file's content. Files
    already ingested are not read again; a file that cannot be read at all is reported and the
    other files are still ingested. The run's validation report is stored under
    ``reports/labels/`` (content-addressed, so an identical re-run writes nothing).

    Parameters
    ----------
    store : Store
        Where the label files are read from and the annotations history is written to.
    catalog : ClassCatalog
        The classes labelers may tick.
    base_url : str or None
        URL prefix that label files use for clips (``Settings.clip_base_url``).
    paths : list of str or Path, default=None
        Extra local files or folders (read recursively) to ingest.
    fmt : {"flat", "label_studio", "label_studio_min", "csv"} or None, default=None
        Format of every file; None detects each file's format.
    empty : {"skip", "negative"}, default="skip"
        How an empty label list is read; see :func:`mlci.labels.normalize_label_file`.
    choice_name : str or None, default=None
        Label Studio choices control to read; see :func:`mlci.labels.read_label_file`.
    now : datetime or None, default=None
        Ingestion time stamped on new rows (``ingested_at``); None is the current UTC time.

    Returns
    -------
    IngestReport
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = IngestReport()
    seen: dict[str, str] = {}
    sources: list[tuple[str, Any]] = [
        (key, key) for key in store.list(LABELS_PREFIX) if not key.rsplit("/", 1)[-1].startswith(".")
    ]
    sources += _local_sources(list(paths or []))
    for source, where in sources:
        try:
            data = store.read_bytes(where) if isinstance(where, str) else where.read_bytes()
        except (OSError, StorageError) as exc:
            report.files.append(FileReport(source=source, status="rejected", error=f"{UNREADABLE}: {exc}",
                                           rejected_by_reason={UNREADABLE: 1}))
            continue
        report.files.append(
            _ingest_one(store, catalog, source, data, base_url=base_url, fmt=fmt, empty=empty,
                        choice_name=choice_name, now=now, seen=seen)
        )
    report.report_key = _write_run_report(store, report, params={"fmt": fmt, "empty": empty, "choice_name": choice_name,
                                                                 "base_url": base_url, "classes": catalog.names})
    return report


def _write_run_report(store: Store, report: IngestReport, *, params: dict[str, Any]) -> str:
    files = []
    for f in sorted(report.files, key=lambda f: f.source):
        entry = f.to_dict()
        # The stored report describes the files, not this run: identical inputs give identical bytes.
        entry["status"] = "rejected" if f.status == "rejected" else "ingested"
        files.append(entry)
    totals = {k: v for k, v in report.summary().items() if k not in ("new", "already_ingested", "rows_new")}
    payload = {"kind": "label-ingest", "params": params, "totals": totals, "files": files}
    data = json_bytes(payload)
    key = f"{REPORT_PREFIX}ingest-{hashlib.sha256(data).hexdigest()[:16]}.json"
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

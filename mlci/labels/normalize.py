"""Validation and normalisation of raw label records into rows of the ``annotations`` table.

Every accepted answer becomes one row per catalog class (value 1 if ticked, else 0), so that a
later answer of the same annotator about the same clip replaces the earlier one class by class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mlci.catalog import NONE_OF_THE_ABOVE, ClassCatalog
from mlci.labels.exceptions import (
    CANCELLED,
    CLIP_NOT_IN_STORE,
    CLIP_REF_ESCAPES_STORE,
    EMPTY_LABELS,
    MISSING_CLIP_REF,
    NONE_OF_THE_ABOVE_CONFLICT,
    UNKNOWN_CLASS,
    UNRESOLVABLE_CLIP_REF,
    WRONG_TYPE,
)
from mlci.labels.readers import MISSING, RawLabelFile, RawRecord, RecordIssue
from mlci.redact import redact_text, redact_url
from mlci.storage import InvalidKeyError, Store, UnresolvableReferenceError
from mlci.tables import ANNOTATIONS, conform

__all__ = ["FileReport", "NormalizedLabelFile", "normalize_label_file", "EMPTY_POLICIES"]

EMPTY_POLICIES = ("skip", "negative")


@dataclass
class FileReport:
    """Validation result of one label file.

    ``n_read == n_accepted + n_rejected + n_skipped`` holds for every file that could be parsed:
    answers are read, then accepted (they produce rows), rejected (with a reason), or skipped
    (cancelled in Label Studio, or an empty label list under ``empty="skip"``).
    """

    source: str
    sha256: str | None = None
    format: str | None = None
    status: str = "read"  # read | ingested | already_ingested | duplicate | rejected
    n_read: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    n_skipped: int = 0
    n_rows: int = 0
    n_clips: int = 0
    n_new: int = 0  # answers this run stored
    n_rows_new: int = 0  # annotation rows this run stored
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    notes_by_reason: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why the whole file was rejected
    ingested_at: str | None = None
    duplicate_of: str | None = None  # source first ingested with the same answers
    content: str | None = None  # identity of the file's set of answers (mlci.labels.readers.content_id)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class NormalizedLabelFile:
    """Rows of the ``annotations`` table from one file, the file's report, and the answer ids accepted."""

    annotations: pd.DataFrame
    report: FileReport
    accepted: list[str] = field(default_factory=list)


def _escapes(exc: InvalidKeyError) -> bool:
    reason = exc.reason
    return "'..'" in reason or "absolute path" in reason or "outside" in reason


def _resolve(ref: Any, store: Store, base_url: str | None, files_root: Path | None) -> tuple[str | None, str, str]:
    """(store key, "", "") of a clip reference, or (None, reason, message)."""
    if ref is MISSING or ref is None or (isinstance(ref, str) and not ref.strip()):
        return None, MISSING_CLIP_REF, "no clip reference ('data' / task data field missing or empty)"
    if not isinstance(ref, str):
        return None, WRONG_TYPE, f"clip reference is a {type(ref).__name__}, expected a string"
    try:
        return store.resolve_clip_ref(ref, base_url=base_url, files_root=files_root), "", ""
    except InvalidKeyError as exc:
        # A signed URL's signature must not reach the stored report: references are shown redacted.
        if _escapes(exc):
            return None, CLIP_REF_ESCAPES_STORE, f"clip reference {redact_url(ref)!r} points outside the store ({exc.reason})"
        return None, UNRESOLVABLE_CLIP_REF, f"clip reference {redact_url(ref)!r} is malformed ({exc.reason})"
    except UnresolvableReferenceError as exc:
        # The storage error names the reference and why; the message is cut at 300 characters.
        return None, UNRESOLVABLE_CLIP_REF, redact_text(f"{exc} (clip base URL {base_url!r})")


def _parse_time(value: Any) -> tuple[pd.Timestamp | None, bool]:
    """(UTC timestamp or NaT, ok). Only ISO 8601 strings are accepted; naive times are UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return pd.NaT, True
    if not isinstance(value, str):
        return None, False
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None, False
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return pd.Timestamp(parsed).tz_convert("UTC"), True


def _check(
    rec: RawRecord, catalog: ClassCatalog, store: Store, base_url: str | None, files_root: Path | None,
    default_annotator: str,
) -> tuple[dict[str, Any] | None, str, str]:
    """Validate one record: (clean values, "", "") or (None, reason, message)."""
    key, reason, message = _resolve(rec.ref, store, base_url, files_root)
    if key is None:
        return None, reason, message[:300]
    labels = rec.labels
    if labels is MISSING:
        return None, WRONG_TYPE, "no 'labels' list"
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return None, WRONG_TYPE, f"labels must be a list of strings, got {labels!r}"[:300]
    annotator = rec.annotator
    if annotator is None or (isinstance(annotator, str) and not annotator.strip()):
        annotator = default_annotator
    elif isinstance(annotator, int) and not isinstance(annotator, bool):
        annotator = str(annotator)
    elif isinstance(annotator, str):
        annotator = annotator.strip()
    else:
        return None, WRONG_TYPE, f"annotator must be a string or an integer, got {type(annotator).__name__}"
    created, ok = _parse_time(rec.created_at)
    if not ok:
        return None, WRONG_TYPE, f"created_at must be an ISO 8601 time string, got {rec.created_at!r}"[:300]
    matched: list[str] = []
    unknown: list[str] = []
    for name in labels:
        m = catalog.match(name)
        (unknown if m is None else matched).append(name if m is None else m)
    if unknown:
        return None, UNKNOWN_CLASS, f"unknown class(es) {sorted(set(unknown))}; the catalog has {catalog.names}"
    return {"asset": key, "annotator": annotator, "created_at": created, "classes": matched}, "", ""


def normalize_label_file(
    raw: RawLabelFile,
    catalog: ClassCatalog,
    *,
    store: Store,
    base_url: str | None,
    files_root: Path | None = None,
    empty: Literal["skip", "negative"] = "skip",
    default_annotator: str | None = None,
    clip_keys: Callable[[], Collection[str]] | None = None,
) -> NormalizedLabelFile:
    """Validate the records of one file and turn the accepted ones into ``annotations`` rows.

    Parameters
    ----------
    raw : RawLabelFile
        The output of :func:`mlci.labels.read_label_file`.
    catalog : ClassCatalog
        Classes that may be ticked; names match case- and space-insensitively.
    store : Store
        Resolves clip references to keys under ``clips/`` (:meth:`Store.resolve_clip_ref`).
    base_url : str or None
        URL prefix that label files use for clips (``Settings.clip_base_url``).
    files_root : Path or None, default=None
        Label Studio's local files root as seen from here (``Settings.label_studio_files_root``);
        None refuses ``/data/local-files/?d=`` references.
    empty : {"skip", "negative"}, default="skip"
        An empty label list is no answer under ``"skip"`` (the question asks for an explicit
        "none of the above"); ``"negative"`` reads it as "none of the above", as the seed notebook
        did. Either way it is reported as ``empty_labels``.
    default_annotator : str or None, default=None
        Annotator of records that name none; None is the file name (``raw.default_annotator``).
    clip_keys : callable returning a collection of str, or None, default=None
        The clips in the store, asked for on the first accepted answer. An accepted answer whose
        clip is not among them is kept and noted as ``clip_not_in_store``; None checks nothing.

    Returns
    -------
    NormalizedLabelFile
        ``annotations`` follows the ANNOTATIONS table (``ingested_at`` is NaT until ingestion);
        ``accepted`` lists the answer ids (:attr:`RawRecord.answer`) of the accepted records.
    """
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {EMPTY_POLICIES}, but got {empty!r}")
    report = FileReport(source=raw.source, format=raw.format)
    rejected = list(raw.rejected)
    notes = list(raw.notes)
    names = catalog.names
    label_counts: Counter[str] = Counter()
    cols: dict[str, list[Any]] = {c: [] for c in ("asset", "annotator", "class", "value", "record_index", "created_at")}
    default_annotator = default_annotator or raw.default_annotator
    skipped = sum(1 for n in notes if n.reason == CANCELLED)
    accepted: list[str] = []
    known_clips: Collection[str] | None = None
    for rec in raw.records:
        clean, reason, message = _check(rec, catalog, store, base_url, files_root, default_annotator)
        if clean is None:
            rejected.append(RecordIssue(rec.index, reason, message, rec.location, rec.answer))
            continue
        classes = set(clean["classes"])
        if not classes:
            notes.append(RecordIssue(rec.index, EMPTY_LABELS, "empty label list", rec.location, rec.answer))
            if empty == "skip":
                skipped += 1
                continue
        if NONE_OF_THE_ABOVE in classes and len(classes) > 1:
            real = sorted(classes - {NONE_OF_THE_ABOVE})
            notes.append(
                RecordIssue(
                    rec.index,
                    NONE_OF_THE_ABOVE_CONFLICT,
                    f"'none of the above' ticked together with {real}; the real classes count",
                    rec.location,
                    rec.answer,
                )
            )
        if clip_keys is not None:
            known_clips = clip_keys() if known_clips is None else known_clips
            if clean["asset"] not in known_clips:
                notes.append(
                    RecordIssue(
                        rec.index,
                        CLIP_NOT_IN_STORE,
                        f"no clip {clean['asset']!r} in the store (reference {redact_url(rec.ref)!r}); the answer is kept",
                        rec.location,
                        rec.answer,
                        clean["asset"],
                    )
                )
        label_counts.update(classes)
        accepted.append(rec.answer)
        n = len(names)
        cols["asset"] += [clean["asset"]] * n
        cols["annotator"] += [clean["annotator"]] * n
        cols["class"] += names
        cols["value"] += [1 if c in classes else 0 for c in names]
        cols["record_index"] += [rec.index] * n
        cols["created_at"] += [clean["created_at"]] * n
    df = pd.DataFrame(cols)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True).astype("datetime64[us, UTC]")
    df["source_file"] = raw.source
    df["ingested_at"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    df = conform(df, ANNOTATIONS)
    rejected.sort(key=lambda r: r.index)
    notes.sort(key=lambda r: r.index)
    report.n_accepted = len(accepted)
    report.n_rejected = len(rejected)
    report.n_skipped = skipped
    report.n_read = len(accepted) + len(rejected) + skipped
    report.n_rows = len(df)
    report.n_clips = int(df["asset"].nunique())
    report.rejected_by_reason = dict(sorted(Counter(r.reason for r in rejected).items()))
    report.notes_by_reason = dict(sorted(Counter(n.reason for n in notes).items()))
    report.label_counts = {name: label_counts[name] for name in [*names, NONE_OF_THE_ABOVE] if label_counts[name]}
    report.rejected = [r.to_dict() for r in rejected]
    report.notes = [n.to_dict() for n in notes]
    return NormalizedLabelFile(df, report, accepted)

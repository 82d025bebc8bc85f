"""Readers for the label file formats mlci accepts, and format detection.

A reader turns the bytes of one file into :class:`RawRecord` objects: one per answer of one
annotator about one clip, with the values exactly as found (types are checked later by
:mod:`mlci.labels.normalize`). Formats:

``flat``
    The seed's export: a JSON list of ``{"etag", "labels": [...], "data": <clip URL>}``, with an
    optional ``annotator`` and ``created_at`` per record.
``label_studio``
    Label Studio's JSON export: a list of tasks, each with ``data`` and ``annotations[]``.
``label_studio_min``
    Label Studio's JSON_MIN export: one flat record per annotation.
``csv``
    A long CSV with the header ``asset,annotator,label[,created_at]``, one row per ticked label.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mlci.labels.exceptions import (
    CANCELLED,
    EMPTY_FILE,
    INVALID_CSV,
    INVALID_JSON,
    NOT_TEXT,
    WRONG_TYPE,
    LabelFileError,
    UnknownFormatError,
)

__all__ = [
    "FORMATS",
    "MISSING",
    "RawRecord",
    "RecordIssue",
    "RawLabelFile",
    "detect_format",
    "read_label_file",
    "answer_ids",
    "content_id",
]

FORMATS = ("flat", "label_studio", "label_studio_min", "csv")

#: Task data keys that name the clip, in order of preference.
REF_KEYS = ("video", "clip", "url", "data", "asset", "audio", "image", "src", "path")

#: Keys that Label Studio's JSON_MIN export adds around the task data and the choices.
_MIN_META_KEYS = frozenset(
    {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
     "drafts", "predictions", "meta", "project", "inner_id", "total_annotations", "cancelled_annotations",
     "total_predictions", "file_upload", "storage_filename", "etag"}
)
#: Names a choices control commonly has; used only to break a tie between candidate keys.
_CHOICE_NAMES = ("choice", "choices", "label", "labels", "class", "classes", "concept", "concepts", "tags")
_CSV_REQUIRED = ("asset", "annotator", "label")
_CSV_OPTIONAL = ("created_at",)


class _Missing:
    """Marker of a key that is absent from a record (distinct from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class RawRecord:
    """One answer as found in a file: one annotator's labels for one clip.

    Attributes
    ----------
    index : int
        Index of the record in the file: list position (JSON), task position (Label Studio JSON,
        shared by the task's annotations), or the 0-based data row of the answer's first row (CSV).
    ref : object
        The clip reference (normally a URL or key string), or :data:`MISSING`.
    labels : object
        The ticked class names (normally a list of strings).
    annotator : object
        The annotator id (string or integer), or None when the file does not say.
    created_at : object
        When the answer was given (normally an ISO 8601 string), or None.
    location : str
        Human-readable position used in reports, e.g. ``"task 3, annotation 1"``.
    answer : str
        Identity of the answer within its file (see :func:`answer_ids`), set by
        :func:`read_label_file`.
    """

    index: int
    ref: Any
    labels: Any
    annotator: Any = None
    created_at: Any = None
    location: str = ""
    answer: str = ""


@dataclass(frozen=True)
class RecordIssue:
    """A rejected record or a reported case (``reason`` from :mod:`mlci.labels.exceptions`).

    ``answer`` is the record's identity (:attr:`RawRecord.answer`; empty for entries that are no
    answer) and ``key`` the clip key a note is about (``clip_not_in_store``).
    """

    index: int
    reason: str
    message: str
    location: str = ""
    answer: str = ""
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "reason": self.reason, "message": self.message, "location": self.location}
        out.update({k: v for k, v in (("answer", self.answer), ("key", self.key)) if v})
        return out


@dataclass
class RawLabelFile:
    """The parsed content of one label file.

    ``rejected`` holds records whose structure was already wrong at parse time (e.g. a list
    element that is not an object); ``notes`` holds skipped, non-erroneous entries such as
    cancelled Label Studio annotations.
    """

    source: str
    format: str
    records: list[RawRecord] = field(default_factory=list)
    rejected: list[RecordIssue] = field(default_factory=list)
    notes: list[RecordIssue] = field(default_factory=list)
    n_entries: int = 0  # records as the file counts them (list elements, CSV data rows)

    @property
    def default_annotator(self) -> str:
        """Annotator name used for records that name none: the file name."""
        return PurePosixPath(self.source.replace("\\", "/")).name or self.source


def _answer_line(rec: RawRecord) -> str:
    """What makes an answer the same answer in another export: clip reference, the annotator the
    file names (not the file name), and the ticked labels as a set. Times, etags, ids and order
    are left out, so a re-export of the same answers gives the same lines."""
    labels = rec.labels
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
        labels = sorted(set(labels))
    return json.dumps([rec.ref, rec.annotator, labels], ensure_ascii=False, sort_keys=True, default=repr)


def answer_ids(records: list[RawRecord]) -> list[str]:
    """Identity of each answer of a file: 16 hex digits of the answer's sha256, ``:n`` for its n-th repeat.

    Equal answers in two files (same clip reference, named annotator and labels; see
    ``_answer_line``) get equal ids whatever their order, times or etags.
    """
    seen: Counter[str] = Counter()
    out = []
    for rec in records:
        digest = hashlib.sha256(_answer_line(rec).encode("utf-8")).hexdigest()[:16]
        out.append(f"{digest}:{seen[digest]}")
        seen[digest] += 1
    return out


def content_id(ids: list[str]) -> str:
    """sha256 of a file's answer ids, in sorted order: the identity of its set of answers."""
    return hashlib.sha256("\n".join(sorted(ids)).encode("ascii")).hexdigest()


def _decode(data: bytes, source: str) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, but got {type(data).__name__} for {source!r}")
    data = bytes(data)
    if not data.strip():
        raise LabelFileError(source, EMPTY_FILE, f"the file is empty ({len(data)} bytes)")
    if b"\x00" in data[:8192]:
        raise LabelFileError(source, NOT_TEXT, "the file is binary (contains NUL bytes), not a JSON or CSV text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelFileError(source, NOT_TEXT, f"the file is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelFileError(source, INVALID_JSON, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise LabelFileError(source, INVALID_JSON, "JSON nested too deeply") from None


def _looks_like_json(text: str, source: str) -> bool:
    head = text.lstrip()[:1]
    return head in ("[", "{") or source.lower().endswith(".json")


def _json_format(doc: Any, source: str) -> str:
    if isinstance(doc, dict):
        # A single Label Studio task is sometimes exported on its own.
        if "annotations" in doc or "completions" in doc:
            return "label_studio"
        raise UnknownFormatError(source, f"top-level JSON object with keys {sorted(doc)[:8]}; expected a list of records")
    if not isinstance(doc, list):
        raise UnknownFormatError(source, f"top-level JSON {type(doc).__name__}; expected a list of records")
    votes = {"flat": 0, "label_studio": 0, "label_studio_min": 0}
    for rec in doc[:200]:
        if not isinstance(rec, dict):
            continue
        if "annotations" in rec or "completions" in rec:
            votes["label_studio"] += 1
        elif "labels" in rec and "annotation_id" not in rec and "lead_time" not in rec:
            votes["flat"] += 1
        elif "annotation_id" in rec or "lead_time" in rec or "annotator" in rec:
            votes["label_studio_min"] += 1
    if not doc:
        return "flat"  # an empty list is a valid (empty) file of any JSON format
    best = max(votes, key=votes.get)
    if votes[best] == 0:
        first = next((r for r in doc if isinstance(r, dict)), None)
        keys = sorted(first)[:8] if first is not None else []
        raise UnknownFormatError(
            source,
            "JSON list matches no label format (flat records have 'labels' and 'data', Label Studio tasks "
            f"have 'annotations', JSON_MIN records have 'annotator'/'annotation_id'); first record keys: {keys}",
        )
    return best


def detect_format(data: bytes, *, source: str = "<bytes>") -> str:
    """Name of the label format of ``data``: one of :data:`FORMATS`.

    JSON is recognised by its first character or a ``.json`` name; the JSON format by the keys of
    its records (Label Studio tasks have ``annotations``, flat records ``labels`` and ``data``,
    JSON_MIN records ``annotator``/``annotation_id``). Anything else is read as CSV.

    Raises
    ------
    LabelFileError
        The file is empty, binary, not valid JSON, or JSON in no known layout.
    """
    text = _decode(data, source)
    if _looks_like_json(text, source):
        return _json_format(_parse_json(text, source), source)
    return "csv"


def _pick_ref(data: Any) -> tuple[Any, str | None]:
    """The clip reference inside a task's ``data`` (a string, or a dict of task fields)."""
    if not isinstance(data, dict):
        return data, None
    for key in REF_KEYS:
        if key in data:
            return data[key], key
    if len(data) == 1:
        key = next(iter(data))
        return data[key], key
    return MISSING, None


def _read_flat(doc: Any, out: RawLabelFile) -> None:
    if not isinstance(doc, list):
        raise UnknownFormatError(out.source, f"flat format needs a JSON list of records, got {type(doc).__name__}")
    out.n_entries = len(doc)
    for i, rec in enumerate(doc):
        where = f"record {i}"
        if not isinstance(rec, dict):
            out.rejected.append(RecordIssue(i, WRONG_TYPE, f"record is a {type(rec).__name__}, expected an object", where))
            continue
        ref, _ = _pick_ref(rec.get("data", MISSING))
        out.records.append(
            RawRecord(i, ref, rec.get("labels", MISSING), rec.get("annotator"), rec.get("created_at"), where)
        )


def _annotator_of(completed_by: Any) -> Any:
    """Label Studio's ``completed_by``: an integer id, or an object with ``id`` and ``email``."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        return email if isinstance(email, str) and email.strip() else completed_by.get("id")
    return completed_by


def _choices_of_result(result: Any, choice_name: str | None) -> Any:
    """Union of ``value.choices`` over a Label Studio annotation's results, in order."""
    if not isinstance(result, list):
        return MISSING
    labels: list[Any] = []
    for item in result:
        if not isinstance(item, dict):
            return MISSING
        if choice_name is not None and item.get("from_name") != choice_name:
            continue
        value = item.get("value")
        if not isinstance(value, dict) or "choices" not in value:
            continue  # other controls (text areas, ratings) carry no class
        choices = value["choices"]
        if not isinstance(choices, list):
            return MISSING
        labels.extend(choices)
    return labels


def _read_label_studio(doc: Any, out: RawLabelFile, choice_name: str | None) -> None:
    tasks = [doc] if isinstance(doc, dict) else doc
    if not isinstance(tasks, list):
        raise UnknownFormatError(out.source, f"Label Studio export needs a list of tasks, got {type(doc).__name__}")
    out.n_entries = len(tasks)
    for t, task in enumerate(tasks):
        if not isinstance(task, dict):
            out.rejected.append(RecordIssue(t, WRONG_TYPE, f"task is a {type(task).__name__}, expected an object", f"task {t}"))
            continue
        ref, _ = _pick_ref(task.get("data", MISSING))
        annotations = task.get("annotations", task.get("completions", MISSING))
        if not isinstance(annotations, list):
            out.rejected.append(
                RecordIssue(t, WRONG_TYPE, f"'annotations' is {type(annotations).__name__}, expected a list", f"task {t}")
            )
            continue
        for a, ann in enumerate(annotations):
            where = f"task {t}, annotation {a}"
            if not isinstance(ann, dict):
                out.rejected.append(RecordIssue(t, WRONG_TYPE, f"annotation is a {type(ann).__name__}, expected an object", where))
                continue
            if ann.get("was_cancelled") or ann.get("skipped"):
                out.notes.append(RecordIssue(t, CANCELLED, "annotation was cancelled (skipped) by the annotator", where))
                continue
            labels = _choices_of_result(ann.get("result", MISSING), choice_name)
            if labels is MISSING:
                out.rejected.append(
                    RecordIssue(t, WRONG_TYPE, "'result' must be a list of objects whose value.choices is a list", where)
                )
                continue
            created = ann.get("updated_at") or ann.get("created_at")
            out.records.append(RawRecord(t, ref, labels, _annotator_of(ann.get("completed_by")), created, where))


def _min_choice_key(records: list[dict], choice_name: str | None, source: str) -> str | None:
    """The key holding the choices in a JSON_MIN file (the control's ``from_name``)."""
    if choice_name is not None:
        return choice_name
    candidates: dict[str, bool] = {}  # key -> ever held {"choices": [...]} or a list
    for rec in records:
        for key, value in rec.items():
            if key in _MIN_META_KEYS or key in REF_KEYS:
                continue
            multi = isinstance(value, (dict, list))
            candidates[key] = candidates.get(key, False) or multi
    if len(candidates) <= 1:
        return next(iter(candidates), None)
    for subset in ([k for k, multi in candidates.items() if multi], [k for k in candidates if k in _CHOICE_NAMES]):
        if len(subset) == 1:
            return subset[0]
    raise UnknownFormatError(
        source, f"JSON_MIN records have several keys that could hold the choices {sorted(candidates)}; pass choice_name"
    )


def _min_labels(value: Any) -> Any:
    """JSON_MIN choice value: a string (one choice), ``{"choices": [...]}`` (several), or a list of those."""
    if value is MISSING or value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return value.get("choices", MISSING)
    if isinstance(value, list):
        labels: list[Any] = []
        for item in value:
            inner = _min_labels(item) if isinstance(item, (str, dict)) else MISSING
            if inner is MISSING or not isinstance(inner, list):
                return MISSING
            labels.extend(inner)
        return labels
    return MISSING


def _read_label_studio_min(doc: Any, out: RawLabelFile, choice_name: str | None) -> None:
    if not isinstance(doc, list):
        raise UnknownFormatError(out.source, f"JSON_MIN export needs a list of records, got {type(doc).__name__}")
    out.n_entries = len(doc)
    key = _min_choice_key([r for r in doc if isinstance(r, dict)], choice_name, out.source)
    for i, rec in enumerate(doc):
        where = f"record {i}"
        if not isinstance(rec, dict):
            out.rejected.append(RecordIssue(i, WRONG_TYPE, f"record is a {type(rec).__name__}, expected an object", where))
            continue
        data = {k: v for k, v in rec.items() if k not in _MIN_META_KEYS and k != key}
        ref, _ = _pick_ref(data)
        labels = _min_labels(rec.get(key, MISSING) if key is not None else MISSING)
        if labels is MISSING:
            out.rejected.append(
                RecordIssue(i, WRONG_TYPE, f"choice value {rec.get(key)!r} is not a string, a list or {{'choices': [...]}}", where)
            )
            continue
        created = rec.get("updated_at") or rec.get("created_at")
        out.records.append(RawRecord(i, ref, labels, rec.get("annotator"), created, where))


def _read_csv(text: str, out: RawLabelFile) -> None:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise LabelFileError(out.source, INVALID_CSV, f"not valid CSV: {exc}") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise LabelFileError(out.source, INVALID_CSV, "no header row")
    header = [h.strip().casefold() for h in rows[0]]
    missing = [c for c in _CSV_REQUIRED if c not in header]
    unknown = [h for h in header if h not in _CSV_REQUIRED + _CSV_OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        raise LabelFileError(
            out.source,
            INVALID_CSV,
            f"header must be asset,annotator,label[,created_at] (any order), got {rows[0]}",
        )
    col = {name: header.index(name) for name in header}
    out.n_entries = len(rows) - 1
    # Rows of one answer (same clip, annotator and time) form one record, as one tick-box submission.
    groups: dict[tuple[str, str, str], tuple[int, list[int], list[str]]] = {}
    for i, row in enumerate(rows[1:]):
        where = f"row {i}"
        if len(row) != len(header):
            out.rejected.append(RecordIssue(i, WRONG_TYPE, f"row has {len(row)} fields, the header has {len(header)}", where))
            continue
        asset = row[col["asset"]].strip()
        annotator = row[col["annotator"]].strip()
        created = row[col["created_at"]].strip() if "created_at" in col else ""
        label = row[col["label"]]
        if not asset:
            out.records.append(RawRecord(i, MISSING, [label] if label.strip() else [], annotator or None, created or None, where))
            continue
        first, row_ids, labels = groups.setdefault((asset, annotator, created), (i, [], []))
        row_ids.append(i)
        if label.strip():
            labels.append(label)
    for (asset, annotator, created), (first, row_ids, labels) in groups.items():
        where = f"row {first}" if len(row_ids) == 1 else "rows " + ", ".join(map(str, row_ids))
        out.records.append(RawRecord(first, asset, labels, annotator or None, created or None, where))
    out.records.sort(key=lambda r: r.index)


def read_label_file(
    data: bytes, *, source: str, fmt: str | None = None, choice_name: str | None = None
) -> RawLabelFile:
    """Parse one label file into raw records.

    Parameters
    ----------
    data : bytes
        The file's content.
    source : str
        Store key or path of the file; used in reports and as the annotator name of records that
        name none (its file name).
    fmt : {"flat", "label_studio", "label_studio_min", "csv"} or None, default=None
        The format; None detects it (see :func:`detect_format`).
    choice_name : str or None, default=None
        For Label Studio files: the ``from_name`` of the choices control to read (JSON) or the key
        holding the choices (JSON_MIN). None reads every choices result (JSON) or finds the key.

    Returns
    -------
    RawLabelFile
        Records with their raw values, plus records already rejected for their structure.

    Raises
    ------
    LabelFileError
        The whole file is unusable: empty, binary, not valid JSON/CSV, or in no known layout.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS} or None, but got {fmt!r}")
    text = _decode(data, source)
    if fmt == "csv" or (fmt is None and not _looks_like_json(text, source)):
        out = RawLabelFile(source, "csv")
        _read_csv(text, out)
        return _with_answer_ids(out)
    doc = _parse_json(text, source)
    fmt = fmt or _json_format(doc, source)
    out = RawLabelFile(source, fmt)
    if fmt == "flat":
        _read_flat(doc, out)
    elif fmt == "label_studio":
        _read_label_studio(doc, out, choice_name)
    else:
        _read_label_studio_min(doc, out, choice_name)
    return _with_answer_ids(out)


def _with_answer_ids(out: RawLabelFile) -> RawLabelFile:
    out.records = [dataclasses.replace(r, answer=a) for r, a in zip(out.records, answer_ids(out.records))]
    return out

"""Label files in, the ``annotations`` table out: readers, validation, incremental ingestion.

Typical use::

    from mlci.labels import ingest_labels, load_annotations, label_snapshot_id

    report = ingest_labels(store, catalog, base_url=settings.clip_base_url)
    annotations = load_annotations(store)           # current view
    snapshot = label_snapshot_id(annotations)

See ``docs/labels.md`` for the formats and the validation rules.
"""

from mlci.labels.exceptions import (
    FILE_REASONS,
    NOTES,
    RECORD_REASONS,
    LabelError,
    LabelFileError,
    UnknownFormatError,
)
from mlci.labels.ingest import (
    IngestReport,
    IngestSettings,
    current_view,
    ingest_labels,
    label_snapshot_id,
    load_annotations,
)
from mlci.labels.normalize import FileReport, NormalizedLabelFile, normalize_label_file
from mlci.labels.readers import (
    FORMATS,
    RawLabelFile,
    RawRecord,
    RecordIssue,
    answer_ids,
    content_id,
    detect_format,
    read_label_file,
)

__all__ = [
    "FORMATS",
    "FILE_REASONS",
    "NOTES",
    "RECORD_REASONS",
    "LabelError",
    "LabelFileError",
    "UnknownFormatError",
    "RawLabelFile",
    "RawRecord",
    "RecordIssue",
    "FileReport",
    "NormalizedLabelFile",
    "IngestReport",
    "IngestSettings",
    "answer_ids",
    "content_id",
    "detect_format",
    "read_label_file",
    "normalize_label_file",
    "ingest_labels",
    "load_annotations",
    "current_view",
    "label_snapshot_id",
]

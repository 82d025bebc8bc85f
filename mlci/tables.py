"""The data contract: every table the steps pass along, where it lives in the store, its columns.

This is the one place that names them (``docs/architecture.md`` renders the same list). A step
that writes a table calls :func:`conform` so that a column missing or of the wrong type fails at
the writer, not three steps later at a reader.

A table's ``location`` is the key pattern :mod:`mlci.layout` builds (its functions called with
placeholders such as ``"<snapshot>"``); the store layout as a whole is described there.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlci import layout

__all__ = [
    "Table",
    "TABLES",
    "ANNOTATIONS",
    "CONSENSUS",
    "ANNOTATOR_QUALITY",
    "RELABEL",
    "CLIP_FEATURES",
    "WINDOW_FEATURES",
    "QUARANTINE",
    "FEATURE_INDEX",
    "OOF_SCORES",
    "BATCH",
    "ADVISOR_SIGNALS",
    "DETECTION_WINDOWS",
    "SEGMENTS",
    "TRUTH",
    "LINEAGE",
    "BATCH_YIELD",
    "DERIVED_TABLES",
    "conform",
    "parquet_bytes",
    "json_bytes",
    "TableSchemaError",
]


class TableSchemaError(ValueError):
    """A DataFrame does not match its declared table."""


@dataclass(frozen=True)
class Table:
    """A named table: where it lives and its columns (``name -> pandas dtype``).

    ``extra_columns`` allows further columns after the declared ones (e.g. one per concept or one
    per feature) whose names follow the documented pattern.
    """

    name: str
    location: str
    columns: dict[str, str]
    description: str
    extra_columns: str | None = None
    key: tuple[str, ...] = field(default=())


#: Placeholder of ``FeatureSchema.cache_id`` in feature locations.
_CACHE = layout.FeatureLayout("<extractor>-v<version>-<params hash>")

ANNOTATIONS = Table(
    "annotations",
    layout.history_shard_key("<content>", "<pass>"),
    {
        "asset": "string",  # clip key in the store, e.g. clips/gifts/a.mp4
        "annotator": "string",
        "class": "string",  # catalog spelling
        "value": "int8",  # 1 = present, 0 = absent
        "source_file": "string",  # key or path of the label file
        "record_index": "int64",  # index of the record inside that file
        "created_at": "datetime64[us, UTC]",  # when the annotator answered (NaT if unknown)
        "ingested_at": "datetime64[us, UTC]",  # when mlci first ingested the source file
    },
    "One row per (clip, annotator, class) answer, long format. History keeps every answer; the "
    "current view keeps each annotator's latest answer per clip (latest by created_at, falling back "
    "to ingested_at when created_at is unknown).",
    key=("asset", "annotator", "class"),
)

CONSENSUS = Table(
    "consensus",
    layout.consensus_key("<snapshot>", "labels.parquet"),
    {
        "asset": "string",
        "class": "string",
        "posterior": "float64",  # P(class present | votes)
        "label": "int8",  # hard label
        "n_votes": "int64",
        "method": "string",  # majority | dawid_skene | one_coin | single
    },
    "Consensus label per (clip, class) for one label snapshot.",
    key=("asset", "class"),
)

ANNOTATOR_QUALITY = Table(
    "annotator_quality",
    layout.consensus_key("<snapshot>", "annotators.parquet"),
    {
        "annotator": "string",
        "class": "string",
        "sensitivity": "float64",
        "specificity": "float64",
        "n_items": "int64",
        "agreement_with_consensus": "float64",
    },
    "Estimated quality of each annotator per class.",
    key=("annotator", "class"),
)

RELABEL = Table(
    "relabel",
    layout.consensus_key("<snapshot>", "relabel.parquet"),
    {
        "asset": "string",
        "class": "string",
        "posterior": "float64",
        "label": "int8",
        "n_votes": "int64",
        "n_positive": "int64",
        "reason": "string",  # uncertain | tie
    },
    "Relabel candidates: (clip, class) pairs whose consensus is uncertain, most uncertain first.",
    key=("asset", "class"),
)

CLIP_FEATURES = Table(
    "clip_features",
    _CACHE.clip_part("<run>", "<chunk>"),
    {
        "key": "string",  # clip key
        "identity": "string",  # content identity (S3 ETag / sha256) the features were computed from
        "has_audio": "bool",  # False: no decodable audio, the audio vector is zeros
        "has_video": "bool",  # False: no decodable video (an audio-only file), the video vector is zeros
        "duration": "float64",  # seconds of decoded content
        "n_windows": "int64",
        "computed_at": "datetime64[us, UTC]",
    },
    "Clip-level feature vectors: mean and std over windows, L2-normalised per modality.",
    extra_columns="audio, video, combined: fixed-size list<float32> in schema order",
    key=("key", "identity"),
)

WINDOW_FEATURES = Table(
    "window_features",
    _CACHE.window_part("<run>", "<chunk>"),
    {
        "key": "string",
        "identity": "string",
        "window": "int64",  # 0-based window index
        "start": "float64",  # seconds
        "end": "float64",
        "has_audio": "bool",  # any audio in this window (else its audio vector is zeros)
        "has_video": "bool",  # any sampled frame in this window (else its video vector is zeros)
    },
    "Per-window feature vectors (the detection flow's timed features).",
    extra_columns="audio, video: fixed-size list<float32> in schema order",
    key=("key", "identity", "window"),
)

QUARANTINE = Table(
    "quarantine",
    _CACHE.quarantine_part("<run>", "<chunk>"),
    {
        "key": "string",
        "identity": "string",
        "error_kind": "string",  # empty_file | not_media | truncated | no_streams | no_content | decode_error | extractor_error | model_error | no_embedding
        "message": "string",
        "detected_at": "datetime64[us, UTC]",
    },
    "Clips that could not be processed; retried only when their identity changes.",
    key=("key", "identity"),
)

FEATURE_INDEX = Table(
    "feature_index",
    _CACHE.active_key("<run>"),
    {
        "key": "string",  # every clip listed under clips/ at that run (deleted clips drop out)
        "identity": "string",
        "status": "string",  # ok | quarantined
        "part": "string",  # store key of the shard holding the clip's row (clips/ or quarantine shard)
    },
    "The active set after a feature run: which row is current for each clip. Written only when it "
    "changes; the latest (by run id) is the one readers use.",
    key=("key",),
)

OOF_SCORES = Table(
    "oof_scores",
    "MLflow run artifact oof_scores.parquet",
    {"asset": "string", "class": "string", "label": "int8", "score": "float64", "fold": "int64"},
    "Out-of-fold cross-validated scores of one training run.",
    key=("asset", "class"),
)

BATCH = Table(
    "batch",
    layout.batch_key("<round_id>", "batch.csv"),
    {
        "rank": "int64",
        "key": "string",
        "url": "string",
        "utility": "float64",
        "reason": "string",  # uncertain | diverse | relabel
    },
    "One row per clip offered for labeling, best first.",
    extra_columns="score_<concept>: float64 per concept",
    key=("key",),
)

_DETECTION = ("<model>", "<version>", "<video key>", "<detection id>")

DETECTION_WINDOWS = Table(
    "detection_windows",
    layout.detection_key(*_DETECTION, "windows.csv"),
    {
        "time_begin": "float64",  # window start, seconds
        "time_end": "float64",
        "time_event": "float64",  # window centre
        "source_event": "string",  # the model's modality: audio | video | audiovisual
        "tag_type": "string",  # always "tag" (a concept)
        "tag": "string",  # the concept
        "score": "float64",  # the model's probability, rounded to 4 decimals
        "details": "string",  # JSON: model, version, window index, threshold, above (score >= threshold)
        "extractor": "string",  # always "mlci_detect"
    },
    "Scored detection windows in the metadata flattener's CSV schema: one row per window and "
    "concept scoring at least the floor, by time then concept.",
    key=("time_begin", "tag"),
)

SEGMENTS = Table(
    "segments",
    layout.detection_key(*_DETECTION, "segments.csv"),
    {
        "tag": "string",
        "time_begin": "float64",  # seconds
        "time_end": "float64",
        "duration": "float64",
        "score_peak": "float64",
        "time_peak": "float64",  # centre of the best window
        "score_mean": "float64",  # over the segment's windows
        "n_windows": "int64",
        "threshold_enter": "float64",
        "threshold_exit": "float64",
    },
    "Contiguous windows above a concept's threshold merged into segments (hysteresis, gaps "
    "bridged, a minimum duration), by concept then time.",
    key=("tag", "time_begin"),
)

TRUTH = Table(
    "truth",
    layout.TRUTH_KEY,
    {"key": "string"},
    "Demo corpus ground truth, one 0/1 column per concept. Only evaluation code reads it.",
    extra_columns="<concept>: int8 per concept",
    key=("key",),
)

ADVISOR_SIGNALS = Table(
    "advisor_signals",
    f"{layout.ADVISOR_PREFIX}<model>/v<version>/signals.parquet",
    {
        "model_version": "string",
        "label_snapshot": "string",
        "recorded_at": "datetime64[us, UTC]",
        "concept": "string",
        "labels": "int64",  # known consensus labels of the concept
        "positives": "int64",
        "new_labels": "int64",  # since the previous recorded version
        "new_positives": "int64",
        "oof_ap": "float64",  # cross-validated AP of the version
        "kappa": "float64",  # vs the previous version's predictions on the stop set (NaN: undefined)
        "uncertainty": "float64",  # mean binary entropy (bits) over the pool
        "prevalence": "float64",  # mean score over pool and stop set
        "stop_set_size": "int64",
    },
    "The stop advisor's signals, one row per concept of one model version (mlci.advisor.signals).",
    key=("model_version", "concept"),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        ANNOTATIONS,
        CONSENSUS,
        ANNOTATOR_QUALITY,
        RELABEL,
        CLIP_FEATURES,
        WINDOW_FEATURES,
        QUARANTINE,
        FEATURE_INDEX,
        OOF_SCORES,
        BATCH,
        ADVISOR_SIGNALS,
        DETECTION_WINDOWS,
        SEGMENTS,
        TRUTH,
    )
}


# -- derived tables: computed on read from the stored ones, never written --------------------------

LINEAGE = Table(
    "lineage",
    "computed by mlci.batches.lineage_table (not stored)",
    {
        "round_id": "string",
        "batch_created_at": "datetime64[us, UTC]",  # when the batch was published
        "key": "string",  # the clip
        "reason": "string",  # why the batch chose it (BATCH.reason)
        "annotator": "string",
        "source_file": "string",  # the answer's label file and record (ANNOTATIONS)
        "record_index": "int64",
        "answered_at": "datetime64[us, UTC]",  # created_at, else ingested_at
        "ingested_at": "datetime64[us, UTC]",
        "label_snapshot": "string",  # first consensus snapshot created at/after ingestion holding the clip; NA: none yet
        "model_version": "string",  # first version trained on that snapshot or a later one; NA: none yet
    },
    "One row per answer returned to a batch: an answer belongs to the latest batch holding its clip "
    "that was published before the answer was ingested.",
    key=("round_id", "key", "annotator", "source_file", "record_index"),
)

BATCH_YIELD = Table(
    "batch_yield",
    "computed by mlci.batches.batch_yield (not stored); `mlci batches --json`",
    {
        "round_id": "string",
        "created_at": "datetime64[us, UTC]",
        "strategy": "string",
        "model_version": "string",  # the version that chose the batch
        "n_clips": "int64",
        "n_answered": "int64",  # clips with at least one answer
        "share_answered": "float64",
        "hours_to_answer": "float64",  # median over answered clips of first answer - publish time
        "disagreement_rate": "float64",  # among answered clips with >= 2 annotators; NaN: no such clip
        "relabels_flipped": "Int64",  # consensus labels of relabel clips that changed; NA: nothing to compare
        "next_model_version": "string",  # the first version trained on any of its answers; NA: none yet
        "delta_cv_ap": "float64",  # next version's cv_macro_ap - model_version's
    },
    "What each batch bought, oldest batch first (docs/flows.md, \"Lineage and yield\").",
    extra_columns="positives_per_100_<concept>, prior_per_100_<concept>: float64 per concept "
    "(concept spelled as in score_<concept>)",
    key=("round_id",),
)

#: Tables computed on read from the stored ones. Not in :data:`TABLES`, whose locations are store
#: keys or MLflow artifacts.
DERIVED_TABLES: dict[str, Table] = {t.name: t for t in (LINEAGE, BATCH_YIELD)}


def conform(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Return ``df`` with the table's declared columns first, cast to their dtypes.

    Raises :class:`TableSchemaError` naming the missing columns, or the column whose values cannot
    take the declared dtype. Undeclared columns are kept only when the table allows extra columns.
    """
    missing = [c for c in table.columns if c not in df.columns]
    if missing:
        raise TableSchemaError(f"table {table.name!r} is missing columns {missing}; has {list(df.columns)}")
    extra = [c for c in df.columns if c not in table.columns]
    if extra and table.extra_columns is None:
        raise TableSchemaError(f"table {table.name!r} does not allow extra columns {extra}")
    out = df[list(table.columns) + extra].copy()
    for col, dtype in table.columns.items():
        try:
            out[col] = out[col].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise TableSchemaError(f"table {table.name!r} column {col!r} cannot be {dtype}: {exc}") from exc
    return out.reset_index(drop=True)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as Parquet bytes, without the index (how tables are stored)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys): equal content gives equal bytes, so write-if-absent can tell."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")

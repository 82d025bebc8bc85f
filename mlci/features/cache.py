"""Features in the store: shard reading/writing, and the readers training and detection use.

Layout (one folder per extractor configuration, ``<cache id> = <extractor>-v<version>-<params hash>``;
the keys are built by :class:`mlci.layout.FeatureLayout`)::

    features/<cache id>/schema.json                    FeatureSchema, written once
    features/<cache id>/clips/part-<run>-<chunk>.parquet    CLIP_FEATURES rows of one chunk of one run
    features/<cache id>/windows/part-<run>-<chunk>.parquet  WINDOW_FEATURES rows of the same clips
    features/<cache id>/active/<run>.parquet           FEATURE_INDEX: the active set after a run
    quarantine/<cache id>/part-<run>-<chunk>.parquet   QUARANTINE rows of one chunk of one run

Shards are only ever added (``write_if_absent``). A clip's current row is the one the latest
active index points to, so a deleted clip drops out of the active set while its rows stay.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlci.features.base import FeatureExtractor
from mlci.features.exceptions import FeaturesNotComputedError, MissingFeaturesError
from mlci.features.registry import resolve_extractor
from mlci.features.schema import FeatureSchema, check_modality
from mlci.layout import FeatureLayout
from mlci.storage import Store
from mlci.tables import (
    FEATURE_INDEX,
    QUARANTINE,
    WINDOW_FEATURES,
    Table,
    conform,
)

__all__ = [
    "CacheLayout",
    "list_quarantined",
    "load_features",
    "load_window_features",
    "quarantine_records",
    "read_active_index",
    "window_matrix",
]

OK, QUARANTINED = "ok", "quarantined"


class CacheLayout(FeatureLayout):
    """The store keys of one extractor configuration (:class:`mlci.layout.FeatureLayout`) and its schema."""

    schema: FeatureSchema

    def __init__(self, schema: FeatureSchema):
        super().__init__(schema.cache_id)
        object.__setattr__(self, "schema", schema)  # FeatureLayout is frozen; the schema is fixed with it


def publish_schema(store: Store, layout: CacheLayout) -> None:
    """Write ``schema.json`` once; a different schema under the same cache id is an error."""
    text = layout.schema.to_json()
    if not store.write_if_absent(layout.schema_key, text.encode()):
        stored = FeatureSchema.from_json(store.read_text(layout.schema_key))
        if stored.to_dict() != layout.schema.to_dict():
            raise ValueError(
                f"{layout.schema_key} in {store.uri} describes other features than extractor "
                f"{layout.schema.extractor!r} version {layout.schema.version} now produces; the extractor "
                "changed without a version bump: increase its `version`"
            )


# -- Parquet ------------------------------------------------------------------------------------


def to_parquet_bytes(df: pd.DataFrame, table: Table, vectors: dict[str, np.ndarray] | None = None) -> bytes:
    """Parquet bytes of ``df`` conformed to ``table``, plus 2-D float arrays as fixed-size list columns."""
    df = conform(df, table)
    columns = {}
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            # Explicitly: pyarrow's pandas conversion goes through the deprecated Series.values here.
            unit = col.dtype.unit
            columns[name] = pa.array(col.dt.tz_convert(None).to_numpy(), type=pa.timestamp(unit, tz=str(col.dtype.tz)))
        else:
            columns[name] = pa.Array.from_pandas(col)
    arrow = pa.table(columns)
    for name, matrix in (vectors or {}).items():
        matrix = np.ascontiguousarray(matrix, dtype=np.float32).reshape(len(df), -1)
        values = pa.array(matrix.ravel(), type=pa.float32())
        if matrix.shape[1] == 0:  # an extractor without this modality: Arrow has no fixed-size list of 0
            column = pa.ListArray.from_arrays(pa.array(np.zeros(len(df) + 1, np.int32)), values)
        else:
            column = pa.FixedSizeListArray.from_arrays(values, matrix.shape[1])
        arrow = arrow.append_column(name, column)
    buf = io.BytesIO()
    pq.write_table(arrow, buf, compression="zstd")
    return buf.getvalue()


def read_parquet(store: Store, key: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(store.read_bytes(key)), columns=columns)


def vector_column(table: pa.Table, name: str) -> np.ndarray:
    """A fixed-size list column as an ndarray of shape (n_rows, size), float32."""
    column = table.column(name).combine_chunks()
    size = column.type.list_size if pa.types.is_fixed_size_list(column.type) else 0  # 0: see to_parquet_bytes
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), size).astype(np.float32, copy=False)


def scalar_frame(table: pa.Table, vector_names: Iterable[str] = ()) -> pd.DataFrame:
    skip = set(vector_names)
    return table.select([c for c in table.column_names if c not in skip]).to_pandas()


def read_many(store: Store, keys: list[str], columns: list[str] | None = None) -> list[pa.Table]:
    """Read several Parquet objects concurrently (S3 latency, not bandwidth, dominates small shards)."""
    if len(keys) <= 1:
        return [read_parquet(store, k, columns) for k in keys]
    with ThreadPoolExecutor(max_workers=min(store.io_threads, len(keys))) as pool:
        return list(pool.map(lambda k: read_parquet(store, k, columns), keys))


# -- the active index -----------------------------------------------------------------------------


def latest_index_key(store: Store, layout: CacheLayout) -> str | None:
    keys = [k for k in store.list(layout.active) if k.endswith(".parquet")]
    return max(keys) if keys else None


def read_active_index(store: Store, layout: CacheLayout) -> pd.DataFrame | None:
    """The latest FEATURE_INDEX of a configuration, or None when no run has written one."""
    key = latest_index_key(store, layout)
    if key is None:
        return None
    return conform(read_parquet(store, key).to_pandas(), FEATURE_INDEX)


def _layout_for(store: Store, extractor, params) -> tuple[CacheLayout, pd.DataFrame]:
    ex: FeatureExtractor = resolve_extractor(extractor, params, store=store)
    layout = CacheLayout(ex.schema)
    index = read_active_index(store, layout)
    if index is None:
        raise FeaturesNotComputedError(
            f"no feature run for {layout.cache_id} in {store.uri}; run `mlci features` (or the "
            "`features` flow) with this extractor and parameters first"
        )
    return layout, index


def _select(index: pd.DataFrame, keys, missing: str, *, status: str = OK) -> pd.DataFrame:
    if missing not in ("raise", "drop"):
        raise ValueError(f"missing must be 'raise' or 'drop', got {missing!r}")
    rows = index[index["status"] == status].set_index("key", drop=False)
    if keys is None:
        return rows.sort_index().reset_index(drop=True)
    keys = [str(k) for k in keys]
    absent = [k for k in keys if k not in rows.index]
    if absent and missing == "raise":
        raise MissingFeaturesError(absent, len(keys))
    present = [k for k in keys if k in rows.index]
    return rows.loc[present].reset_index(drop=True)


# -- readers --------------------------------------------------------------------------------------


def load_features(
    store: Store,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    modality: Literal["audio", "video", "combined"] = "combined",
    keys: Iterable[str] | None = None,
    missing: Literal["raise", "drop"] = "raise",
) -> tuple[np.ndarray, np.ndarray, FeatureSchema]:
    """Clip-level features of the active clips, aligned, for training.

    Parameters
    ----------
    store : Store
    extractor : str or FeatureExtractor, default="basic"
        Registered name (with ``params``) or an extractor instance.
    params : dict, default=None
        Extractor parameters; defaults when None.
    modality : {"audio", "video", "combined"} or str, default="combined"
        Or ``"<modality>+embeddings[:<source>]"``: those vectors beside an imported embeddings
        source, each block normalised (:func:`mlci.features.imported.load_with_embeddings`).
    keys : iterable of str, default=None
        Clips to return, in this order; all active clips with features (sorted by key) when None.
    missing : {"raise", "drop"}, default="raise"
        What to do with requested keys that have no features (not listed at the last run, or
        quarantined): raise :class:`MissingFeaturesError` or leave them out.

    Returns
    -------
    keys : ndarray of str of shape (n_clips,)
    X : ndarray of shape (n_clips, n_features), float32
        Rows L2-normalised (all-zero for a modality a clip does not have).
    schema : FeatureSchema
        ``schema.names(modality)`` names the columns of ``X``.

    Raises
    ------
    FeaturesNotComputedError
        No feature run for this extractor configuration in the store.
    """
    if "+" in str(modality):
        from mlci.features.imported import load_with_embeddings

        return load_with_embeddings(store, extractor=extractor, params=params, modality=modality, keys=keys, missing=missing)
    check_modality(modality)
    layout, index = _layout_for(store, extractor, params)
    rows = _select(index, keys, missing)
    dim = len(layout.schema.names(modality))
    if dim == 0:
        raise ValueError(f"the {layout.cache_id} features have no {modality!r} entries; choose another modality")
    X = np.zeros((len(rows), dim), dtype=np.float32)
    parts = sorted(rows["part"].unique())
    tables = read_many(store, parts, ["key", "identity", modality])
    position = {(k, i): n for n, (k, i) in enumerate(zip(rows["key"], rows["identity"]))}
    for table in tables:
        found = [position.get(ki) for ki in zip(table.column("key").to_pylist(), table.column("identity").to_pylist())]
        take = np.array([p is not None for p in found], dtype=bool)
        if take.any():
            X[[p for p in found if p is not None]] = vector_column(table, modality)[take]
    return rows["key"].to_numpy(dtype=str), X, layout.schema


def load_window_features(
    store: Store,
    keys: Iterable[str] | None = None,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    missing: Literal["raise", "drop"] = "raise",
) -> pd.DataFrame:
    """Window-level features of active clips (the detection flow's timed features).

    Returns
    -------
    DataFrame
        WINDOW_FEATURES rows sorted by key then window; the ``audio`` and ``video`` columns hold
        one float32 ndarray per row (stack them with :func:`window_matrix`). ``df.attrs["schema"]``
        is the FeatureSchema.
    """
    layout, index = _layout_for(store, extractor, params)
    rows = _select(index, keys, missing)
    wanted = set(zip(rows["key"], rows["identity"]))
    frames = []
    parts = [layout.window_part_for(p) for p in sorted(rows["part"].unique())]
    for table in read_many(store, parts):
        df = scalar_frame(table, ("audio", "video"))
        keep = np.array([ki in wanted for ki in zip(df["key"], df["identity"])], dtype=bool)
        if keep.any():
            df = df[keep].reset_index(drop=True)
            df["audio"] = list(vector_column(table, "audio")[keep])
            df["video"] = list(vector_column(table, "video")[keep])
            frames.append(df)
    columns = list(WINDOW_FEATURES.columns) + ["audio", "video"]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in columns})
    out = conform(out[columns], WINDOW_FEATURES).sort_values(["key", "window"], kind="stable").reset_index(drop=True)
    out.attrs["schema"] = layout.schema
    return out


def window_matrix(windows: pd.DataFrame, modality: Literal["audio", "video"]) -> np.ndarray:
    """Stack a window table's ``audio`` or ``video`` column into an ndarray of shape (n_rows, n_features)."""
    if modality not in ("audio", "video"):
        raise ValueError(f"modality must be 'audio' or 'video' for windows, got {modality!r}")
    schema = windows.attrs.get("schema")
    if len(windows) == 0:
        dim = len(getattr(schema, f"{modality}_window")) if schema else 0
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack(windows[modality].to_list()).astype(np.float32, copy=False)


def list_quarantined(
    store: Store,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
) -> pd.DataFrame:
    """QUARANTINE rows of the active clips that could not be processed, sorted by key.

    Returns an empty table (with the QUARANTINE columns) when no feature run exists yet.
    """
    try:
        _, index = _layout_for(store, extractor, params)
    except FeaturesNotComputedError:
        return conform(pd.DataFrame({c: [] for c in QUARANTINE.columns}), QUARANTINE)
    rows = index[index["status"] == QUARANTINED]
    wanted = set(zip(rows["key"], rows["identity"]))
    frames = []
    for table in read_many(store, sorted(rows["part"].unique())):
        df = table.to_pandas()
        keep = np.array([ki in wanted for ki in zip(df["key"], df["identity"])], dtype=bool)
        frames.append(df[keep])
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in QUARANTINE.columns})
    out = out.drop_duplicates(["key", "identity"], keep="last")
    return conform(out, QUARANTINE).sort_values("key", kind="stable").reset_index(drop=True)


def clip_rows_known(store: Store, layout: CacheLayout) -> dict[tuple[str, str], tuple[str, str]]:
    """Every (key, identity) any shard of this configuration holds -> (status, part).

    Used when the latest index does not cover every listed clip: rows written by an interrupted
    run, or by an earlier run for content that has come back, are reused instead of recomputed.
    """
    known: dict[tuple[str, str], tuple[str, str]] = {}
    for status, prefix in ((QUARANTINED, layout.quarantine), (OK, layout.clips)):  # ok wins over quarantined
        parts = sorted(k for k in store.list(prefix) if k.endswith(".parquet"))
        for part, table in zip(parts, read_many(store, parts, ["key", "identity"])):
            for k, i in zip(table.column("key").to_pylist(), table.column("identity").to_pylist()):
                known[(k, i)] = (status, part)
    return known


def quarantine_records(store: Store, layout: CacheLayout) -> pd.DataFrame:
    """Every QUARANTINE row of this configuration, from every run (the latest row per (key, identity))."""
    parts = sorted(k for k in store.list(layout.quarantine) if k.endswith(".parquet"))
    frames = [t.to_pandas() for t in read_many(store, parts)]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in QUARANTINE.columns})
    return conform(out.drop_duplicates(["key", "identity"], keep="last"), QUARANTINE)

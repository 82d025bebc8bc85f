"""Imported embeddings: vectors a team computed elsewhere, read from ``embeddings/<source>/`` by clip key.

A *source* is a folder of the store holding either

- Parquet files (``*.parquet``, any number): a string column ``key`` (the clip's store key,
  ``clips/a.mp4``, or its path under ``clips/``, ``a.mp4``), then either one list column holding
  the vector or only numeric columns (one per entry), and optionally ``start`` and ``end`` (seconds)
  when the vectors are per window; or
- one NumPy array (``*.npy``, shape (n_rows, dim), numeric; read with ``allow_pickle=False``, so a
  pickled object array is refused, never unpickled) with its key list ``keys.txt`` (one key per
  line) or ``keys.json`` (a list of keys, or of ``{"key", "start", "end"}`` objects).

:func:`read_embeddings` validates a source as a whole and fails with one line naming the file and
the offending keys: vectors of one length in every row and file, finite values, windows with
``0 <= start < end``, no key (no window of a key) twice. Keys that name no clip in the store are
not an error: :func:`inspect_embeddings` counts them, and a feature run logs them once.

Versioning. The registry wants a class-level ``version``; here it versions the *reader* (bump it
when the same files would be read into other numbers). The content is versioned by the ``digest``
parameter: :meth:`ImportedExtractor.bind`, which every feature reader and writer calls with its
store, reads the source and returns an instance whose ``digest`` is a sha256 of the canonical
content (sorted keys, windows, entry names, float32 values: not the file bytes, so the same
vectors exported again, or in the other format, keep their digest). Being a parameter, the
digest is part of the params hash and so of the cache id ``features/imported-v<version>-<params
hash>/``. Re-importing the same vectors therefore finds every clip cached and writes nothing;
changed vectors are a new cache, i.e. a new feature version, and a model trained on the old one is
refused by the usual check of the features' params hash. A run pins the digest its plan saw: a
chunk that finds other content raises :class:`EmbeddingsChangedError` (the chunk fails; the next
run plans again).

The vectors of a clip are averaged over its windows and L2-normalised (``pooling="mean"``, as the
seed notebook averaged its embeddings over time); they are the extractor's ``video`` (or, with
``kind="audio"``, its ``audio``) vectors and its ``combined`` ones; the other modality is empty.
A clip under ``clips/`` without a vector is quarantined as ``no_embedding``.

Beside another extractor: the modality ``"<modality>+embeddings:<source>"`` (``"combined+embeddings"``
when the store holds one source) is that extractor's ``<modality>`` vectors and the source's vectors,
each block L2-normalised, concatenated and normalised again (:func:`load_with_embeddings`, which
:func:`mlci.features.load_features` calls for such a modality).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlci.features.base import (
    ClipFeatures,
    FeatureExtractor,
    WindowFeatures,
    l2_normalize,
)
from mlci.features.exceptions import (
    FeatureError,
    MissingFeaturesError,
    NoEmbeddingError,
)
from mlci.features.registry import register_extractor, resolve_extractor
from mlci.features.schema import MODALITIES, FeatureSchema
from mlci.layout import (
    CLIP_PREFIX,
    EMBEDDINGS_KEY_LISTS,
    EMBEDDINGS_PREFIX,
    embeddings_prefix,
    embeddings_source,
)
from mlci.storage import Store

__all__ = [
    "EMBEDDINGS_MODALITY",
    "Embeddings",
    "EmbeddingsChangedError",
    "EmbeddingsError",
    "EmbeddingsReport",
    "ImportedExtractor",
    "check_source",
    "inspect_embeddings",
    "list_sources",
    "load_with_embeddings",
    "read_embeddings",
    "split_embeddings_modality",
]

logger = logging.getLogger(__name__)

#: What a modality adds after ``+`` to take in an embeddings source: ``combined+embeddings:<source>``.
EMBEDDINGS_MODALITY = "embeddings"
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DIGEST = re.compile(r"[0-9a-f]{16}")
_WINDOW_COLUMNS = ("start", "end")
_SHOWN = 5


class EmbeddingsError(FeatureError, ValueError):
    """A source of imported embeddings cannot be read: bad format, lengths, values, windows or keys."""


class EmbeddingsChangedError(EmbeddingsError):
    """The source changed since a run pinned its digest (the run's chunk fails; the next run plans again)."""


def _shown(items) -> str:
    items = list(items)
    return ", ".join(map(str, items[:_SHOWN])) + (f" (and {len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def check_source(source: Any) -> str:
    """``source`` if it names a source folder (one path segment of letters, digits, ``.``, ``_``, ``-``)."""
    if not isinstance(source, str) or not _SOURCE.fullmatch(source):
        raise ValueError(
            f"source must be the name of a folder under {EMBEDDINGS_PREFIX} (letters, digits, '.', '_', '-'), got {source!r}"
        )
    return source


def _clip_key(key: str) -> str:
    """A key as given (``clips/a.mp4`` or ``a.mp4``) as the clip's store key."""
    return key if key.startswith(CLIP_PREFIX) else CLIP_PREFIX + key


# -- reading one file -------------------------------------------------------------------------------


@dataclass
class _Part:
    """The rows of one file, before the source is checked as a whole."""

    file: str
    keys: list[str]
    values: np.ndarray  # (n, dim) float32
    names: tuple[str, ...]
    named_columns: bool  # names are the file's numeric columns (their order may differ between files)
    start: np.ndarray | None = None
    end: np.ndarray | None = None


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _floats(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Numbers as float64 (nulls become NaN, which the finiteness check reports)."""
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _read_parquet(file: str, data: bytes) -> _Part:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise EmbeddingsError(f"{file}: not a readable Parquet file ({exc})") from None
    columns = table.column_names
    if "key" not in columns:
        raise EmbeddingsError(f"{file}: no 'key' column (the clip key); its columns are {columns}")
    key_type = table.schema.field("key").type
    if not (pa.types.is_string(key_type) or pa.types.is_large_string(key_type)):
        raise EmbeddingsError(f"{file}: column 'key' must hold strings (clip keys), got {key_type}")
    if table.column("key").null_count:
        raise EmbeddingsError(f"{file}: {table.column('key').null_count} rows have no key")
    window = [c for c in _WINDOW_COLUMNS if c in columns]
    if len(window) == 1:
        raise EmbeddingsError(f"{file}: has {window[0]!r} but not {({'start', 'end'} - set(window)).pop()!r}; per-window vectors need both")
    rest = [c for c in columns if c not in ("key", *_WINDOW_COLUMNS)]
    if not rest:
        raise EmbeddingsError(f"{file}: no vector columns besides {columns}")
    lists = [c for c in rest if _is_list(table.schema.field(c).type)]
    keys = table.column("key").to_pylist()
    if lists:
        if len(rest) > 1:
            raise EmbeddingsError(
                f"{file}: give the vector as one list column or as numeric columns only, got list column(s) {lists} "
                f"and other columns {[c for c in rest if c not in lists]}"
            )
        name = lists[0]
        column = table.column(name).combine_chunks()
        if not _numeric(column.type.value_type):
            raise EmbeddingsError(f"{file}: column {name!r} must hold lists of numbers, got {column.type}")
        if column.null_count:
            nulls = [k for k, v in zip(keys, column.is_null().to_pylist()) if v]
            raise EmbeddingsError(f"{file}: {len(nulls)} rows have no vector in column {name!r}: {_shown(nulls)}")
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, int)
        if len(set(lengths.tolist())) > 1:
            common = Counter(lengths.tolist()).most_common(1)[0][0]
            odd = [f"{k} ({n})" for k, n in zip(keys, lengths.tolist()) if n != common]
            raise EmbeddingsError(
                f"{file}: vectors in column {name!r} differ in length: most have {common} values, "
                f"{len(odd)} rows do not: {_shown(odd)}"
            )
        dim = int(lengths[0]) if len(lengths) else 0
        flat = _floats(pc.list_flatten(column))
        values = flat.reshape(len(keys), dim)
        names, named = tuple(f"{name}[{i}]" for i in range(dim)), False
    else:
        bad = [f"{c} ({table.schema.field(c).type})" for c in rest if not _numeric(table.schema.field(c).type)]
        if bad:
            raise EmbeddingsError(f"{file}: columns {bad} are neither numeric nor key/start/end (nor one list column)")
        values = np.column_stack([_floats(table.column(c)) for c in rest]) if keys else np.zeros((0, len(rest)))
        names, named = tuple(rest), True
    part = _Part(file, keys, values, names, named)
    if window:
        for c in _WINDOW_COLUMNS:
            if not _numeric(table.schema.field(c).type):
                raise EmbeddingsError(f"{file}: column {c!r} must hold seconds (numbers), got {table.schema.field(c).type}")
        part.start, part.end = (_floats(table.column(c)) for c in _WINDOW_COLUMNS)
    return part


def _read_npy(file: str, data: bytes, key_list: str, key_data: bytes) -> _Part:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise EmbeddingsError(
                f"{file}: holds Python objects (a pickle), which mlci never loads; save a numeric array (np.save of floats)"
            ) from None
        raise EmbeddingsError(f"{file}: not a readable .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise EmbeddingsError(f"{file}: not a readable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise EmbeddingsError(f"{file}: must be a 2-D array (one row per key), got shape {getattr(array, 'shape', None)}")
    if array.dtype.kind not in "fiu":
        raise EmbeddingsError(f"{file}: must hold numbers, got dtype {array.dtype}")
    start = end = None
    try:
        text = key_data.decode("utf-8")
    except UnicodeDecodeError:
        raise EmbeddingsError(f"{key_list}: not UTF-8 text") from None
    if key_list.endswith(".json"):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EmbeddingsError(f"{key_list}: not valid JSON ({exc})") from None
        if not isinstance(entries, list):
            raise EmbeddingsError(f"{key_list}: must be a JSON list, got {type(entries).__name__}")
        if all(isinstance(e, str) for e in entries):
            keys = entries
        elif all(isinstance(e, dict) and set(e) == {"key", *_WINDOW_COLUMNS} for e in entries):
            keys = [e["key"] for e in entries]
            if not all(isinstance(k, str) for k in keys):
                raise EmbeddingsError(f"{key_list}: every 'key' must be a string")
            try:
                start, end = (np.array([e[c] for e in entries], dtype=np.float64) for c in _WINDOW_COLUMNS)
            except (TypeError, ValueError):
                raise EmbeddingsError(f"{key_list}: 'start' and 'end' must be numbers (seconds)") from None
        else:
            raise EmbeddingsError(f'{key_list}: must be a list of keys, or of {{"key", "start", "end"}} objects')
    else:
        keys = text.splitlines()
    empty = [n + 1 for n, k in enumerate(keys) if not k]
    if empty:
        raise EmbeddingsError(f"{key_list}: entries {_shown(empty)} are empty keys")
    if len(keys) != array.shape[0]:
        raise EmbeddingsError(f"{file} has {array.shape[0]} rows but {key_list} has {len(keys)} keys")
    stem = file.rsplit("/", 1)[-1][: -len(".npy")]
    names = tuple(f"{stem}[{i}]" for i in range(array.shape[1]))
    return _Part(file, keys, np.asarray(array, dtype=np.float64), names, False, start, end)


# -- a source as a whole --------------------------------------------------------------------------


@dataclass(eq=False)
class Embeddings:
    """The validated vectors of one source, rows sorted by clip key (then window start).

    Attributes
    ----------
    source : str
    names : tuple of str
        Names of the vector entries.
    keys : ndarray of str of shape (n_rows,)
        Clip store keys (``clips/...``).
    start, end : ndarray of shape (n_rows,)
        Window bounds in seconds; NaN for per-clip vectors.
    values : ndarray of shape (n_rows, dim), float32
    files : tuple of str
        The store keys read.
    digest : str
        16 hex digits of sha256 over the canonical content.
    """

    source: str
    names: tuple[str, ...]
    keys: np.ndarray
    start: np.ndarray
    end: np.ndarray
    values: np.ndarray
    files: tuple[str, ...]
    digest: str
    _rows: dict[str, slice] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self._rows and len(self.keys):
            firsts = np.flatnonzero(np.r_[True, self.keys[1:] != self.keys[:-1]])
            bounds = np.r_[firsts, len(self.keys)]
            self._rows = {str(self.keys[a]): slice(int(a), int(b)) for a, b in pairwise(bounds)}

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def windowed(self) -> bool:
        return bool(len(self.start)) and not np.isnan(self.start).all()

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def clip_keys(self) -> list[str]:
        """The clip keys that have vectors, sorted."""
        return list(self._rows)

    def windows(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start, end, values)`` of one clip's rows."""
        rows = self._rows[key]
        return self.start[rows], self.end[rows], self.values[rows]

    def clip_vector(self, key: str) -> np.ndarray:
        """The clip's vectors averaged over its windows, L2-normalised (float32, shape (dim,))."""
        return l2_normalize(self.values[self._rows[key]].astype(np.float64).mean(axis=0)).astype(np.float32)


def _combine(source: str, parts: list[_Part]) -> Embeddings:
    """Check the files of a source against each other and join them."""
    first = parts[0]
    for p in parts[1:]:
        if p.values.shape[1] != first.values.shape[1]:
            raise EmbeddingsError(
                f"vectors differ in length between files: {first.file} has {first.values.shape[1]} values, "
                f"{p.file} has {p.values.shape[1]}"
            )
        if (p.start is None) != (first.start is None):
            with_w, without = (p, first) if p.start is not None else (first, p)
            raise EmbeddingsError(f"{with_w.file} has per-window vectors (start, end) but {without.file} has not; use one kind")
        if p.named_columns and first.named_columns and p.names != first.names:
            if set(p.names) != set(first.names):
                raise EmbeddingsError(
                    f"files name their columns differently: {first.file} has {_shown(first.names)}, {p.file} has {_shown(p.names)}"
                )
            order = [p.names.index(n) for n in first.names]
            p.values, p.names = p.values[:, order], first.names
    keys = [_clip_key(k) for p in parts for k in p.keys]
    values = np.concatenate([p.values for p in parts]).astype(np.float32)
    if not keys:
        raise EmbeddingsError(f"{embeddings_prefix(source)}: the files hold no vectors ({_shown(p.file for p in parts)})")
    row_file = np.concatenate([np.full(len(p.keys), n) for n, p in enumerate(parts)])
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        file = parts[int(row_file[bad][0])].file
        raise EmbeddingsError(
            f"{int(bad.sum())} vectors hold NaN, infinite or missing values (first in {file}): "
            f"{_shown(k for k, b in zip(keys, bad) if b)}"
        )
    if first.start is not None:
        start = np.concatenate([p.start for p in parts])
        end = np.concatenate([p.end for p in parts])
        bad = ~(np.isfinite(start) & np.isfinite(end) & (start >= 0) & (start < end))
        if bad.any():
            raise EmbeddingsError(
                f"{int(bad.sum())} windows are not 0 <= start < end (seconds): "
                f"{_shown(f'{k} [{s:g}, {e:g}]' for k, s, e, b in zip(keys, start, end, bad) if b)}"
            )
        ids = list(zip(keys, start.tolist()))
        what = "windows (key, start) appear"
    else:
        start = end = np.full(len(keys), np.nan)
        ids = keys
        what = "keys appear"
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        shown = sorted(dup) if first.start is None else [f"{k} at {s:g} s" for k, s in sorted(dup)]
        raise EmbeddingsError(f"{len(dup)} {what} more than once (as given, or as a path under {CLIP_PREFIX}): {_shown(shown)}")
    key_array = np.asarray(keys, dtype=str)
    order = np.lexsort((start, key_array))
    key_array, start, end, values = key_array[order], start[order], end[order], values[order]
    digest = hashlib.sha256()
    digest.update(json.dumps({"names": list(first.names), "windowed": first.start is not None}).encode())
    digest.update("\n".join(key_array.tolist()).encode("utf-8") + b"\0")
    for array, dtype in ((start, "<f8"), (end, "<f8"), (values, "<f4")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return Embeddings(
        source=source,
        names=first.names,
        keys=key_array,
        start=start,
        end=end,
        values=values,
        files=tuple(p.file for p in parts),
        digest=digest.hexdigest()[:16],
    )


#: (store uri, source) -> (identities of the files read, their Embeddings): a run binds its
#: extractor in every chunk, which then reads the files only when they changed.
_READ: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], Embeddings]] = {}
_READ_LOCK = threading.Lock()


def _source_files(store: Store, source: str) -> tuple[list[str], list[str], list[str]]:
    prefix = embeddings_prefix(check_source(source))
    listed = store.list(prefix)
    parquet = [k for k in listed if k.lower().endswith(".parquet")]
    npy = [k for k in listed if k.lower().endswith(".npy")]
    key_lists = [k for k in listed if k.rsplit("/", 1)[-1] in EMBEDDINGS_KEY_LISTS]
    if not parquet and not npy:
        raise EmbeddingsError(
            f"no embeddings under {prefix} in {store.uri}: expected *.parquet files, or one .npy with "
            f"{' or '.join(EMBEDDINGS_KEY_LISTS)}" + (f" (found {_shown(listed)})" if listed else "")
        )
    if len(npy) > 1:
        raise EmbeddingsError(f"{prefix}: one .npy per source, found {len(npy)}: {_shown(npy)}")
    if npy and len(key_lists) != 1:
        raise EmbeddingsError(
            f"{npy[0]} needs exactly one key list ({' or '.join(EMBEDDINGS_KEY_LISTS)}) in {prefix}, found {len(key_lists)}"
            + (f": {_shown(key_lists)}" if key_lists else "")
        )
    if key_lists and not npy:
        raise EmbeddingsError(f"{key_lists[0]} lists keys for a .npy, but {prefix} has none")
    return parquet, npy, key_lists


def read_embeddings(store: Store, source: str) -> Embeddings:
    """The validated vectors of ``embeddings/<source>/``.

    Raises
    ------
    EmbeddingsError
        With one line naming the file and the offending keys: no files, an unreadable or pickled
        file, a missing ``key`` column or key list, vectors of different lengths (in a file or
        between files), non-finite values, bad windows, duplicate keys.
    """
    parquet, npy, key_lists = _source_files(store, source)
    files = parquet + npy + key_lists
    identities = tuple((k, store.stat(k).identity) for k in files)
    with _READ_LOCK:
        cached = _READ.get((store.uri, source))
    if cached is not None and cached[0] == identities:
        return cached[1]
    parts = [_read_parquet(k, store.read_bytes(k)) for k in parquet]
    if npy:
        parts.append(_read_npy(npy[0], store.read_bytes(npy[0]), key_lists[0], store.read_bytes(key_lists[0])))
    embeddings = _combine(source, parts)
    with _READ_LOCK:
        _READ[(store.uri, source)] = (identities, embeddings)
    return embeddings


def list_sources(store: Store) -> list[str]:
    """Names of the embeddings sources in the store (folders under ``embeddings/``)."""
    return sorted({s for s in map(embeddings_source, store.list(EMBEDDINGS_PREFIX)) if s is not None})


@dataclass(frozen=True)
class EmbeddingsReport:
    """What a source holds and how its keys meet the store's clips (:func:`inspect_embeddings`)."""

    source: str
    digest: str
    files: tuple[str, ...]
    dim: int
    windowed: bool
    n_rows: int
    n_keys: int
    n_clips: int
    n_matched: int
    unknown_keys: tuple[str, ...]
    clips_without: tuple[str, ...]

    @property
    def n_unknown(self) -> int:
        return len(self.unknown_keys)

    def format(self) -> str:
        kind = "windows" if self.windowed else "vectors"
        lines = [
            (f"embeddings {self.source} (digest {self.digest}): {self.n_keys} keys, {self.n_rows} {kind} "
             f"of {self.dim} values in {len(self.files)} file(s)"),
            f"  {self.n_matched} of the store's {self.n_clips} clips have vectors",
        ]
        if self.unknown_keys:
            lines.append(f"  {self.n_unknown} keys name no clip in the store (ignored): {_shown(self.unknown_keys)}")
        if self.clips_without:
            lines.append(f"  {len(self.clips_without)} clips have no vector (quarantined as no_embedding): {_shown(self.clips_without)}")
        return "\n".join(lines)


def inspect_embeddings(store: Store, source: str) -> EmbeddingsReport:
    """Read and validate a source, and match its keys against the clips in the store."""
    from mlci.features.run import MEDIA_SUFFIXES  # the run's own rule of what is a clip

    emb = read_embeddings(store, source)
    clips = {k for k in store.list(CLIP_PREFIX) if k.lower().endswith(MEDIA_SUFFIXES)}
    keys = emb.clip_keys()
    return EmbeddingsReport(
        source=source,
        digest=emb.digest,
        files=emb.files,
        dim=emb.dim,
        windowed=emb.windowed,
        n_rows=len(emb.keys),
        n_keys=len(keys),
        n_clips=len(clips),
        n_matched=sum(k in clips for k in keys),
        unknown_keys=tuple(k for k in keys if k not in clips),
        clips_without=tuple(sorted(c for c in clips if c not in emb)),
    )


_REPORTED: set[tuple[str, str, str]] = set()


def _log_unknown_once(store: Store, emb: Embeddings) -> None:
    """Log the keys that name no clip, once per store, source and digest in this process."""
    seen = (store.uri, emb.source, emb.digest)
    with _READ_LOCK:
        if seen in _REPORTED:
            return
        _REPORTED.add(seen)
    report = inspect_embeddings(store, emb.source)
    if report.unknown_keys:
        logger.warning("%s: %d of its %d keys name no clip in the store and are ignored: %s",
                       embeddings_prefix(emb.source), report.n_unknown, report.n_keys, _shown(report.unknown_keys))


# -- the extractor --------------------------------------------------------------------------------


@register_extractor
class ImportedExtractor(FeatureExtractor):
    """Vectors a team computed elsewhere, looked up by clip key in ``embeddings/<source>/``.

    Nothing is decoded: :meth:`featurize_clip` reads the clip's rows of the source. See the module
    docstring for the formats, the checks and how ``digest`` versions the content.

    Parameters
    ----------
    source : str
        Folder under ``embeddings/`` holding the vectors.
    kind : {"video", "audio"}, default="video"
        Which modality the vectors are (e.g. a CLIP image embedding is ``video``, VGGish ``audio``);
        the other one is empty, and ``combined`` is the vectors.
    digest : str, default=None
        Digest of the content the features are of. Left None, binding to a store fills it in with
        the store's current content; given, binding checks the content still has it.
    """

    name = "imported"
    version = 1

    def __init__(self, *, source: str = "", kind: str = "video", digest: str | None = None):
        self.source = source
        self.kind = kind
        self.digest = digest

    def validate_params(self) -> None:
        check_source(self.source)
        if self.kind not in ("video", "audio"):
            raise ValueError(f"kind must be 'video' or 'audio', got {self.kind!r}")
        if self.digest is not None and not (isinstance(self.digest, str) and _DIGEST.fullmatch(self.digest)):
            raise ValueError(f"digest must be None or 16 hex digits, got {self.digest!r}")

    def bind(self, store: Store) -> ImportedExtractor:
        """This extractor with the source read and validated, and ``digest`` that of its content.

        Raises
        ------
        EmbeddingsError
            The source cannot be read (see :func:`read_embeddings`).
        EmbeddingsChangedError
            ``digest`` was given and the source now holds other vectors.
        """
        emb = read_embeddings(store, self.source)
        if self.digest is not None and self.digest != emb.digest:
            raise EmbeddingsChangedError(
                f"{embeddings_prefix(self.source)} changed: these features are of digest {self.digest}, the store now "
                f"holds {emb.digest}; run the features again"
            )
        bound = type(self)(source=self.source, kind=self.kind, digest=emb.digest)
        bound._embeddings = emb
        _log_unknown_once(store, emb)
        return bound

    @property
    def embeddings(self) -> Embeddings:
        emb = getattr(self, "_embeddings", None)
        if emb is None:
            raise RuntimeError(f"{self!r} has not read its source: resolve it with resolve_extractor(..., store=store)")
        return emb

    def window_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        names = self.embeddings.names
        return ((), names) if self.kind == "video" else (names, ())

    @property
    def schema(self) -> FeatureSchema:
        audio, video = self.window_names()
        return FeatureSchema(self.name, self.version, self.get_params(), audio, video, pooling="mean")

    def extract(self, path, *, threads: int = 1) -> WindowFeatures:
        raise FeatureError(
            f"the {self.name!r} extractor looks vectors up by clip key in {embeddings_prefix(self.source)}; "
            "it cannot compute them from a file (detection on new videos needs an extractor that decodes)"
        )

    def featurize_clip(self, store: Store, key: str, *, threads: int = 1) -> ClipFeatures:
        emb = self.embeddings
        if key not in emb:
            raise NoEmbeddingError(f"{embeddings_prefix(self.source)} (digest {emb.digest}) has no vector for this clip")
        start, end, values = emb.windows(key)
        n = len(start)
        empty, ones, zeros = np.zeros((n, 0), np.float32), np.ones(n, bool), np.zeros(n, bool)
        video = self.kind == "video"
        windows = WindowFeatures(
            start=start,
            end=end,
            audio=empty if video else values,
            video=values if video else empty,
            window_has_audio=zeros if video else ones,
            window_has_video=ones if video else zeros,
            duration=float(end.max()) if emb.windowed else float("nan"),
            has_audio=not video,
            has_video=video,
            info={"source": self.source, "digest": emb.digest},
        )
        vector, none = emb.clip_vector(key), np.zeros(0, np.float32)
        return ClipFeatures(audio=none if video else vector, video=vector if video else none, combined=vector, windows=windows)

    def __reduce__(self):  # by parameters (Dask ships extractors to workers; they bind again)
        return (_rebuild, (type(self), self.get_params()))


def _rebuild(cls, params):
    return cls(**params)


# -- beside another extractor: "<modality>+embeddings:<source>" -------------------------------------


def split_embeddings_modality(modality: str) -> tuple[str, str | None] | None:
    """``(base modality, source)`` of ``"<modality>+embeddings[:<source>]"``; None for a plain modality.

    ``source`` is None when not named (the store's only source).

    Raises
    ------
    ValueError
        A ``+`` modality of another form.
    """
    if not isinstance(modality, str) or "+" not in modality:
        return None
    base, _, extra = modality.partition("+")
    what, colon, source = extra.partition(":")
    if base not in MODALITIES or what != EMBEDDINGS_MODALITY or (colon and not _SOURCE.fullmatch(source)):
        raise ValueError(
            f"modality must be one of {MODALITIES}, or one of them followed by '+{EMBEDDINGS_MODALITY}' or "
            f"'+{EMBEDDINGS_MODALITY}:<source>', got {modality!r}"
        )
    return base, (source if colon else None)


def _only_source(store: Store, modality: str) -> str:
    sources = list_sources(store)
    if len(sources) != 1:
        raise EmbeddingsError(
            f"modality {modality!r} names no source and {store.uri} holds {len(sources)} under {EMBEDDINGS_PREFIX}"
            + (f" ({_shown(sources)})" if sources else "") + f"; name one: '{modality}:<source>'"
        )
    return sources[0]


def load_with_embeddings(
    store: Store,
    *,
    extractor: str | FeatureExtractor = "basic",
    params: dict | None = None,
    modality: str,
    keys=None,
    missing: str = "raise",
) -> tuple[np.ndarray, np.ndarray, FeatureSchema]:
    """Another extractor's features beside a source's vectors: ``"<modality>+embeddings[:<source>]"``.

    The extractor's ``<modality>`` vectors and the source's clip vectors (averaged over windows), each
    L2-normalised, concatenated and normalised again. Clips with features but no vector are left out
    (and logged) when ``keys`` is None; requested ``keys`` without a vector follow ``missing``.

    Returns
    -------
    keys, X, schema
        As :func:`mlci.features.load_features`. The columns of ``X`` are the extractor's
        ``schema.names(<modality>)``, then the source's entries. ``schema`` is the extractor's with
        ``extractor`` ``"<name>+imported"`` and both configurations (with the source's digest) in
        its params, so a model trained on it is refused for other vectors.
    """
    from mlci.features.cache import load_features

    parsed = split_embeddings_modality(modality)
    if parsed is None:
        raise ValueError(f"modality must be '<modality>+{EMBEDDINGS_MODALITY}[:<source>]' here, got {modality!r}")
    base_modality, source = parsed
    source = source or _only_source(store, modality)
    embedder = resolve_extractor(ImportedExtractor(source=source), store=store)
    emb = embedder.embeddings
    wanted = None if keys is None else [str(k) for k in keys]
    base_keys, base_X, schema = load_features(
        store, extractor=extractor, params=params, modality=base_modality, keys=wanted, missing=missing
    )
    have = np.fromiter((k in emb for k in base_keys), dtype=bool, count=len(base_keys))
    if not have.all():
        absent = base_keys[~have].tolist()
        if wanted is not None and missing == "raise":
            raise MissingFeaturesError(absent, len(wanted))
        logger.warning("%d clips with %s features have no vector in %s and are left out: %s",
                       len(absent), schema.cache_id, embeddings_prefix(source), _shown(absent))
    base_keys = base_keys[have]
    vectors = np.stack([emb.clip_vector(k) for k in base_keys]) if len(base_keys) else np.zeros((0, emb.dim), np.float32)
    X = l2_normalize(np.hstack([l2_normalize(base_X[have]), vectors])).astype(np.float32)
    combined = FeatureSchema(
        extractor=f"{schema.extractor}+{ImportedExtractor.name}",
        version=schema.version,
        params={
            "modality": base_modality,
            schema.extractor: schema.params,
            ImportedExtractor.name: {**embedder.get_params(), "version": ImportedExtractor.version},
        },
        audio_window=schema.audio_window,
        video_window=schema.video_window,
        pooling=schema.pooling,
    )
    return base_keys, X, combined

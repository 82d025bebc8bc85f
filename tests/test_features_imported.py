"""Imported embeddings (``mlci/features/imported.py``): a team's vectors under ``embeddings/<source>/``.

Real stores (a local folder; S3 over HTTP on loopback for the Parquet path), real mp4 clips encoded
by the test, the real feature run and cache; the vectors are written as Parquet and as NumPy files
the way a team would upload them.
"""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlci.features import (
    EmbeddingsChangedError,
    EmbeddingsError,
    FeatureError,
    FeatureSchema,
    ImportedExtractor,
    MissingFeaturesError,
    compute_features,
    inspect_embeddings,
    list_quarantined,
    load_features,
    load_window_features,
    read_embeddings,
    resolve_extractor,
    window_matrix,
)
from mlci.features.imported import split_embeddings_modality
from mlci.layout import embeddings_key
from mlci.media import encode_clip

N_CLIPS = 12
DIM = 6
SR = 16000
PREFIX = "clips/emb/"
KEYS = [f"{PREFIX}c{i:02d}.mp4" for i in range(N_CLIPS)]
WITHOUT = KEYS[-1]  # a clip the team has no vector for
TEAM = "team"


def _clip(path, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 220, 3)
    frames = []
    for i in range(15):
        f = np.empty((48, 64, 3), np.uint8)
        f[:] = base
        f[:, (i * 3) % 56 : (i * 3) % 56 + 8] = 255 - base
        frames.append(f)
    t = np.arange(SR) / SR
    encode_clip(path, frames=frames, fps=15, audio=(0.3 * np.sin(2 * np.pi * (200 + 60 * seed) * t)).astype(np.float32),
                sample_rate=SR)
    return path


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("imported-clips")
    return [_clip(d / f"c{i:02d}.mp4", i) for i in range(N_CLIPS)]


@pytest.fixture
def clips_store(local_store, clip_files):
    for key, f in zip(KEYS, clip_files):
        local_store.upload(key, f)
    return local_store


def vectors(n=N_CLIPS - 1, dim=DIM, seed=0):
    """Per-clip vectors of the first ``n`` clips; entry 0 decides the test concept."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(n, dim))
    V[:, 0] = np.where(np.arange(n) % 2 == 0, 3.0, -3.0) + 0.1 * rng.normal(size=n)
    return V


def parquet_bytes(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def list_column(V):
    return pa.array([list(map(float, row)) for row in V], type=pa.list_(pa.float64()))


def write_parquet(store, V, keys=None, name="vectors.parquet", source=TEAM, **extra):
    keys = KEYS[: len(V)] if keys is None else keys
    store.write_bytes(embeddings_key(source, name), parquet_bytes({"key": keys, "emb": list_column(V), **extra}))


def write_npy(store, V, keys=None, *, as_json=False, source=TEAM, name="vectors.npy"):
    keys = KEYS[: len(V)] if keys is None else keys
    buf = io.BytesIO()
    np.save(buf, np.asarray(V))
    store.write_bytes(embeddings_key(source, name), buf.getvalue())
    if as_json:
        store.write_bytes(embeddings_key(source, "keys.json"), json.dumps(keys).encode())
    else:
        store.write_bytes(embeddings_key(source, "keys.txt"), ("\n".join(keys) + "\n").encode())


def unit(V):
    V = np.asarray(V, dtype=np.float64)
    return V / np.linalg.norm(V, axis=-1, keepdims=True)


def snapshot(store, prefixes=("features/", "quarantine/")):
    return {k: store.stat(k).identity for p in prefixes for k in store.list(p)}


PARAMS = {"source": TEAM}


# -- the extractor through the feature run ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_parquet_vectors_become_features_and_a_clip_without_one_is_quarantined(request, backend, clip_files, caplog):
    store = request.getfixturevalue(f"{backend}_store")
    for key, f in zip(KEYS, clip_files):
        store.upload(key, f)
    V = vectors()
    # Keys as the store key or as the path under clips/; one key names no clip.
    keys = [k if i % 2 else k[len("clips/"):] for i, k in enumerate(KEYS[: len(V)])]
    write_parquet(store, np.vstack([V, np.ones(DIM)]), keys=keys + ["clips/emb/ghost.mp4"])

    with caplog.at_level("WARNING", logger="mlci.features.imported"):
        report = compute_features(store, extractor="imported", params=PARAMS)
    assert (report.n_listed, report.n_computed, report.n_quarantined_new) == (N_CLIPS, N_CLIPS - 1, 1)
    assert "1 of its 12 keys name no clip in the store and are ignored: clips/emb/ghost.mp4" in caplog.text
    broken = list_quarantined(store, extractor="imported", params=PARAMS)
    assert broken["key"].tolist() == [WITHOUT] and broken["error_kind"].tolist() == ["no_embedding"]
    assert "embeddings/team/" in broken["message"].iloc[0]

    keys_out, X, schema = load_features(store, extractor="imported", params=PARAMS, modality="video")
    assert keys_out.tolist() == KEYS[:-1]
    np.testing.assert_allclose(X, unit(V), atol=1e-6)
    _, C, _ = load_features(store, extractor="imported", params=PARAMS)  # combined: the vectors
    np.testing.assert_array_equal(C, X)
    assert schema.extractor == "imported" and schema.pooling == "mean" and schema.params["digest"] is not None
    assert schema.video == tuple(f"mean(emb[{i}])" for i in range(DIM)) and schema.audio == ()
    assert schema.cache_id == f"imported-v1-{schema.params_hash}"
    with pytest.raises(ValueError, match=r"have no 'audio' entries; choose another modality"):
        load_features(store, extractor="imported", params=PARAMS, modality="audio")

    report = inspect_embeddings(store, TEAM)
    assert (report.n_keys, report.n_matched, report.n_clips) == (N_CLIPS, N_CLIPS - 1, N_CLIPS)
    assert report.unknown_keys == ("clips/emb/ghost.mp4",) and report.clips_without == (WITHOUT,)
    assert "1 keys name no clip in the store (ignored): clips/emb/ghost.mp4" in report.format()


def test_per_window_numeric_columns_over_two_files_average_per_clip(clips_store):
    rng = np.random.default_rng(3)
    rows = []
    for key in KEYS[:4]:
        for w in range(3):
            rows.append({"key": key, "start": float(w), "end": w + 1.0, **{f"e{i}": rng.normal() for i in range(DIM)}})
    df = pd.DataFrame(rows)
    names = [f"e{i}" for i in range(DIM)]
    first, second = df.iloc[:6], df.iloc[6:]
    clips_store.write_bytes(embeddings_key(TEAM, "a.parquet"), parquet_bytes({c: first[c].to_numpy() for c in df.columns}))
    # The second file lists its columns in another order: they are matched by name.
    order = ["start", "key", "end"] + names[::-1]
    clips_store.write_bytes(embeddings_key(TEAM, "b.parquet"), parquet_bytes({c: second[c].to_numpy() for c in order}))

    emb = read_embeddings(clips_store, TEAM)
    assert emb.names == tuple(names) and emb.windowed and len(emb.keys) == 12
    compute_features(clips_store, extractor="imported", params=PARAMS)
    keys, X, _ = load_features(clips_store, extractor="imported", params=PARAMS, modality="video")
    assert keys.tolist() == KEYS[:4]
    expected = unit(df.groupby("key")[names].mean().loc[KEYS[:4]].to_numpy())
    np.testing.assert_allclose(X, expected, atol=1e-6)
    windows = load_window_features(clips_store, KEYS[:2], extractor="imported", params=PARAMS)
    assert windows["start"].tolist() == [0.0, 1.0, 2.0] * 2 and windows["end"].tolist() == [1.0, 2.0, 3.0] * 2
    np.testing.assert_allclose(window_matrix(windows, "video"), df[df["key"].isin(KEYS[:2])][names].to_numpy(), atol=1e-6)


def test_npy_with_key_list_reads_as_the_parquet_does(clips_store):
    V = vectors()
    write_parquet(clips_store, V)
    from_parquet = read_embeddings(clips_store, TEAM)
    clips_store.delete(embeddings_key(TEAM, "vectors.parquet"))
    write_npy(clips_store, V)
    from_npy = read_embeddings(clips_store, TEAM)
    np.testing.assert_array_equal(from_npy.values, from_parquet.values)
    assert from_npy.keys.tolist() == from_parquet.keys.tolist() == KEYS[:-1]
    assert from_npy.names == tuple(f"vectors[{i}]" for i in range(DIM)) and from_parquet.names[0] == "emb[0]"
    assert from_npy.digest != from_parquet.digest  # the entry names are part of the content
    clips_store.delete(embeddings_key(TEAM, "keys.txt"))
    write_npy(clips_store, V, as_json=True)
    assert read_embeddings(clips_store, TEAM).digest == from_npy.digest
    # Named like the Parquet's vector column, the same vectors have the same digest: it is of the
    # content, not of the file's bytes or format.
    for name in ("vectors.npy", "keys.json"):
        clips_store.delete(embeddings_key(TEAM, name))
    write_npy(clips_store, V, name="emb.npy")
    assert read_embeddings(clips_store, TEAM).digest == from_parquet.digest


def test_npy_windows_from_keys_json(clips_store):
    entries = [{"key": KEYS[0], "start": 0.0, "end": 0.5}, {"key": KEYS[0], "start": 0.5, "end": 1.0},
               {"key": KEYS[1], "start": 0.0, "end": 1.0}]
    V = np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM) + 1
    buf = io.BytesIO()
    np.save(buf, V)
    clips_store.write_bytes(embeddings_key(TEAM, "v.npy"), buf.getvalue())
    clips_store.write_bytes(embeddings_key(TEAM, "keys.json"), json.dumps(entries).encode())
    emb = read_embeddings(clips_store, TEAM)
    assert emb.windowed and emb.clip_keys() == KEYS[:2]
    np.testing.assert_allclose(emb.clip_vector(KEYS[0]), unit(V[:2].mean(axis=0)), atol=1e-6)


# -- bad input: one line naming the file and the keys ------------------------------------------------


def _pickled_npy(store):
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    store.write_bytes(embeddings_key(TEAM, "v.npy"), buf.getvalue())
    store.write_bytes(embeddings_key(TEAM, "keys.txt"), b"a.mp4\nb.mp4\n")


def _write(name, columns):
    return lambda store: store.write_bytes(embeddings_key(TEAM, name), parquet_bytes(columns))


BAD = {
    "no files": (lambda store: store.write_bytes(embeddings_key(TEAM, "README.md"), b"hi"),
                 r"no embeddings under embeddings/team/ in .*expected \*\.parquet files, or one \.npy with keys\.txt or keys\.json \(found embeddings/team/README\.md\)"),
    "no key column": (_write("v.parquet", {"clip": ["a.mp4"], "emb": list_column([[1.0, 2.0]])}),
                      r"embeddings/team/v\.parquet: no 'key' column \(the clip key\); its columns are \['clip', 'emb'\]"),
    "lengths differ in a file": (
        _write("v.parquet", {"key": ["a.mp4", "b.mp4", "c.mp4"], "emb": pa.array([[1.0, 2.0], [1.0, 2.0], [1.0]])}),
        r"embeddings/team/v\.parquet: vectors in column 'emb' differ in length: most have 2 values, 1 rows do not: c\.mp4 \(1\)"),
    "lengths differ between files": (
        lambda store: (_write("a.parquet", {"key": ["a.mp4"], "emb": list_column([[1.0, 2.0]])})(store),
                       _write("b.parquet", {"key": ["b.mp4"], "emb": list_column([[1.0, 2.0, 3.0]])})(store)),
        r"vectors differ in length between files: embeddings/team/a\.parquet has 2 values, embeddings/team/b\.parquet has 3"),
    "not finite": (_write("v.parquet", {"key": ["a.mp4", "b.mp4"], "x": [1.0, np.nan], "y": [1.0, 2.0]}),
                   r"1 vectors hold NaN, infinite or missing values \(first in embeddings/team/v\.parquet\): clips/b\.mp4"),
    "duplicate keys": (_write("v.parquet", {"key": ["a.mp4", "b.mp4", "clips/a.mp4", "b.mp4"], "x": [1.0, 2, 3, 4]}),
                       r"2 keys appear more than once \(as given, or as a path under clips/\): clips/a\.mp4, clips/b\.mp4"),
    "duplicate windows": (_write("v.parquet", {"key": ["a.mp4", "a.mp4"], "start": [0.0, 0.0], "end": [1.0, 2.0], "x": [1.0, 2]}),
                          r"1 windows \(key, start\) appear more than once .*: clips/a\.mp4 at 0 s"),
    "start without end": (_write("v.parquet", {"key": ["a.mp4"], "start": [0.0], "x": [1.0]}),
                          r"v\.parquet: has 'start' but not 'end'; per-window vectors need both"),
    "bad window": (_write("v.parquet", {"key": ["a.mp4"], "start": [2.0], "end": [1.0], "x": [1.0]}),
                   r"1 windows are not 0 <= start < end \(seconds\): clips/a\.mp4 \[2, 1\]"),
    "text column": (_write("v.parquet", {"key": ["a.mp4"], "x": [1.0], "note": ["hi"]}),
                    r"v\.parquet: columns \['note \(string\)'\] are neither numeric nor key/start/end"),
    "list and numeric columns": (_write("v.parquet", {"key": ["a.mp4"], "emb": list_column([[1.0]]), "x": [1.0]}),
                                 r"give the vector as one list column or as numeric columns only, got list column\(s\) \['emb'\] and other columns \['x'\]"),
    "windows in one file only": (
        lambda store: (_write("a.parquet", {"key": ["a.mp4"], "start": [0.0], "end": [1.0], "x": [1.0]})(store),
                       _write("b.parquet", {"key": ["b.mp4"], "x": [1.0]})(store)),
        r"embeddings/team/a\.parquet has per-window vectors \(start, end\) but embeddings/team/b\.parquet has not"),
    "columns named differently": (
        lambda store: (_write("a.parquet", {"key": ["a.mp4"], "x": [1.0], "y": [1.0]})(store),
                       _write("b.parquet", {"key": ["b.mp4"], "x": [1.0], "z": [1.0]})(store)),
        r"files name their columns differently: embeddings/team/a\.parquet has x, y, embeddings/team/b\.parquet has x, z"),
    "pickle": (_pickled_npy, r"embeddings/team/v\.npy: holds Python objects \(a pickle\), which mlci never loads"),
    "npy without keys": (lambda store: store.write_bytes(embeddings_key(TEAM, "v.npy"), b""),
                         r"embeddings/team/v\.npy needs exactly one key list \(keys\.txt or keys\.json\) in embeddings/team/, found 0"),
    "keys without npy": (lambda store: (_write("v.parquet", {"key": ["a.mp4"], "x": [1.0]})(store),
                                        store.write_bytes(embeddings_key(TEAM, "keys.txt"), b"a.mp4\n")),
                         r"embeddings/team/keys\.txt lists keys for a \.npy, but embeddings/team/ has none"),
    "rows and keys disagree": (lambda store: write_npy(store, np.ones((3, 2)), keys=["a.mp4", "b.mp4"]),
                               r"embeddings/team/vectors\.npy has 3 rows but embeddings/team/keys\.txt has 2 keys"),
    "npy not 2-D": (lambda store: write_npy(store, np.ones(2), keys=["a.mp4", "b.mp4"]),
                    r"embeddings/team/vectors\.npy: must be a 2-D array \(one row per key\), got shape \(2,\)"),
    "not parquet": (lambda store: store.write_bytes(embeddings_key(TEAM, "v.parquet"), b"key,x\na,1\n"),
                    r"embeddings/team/v\.parquet: not a readable Parquet file"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_with_one_line(local_store, case):
    write, message = BAD[case]
    write(local_store)
    with pytest.raises(EmbeddingsError, match=message) as info:
        read_embeddings(local_store, TEAM)
    assert "\n" not in str(info.value)


def test_a_bad_source_stops_the_run_before_any_clip(clips_store):
    BAD["duplicate keys"][0](clips_store)
    with pytest.raises(EmbeddingsError, match="appear more than once"):
        compute_features(clips_store, extractor="imported", params=PARAMS)
    assert snapshot(clips_store) == {}


def test_parameters_are_checked():
    with pytest.raises(ValueError, match=r"source must be the name of a folder under embeddings/ .*got '\.\./x'"):
        resolve_extractor("imported", {"source": "../x"})
    with pytest.raises(ValueError, match=r"kind must be 'video' or 'audio', got 'text'"):
        resolve_extractor("imported", {"source": TEAM, "kind": "text"})
    with pytest.raises(ValueError, match=r"digest must be None or 16 hex digits, got 'abc'"):
        resolve_extractor("imported", {"source": TEAM, "digest": "abc"})


# -- versions: the content's digest ---------------------------------------------------------------------


def test_reimporting_the_same_vectors_changes_nothing_and_a_changed_file_is_a_new_version(clips_store):
    V = vectors()
    write_parquet(clips_store, V)
    first = compute_features(clips_store, extractor="imported", params=PARAMS)
    keys, X, schema = load_features(clips_store, extractor="imported", params=PARAMS)
    stored = snapshot(clips_store)

    write_parquet(clips_store, V)  # uploaded again, byte for byte
    again = compute_features(clips_store, extractor="imported", params=PARAMS)
    assert (again.cache_id, again.n_computed, again.n_quarantined_new, again.index_key) == (first.cache_id, 0, 0, None)
    # Exported again as NumPy (other bytes, the same vectors): still the same version, nothing written.
    clips_store.delete(embeddings_key(TEAM, "vectors.parquet"))
    write_npy(clips_store, V, name="emb.npy")
    assert compute_features(clips_store, extractor="imported", params=PARAMS).cache_id == first.cache_id
    assert snapshot(clips_store) == stored

    changed = V.copy()
    changed[3, 2] += 1.0
    for name in ("emb.npy", "keys.txt"):
        clips_store.delete(embeddings_key(TEAM, name))
    write_parquet(clips_store, changed)
    with pytest.raises(EmbeddingsChangedError, match=rf"embeddings/team/ changed: these features are of digest {schema.params['digest']}, the store now holds [0-9a-f]{{16}}; run the features again"):
        resolve_extractor("imported", {"source": TEAM, "digest": schema.params["digest"]}, store=clips_store)
    new = compute_features(clips_store, extractor="imported", params=PARAMS)
    assert new.cache_id != first.cache_id and new.n_computed == N_CLIPS - 1
    _, X_new, schema_new = load_features(clips_store, extractor="imported", params=PARAMS)
    assert schema_new.params_hash != schema.params_hash
    np.testing.assert_allclose(X_new[3], unit(changed[3]), atol=1e-6)
    assert {k: v for k, v in snapshot(clips_store).items() if k in stored} == stored  # the old version stays

    # A model trained on the old vectors is refused on the new ones, with both digests of the parameters.
    from mlci.models import FeatureSchemaMismatchError, MultiLabelModel

    Y = (V[:, :1] > 0).astype(np.int8)
    model = MultiLabelModel(["concept"], feature_schema=schema).fit(X, Y)
    assert model.predict_proba(X, feature_schema=schema).shape == (len(keys), 1)
    with pytest.raises(FeatureSchemaMismatchError, match=rf"params_hash: model expects '{schema.params_hash}', got '{schema_new.params_hash}'"):
        model.predict_proba(X_new, feature_schema=schema_new)


def test_training_on_imported_features_learns_the_concept(clips_store):
    from mlci.models import MultiLabelModel, TrainingConfig, build_training_set, train

    V = vectors()
    write_parquet(clips_store, V)
    compute_features(clips_store, extractor="imported", params=PARAMS)
    keys, X, schema = load_features(clips_store, extractor="imported", params=PARAMS)
    truth = (V[:, 0] > 0).astype(int)
    consensus = pd.DataFrame({"asset": keys, "class": "concept", "posterior": truth.astype(float), "label": truth,
                              "n_votes": 3, "method": "majority"})
    ts = build_training_set(keys, X, consensus, ["concept"])
    trained = train(ts, TrainingConfig(n_splits=3), feature_schema=schema)
    model = trained.model
    assert isinstance(model, MultiLabelModel) and model.class_status_ == {"concept": "trained"}
    assert model.feature_schema_ == {"extractor": "imported", "version": "1", "params_hash": schema.params_hash,
                                     "modality": "combined"}
    assert (model.predict(X, feature_schema=schema)[:, 0] == truth).all()


# -- beside the built-in features: "<modality>+embeddings[:<source>]" ------------------------------


def test_combined_with_the_builtin_extractor_each_block_normalised(clips_store):
    V = vectors()
    write_parquet(clips_store, V)
    compute_features(clips_store)  # the built-in extractor's cache
    _, B, base_schema = load_features(clips_store, modality="combined")

    keys, X, schema = load_features(clips_store, modality="combined+embeddings:team")
    assert keys.tolist() == KEYS[:-1]  # the clip without a vector is left out
    expected = unit(np.hstack([unit(B[:-1]), unit(V)]))
    np.testing.assert_allclose(X, expected, atol=1e-5)
    assert np.linalg.norm(X[:, : B.shape[1]], axis=1) == pytest.approx(np.full(len(keys), 0.5 ** 0.5), abs=1e-5)
    assert schema.extractor == "basic+imported" and schema.version == base_schema.version
    assert schema.params["basic"] == base_schema.params and schema.params["modality"] == "combined"
    assert schema.params["imported"]["digest"] == read_embeddings(clips_store, TEAM).digest

    _, X_only, schema_only = load_features(clips_store, modality="combined+embeddings")  # the store's one source
    np.testing.assert_array_equal(X_only, X)
    assert schema_only.params_hash == schema.params_hash
    _, A, _ = load_features(clips_store, modality="audio+embeddings:team", keys=KEYS[:2])
    assert A.shape == (2, len(base_schema.audio) + DIM)
    with pytest.raises(MissingFeaturesError, match=r"1 of 2 requested clips have no features: clips/emb/c11\.mp4"):
        load_features(clips_store, modality="video+embeddings:team", keys=[KEYS[0], WITHOUT])

    # Changed vectors: another params hash, so a model trained on the old combination is refused.
    changed = V.copy()
    changed[0] *= -1
    write_parquet(clips_store, changed)
    assert load_features(clips_store, modality="combined+embeddings:team")[2].params_hash != schema.params_hash
    write_parquet(clips_store, V, source="other")
    with pytest.raises(EmbeddingsError, match=r"modality 'combined\+embeddings' names no source and .* holds 2 under embeddings/ \(other, team\); name one: 'combined\+embeddings:<source>'"):
        load_features(clips_store, modality="combined+embeddings")


def test_the_combined_modality_is_accepted_where_modalities_are_checked(settings, tmp_path):
    from mlci.models import MultiLabelModel
    from mlci.params import ParameterError, check_params

    assert split_embeddings_modality("video+embeddings:clip-vit") == ("video", "clip-vit")
    assert split_embeddings_modality("combined+embeddings") == ("combined", None)
    assert split_embeddings_modality("combined") is None
    for bad in ("combined+pictures", "loud+embeddings", "combined+embeddings:../x"):
        with pytest.raises(ValueError, match=r"modality must be one of \('audio', 'video', 'combined'\), or one of them followed by '\+embeddings'"):
            split_embeddings_modality(bad)
    MultiLabelModel(["a"], modality="combined+embeddings:team").check_params()
    with pytest.raises(ValueError, match="modality must be one of"):
        MultiLabelModel(["a"], modality="loud+embeddings").check_params()
    check_params(settings.with_overrides(modality="combined+embeddings:team"))
    with pytest.raises(ParameterError, match=r"got 'combined\+pictures'"):
        check_params(settings.with_overrides(modality="combined+pictures"))

    from typer.testing import CliRunner

    from cli import app

    nowhere = str(tmp_path / "nowhere")
    refused = CliRunner().invoke(app, ["train", "--modality", "combined+pictures", "--store", nowhere])
    assert refused.exit_code == 2 and "or one of them followed by '+embeddings'" in refused.output
    accepted = CliRunner().invoke(app, ["train", "--modality", "combined+embeddings:team", "--store", nowhere])
    assert accepted.exit_code == 1 and accepted.output.startswith("error: no store at")  # parsed, then no store


# -- what the extractor cannot do ----------------------------------------------------------------------------


def test_it_ships_by_parameters_and_cannot_describe_a_file(clips_store, clip_files):
    write_parquet(clips_store, vectors())
    bound = resolve_extractor("imported", PARAMS, store=clips_store)
    shipped = pickle.loads(pickle.dumps(bound))  # as Dask sends it: parameters only, bound again on the worker
    assert shipped.get_params() == bound.get_params() and shipped.get_params()["digest"] == bound.digest
    assert resolve_extractor(shipped, store=clips_store).schema == bound.schema
    with pytest.raises(RuntimeError, match="has not read its source"):
        _ = ImportedExtractor(source=TEAM).schema
    with pytest.raises(FeatureError, match=r"looks vectors up by clip key in embeddings/team/; it cannot compute them from a file"):
        bound.extract(clip_files[0])
    assert isinstance(bound.schema, FeatureSchema)


# -- the flows: nightly, train, analysis ----------------------------------------------------------------------


@pytest.mark.slow
def test_nightly_train_flow_and_analysis_on_imported_embeddings(prefect_harness, tmp_path, monkeypatch):
    """The nightly trains on ``combined+embeddings:team``; the train flow on the ``imported`` extractor alone."""
    from flows.nightly import nightly
    from flows.training import train_flow
    from mlci.analysis.data import load_analysis_data
    from mlci.demo import DemoCorpusSpec, generate_demo_corpus, load_truth
    from mlci.layout import batch_key
    from mlci.models import list_versions
    from mlci.storage import open_store

    home = tmp_path / "home"
    store = open_store(str(tmp_path / "store"))
    generate_demo_corpus(store, DemoCorpusSpec(n_clips=30, seed=4, duration=1.0, size=(64, 48)), n_jobs=1)
    truth = load_truth(store).sort_values("key").reset_index(drop=True)
    concepts = [c for c in truth.columns if c != "key"]
    rng = np.random.default_rng(0)
    semantic = 2.0 * truth[concepts].to_numpy(float) + rng.normal(scale=0.3, size=(len(truth), len(concepts)))
    V = np.hstack([semantic, rng.normal(size=(len(truth), 3))])
    keys = truth["key"].tolist()
    without = keys[-1]
    write_parquet(store, V[:-1], keys=keys[:-1])
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    for name, value in {"MLCI_STORE": store.uri, "MLCI_HOME": str(home), "MLCI_MLFLOW_TRACKING_URI": tracking_uri}.items():
        monkeypatch.setenv(name, value)

    summary = nightly(modality="combined+embeddings:team", batch_size=6, relabel_share=0.0)
    assert summary.status == "completed" and summary.model.version == "1" and summary.batch.published
    batch = pd.read_csv(io.BytesIO(store.read_bytes(batch_key(summary.batch.round_id, "batch.csv"))))
    assert len(batch) == 6 and without not in set(batch.iloc[:, 0])  # no vector, not in the pool
    (version,) = list_versions(tracking_uri, "mlci-concepts")
    assert version.tags["mlci.feature_extractor"] == "basic+imported" and version.tags["mlci.modality"] == "combined+embeddings:team"

    compute_features(store, extractor="imported", params=PARAMS)
    result = train_flow(extractor="imported", extractor_params=PARAMS, modality="video", trigger="manual")
    assert result.model_version == "2" and set(result.class_status.values()) <= {"trained", "too_few_positives"}
    versions = {v.version: v for v in list_versions(tracking_uri, "mlci-concepts")}
    assert versions["2"].tags["mlci.feature_extractor"] == "imported"

    data, description = load_analysis_data(store, source="truth", modality="combined+embeddings:team")
    assert without not in set(data.keys) and len(data.keys) == len(keys) - 1
    assert "combined+embeddings:team" in description

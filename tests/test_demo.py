"""The demo corpus: real clips that decode, label files that parse, determinism, truth that shows."""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from mlci.catalog import NONE_OF_THE_ABOVE, ClassCatalog
from mlci.config import DEFAULT_CLIP_BASE_URL, default_class_catalog
from mlci.demo import CONCEPTS, DemoCorpusSpec, generate_demo_corpus, load_truth
from mlci.storage import open_store

SPEC = DemoCorpusSpec(n_clips=40, seed=7, duration=2.0, size=(96, 64))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("demo") / "store"))
    summary = generate_demo_corpus(store, SPEC)
    return store, summary


def _decode(path):
    with av.open(str(path)) as container:
        streams = {s.type: s.codec_context.name for s in container.streams}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)])
        rate = container.streams.audio[0].rate
    return streams, frames, audio, rate


def test_every_clip_decodes_with_expected_streams(corpus):
    store, summary = corpus
    keys = store.list("clips/")
    assert len(keys) == SPEC.n_clips == summary.n_clips == summary.clips_written
    for key in keys:
        with store.local_copy(key) as path:
            streams, frames, audio, rate = _decode(path)
        assert streams == {"video": "h264", "audio": "aac"}
        assert frames[0].shape == (64, 96, 3)
        assert len(frames) / SPEC.fps == pytest.approx(SPEC.duration, abs=0.1)
        assert len(audio) / rate == pytest.approx(SPEC.duration, abs=0.1)


def test_label_files_parse_and_resolve(corpus):
    store, summary = corpus
    catalog = ClassCatalog.from_json(default_class_catalog())
    clips = set(store.list("clips/"))
    files = store.list("labels/")
    assert files == sorted(summary.label_files)
    annotators, labeled = set(), set()
    for key in files:
        records = json.loads(store.read_text(key))
        assert len(records) == summary.label_files[key]
        for rec in records:
            assert set(rec) == {"etag", "labels", "data", "annotator", "created_at"}
            assert rec["data"].startswith(DEFAULT_CLIP_BASE_URL)
            clip = store.resolve_clip_ref(rec["data"], base_url=DEFAULT_CLIP_BASE_URL)
            assert clip in clips
            assert all(catalog.match(name) for name in rec["labels"])
            annotators.add(rec["annotator"])
            labeled.add(clip)
    assert annotators == {"careful", "noisy", "careless"}
    assert len(labeled) == summary.n_labeled_clips == pytest.approx(0.6 * SPEC.n_clips, abs=1)


def test_annotator_quality_follows_the_profiles(tmp_path):
    """Answers differ from the truth at the rates of each annotator profile (labels only; fast)."""
    from mlci.demo import _annotate, _draw_truth

    spec = DemoCorpusSpec(n_clips=6000, seed=3)
    rng = np.random.default_rng(3)
    truth = _draw_truth(rng, spec.n_clips)
    answers = _annotate(rng, truth, spec)
    for ann in spec.annotators:
        hits = misses = fa = negs = 0
        for clip, names in answers[ann.name]:
            if not names:
                continue
            said = np.array([c in names for c in CONCEPTS])
            hits += (said & (truth[clip] == 1)).sum()
            misses += (~said & (truth[clip] == 1)).sum()
            fa += (said & (truth[clip] == 0)).sum()
            negs += (truth[clip] == 0).sum()
        assert hits / (hits + misses) == pytest.approx(ann.sensitivity, abs=0.03)
        assert 1 - fa / negs == pytest.approx(ann.specificity, abs=0.03)


def test_same_seed_same_labels_and_rerun_writes_nothing(corpus, tmp_path):
    store, _ = corpus
    other = open_store(str(tmp_path / "again"))
    generate_demo_corpus(other, SPEC, n_jobs=1)
    for key in store.list("labels/") + ["truth/labels.csv"]:
        assert other.read_bytes(key) == store.read_bytes(key)
    before = {k: store.stat(k).identity for k in store.list()}
    rerun = generate_demo_corpus(store, SPEC)
    assert rerun.clips_written == 0
    assert {k: store.stat(k).identity for k in store.list()} == before


def test_other_seed_differs_and_refuses_to_overwrite(corpus, tmp_path):
    store, _ = corpus
    spec = DemoCorpusSpec(n_clips=SPEC.n_clips, seed=8, duration=SPEC.duration, size=SPEC.size)
    labels_before = store.read_bytes("labels/demo/careful.json")
    with pytest.raises(FileExistsError, match="other content"):
        generate_demo_corpus(store, spec)
    assert store.read_bytes("labels/demo/careful.json") == labels_before


def test_truth_matches_what_the_clips_show(corpus):
    """Halloween clips are darker and hum at 110 Hz; holiday clips chime at 880 Hz."""
    store, _ = corpus
    truth = load_truth(store).set_index("key")
    brightness, hum, chime = {}, {}, {}
    for key in truth.index:
        with store.local_copy(key) as path:
            _, frames, audio, rate = _decode(path)
        brightness[key] = float(np.mean(frames))
        spectrum = np.abs(np.fft.rfft(audio))
        freqs = np.fft.rfftfreq(len(audio), 1 / rate)
        band = lambda f: spectrum[(freqs > f - 5) & (freqs < f + 5)].mean() / spectrum.mean()  # noqa: E731
        hum[key], chime[key] = band(110), band(880)
    hal = truth["halloween"] == 1
    hol = truth["holiday"] == 1
    mean = lambda d, mask: np.mean([d[k] for k in truth.index[mask]])  # noqa: E731
    assert mean(brightness, hal) < 0.8 * mean(brightness, ~hal)
    assert mean(hum, hal) > 3 * mean(hum, ~hal)
    assert mean(chime, hol) > 3 * mean(chime, ~hol)
    assert set(truth.columns) == set(CONCEPTS)


def test_demo_on_s3_is_the_same_corpus_as_on_a_folder(s3_store, local_store):
    spec = DemoCorpusSpec(n_clips=6, seed=1, duration=1.0, size=(64, 48))
    summary = generate_demo_corpus(s3_store, spec, n_jobs=1)
    generate_demo_corpus(local_store, spec, n_jobs=1)
    assert summary.clips_written == 6
    keys = s3_store.list("")
    assert keys == local_store.list("") and len(s3_store.list("clips/")) == 6
    for key in keys:  # byte for byte: clips, label files and truth
        assert s3_store.read_bytes(key) == local_store.read_bytes(key), key
    truth = load_truth(s3_store)
    assert truth["key"].tolist() == s3_store.list("clips/") and set(truth.columns) == {"key", *CONCEPTS}
    records = [r for k in s3_store.list("labels/") for r in json.loads(s3_store.read_text(k))]
    assert records and all(r["data"].startswith(spec.base_url) for r in records)


def test_answers_are_encoded_as_documented(corpus):
    # docs/demo-corpus.md: an answer is a list of concepts in catalog order; "no concept" is
    # ["none of the above"]; a skipped question is []; a careless "conflict" appends
    # "none of the above" to real concepts.
    store, _ = corpus
    for key in store.list("labels/"):
        for rec in json.loads(store.read_text(key)):
            names = rec["labels"]
            concepts = [n for n in names if n != NONE_OF_THE_ABOVE]
            assert concepts == [c for c in CONCEPTS if c in concepts], names  # catalog order, no repeats
            assert names in ([], [NONE_OF_THE_ABOVE], concepts, concepts + [NONE_OF_THE_ABOVE]), names


def test_empty_and_conflicting_answers_come_at_each_annotators_rate():
    from mlci.demo import DEFAULT_ANNOTATORS, _annotate

    rng = np.random.default_rng(0)
    truth = (rng.random((6000, len(CONCEPTS))) < 0.2).astype(int)
    answers = _annotate(np.random.default_rng(1), truth, DemoCorpusSpec(n_clips=6000, seed=1))
    for profile in DEFAULT_ANNOTATORS:
        rows = [names for _, names in answers[profile.name]]
        empty = np.mean([names == [] for names in rows])
        given = [names for names in rows if names and names != [NONE_OF_THE_ABOVE]]
        conflict = np.mean([names[-1] == NONE_OF_THE_ABOVE for names in given])
        assert len(rows) > 500, profile.name
        assert empty == pytest.approx(profile.empty_rate, abs=0.02), profile.name
        assert conflict == pytest.approx(profile.conflict_rate, abs=0.03), profile.name


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "161x120"], "even"),
        (["--size", "big"], "--size"),
        (["--clips", "0"], "clips"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    result = CliRunner().invoke(app, ["demo-data", "--store", str(tmp_path / "s"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "s" / "clips").exists()


def test_cli_writes_corpus(tmp_path):
    result = CliRunner().invoke(
        app, ["demo-data", "--store", str(tmp_path / "s"), "--clips", "3", "--duration", "1", "--size", "64x48",
              "--video-minutes", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "clips: 3 (3 written" in result.output
    store = open_store(str(tmp_path / "s"))
    assert len(store.list("clips/")) == 3 and store.list("videos/") == []


def test_demo_video_shows_each_concept_where_its_truth_says(tmp_path):
    store = open_store(str(tmp_path / "s"))
    spec = DemoCorpusSpec(n_clips=2, seed=4, duration=1.0, size=(64, 48), video_minutes=1.0)
    summary = generate_demo_corpus(store, spec, n_jobs=1)
    assert summary.video == "videos/demo/scenes.mp4" and "long video for detection" in summary.format()
    truth = pd.read_csv(io.BytesIO(store.read_bytes("truth/videos/scenes.csv")))
    assert truth["concept"].tolist() == list(CONCEPTS)[: len(truth)] and len(truth) >= 2
    assert (truth["time_end"] - truth["time_begin"]).between(10, 20).all()
    with store.local_copy("videos/demo/scenes.mp4") as path, av.open(str(path)) as container:
        duration = container.duration / av.time_base
        assert {s.type for s in container.streams} == {"video", "audio"}
        # Sampled at the middle of each scene: halloween's scene is the darkest, as in the clips.
        frames = {round(f.time): f.to_ndarray(format="rgb24").mean() for f in container.decode(video=0)}
    assert duration >= 60 and truth["time_end"].max() <= duration + 0.1
    middle = lambda r: frames[round((r.time_begin + r.time_end) / 2)]  # noqa: E731
    rows = {r.concept: r for r in truth.itertuples()}
    assert middle(rows["halloween"]) < 0.7 * middle(rows["holiday"])
    before = {k: store.read_bytes(k) for k in store.list("")}
    generate_demo_corpus(store, spec, n_jobs=1)  # again: nothing rewritten
    assert {k: store.read_bytes(k) for k in store.list("")} == before

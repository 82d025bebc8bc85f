"""The detection flow (flows/detect.py, mlci/detect/) on real mp4 files it encodes itself, a real S3
endpoint (moto's server), a real SQLite MLflow store and real Prefect flow runs.

The model is trained on short clips in the demo look (some with a scene change inside, labelled by
the majority) and registered as the champion; the long videos are demo scenes strung together, so
where each concept is shown and heard is known to the second.
"""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlci.demo import DemoScene, generate_scene_clips, write_demo_video
from mlci.detect import (
    DetectionConfig,
    DetectionSchemaError,
    NoVideosError,
    SegmentRule,
    WindowAssembler,
    Windowing,
    detect_video,
    load_detector,
    merge_segments,
    plan_detection,
)
from mlci.features import compute_features, load_features
from mlci.features.basic import BasicExtractor
from mlci.features.decode import DecodeOptions, decode_file
from mlci.features.video import video_frame_descriptors
from mlci.models import build_training_set, compare_with_champion, decide_promotion, log_and_register, train
from mlci.models.training import TrainingConfig
from mlci.storage import open_store
from mlci.tables import DETECTION_WINDOWS, SEGMENTS

CONCEPTS = ("holiday", "halloween")
MODEL = "concepts"
#: Where the long video shows halloween.
BEGIN, END = 25.0, 40.0


def long_scenes() -> list[DemoScene]:
    return [DemoScene(12), DemoScene(13), DemoScene(END - BEGIN, ("halloween",)), DemoScene(8), DemoScene(12)]


@pytest.fixture(scope="module")
def env(prefect_harness, s3_endpoint, tmp_path_factory):
    """An S3 store with training clips, a champion trained on them, and MLCI_* pointing at both."""
    bucket = "mlci-detect"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    home = tmp_path_factory.mktemp("detect-home")
    values = {
        "MLCI_STORE": f"s3://{bucket}/store",
        "MLCI_S3_ENDPOINT_URL": s3_endpoint,
        "MLCI_HOME": str(home),
        "MLCI_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLCI_REGISTERED_MODEL_NAME": MODEL,
    }
    store = open_store(values["MLCI_STORE"], endpoint_url=s3_endpoint)
    labels = generate_scene_clips(store, concepts=CONCEPTS, n_clips=48, seed=0)
    compute_features(store)
    keys, X, schema = load_features(store, modality="combined")
    ts = build_training_set(keys, X, labels, CONCEPTS)
    trained = train(ts, TrainingConfig(), feature_schema=schema)
    log_and_register(ts, trained, compare_with_champion(ts, trained, None), decide_promotion(trained.evaluation.macro, None),
                     tracking_uri=values["MLCI_MLFLOW_TRACKING_URI"], experiment_name="mlci", model_name=MODEL,
                     feature_schema=schema, fingerprint="detect-test")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in values.items():
            mp.setenv(name, value)
        yield values, store


def put_video(store, key: str, tmp_path, scenes, **kwargs) -> bytes:
    path = tmp_path / "video.mp4"
    write_demo_video(path, scenes, seed=3, **kwargs)
    data = path.read_bytes()
    store.write_bytes(key, data)
    return data


def snapshot(store, prefix: str) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list(prefix)}


def test_long_video_gives_one_segment_where_the_concept_is(env, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.detect import detect

    values, store = env
    put_video(store, "videos/a/trailer.mp4", tmp_path, long_scenes())
    store.write_bytes("videos/a/notes.txt", b"not a video")
    state = detect(source="videos/a/", return_state=True)
    report = state.result()
    assert report.counts() == {"detected": 1, "partial": 0, "quarantined": 0, "already_done": 0, "skipped": 0,
                               "failed": 0}
    (result,) = report.results
    assert result.status == "detected" and result.error is None and abs(result.duration - 60.0) < 0.1
    seg = result.segments
    assert seg["tag"].tolist() == ["halloween"], seg  # one segment, none for the other concept or elsewhere
    assert abs(seg["time_begin"].iloc[0] - BEGIN) <= 1.5 and abs(seg["time_end"].iloc[0] - END) <= 1.5, seg
    assert seg["score_peak"].iloc[0] >= seg["score_mean"].iloc[0] >= seg["threshold_enter"].iloc[0]

    folder = result.folder
    assert folder.startswith(f"detections/{MODEL}/1/videos/a/trailer.mp4/")
    assert sorted(store.list(folder)) == sorted(folder + n for n in ("windows.csv", "segments.csv", "detections.json", "manifest.json"))
    windows = pd.read_csv(io.BytesIO(store.read_bytes(folder + "windows.csv")))
    assert list(windows.columns) == list(DETECTION_WINDOWS.columns)
    assert set(windows["tag"]) <= set(CONCEPTS) and (windows["score"] >= 0.1).all()
    assert set(windows["source_event"]) == {"audiovisual"} and set(windows["tag_type"]) == {"tag"}
    assert set(windows["extractor"]) == {"mlci_detect"}
    assert (windows["time_begin"] < windows["time_end"]).all()
    assert np.allclose(windows["time_event"], (windows["time_begin"] + windows["time_end"]) / 2, atol=1e-3)
    details = [json.loads(d) for d in windows["details"]]
    assert {d["model"] for d in details} == {MODEL} and all(d["above"] == (s >= d["threshold"]) for d, s in zip(details, windows["score"]))
    halloween = windows[windows["tag"] == "halloween"]
    strong = halloween[halloween["score"] >= seg["threshold_enter"].iloc[0]]
    assert strong["time_event"].between(BEGIN - 1.5, END + 1.5).all()
    assert np.allclose(windows["time_begin"] % 1.5, 0) and result.n_windows == 39  # 3 s windows every 1.5 s
    assert list(pd.read_csv(io.BytesIO(store.read_bytes(folder + "segments.csv"))).columns) == list(SEGMENTS.columns)

    doc = json.loads(store.read_bytes(folder + "detections.json"))
    assert {"version", "extractor", "input", "timestamp"} <= set(doc["config"])
    assert doc["config"]["input"] == "videos/a/trailer.mp4" and doc["config"]["extractor"] == "mlci_detect"
    assert len(doc["results"]) == len(windows) and set(doc["results"][0]) == {"time_begin", "time_end", "score", "class"}
    manifest = json.loads(store.read_bytes(folder + "manifest.json"))
    assert manifest["thresholds"]["halloween"]["source"] == "training run"
    assert manifest["model"]["run_id"] and manifest["video"]["identity"] == store.stat("videos/a/trailer.mp4").identity

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["detections"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert "videos/a/trailer.mp4" in artifact.data and "| halloween |" in artifact.data

    # The same model version on the same video again: nothing computed, nothing written.
    before = snapshot(store, "")
    again = detect(source="videos/a/")
    assert again.results == [] and list(again.done) == ["videos/a/trailer.mp4"]
    assert snapshot(store, "") == before


def test_damaged_silent_short_and_unreadable_videos(env, tmp_path):
    from flows.detect import detect

    _, store = env
    data = put_video(store, "videos/b/cut.mp4", tmp_path, long_scenes(), faststart=True)
    store.write_bytes("videos/b/cut.mp4", data[: int(len(data) * 0.6)])  # the tail is lost
    put_video(store, "videos/b/silent.mp4", tmp_path, [DemoScene(6), DemoScene(6, ("halloween",))], audio=False)
    put_video(store, "videos/b/short.mp4", tmp_path, [DemoScene(2.0)])
    store.write_bytes("videos/b/broken.mp4", b"\x00\x00\x00\x18ftypmp42 not really a video")

    report = detect(source="videos/b/")
    by_key = {r.key: r for r in report.results}
    assert not report.complete

    cut = by_key["videos/b/cut.mp4"]
    assert cut.status == "partial" and "truncated" in cut.error
    manifest = json.loads(store.read_bytes(cut.folder + "manifest.json"))
    reached = manifest["error"]["decoded_seconds"]
    assert 20 < reached < 50 and manifest["error"]["kind"] == "truncated"
    windows = pd.read_csv(io.BytesIO(store.read_bytes(cut.folder + "windows.csv")))
    assert windows["time_end"].max() <= reached + 1e-6
    assert cut.n_windows >= int((reached - 3) / 1.5)  # every window before the damage

    silent = by_key["videos/b/silent.mp4"]
    assert silent.status == "detected" and silent.n_windows == 7
    assert json.loads(store.read_bytes(silent.folder + "manifest.json"))["video"]["has_audio"] is False

    short = by_key["videos/b/short.mp4"]
    assert short.status == "detected" and short.n_windows == 1
    doc = json.loads(store.read_bytes(short.folder + "detections.json"))
    assert {(r["time_begin"], r["time_end"]) for r in doc["results"]} <= {(0.0, 2.0)}

    broken = by_key["videos/b/broken.mp4"]
    assert broken.status == "quarantined" and broken.folder is None and "[truncated]" in broken.error and "cannot be opened" in broken.error
    assert store.list("detections/concepts/1/videos/b/broken.mp4/") == []
    quarantine = [k for k in store.list("quarantine/") if "/part-detect-" in k]
    assert len(quarantine) == 1

    # Next run: the quarantined video is not tried again, the others are done; nothing changes.
    before = snapshot(store, "")
    again = detect(source="videos/b/")
    assert again.results == [] and list(again.quarantined) == ["videos/b/broken.mp4"]
    assert set(again.done) == {"videos/b/cut.mp4", "videos/b/silent.mp4", "videos/b/short.mp4"}
    assert snapshot(store, "") == before


def test_a_model_trained_on_other_features_is_refused_naming_both(env):
    values, store = env
    with pytest.raises(DetectionSchemaError) as err:
        load_detector(values["MLCI_MLFLOW_TRACKING_URI"], MODEL, extractor="basic", params={"sample_fps": 4.0}, store=store)
    message = str(err.value)
    trained = BasicExtractor().schema.cache_id
    configured = BasicExtractor(sample_fps=4.0).schema.cache_id
    assert trained in message and configured in message and "--param sample_fps=2.0" in message


def test_cli_detects_and_explains_bad_input(env, tmp_path):
    from cli import app

    values, store = env
    put_video(store, "videos/c/one.mp4", tmp_path, [DemoScene(8), DemoScene(7, ("halloween",))])
    runner = CliRunner()
    ok = runner.invoke(app, ["detect", "videos/c/one.mp4"])
    assert ok.exit_code == 0, ok.output
    assert "detect videos/c/one.mp4 with concepts v1: 1 detected" in ok.output and "halloween" in ok.output

    cases = {
        ("detect", "videos/c/", "--window", "2.5"): "window length 2.5 s is not a multiple of the model's feature window (1 s)",
        ("detect", "videos/c/", "--hop", "0.3"): "use a multiple of 0.125 s",
        ("detect", "videos/nothing/"): "no video under 'videos/nothing/'",
        ("detect", "videos/c/", "--version", "7"): "has no version 7",
        ("detect", "videos/c/", "--param", "sample_fps=4"): "was trained on features basic-v1-",
        ("detect", "videos/c/", "--threshold", "halloween=2"): "threshold for 'halloween' must be in (0, 1)",
        ("detect", "videos/c/", "--threshold", "gifts=0.5"): "the model has no such concept",
    }
    # In process, for speed: each case's one error line (that nothing else reaches a real terminal
    # is checked in a child process by tests/test_cli_errors.py).
    for args, expected in cases.items():
        out = runner.invoke(app, list(args))
        assert out.exit_code == 1, (args, out.output)
        errors = [line for line in out.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0], (args, out.output)


def test_shifted_grids_pool_exactly_the_frames_in_their_windows(tmp_path):
    """A 3 s window every 1.5 s pools extractor windows that start at .5 s: check them against the frames."""
    path = tmp_path / "v.mp4"
    write_demo_video(path, [DemoScene(5), DemoScene(5, ("halloween",))], audio=False, seed=1)
    ex = BasicExtractor()
    blocks = []
    end = ex.stream(path, blocks.append, offsets=(0.0, 0.5))
    assert end.error is None and abs(end.duration - 10.0) < 0.1
    grid1 = [b for b in blocks if b.grid == 1]
    assert [b.first for b in grid1] == sorted(b.first for b in grid1) and grid1[0].start[0] == 0.5
    video = np.vstack([b.video for b in grid1])

    times, rows, prev = [], [], None

    def on_frames(t, rgb):
        nonlocal prev
        desc, prev = video_frame_descriptors(rgb, prev)
        times.extend(t)
        rows.append(desc)

    decode_file(path, DecodeOptions(sample_fps=2.0, frame_height=90, audio_rate=16000), on_frames=on_frames, on_audio=lambda *a: None)
    times, rows = np.asarray(times), np.vstack(rows)
    for k in range(len(video) - 1):  # the last window also holds the remainder
        inside = (times >= 0.5 + k) & (times < 1.5 + k)
        assert np.allclose(video[k], rows[inside].mean(axis=0), atol=1e-5)


def test_windows_stream_out_while_the_video_decodes(tmp_path):
    """Memory is bounded: windows leave the extractor in small blocks as the decode goes (audio is
    analysed four seconds at a time), not once at the end; the assembler holds only a few."""
    path = tmp_path / "long.mp4"
    write_demo_video(path, [DemoScene(20), DemoScene(20, ("holiday",)), DemoScene(20)], seed=2)
    blocks = []
    BasicExtractor().stream(path, blocks.append, offsets=(0.0, 0.5))
    sizes = [b.n_windows for b in blocks if b.grid == 0]
    assert sum(sizes) == 60 and len(sizes) >= 5 and max(sizes) <= 16
    assembler = WindowAssembler(Windowing(3.0, 1.5), 1.0, "combined")
    held = []
    for b in blocks:
        assembler.add(b)
        held.append(sum(len(h["start"]) for h in assembler._held if h is not None))
    assembler.finish()
    assert assembler.next_window == 39 and max(held) <= 24


def test_windowing_rules():
    assert Windowing(3.0, 1.5).offsets(1.0) == (0.0, 0.5)
    assert Windowing(4.0, 2.0).offsets(1.0) == (0.0,)
    assert Windowing(2.0, 0.25).offsets(1.0) == (0.0, 0.25, 0.5, 0.75)
    for windowing, message in [
        (Windowing(2.5, 1.0), "not a multiple of the model's feature window (1 s): use 2 s"),
        (Windowing(3.0, 4.0), "must not exceed the window length"),
        (Windowing(3.0, 0.3), "use a multiple of 0.125 s"),
        (Windowing(0, 1.0), "window length must be a number of seconds > 0"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            windowing.check(1.0)


def test_segments_hysteresis_gaps_and_minimum_duration():
    starts = np.arange(0, 30, 1.5)
    ends = starts + 3.0
    scores = np.full(starts.size, 0.1)
    scores[4:9] = 0.9  # one run
    scores[6] = 0.45  # a dip between exit (0.4) and enter (0.5): stays open
    scores[11:13] = [0.7, 0.35]  # opens, closes at once: 1.5 s long, dropped
    rule = SegmentRule(hysteresis=0.1, min_duration=2.0, max_gap=0.0)
    seg = merge_segments(starts, ends, scores, threshold=0.5, rule=rule, tag="x")
    assert seg[["time_begin", "time_end", "n_windows"]].values.tolist() == [[6.75, 14.25, 5]]
    assert seg["score_peak"].iloc[0] == 0.9 and seg["threshold_exit"].iloc[0] == 0.4
    scores[8:10] = [0.2, 0.9]  # a one-window gap: bridged when max_gap allows it
    bridged = merge_segments(starts, ends, scores, threshold=0.5, rule=SegmentRule(max_gap=1.5), tag="x")
    split = merge_segments(starts, ends, scores, threshold=0.5, rule=SegmentRule(max_gap=0.0, min_duration=0.0), tag="x")
    assert len(bridged) == 1 and len(split) == 3
    assert merge_segments(starts, ends, np.zeros(starts.size), threshold=0.5, rule=rule, tag="x").empty


def test_plan_refuses_a_source_without_videos(env):
    values, store = env
    detector = load_detector(values["MLCI_MLFLOW_TRACKING_URI"], MODEL, store=store)
    with pytest.raises(NoVideosError, match="no video under 'labels/'"):
        plan_detection(store, detector, "labels/", DetectionConfig())
    with pytest.raises(ValueError, match="floor must be in"):
        plan_detection(store, detector, "videos/", DetectionConfig(floor=1.5))


def test_a_video_replaced_while_it_is_detected_is_left_for_the_next_run(env, tmp_path):
    values, store = env
    put_video(store, "videos/d/moving.mp4", tmp_path, [DemoScene(8)])
    detector = load_detector(values["MLCI_MLFLOW_TRACKING_URI"], MODEL, store=store)
    (item,) = plan_detection(store, detector, "videos/d/", DetectionConfig()).todo

    replaced: list[str] = []

    def replace_once(key, done, total):  # called as the decode advances
        if not replaced:
            store.write_bytes(key, b"other content under the same key")
            replaced.append(key)

    result = detect_video(store, item, detector, DetectionConfig(), progress=replace_once)
    assert result.status == "skipped" and "changed" in result.error and result.folder is None
    assert store.list("detections/concepts/1/videos/d/") == []
    assert plan_detection(store, detector, "videos/d/", DetectionConfig()).todo[0].identity != item.identity


def test_an_extractor_that_cannot_shift_its_windows_needs_a_whole_hop(env):
    """Extractors that only implement ``extract`` stream on the grid at 0: a half-window hop is refused
    when the run is planned, before any video is decoded (nothing is extracted here)."""
    from mlci.features import FeatureExtractor

    class NoShiftedGrids(BasicExtractor):
        stream = FeatureExtractor.stream

    values, store = env
    detector = load_detector(values["MLCI_MLFLOW_TRACKING_URI"], MODEL, store=store)
    detector.extractor = NoShiftedGrids()
    with pytest.raises(ValueError, match=r"cannot shift its windows: use a hop that is a multiple of its window \(1 s\)"):
        plan_detection(store, detector, "videos/", DetectionConfig())
    assert plan_detection(store, detector, "videos/", DetectionConfig(windowing=Windowing(3.0, 1.0))).todo


def test_a_window_over_a_whole_training_clip_is_that_clip_exactly(env):
    """Windows are pooled as training clips are: a 3 s window over a 3 s clip is its stored clip vector."""
    values, store = env
    detector = load_detector(values["MLCI_MLFLOW_TRACKING_URI"], MODEL, store=store)
    keys, X, _ = load_features(store, modality="combined", keys=["clips/scenes/clip-0000.mp4", "clips/scenes/clip-0003.mp4"])
    for key, clip_vector in zip(keys, X):
        assembler = WindowAssembler(Windowing(3.0, 3.0), detector.window, detector.modality)
        with store.local_copy(key) as path:
            detector.extractor.stream(path, assembler.add)
        assembler.finish()
        _, _, windows = assembler.take()
        assert len(windows) == 1 and np.array_equal(windows[0], clip_vector)
        assert np.array_equal(detector.score(windows), detector.score(clip_vector[None]))


def test_a_video_whose_task_fails_is_reported_and_the_others_go_on(env, tmp_path, monkeypatch):
    import tasks.detect
    from flows.detect import detect
    from mlci.detect import DetectError

    _, store = env
    put_video(store, "videos/e/good.mp4", tmp_path, [DemoScene(4)])
    put_video(store, "videos/e/bad.mp4", tmp_path, [DemoScene(5)])
    real = tasks.detect.detect_video

    def failing(store_, item, *args, **kwargs):
        if item.key.endswith("bad.mp4"):
            raise DetectError("the task broke")  # an input error: not retried, so the test stays fast
        return real(store_, item, *args, **kwargs)

    monkeypatch.setattr(tasks.detect, "detect_video", failing)
    report = detect(source="videos/e/")
    assert {r.key: r.status for r in report.results} == {"videos/e/bad.mp4": "failed", "videos/e/good.mp4": "detected"}
    assert not report.complete and "1 failed" in report.format() and "the task broke" in report.format()
    assert store.list("detections/concepts/1/videos/e/bad.mp4/") == []

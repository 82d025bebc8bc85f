"""Detection over a long video against the cost of simply decoding it.

Generates a 10-minute 640x360 25 fps video (H.264 + AAC 44.1 kHz; demo scenes of 20 s, half of
them showing a concept, with sensor noise on every frame) and a small detector trained on demo
scene clips, then measures in this one run:

(a) baseline: PyAV decoding every video frame and all audio of the file, one thread, nothing else;
(b) ``mlci.detect.detect_video`` on the file as the detect flow runs one video (one decoder thread,
    its default), in a fresh process: decode once, 3 s windows every 1.5 s on two feature grids,
    scoring, segments, the four output files;
(c) two such detections at once in two processes, as the flow runs videos with ``--local-cluster``
    on a 2-core machine: seconds of video per wall second over both;

and prints the real-time factors (seconds of video per wall second), the ratio b/a of wall times,
and the peak RSS of the process running (b). Targets: >= 100x real time on 2 cores, b/a <= 1.5,
peak RSS < 1 GB.

Run: ``.venv/bin/python benchmarks/detect.py [--minutes 10] [--workdir DIR]`` (the video is cached
in ``--workdir`` when given, so repeated runs skip the encoding).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import resource
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT, FPS, AUDIO_RATE, SCENE = 640, 360, 25, 44100, 20.0


def make_video(path: Path, minutes: float) -> None:
    from mlci.demo import CONCEPTS, DemoScene, write_demo_video

    n = max(1, round(minutes * 60 / SCENE))
    scenes = [DemoScene(SCENE, (CONCEPTS[(i // 2) % len(CONCEPTS)],) if i % 2 else ()) for i in range(n)]
    # Two seconds of each scene rendered and looped: the content a decoder sees stays realistic
    # (noise on every frame), rendering 15 000 large frames in numpy would take minutes.
    write_demo_video(path, scenes, size=(WIDTH, HEIGHT), fps=FPS, sample_rate=AUDIO_RATE, loop_seconds=2.0, seed=7)


def make_detector(workdir: Path):
    """A detector trained on demo scene clips (the feature schema does not depend on frame size)."""
    from mlci.demo import CONCEPTS, generate_scene_clips
    from mlci.detect import Detector
    from mlci.features import compute_features, load_features
    from mlci.features.basic import BasicExtractor
    from mlci.models import build_training_set, train
    from mlci.models.training import TrainingConfig
    from mlci.storage import open_store

    store = open_store(str(workdir / "train-store"))
    labels = generate_scene_clips(store, concepts=CONCEPTS, n_clips=60, seed=1)
    compute_features(store)
    keys, X, schema = load_features(store, modality="combined")
    trained = train(build_training_set(keys, X, labels, CONCEPTS), TrainingConfig(), feature_schema=schema)
    per_class = trained.evaluation.per_class.set_index("class")["threshold"].fillna(0.5)
    thresholds = {c: float(per_class[c]) for c, ok in zip(trained.model.classes_, trained.model.trained_mask_) if ok}
    return Detector("bench", "1", "", trained.model, BasicExtractor(), thresholds,
                    {c: "training run" for c in thresholds})


def full_decode(path: Path) -> tuple[float, float, int]:
    """(wall, CPU, frames) of decoding every video frame and audio frame, one thread."""
    import av

    t0, c0 = time.perf_counter(), time.process_time()
    frames = 0
    with av.open(str(path)) as container:
        for stream in container.streams:
            stream.codec_context.thread_count = 1
            stream.codec_context.thread_type = "SLICE"
        for packet in container.demux():
            for _ in packet.decode():
                frames += 1
    return time.perf_counter() - t0, time.process_time() - c0, frames


def _detect_child(detector_file: str, video: str, barrier, queue) -> None:
    from mlci.detect import DetectionConfig, detect_video
    from mlci.detect.run import VideoItem
    from mlci.storage import open_store

    with open(detector_file, "rb") as fh:
        detector = pickle.load(fh)  # our own file, written by the parent a moment ago
    video = Path(video)
    store = open_store(str(video.parent))  # a folder store: the video is read in place
    item = VideoItem(video.name, store.stat(video.name).identity, f"bench-{os.getpid()}-{time.time_ns()}")
    barrier.wait()  # imports and loading done: time the detection alone
    t0, c0 = time.perf_counter(), time.process_time()
    result = detect_video(store, item, detector, DetectionConfig(), threads=1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((wall, cpu, peak, result.status, result.duration, result.n_windows, len(result.segments)))


def detect_in_processes(detector_file: Path, video: Path, n: int) -> list[tuple]:
    """Run ``n`` detections of ``video`` at once, each in a fresh process; their measurements."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    children = [ctx.Process(target=_detect_child, args=(str(detector_file), str(video), barrier, queue)) for _ in range(n)]
    for child in children:
        child.start()
    results = [queue.get() for _ in children]
    for child in children:
        child.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    from mlci.config import Settings

    cores = Settings().n_workers
    with tempfile.TemporaryDirectory(prefix="mlci-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        video = workdir / f"long-{args.minutes:g}min-{WIDTH}x{HEIGHT}.mp4"
        if not video.exists():
            t0 = time.perf_counter()
            make_video(video.with_suffix(".part"), args.minutes)
            video.with_suffix(".part").rename(video)
            print(f"generated the video in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        detector = make_detector(workdir)
        print(f"trained a detector on 60 demo scene clips in {time.perf_counter() - t0:.0f} s")
        detector_file = workdir / "detector.pkl"
        detector_file.write_bytes(pickle.dumps(detector))

        seconds = args.minutes * 60
        print(f"video: {seconds:.0f} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264 + AAC {AUDIO_RATE} Hz, "
              f"{video.stat().st_size / 1e6:.0f} MB; {cores} usable core(s)")
        a_wall, a_cpu, frames = full_decode(video)
        ((b_wall, b_cpu, peak, status, duration, n_windows, n_segments),) = detect_in_processes(detector_file, video, 1)
        both = detect_in_processes(detector_file, video, 2)
        c_wall = max(r[0] for r in both)

    print(f"(a) full decode, 1 thread:          {a_wall:6.2f} s wall, {a_cpu:6.2f} s CPU ({frames} frames)")
    print(f"(b) detect_video, 1 process:        {b_wall:6.2f} s wall, {b_cpu:6.2f} s CPU "
          f"({status}, {duration:.0f} s, {n_windows} windows, {n_segments} segments)")
    print(f"(c) two detect_video at once:       {c_wall:6.2f} s wall for both")
    print(f"real-time factor on {cores} core(s): {2 * seconds / c_wall:.0f}x (c)   target >= 100x on 2 cores; "
          f"one video alone {seconds / b_wall:.0f}x (b), the full decode alone {seconds / a_wall:.0f}x (a)")
    print(f"ratio b/a: {b_wall / a_wall:.2f} (wall)   target <= 1.5")
    print(f"peak RSS of the process running (b): {peak:.0f} MB   target < 1024 MB")


if __name__ == "__main__":
    main()

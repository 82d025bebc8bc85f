"""Feature extraction against the cost of simply decoding the clips.

Generates K clips like real ones (15 s, 640x360, 25 fps, H.264 + AAC 44.1 kHz stereo: a textured
scene under a moving camera, a moving object, sensor noise; tone and noise on the sound track),
then measures in this one run:

(a) baseline: PyAV decoding every video frame and all audio of the K clips, one thread, nothing else;
(b) our extraction (``featurize`` with the default ``basic`` extractor) as the features flow runs it
    on this machine: the default local runner's ``--workers`` threads (``MLCI_WORKERS``, else one
    per usable core), one clip per thread;

and prints the ratio b/a of wall times (the target), the CPU-time ratio (the work our decoding
saves, with the features on top), the same extraction one clip at a time in one thread, clips per
second per core, the throughput with processes instead of threads (how much the GIL costs), and
the peak RSS of a fresh process running (b). Targets: ratio <= 0.6, peak RSS < 1 GB whatever K.

Last, (c) the ``onnx`` extractor with an image embedder of realistic cost (two strided 3x3
convolutions, pooling and a projection to 128 values: about 6 million multiply-adds per frame at
224x224, built here with the onnx helper API, random fixed weights): clips per second per core,
one clip at a time on one thread, and how its time splits between decoding, preprocessing and the
model (``--onnx-only`` measures (a) and (c) alone).

Run: ``.venv/bin/python benchmarks/features.py [--clips 8] [--workers N] [--workdir DIR] [--onnx-only]``
(clips are cached in ``--workdir`` when given, so repeated runs skip the encoding).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mlci.config import Settings

WIDTH, HEIGHT, FPS, SECONDS, AUDIO_RATE = 640, 360, 25, 15.0, 44100


def make_clip(path: str, seed: int) -> str:
    """One realistic-looking clip (runs in a worker process)."""
    from mlci.media import encode_clip

    rng = np.random.default_rng(seed)
    W, H = WIDTH * 2, HEIGHT * 2
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    scene = np.empty((H, W, 3), np.float32)
    for c in range(3):
        f, ph = rng.uniform(0.002, 0.01, 2), rng.uniform(0, 6, 2)
        scene[..., c] = 120 + 60 * np.sin(xx * f[0] + ph[0]) * np.cos(yy * f[1] + ph[1])
    for _ in range(40):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(10, 80)
        scene[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    scene = np.clip(scene + rng.normal(0, 10, scene.shape), 0, 255).astype(np.float32)
    n = int(SECONDS * FPS)

    def frames():
        for i in range(n):
            t = i / FPS
            x0 = int((W - WIDTH) / 2 * (1 + 0.9 * np.sin(t * 0.4)))
            y0 = int((H - HEIGHT) / 2 * (1 + 0.9 * np.sin(t * 0.3)))
            img = scene[y0 : y0 + HEIGHT, x0 : x0 + WIDTH].copy()
            bx = int((t * 80) % WIDTH)
            img[HEIGHT // 3 : HEIGHT // 3 + 60, bx : bx + 60] = (250, 40, 40)
            img += rng.normal(0, 4, img.shape).astype(np.float32)
            yield np.clip(img, 0, 255).astype(np.uint8)

    t = np.arange(int(SECONDS * AUDIO_RATE)) / AUDIO_RATE
    tone = 0.2 * np.sin(2 * np.pi * (220 + 40 * seed) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    left = tone + 0.05 * rng.normal(0, 1, t.size)
    audio = np.stack([left, np.roll(left, 100)]).astype(np.float32)
    encode_clip(path, frames=frames(), fps=FPS, audio=audio, sample_rate=AUDIO_RATE, crf=23, preset="veryfast")
    return path


def full_decode(path: str) -> int:
    """The baseline: every video frame and all audio, one decoder thread, nothing computed."""
    import av

    n = 0
    with av.open(path) as container:
        streams = list(container.streams.video[:1]) + list(container.streams.audio[:1])
        for s in streams:
            s.codec_context.thread_count = 1
        for packet in container.demux(*streams):
            for _ in packet.decode():
                n += 1
    return n


def extract(path: str) -> int:
    """Our extraction of one clip: the default extractor, as the features flow calls it."""
    from mlci.features import featurize, get_extractor

    return featurize(get_extractor("basic"), path).windows.n_windows


def embedder_model() -> tuple[bytes, dict, int]:
    """An ONNX image embedder of realistic cost, its sidecar, and its multiply-adds per frame.

    [N, 3, 224, 224] -> conv 3x3/2 (8) -> ReLU -> conv 3x3/2 (16) -> ReLU -> global average pool ->
    fully connected (128): 2.7 M + 3.6 M multiply-adds in the convolutions.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(0, 0.2, (8, 3, 3, 3)), "b1": np.zeros(8),
        "w2": rng.normal(0, 0.1, (16, 8, 3, 3)), "b2": np.zeros(16),
        "fc": rng.normal(0, 0.1, (16, 128)), "fcb": np.zeros(128),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "embedder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 128])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    macs = 112 * 112 * 8 * 27 + 56 * 56 * 16 * 72 + 16 * 128
    sidecar = {"kind": "image", "size": [224, 224], "layout": "NCHW", "mean": [0.485, 0.456, 0.406],
               "std": [0.229, 0.224, 0.225], "output": "embedding", "dim": 128}
    return model.SerializeToString(), sidecar, macs


def onnx_line(paths: list[str], workdir: Path, repeat: int, baseline_wall: float) -> None:
    """(c): the onnx extractor with :func:`embedder_model`, one clip at a time on one thread."""
    import json

    from mlci.features import featurize, resolve_extractor
    from mlci.storage import open_store

    model, sidecar, macs = embedder_model()
    store = open_store(str(workdir / "onnx-store"))
    store.write_bytes("models/embedder.onnx", model)
    store.write_text("models/embedder.json", json.dumps(sidecar))
    ex = resolve_extractor("onnx", {"image_model": "models/embedder.onnx", "intra_op_threads": 1}, store=store)
    featurize(ex, paths[0])  # warm up: session, tables
    best = None
    for _ in range(repeat):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        infos = [featurize(ex, p).windows.info for p in paths]
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if best is None or wall < best[0]:
            best = (wall, cpu, infos)
    wall, cpu, infos = best
    k = len(paths)
    model_s = sum(i["model_seconds"]["image"] for i in infos)
    prep_s = sum(i["prep_seconds"]["image"] for i in infos)
    frames = sum(i["examples"]["image"] for i in infos) / k
    rest = wall - model_s - prep_s
    print(f"(c) onnx image embedder, {macs / 1e6:.1f} M MACs/frame at 224x224, {frames:.0f} frames/clip, 1 thread: "
          f"{wall / k * 1e3:6.1f} ms/clip wall, {cpu / k * 1e3:6.1f} ms/clip CPU; {k / cpu:.2f} clips/s/core; "
          f"vs (a) {wall / baseline_wall:.2f}")
    print(f"    time per clip: decode + sampling {rest / k * 1e3:.1f} ms ({rest / wall:.0%}), "
          f"preprocessing {prep_s / k * 1e3:.1f} ms ({prep_s / wall:.0%}), model {model_s / k * 1e3:.1f} ms "
          f"({model_s / wall:.0%}; {model_s / (frames * k) * 1e3:.2f} ms/frame)")


def timed(fn, paths, workers: int = 1) -> tuple[float, float]:
    """(wall, cpu) seconds for fn over all paths in this process, on ``workers`` threads."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if workers == 1:
        for p in paths:
            fn(p)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fn, paths))
    return time.perf_counter() - wall0, time.process_time() - cpu0


def best_of(fn, paths, repeat: int, workers: int = 1) -> tuple[float, float]:
    """The fastest of ``repeat`` passes (wall and CPU separately): the least disturbed by the machine."""
    runs = [timed(fn, paths, workers) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def rss_child(paths: list[str], workers: int) -> tuple[float, list[float]]:
    """Run in a fresh process: extract every clip as (b) does; peak RSS and RSS after each clip (MB)."""
    import psutil

    proc = psutil.Process()
    after = []

    def one(p):
        extract(p)
        after.append(proc.memory_info().rss / 2**20)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, paths))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, after


def process_throughput(paths: list[str], workers: int) -> float:
    """Clips per second with ``workers`` processes, one clip each at a time."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(extract, paths[:workers]))  # warm up (imports, process start)
        t0 = time.perf_counter()
        list(pool.map(extract, paths))
        return len(paths) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="K, number of clips (default 8)")
    parser.add_argument("--workers", type=int, default=Settings().n_workers,
                        help="threads of (b), as the features flow's local runner (default: MLCI_WORKERS, else the usable cores)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement; the best counts (default 3)")
    parser.add_argument("--workdir", default=None, help="keep generated clips here between runs")
    parser.add_argument("--onnx-only", action="store_true", help="measure (a) and the onnx extractor (c) only")
    args = parser.parse_args()
    if args.clips < 1:
        parser.error(f"--clips must be >= 1, got {args.clips}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")

    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mlci-bench-features-")
        workdir = Path(tmp.name)
    paths = [str(workdir / f"clip-{i:03d}-{WIDTH}x{HEIGHT}-{FPS}fps.mp4") for i in range(args.clips)]
    missing = [(p, i) for i, p in enumerate(paths) if not os.path.exists(p)]
    if missing:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max_workers=min(os.cpu_count() or 1, len(missing))) as pool:
            list(pool.map(make_clip, *zip(*missing)))
        print(f"generated {len(missing)} clips in {time.perf_counter() - t0:.1f} s")
    size_mb = statistics.mean(os.path.getsize(p) for p in paths) / 2**20
    print(f"{args.clips} clips: {SECONDS:.0f} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264 + AAC {AUDIO_RATE} Hz stereo, "
          f"{size_mb:.2f} MB each; {os.cpu_count()} cores")

    full_decode(paths[0]), extract(paths[0])  # warm up: imports, tables, caches
    k, w = args.clips, args.workers
    a_wall, a_cpu = best_of(full_decode, paths, args.repeat)
    if args.onnx_only:
        print(f"(a) full decode, 1 thread, clip after clip:   {a_wall / k * 1e3:6.1f} ms/clip wall")
        onnx_line(paths, workdir, args.repeat, a_wall)
        if tmp is not None:
            tmp.cleanup()
        return
    b_wall, b_cpu = best_of(extract, paths, args.repeat, workers=w)
    s_wall, _ = best_of(extract, paths, args.repeat)
    ms = lambda seconds: f"{seconds / k * 1e3:6.1f} ms/clip"
    print(f"(a) full decode, 1 thread, clip after clip:   {ms(a_wall)} wall, {ms(a_cpu)} CPU")
    print(f"(b) our extraction, {w} worker thread(s):       {ms(b_wall)} wall, {ms(b_cpu)} CPU")
    print(f"ratio b/a: {b_wall / a_wall:.2f} (wall)   target <= 0.6")
    print(f"    CPU time b/a: {b_cpu / a_cpu:.2f}; one clip at a time in one thread: {ms(s_wall)} wall, "
          f"ratio {s_wall / a_wall:.2f}")
    print(f"clips/s/core: {k / b_cpu:.2f} (CPU time of (b)); {k / s_wall:.2f} in one thread")
    print(f"real-time factor: {SECONDS * k / b_wall:.0f}x (seconds of video per second of wall time)")
    procs = process_throughput(paths * 2, w)
    print(f"{w} processes instead of threads: {procs:.2f} clips/s ({procs * b_wall / k:.2f}x the threads)")

    with ProcessPoolExecutor(max_workers=1) as pool:
        peak, after = pool.submit(rss_child, paths, w).result()
    print(f"peak RSS of a process running (b) on all {k} clips: {peak:.0f} MB (target < 1024 MB); "
          f"RSS after each clip: {', '.join(f'{r:.0f}' for r in after)} MB")
    onnx_line(paths, workdir, args.repeat, a_wall)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

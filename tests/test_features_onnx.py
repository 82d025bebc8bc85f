"""The ``onnx`` extractor on real mp4 files, with small ONNX models the tests build themselves.

Every model here is made with the ``onnx`` helper API from fixed weights (nothing is downloaded);
every clip is encoded by the test and decoded by the real decoder. The features are checked against
the same computation written in numpy: the frames and sound the decoder gives, the crop and
normalisation, the convolution, the windows, the pooling.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlci.features import (
    ModelError,
    OnnxModelError,
    compute_features,
    featurize,
    get_extractor,
    list_quarantined,
    load_features,
    load_window_features,
    resolve_extractor,
    window_matrix,
)
from mlci.features.audio import mel_filterbank
from mlci.features.decode import DecodeOptions, decode_file
from mlci.features.onnx_inputs import image_input, parse_sidecar, resize_matrix
from mlci.media import encode_clip

SR = 16000
FPS = 15
SIZE = (96, 64)  # width, height of the clips
IMG = 64  # the image models' input: 64 x 64
MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
WAVE_LEN = 8000  # the waveform model's example: 0.5 s at 16 kHz


# -- clips ----------------------------------------------------------------------------------------


def _frames(n, *, seed=0, colour=None):
    """A moving bright bar over a background whose colour drifts from frame to frame."""
    w, h = SIZE
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 160, 3)
    for i in range(n):
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = colour if colour is not None else np.clip(base + 40 * np.sin(i / 5) * np.array([1, -1, 1]), 0, 255)
        if colour is None:
            x = (i * 5) % (w - 10)
            frame[:, x : x + 10] = (250, 230, 40)
        yield frame


def _sound(seconds, freq):
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))).astype(np.float32)


def make_clip(path, *, seconds=3.0, audio=True, video=True, seed=0, freq=440.0, colour=None):
    encode_clip(path, frames=_frames(round(seconds * FPS), seed=seed, colour=colour) if video else None, fps=FPS,
                audio=_sound(seconds, freq) if audio else None, sample_rate=SR)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx-media")
    make_clip(d / "ok.mp4")
    make_clip(d / "other.mp4", seconds=2.0, seed=4, freq=1200.0)
    make_clip(d / "video_only.mp4", seconds=2.0, audio=False)
    make_clip(d / "audio_only.mp4", seconds=2.0, video=False)
    make_clip(d / "short.mp4", seconds=0.4)
    make_clip(d / "bright.mp4", seconds=2.0, colour=(250, 250, 250))
    data = (d / "ok.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return d


# -- models (the onnx helper API, fixed weights) --------------------------------------------------


def _model_bytes(nodes, inputs, outputs, initializers) -> bytes:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _image_weights(seed=1, channels=8):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32), rng.normal(0.1, 0.1, channels).astype(np.float32)


def image_model(w, b, *, size=IMG, layout="NCHW", fail_when_bright=False, nan=False) -> bytes:
    """Conv 3x3 stride 2 + bias, ReLU, global average pooling: [N, 3, size, size] -> [N, channels].

    ``fail_when_bright`` adds a lookup whose index grows with the mean input, ``10 * relu(mean - 1.5)``:
    a white frame (mean 2.4) indexes past a 5-entry table and onnxruntime raises (data-dependent).
    ``nan`` appends ``log(mean input - 10)``: NaN for every real frame.
    """
    shape = ["batch", 3, size, size] if layout == "NCHW" else ["batch", size, size, 3]
    nodes, x = [], "x"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["conv"], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["emb" if not (fail_when_bright or nan) else "vec"]),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    dim = w.shape[0]
    if fail_when_bright or nan:
        inits += [numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
                  numpy_helper.from_array(np.array(1.5, np.float32), "th"),
                  numpy_helper.from_array(np.arange(5, dtype=np.float32)[:, None], "table")]
        nodes.append(helper.make_node("ReduceMean", [x], ["m"], axes=[1, 2, 3], keepdims=0))
        if fail_when_bright:
            nodes += [helper.make_node("Sub", ["m", "th"], ["mt"]), helper.make_node("Relu", ["mt"], ["mr"]),
                      helper.make_node("Mul", ["mr", "ten"], ["m10"]),
                      helper.make_node("Cast", ["m10"], ["idx"], to=TensorProto.INT64),
                      helper.make_node("Gather", ["table", "idx"], ["extra"], axis=0)]
        else:
            nodes += [helper.make_node("Sub", ["m", "ten"], ["neg"]), helper.make_node("Log", ["neg"], ["logged"]),
                      helper.make_node("Unsqueeze", ["logged", "axes_1"], ["extra"])]
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes_1"))
        nodes.append(helper.make_node("Concat", ["vec", "extra"], ["emb"], axis=1))
        dim += 1
    return _model_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", dim])], inits)


def _wave_weights(seed=2):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.3, (6, 1, 32)).astype(np.float32)


def wave_model(k) -> bytes:
    """1-D conv (kernel 32, stride 16), |.|, average over time: [N, 1, 8000] -> [N, 6]."""
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["conv"], strides=[16]),
        helper.make_node("Abs", ["conv"], ["abs"]),
        helper.make_node("GlobalAveragePool", ["abs"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["emb"]),
    ]
    return _model_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, WAVE_LEN])],
                        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 6])],
                        [numpy_helper.from_array(k, "k")])


def logmel_model(m, frames, mels) -> bytes:
    """Flatten [N, 1, frames, mels] and project: [N, 5]; plus an unused second output."""
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "m"], ["emb"]),
             helper.make_node("Identity", ["flat"], ["flat_out"])]
    return _model_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, frames, mels])],
                        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 5]),
                         helper.make_tensor_value_info("flat_out", TensorProto.FLOAT, ["batch", frames * mels])],
                        [numpy_helper.from_array(m, "m")])


IMAGE_SIDECAR = {"kind": "image", "size": [IMG, IMG], "layout": "NCHW", "mean": MEAN, "std": STD, "output": "emb"}
WAVE_SIDECAR = {"kind": "audio", "features": "waveform", "sample_rate": SR, "window_seconds": 0.5, "layout": "NCT",
                "output": "emb", "dim": 6}


def put(store, key, model: bytes, sidecar: dict, *, sidecar_key=None):
    store.write_bytes(key, model)
    store.write_text(sidecar_key or key.replace(".onnx", ".json"), json.dumps(sidecar))


@pytest.fixture(scope="module")
def weights():
    w, b = _image_weights()
    return {"w": w, "b": b, "k": _wave_weights()}


@pytest.fixture
def models_store(local_store, weights):
    """A store holding the image and waveform models with their sidecars."""
    put(local_store, "models/image.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR)
    put(local_store, "models/wave.onnx", wave_model(weights["k"]), WAVE_SIDECAR)
    return local_store


PARAMS = {"image_model": "models/image.onnx", "audio_model": "models/wave.onnx"}


def bound(store, **params):
    return resolve_extractor("onnx", {**PARAMS, **params}, store=store)


# -- the same computation in numpy ----------------------------------------------------------------


def decoded(path, *, frame_height=IMG, audio_rate=SR):
    """What the decoder gives: sampled frames (times, rgb) and the mono sound (offset, samples)."""
    times, frames, sound, offset = [], [], [], [0.0]

    def on_audio(samples, off):
        sound.append(samples.mean(axis=1))
        offset[0] = off

    decode_file(path, DecodeOptions(sample_fps=2.0, frame_height=frame_height, audio_rate=audio_rate),
                on_frames=lambda t, rgb: (times.append(t), frames.append(rgb)), on_audio=on_audio)
    rgb = np.concatenate(frames) if frames else np.zeros((0, IMG, IMG, 3), np.uint8)
    return (np.concatenate(times) if times else np.zeros(0)), rgb, offset[0], (np.concatenate(sound) if sound else np.zeros(0))


def np_image_embeddings(rgb, w, b):
    x0 = (rgb.shape[2] - IMG) // 2
    x = rgb[:, :, x0 : x0 + IMG].astype(np.float64) / 255.0  # centre crop of the 96 x 64 frames
    x = ((x - MEAN) / STD).transpose(0, 3, 1, 2)
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    conv = np.einsum("nchwij,ocij->nohw", patches, w) + b[None, :, None, None]
    return np.maximum(conv, 0).mean(axis=(2, 3))


def np_wave_embeddings(examples, k):
    patches = np.lib.stride_tricks.sliding_window_view(examples.astype(np.float64), 32, axis=1)[:, ::16]
    return np.abs(np.einsum("ntj,oj->not", patches, k[:, 0])).mean(axis=2)


def np_window_means(times, vectors, n, offset=0.0, window=1.0):
    idx = np.minimum(np.floor((times - offset) / window).astype(int), n - 1)
    out = np.zeros((n, vectors.shape[1]))
    for i in range(n):
        if (idx == i).any():
            out[i] = vectors[idx == i].mean(axis=0)
    return out


def np_pool(windows):
    v = np.concatenate([windows.mean(axis=0), windows.std(axis=0)])
    return v / np.linalg.norm(v)


# -- the features against numpy -------------------------------------------------------------------


def test_image_and_waveform_features_are_the_numpy_computation(media, models_store, weights):
    ex = bound(models_store)
    f = featurize(ex, media / "ok.mp4")
    times, rgb, offset, mono = decoded(media / "ok.mp4")
    assert rgb.shape[1:] == (64, 96, 3) and len(times) == 6  # 3 s at 2 frames per second
    n = f.windows.n_windows
    assert n == 3

    video = np_window_means(times, np_image_embeddings(rgb, weights["w"], weights["b"]), n)
    np.testing.assert_allclose(f.windows.video, video, rtol=1e-4, atol=1e-5)

    count = (len(mono) - WAVE_LEN) // WAVE_LEN + 1
    examples = np.stack([mono[i * WAVE_LEN : (i + 1) * WAVE_LEN] for i in range(count)])
    centres = offset + (np.arange(count) * WAVE_LEN + WAVE_LEN / 2) / SR
    audio = np_window_means(centres, np_wave_embeddings(examples, weights["k"]), n)
    np.testing.assert_allclose(f.windows.audio, audio, rtol=1e-4, atol=1e-5)
    assert f.windows.info["examples"] == {"image": 6, "audio": count} and count == 6

    a, v = np_pool(audio), np_pool(video)
    np.testing.assert_allclose(f.audio, a, atol=1e-5)
    np.testing.assert_allclose(f.video, v, atol=1e-5)
    np.testing.assert_allclose(f.combined, np.r_[a, v] / np.sqrt(2), atol=1e-5)
    schema = ex.schema
    assert schema.video_window == tuple(f"image_{i:03d}" for i in range(8))
    assert schema.audio_window == tuple(f"audio_{i:03d}" for i in range(6))
    assert schema.combined[0] == "audio.mean(audio_000)" and schema.combined[-1] == "video.std(image_007)"

    # The windows of a grid shifted by half a window (what detection asks for) pool the same vectors.
    blocks = []
    ex.stream(media / "ok.mp4", blocks.append, offsets=(0.0, 0.5))
    shifted = blocks[1]
    m = int(np.floor(f.duration - 0.5 + 0.5))  # a remainder of half a window or more is a window of its own
    assert shifted.grid == 1 and shifted.start.tolist() == [0.5 + i for i in range(m)] and m == 3
    np.testing.assert_allclose(shifted.video, np_window_means(times, np_image_embeddings(rgb, weights["w"], weights["b"]),
                                                              m, offset=0.5), rtol=1e-4, atol=1e-5)


def test_nhwc_layout_and_logmel_audio_are_the_numpy_computation(media, local_store, weights):
    # The same convolution behind an NHWC input: the same video features as the NCHW model.
    put(local_store, "models/nhwc.onnx", image_model(weights["w"], weights["b"], layout="NHWC"),
        IMAGE_SIDECAR | {"layout": "NHWC"})
    put(local_store, "models/image.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR)
    frames, mels = 48, 32  # 0.48 s of 10 ms frames, 32 bands
    m = np.random.default_rng(3).normal(0, 0.05, (frames * mels, 5)).astype(np.float32)
    sidecar = {"kind": "audio", "features": "logmel", "sample_rate": SR, "window_seconds": 0.48, "hop_seconds": 0.24,
               "layout": "NCTF", "n_mels": mels, "fmin": 100, "fmax": 6000, "mean": -2.0, "std": 3.0, "output": "emb"}
    local_store.write_bytes("models/mel.onnx", logmel_model(m, frames, mels))
    local_store.write_text("models/mel.yaml", "\n".join(f"{k}: {json.dumps(v)}" for k, v in sidecar.items()))

    nchw = featurize(bound(local_store, audio_model=None), media / "ok.mp4")
    ex = resolve_extractor("onnx", {"image_model": "models/nhwc.onnx", "audio_model": "models/mel.onnx"}, store=local_store)
    assert ex.audio_sidecar == "models/mel.yaml"  # found next to the model
    f = featurize(ex, media / "ok.mp4")
    np.testing.assert_allclose(f.windows.video, nchw.windows.video, rtol=1e-5, atol=1e-6)

    _, _, offset, mono = decoded(media / "ok.mp4")
    win, hop = 400, 160  # 25 ms and 10 ms at 16 kHz
    n_frames = 1 + (len(mono) - win) // hop
    framed = np.stack([mono[i * hop : i * hop + win] for i in range(n_frames)]).astype(np.float64)
    taper = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    spectrum = np.abs(np.fft.rfft(framed * taper, n=512, axis=1))
    logmel = np.log(spectrum @ mel_filterbank(sample_rate=SR, n_fft=512, n_mels=mels, fmin=100, fmax=6000) + 0.01)
    starts = range(0, n_frames - frames + 1, 24)  # examples of 48 frames every 24
    examples = np.stack([logmel[s : s + frames] for s in starts])
    emb = ((examples - -2.0) / 3.0).reshape(len(examples), -1) @ m
    centres = offset + np.array(starts) * hop / SR + ((frames - 1) * hop + win) / SR / 2
    np.testing.assert_allclose(f.windows.audio, np_window_means(centres, emb, 3), rtol=1e-3, atol=1e-4)
    assert f.windows.info["examples"]["audio"] == len(examples)


def test_missing_modalities_and_a_clip_shorter_than_one_example(media, models_store):
    ex = bound(models_store)
    v = featurize(ex, media / "video_only.mp4")
    assert v.has_video and not v.has_audio and not v.audio.any() and not v.windows.window_has_audio.any()
    np.testing.assert_allclose(v.combined[len(v.audio) :], v.video, atol=1e-6)
    a = featurize(ex, media / "audio_only.mp4")
    assert a.has_audio and not a.has_video and not a.video.any() and a.windows.info["examples"]["image"] == 0
    short = featurize(ex, media / "short.mp4")
    assert short.windows.n_windows == 1 and short.windows.window_has_audio[0] and short.windows.window_has_video[0]
    assert short.windows.info["examples"] == {"image": 1, "audio": 1}  # 0.4 s of sound, padded to one example
    assert np.linalg.norm(short.combined) == pytest.approx(1.0, abs=1e-6)


def test_batching_and_threads_change_no_value(media, models_store):
    one = featurize(bound(models_store, batch_size=1, intra_op_threads=1), media / "ok.mp4")
    many = featurize(bound(models_store, batch_size=64, intra_op_threads=2), media / "ok.mp4")
    np.testing.assert_allclose(one.windows.video, many.windows.video, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(one.windows.audio, many.windows.audio, rtol=1e-6, atol=1e-7)
    # Speed knobs are not part of what the features are.
    assert bound(models_store, batch_size=1).schema.cache_id == bound(models_store, intra_op_threads=2).schema.cache_id


def test_stretch_resizing_and_the_resize_weights(media, local_store, weights):
    r = resize_matrix(64, 32)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-6)
    ramp = np.arange(64, dtype=np.float32)
    # Halving: a ramp stays a ramp away from the edges (each output between its two input pixels),
    # a constant stays constant everywhere.
    np.testing.assert_allclose((r @ ramp)[1:-1], (np.arange(32) * 2 + 0.5)[1:-1], atol=1e-4)
    np.testing.assert_allclose(r @ np.full(64, 7.0, np.float32), 7.0, rtol=1e-6)
    up = resize_matrix(4, 8) @ np.array([0.0, 1, 2, 3], np.float32)
    np.testing.assert_allclose(up, [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)

    spec = parse_sidecar(IMAGE_SIDECAR | {"size": [32, 48], "resize": "stretch", "channels": "BGR"}, "image")
    rgb = np.zeros((1, 64, 96, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    x = image_input(rgb, spec)
    assert x.shape == (1, 3, 32, 48)
    np.testing.assert_allclose(x[0, 2], (1.0 - MEAN[2]) / STD[2], rtol=1e-6)  # red is the last channel in BGR
    np.testing.assert_allclose(x[0, 0], (0.0 - MEAN[0]) / STD[0], rtol=1e-6)

    # crop_fraction keeps the centre of the crop: a 64 x 96 frame, a 32 x 32 input, half of the
    # 64 x 64 square is the 32 x 32 block at rows 16-47, columns 32-63 (no resizing needed).
    half = parse_sidecar(IMAGE_SIDECAR | {"size": 32, "crop_fraction": 0.5}, "image")
    frame = np.random.default_rng(5).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    expected = ((frame[:, 16:48, 32:64] / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(image_input(frame, half), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(OnnxModelError, match=r"crop_fraction must be in \(0, 1\], but got 1.5"):
        parse_sidecar(IMAGE_SIDECAR | {"crop_fraction": 1.5}, "image")

    put(local_store, "models/small.onnx", image_model(weights["w"], weights["b"], size=32),
        IMAGE_SIDECAR | {"size": 32, "resize": "stretch"})
    f = featurize(resolve_extractor("onnx", {"image_model": "models/small.onnx"}, store=local_store), media / "ok.mp4")
    assert f.windows.video.shape == (3, 8) and f.windows.audio.shape == (3, 0) and np.isfinite(f.video).all()


# -- identity: another model is another feature version -------------------------------------------


def test_the_digest_follows_the_bytes_of_models_and_sidecars(models_store, weights):
    first = bound(models_store)
    assert len(first.digest) == 64 and first.image_sidecar == "models/image.json"
    assert first.schema.params["digest"] == first.digest and "batch_size" not in first.schema.params
    # The same bytes written again: the same version (a re-upload is a no-op).
    put(models_store, "models/image.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR)
    assert bound(models_store).schema.cache_id == first.schema.cache_id
    # Other weights, or another sidecar: another version.
    put(models_store, "models/image.onnx", image_model(weights["w"] * 2, weights["b"]), IMAGE_SIDECAR)
    other_weights = bound(models_store)
    put(models_store, "models/image.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR | {"mean": 0.4})
    other_sidecar = bound(models_store)
    assert len({first.digest, other_weights.digest, other_sidecar.digest}) == 3
    assert len({first.schema.cache_id, other_weights.schema.cache_id, other_sidecar.schema.cache_id}) == 3
    # Parameters that pin the old digest are refused against the new files.
    with pytest.raises(OnnxModelError, match=r"not the ones these parameters name: digest \w{12}… in the store, "
                                             rf"{first.digest[:12]}… expected"):
        resolve_extractor("onnx", first.get_params(), store=models_store)


def test_an_unbound_extractor_says_to_bind_it_and_a_bound_one_pickles(media, models_store):
    with pytest.raises(OnnxModelError, match=r"bind it first"):
        get_extractor("onnx", **PARAMS).schema
    with pytest.raises(ValueError, match="needs image_model, audio_model or both"):
        get_extractor("onnx")
    with pytest.raises(ValueError, match=r"batch_size must be an int in \[1, 4096\], got 0"):
        get_extractor("onnx", image_model="m.onnx", batch_size=0)
    ex = bound(models_store)
    copy = pickle.loads(pickle.dumps(ex))
    assert copy.schema == ex.schema
    np.testing.assert_array_equal(featurize(copy, media / "other.mp4").combined, featurize(ex, media / "other.mp4").combined)


# -- a model that does not match its sidecar is refused at start ----------------------------------


@pytest.mark.parametrize("sidecar, message", [
    ({"size": [48, 48]}, r"image model 'models/m.onnx': input 'x' has shape \[batch, 3, 64, 64\], but its sidecar "
                             r"'models/m.json' \(layout NCHW, size \[48, 48\]\) describes \[N, 3, 48, 48\]"),
    ({"layout": "NHWC"}, r"input 'x' has shape \[batch, 3, 64, 64\], .* describes \[N, 64, 64, 3\]"),
    ({"dim": 5}, r"output 'emb' has shape \[1, 8\] for a batch of 1, but its sidecar .* declares dim 5: \[N, 5\]"),
    ({"output": "features"}, r"has no output 'features' named by its sidecar .*; its outputs: 'emb' \[batch, 8\]"),
    ({"szie": 64}, r"sidecar 'models/m.json': unknown field\(s\) \['szie'\]; the fields of an image sidecar are"),
    ({"kind": "audio"}, r"describes an 'audio' model but is given as the image model's sidecar"),
    ({"mean": [0.5, 0.5]}, r"mean must be a number or a list of 3 numbers, but got \[0.5, 0.5\]"),
])
def test_a_model_that_does_not_match_its_sidecar_is_refused(local_store, weights, sidecar, message):
    put(local_store, "models/m.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR | sidecar)
    with pytest.raises(OnnxModelError, match=message) as info:
        resolve_extractor("onnx", {"image_model": "models/m.onnx"}, store=local_store)
    assert "\n" not in str(info.value)


def test_audio_mismatch_missing_files_and_unreadable_model(local_store, weights):
    put(local_store, "models/wave.onnx", wave_model(weights["k"]), WAVE_SIDECAR | {"window_seconds": 1.0})
    with pytest.raises(OnnxModelError, match=r"audio model 'models/wave.onnx': input 'x' has shape \[batch, 1, 8000\], "
                                             r"but its sidecar .*waveform, layout NCT, 1 s at 16000 Hz\) describes \[N, 1, 16000\]"):
        resolve_extractor("onnx", {"audio_model": "models/wave.onnx"}, store=local_store)
    mel = logmel_model(np.zeros((48 * 32, 5), np.float32), 48, 32)
    put(local_store, "models/mel.onnx", mel, {"features": "logmel", "sample_rate": SR, "window_seconds": 0.48,
                                              "layout": "NCTF", "n_mels": 32})
    with pytest.raises(OnnxModelError, match=r"has 2 outputs \('emb' \[batch, 5\], 'flat_out' \[batch, 1536\]\); "
                                             r"name the one to use in 'models/mel.json' \(field 'output'\)"):
        resolve_extractor("onnx", {"audio_model": "models/mel.onnx"}, store=local_store)
    with pytest.raises(OnnxModelError, match=r"the image model 'models/none.onnx' is not in the store"):
        resolve_extractor("onnx", {"image_model": "models/none.onnx", "image_sidecar": "models/wave.json"}, store=local_store)
    local_store.write_bytes("models/lonely.onnx", b"x")
    with pytest.raises(OnnxModelError, match=r"has no sidecar in the store .* \(tried models/lonely.json, models/lonely.yaml, "
                                             r"models/lonely.yml\)"):
        resolve_extractor("onnx", {"image_model": "models/lonely.onnx"}, store=local_store)
    put(local_store, "models/junk.onnx", b"not an onnx file", IMAGE_SIDECAR)
    with pytest.raises(OnnxModelError, match=r"image model 'models/junk.onnx' cannot be loaded by onnxruntime"):
        resolve_extractor("onnx", {"image_model": "models/junk.onnx"}, store=local_store)


# -- a clip that fails in the model is quarantined ------------------------------------------------


def test_a_clip_that_fails_in_the_model_is_quarantined(media, local_store, weights):
    put(local_store, "models/picky.onnx", image_model(weights["w"], weights["b"], fail_when_bright=True), IMAGE_SIDECAR)
    params = {"image_model": "models/picky.onnx"}
    for name in ("ok", "bright", "truncated"):
        local_store.upload(f"clips/{name}.mp4", media / f"{name}.mp4")
    report = compute_features(local_store, extractor="onnx", params=params)
    assert (report.n_computed, report.n_quarantined_new) == (1, 2)
    assert report.quarantine_kinds == {"model_error": 1, "truncated": 1}
    q = list_quarantined(local_store, extractor="onnx", params=params).set_index("key")
    assert q.loc["clips/bright.mp4", "error_kind"] == "model_error"
    assert q.loc["clips/bright.mp4", "message"].startswith("image model 'models/picky.onnx' failed on this clip: ")
    assert "out of" in q.loc["clips/bright.mp4", "message"] or "bounds" in q.loc["clips/bright.mp4", "message"]
    keys, X, schema = load_features(local_store, extractor="onnx", params=params, modality="video")
    assert list(keys) == ["clips/ok.mp4"] and X.shape == (1, 2 * 9) and len(schema.audio) == 0

    put(local_store, "models/nan.onnx", image_model(weights["w"], weights["b"], nan=True), IMAGE_SIDECAR)
    ex = resolve_extractor("onnx", {"image_model": "models/nan.onnx"}, store=local_store)
    with pytest.raises(ModelError, match=r"image model 'models/nan.onnx' gave non-finite values for 6 of 6 examples") as info:
        featurize(ex, media / "ok.mp4")
    assert info.value.kind == "model_error"


# -- the cache in the store, through the features run ---------------------------------------------


def test_feature_runs_with_an_onnx_model(store, media, weights):
    """On both backends: computed once, reused, and a new model file is a new feature version."""
    put(store, "models/image.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR)
    put(store, "models/wave.onnx", wave_model(weights["k"]), WAVE_SIDECAR)
    for name in ("ok", "other", "audio_only"):
        store.upload(f"clips/{name}.mp4", media / f"{name}.mp4")
    first = compute_features(store, extractor="onnx", params=PARAMS, chunk_size=2)
    assert first.n_computed == 3 and first.cache_id.startswith("onnx-v1-")
    again = compute_features(store, extractor="onnx", params=PARAMS)
    assert (again.n_computed, again.n_reused, again.index_key) == (0, 3, None)

    keys, X, schema = load_features(store, extractor="onnx", params=PARAMS)
    assert list(keys) == ["clips/audio_only.mp4", "clips/ok.mp4", "clips/other.mp4"]
    ex = bound(store)
    np.testing.assert_allclose(X[1], featurize(ex, media / "ok.mp4").combined, atol=1e-6)
    windows = load_window_features(store, ["clips/ok.mp4"], extractor="onnx", params=PARAMS)
    np.testing.assert_allclose(window_matrix(windows, "video"), featurize(ex, media / "ok.mp4").windows.video, atol=1e-6)

    put(store, "models/image.onnx", image_model(weights["w"], weights["b"] + 1), IMAGE_SIDECAR)
    second = compute_features(store, extractor="onnx", params=PARAMS)
    assert second.cache_id != first.cache_id and second.n_computed == 3
    keys2, X2, _ = load_features(store, extractor="onnx", params=PARAMS)  # the current model's features
    assert list(keys2) == list(keys) and not np.allclose(X2, X)


# -- a model registered in MLflow ----------------------------------------------------------------


def test_a_model_registered_in_mlflow_is_copied_into_the_store(tracking_uri, local_store, media, weights, tmp_path):
    import mlflow
    import mlflow.onnx

    from mlci.features.onnx import import_registered_model
    from mlci.models.tracking import default_artifact_location, get_or_create_experiment, tracking_context

    with tracking_context(tracking_uri) as client:
        exp = get_or_create_experiment(client, "embedders", artifact_location=default_artifact_location(tracking_uri))
    with tracking_context(tracking_uri), mlflow.start_run(experiment_id=exp):
        mlflow.onnx.log_model(onnx.load_from_string(image_model(weights["w"], weights["b"])), name="model",
                              registered_model_name="embedder", metadata={"mlci_sidecar": IMAGE_SIDECAR},
                              pip_requirements=["onnxruntime"])
        mlflow.onnx.log_model(onnx.load_from_string(image_model(weights["w"], weights["b"])), name="bare",
                              registered_model_name="bare", pip_requirements=["onnxruntime"])

    keys = import_registered_model(tracking_uri, "models:/embedder/1", local_store, "models/embedder.onnx")
    assert keys == ("models/embedder.onnx", "models/embedder.json")
    ex = resolve_extractor("onnx", {"image_model": "models/embedder.onnx"}, store=local_store)
    put(local_store, "models/direct.onnx", image_model(weights["w"], weights["b"]), IMAGE_SIDECAR)
    direct = resolve_extractor("onnx", {"image_model": "models/direct.onnx"}, store=local_store)
    np.testing.assert_allclose(featurize(ex, media / "ok.mp4").video, featurize(direct, media / "ok.mp4").video, atol=1e-6)
    # Copying the same version again is a no-op for the features.
    import_registered_model(tracking_uri, "models:/embedder/1", local_store, "models/embedder.onnx")
    assert resolve_extractor("onnx", {"image_model": "models/embedder.onnx"}, store=local_store).digest == ex.digest

    with pytest.raises(OnnxModelError, match=r"'models:/bare/1' has no sidecar: pass sidecar= or log the model with"):
        import_registered_model(tracking_uri, "models:/bare/1", local_store, "models/bare.onnx")
    with pytest.raises(OnnxModelError, match=r"input 'x' has shape \[batch, 3, 64, 64\], but its sidecar .* describes "
                                             r"\[N, 3, 32, 32\]"):
        import_registered_model(tracking_uri, "models:/bare/1", local_store, "models/bare.onnx",
                                sidecar=IMAGE_SIDECAR | {"size": 32})
    assert not local_store.exists("models/bare.onnx")  # refused before anything was written
    with pytest.raises(OnnxModelError, match=r"cannot download 'models:/nope/1' from MLflow"):
        import_registered_model(tracking_uri, "models:/nope/1", local_store, "models/nope.onnx")
    # Another model under a key that holds one already is refused: features name the old one.
    before = local_store.read_bytes("models/embedder.onnx")
    with pytest.raises(OnnxModelError, match=r"models/embedder\.(onnx|json) already holds another model or sidecar; "
                                             r"copy 'models:/bare/1' to another key"):
        import_registered_model(tracking_uri, "models:/bare/1", local_store, "models/embedder.onnx",
                                sidecar=IMAGE_SIDECAR | {"mean": [0.4, 0.4, 0.4]})
    assert local_store.read_bytes("models/embedder.onnx") == before

    # The same from the command line: one line saying where it went, or one error line.
    from typer.testing import CliRunner

    from cli import app

    env = {"MLCI_MLFLOW_TRACKING_URI": tracking_uri}
    done = CliRunner().invoke(app, ["import-model", "models:/embedder/1", "models/cli.onnx", "--store", local_store.uri],
                              env=env)
    assert done.exit_code == 0, done.output
    assert done.output.startswith("models:/embedder/1 -> models/cli.onnx (sidecar models/cli.json); use it with ")
    assert local_store.read_bytes("models/cli.onnx") == before
    missing = CliRunner().invoke(app, ["import-model", "models:/nope/1", "models/x.onnx", "--store", local_store.uri],
                                 env=env)
    assert missing.exit_code == 1 and missing.output.startswith("error: cannot download 'models:/nope/1' from MLflow")
    assert len(missing.output.strip().splitlines()) == 1
    bad = tmp_path / "sidecar.json"
    bad.write_text("{not json")
    broken = CliRunner().invoke(app, ["import-model", "models:/embedder/1", "models/y.onnx", "--sidecar", str(bad),
                                      "--store", local_store.uri], env=env)
    assert broken.exit_code == 1 and broken.output.startswith(f"error: --sidecar {bad} is not JSON (")
    assert len(broken.output.strip().splitlines()) == 1 and not local_store.exists("models/y.onnx")

"""The ``onnx`` extractor: a pretrained image and/or audio embedding model (ONNX) run on each clip.

The models live in the store (``image_model`` / ``audio_model`` are store keys), each with a small
sidecar (JSON or YAML) that says how to feed it: input size and layout, normalisation, sample rate,
window length, which output to use. Per clip, one decode (:func:`~mlci.features.decode.decode_file`)
feeds both: the sampled frames go to the image model, the sound to the audio model, in batches,
on ``onnxruntime``'s CPU provider. Each frame (each audio example) gives one vector; a window's
vector is the mean of the vectors that fall in it, and the clip vectors are pooled from the
windows like every extractor's (:func:`~mlci.features.pool_windows`).

:meth:`OnnxExtractor.bind` reads the models from the store, checks each against its sidecar (a
mismatch is refused before any clip, with both shapes in the message) and puts the SHA-256 of the
models' and sidecars' bytes in the parameters (``digest``): another model is another feature
version. A clip on which a model fails is quarantined (:class:`~mlci.features.ModelError`).
See ``docs/features.md`` ("Bringing an ONNX model").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mlci.features.base import (
    FeatureExtractor,
    StreamEnd,
    WindowBlock,
    WindowFeatures,
    check_offsets,
)
from mlci.features.decode import DecodeOptions, DecodeStats, decode_file
from mlci.features.exceptions import MediaError, ModelError
from mlci.features.onnx_inputs import (
    AudioSpec,
    Framer,
    OnnxModelError,
    audio_input,
    first_line,
    image_input,
    log_mel,
    read_sidecar,
)
from mlci.features.registry import register_extractor
from mlci.features.schema import FeatureSchema
from mlci.features.windows import WindowAccumulator, window_count

__all__ = ["RUNTIME_PARAMS", "OnnxExtractor", "OnnxModelError", "import_registered_model"]

#: Parameters that change how fast, not what: left out of the feature schema (and its cache id).
RUNTIME_PARAMS = ("batch_size", "intra_op_threads")
_SIDECAR_SUFFIXES = (".json", ".yaml", ".yml")
_CACHE_SIZE = 4


# -- the models -----------------------------------------------------------------------------------


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a dependency of mlci
        raise ImportError("the onnx extractor needs onnxruntime: pip install onnxruntime") from exc
    return onnxruntime


def _shape_text(shape: Sequence) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


class _Model:
    """One ONNX model and its sidecar, checked against each other; sessions per thread count."""

    def __init__(self, kind: str, key: str, sidecar_key: str, model_bytes: bytes, sidecar_bytes: bytes):
        self.kind, self.key, self.sidecar_key = kind, key, sidecar_key
        self.model_bytes, self.sidecar_bytes = model_bytes, sidecar_bytes
        self.model_sha = hashlib.sha256(model_bytes).hexdigest()
        self.sidecar_sha = hashlib.sha256(sidecar_bytes).hexdigest()
        self.spec = read_sidecar(sidecar_bytes, sidecar_key, kind)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._check()

    @property
    def label(self) -> str:
        return f"{self.kind} model {self.key!r}"

    def session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                ort = _onnxruntime()
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.log_severity_level = 3
                # Idle threads sleep instead of spinning: the cores are shared with the decoders.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    self._sessions[threads] = ort.InferenceSession(self.model_bytes, sess_options=options,
                                                                   providers=["CPUExecutionProvider"])
                except Exception as exc:
                    raise OnnxModelError(f"{self.label} cannot be loaded by onnxruntime: {first_line(exc)}") from None
            return self._sessions[threads]

    def _check(self) -> None:
        """Refuse a model whose input or output does not match the sidecar (both shapes named)."""
        session = self.session(1)
        spec = self.spec
        where = f"its sidecar {self.sidecar_key!r} ({spec.describe()})"
        inputs = session.get_inputs()
        if spec.input is not None and spec.input not in [i.name for i in inputs]:
            raise OnnxModelError(f"{self.label} has no input {spec.input!r} named by {where}; its inputs: "
                                 + ", ".join(f"{i.name!r} {_shape_text(i.shape)}" for i in inputs))
        if len(inputs) != 1:
            raise OnnxModelError(f"{self.label} has {len(inputs)} inputs ("
                                 + ", ".join(f"{i.name!r} {_shape_text(i.shape)}" for i in inputs)
                                 + "); the extractor feeds one")
        inp = inputs[0]
        if inp.type != "tensor(float)":
            raise OnnxModelError(f"{self.label}: input {inp.name!r} has type {inp.type}; the extractor feeds tensor(float)")
        expected = spec.input_shape()
        declared = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        if len(declared) != len(expected) or any(
            d is not None and e is not None and d != e for d, e in zip(declared[1:], expected[1:])
        ):
            raise OnnxModelError(f"{self.label}: input {inp.name!r} has shape {_shape_text(inp.shape)}, "
                                 f"but {where} describes {_shape_text(expected)}")
        self.input_name = inp.name
        self.static_batch = declared[0]
        outputs = session.get_outputs()
        names = [o.name for o in outputs]
        listing = ", ".join(f"{o.name!r} {_shape_text(o.shape)}" for o in outputs)
        if spec.output is None and len(outputs) != 1:
            raise OnnxModelError(f"{self.label} has {len(outputs)} outputs ({listing}); name the one to use "
                                 f"in {self.sidecar_key!r} (field 'output')")
        if spec.output is not None and spec.output not in names:
            raise OnnxModelError(f"{self.label} has no output {spec.output!r} named by {where}; its outputs: {listing}")
        self.output_name = spec.output or names[0]
        # One dry run on zeros: the real output shape, whatever the graph declares.
        n = self.static_batch or 1
        probe = np.zeros((n,) + tuple(e for e in expected[1:]), np.float32)
        try:
            out = np.asarray(session.run([self.output_name], {self.input_name: probe})[0])
        except Exception as exc:
            raise OnnxModelError(f"{self.label} fails on an input of shape {_shape_text(probe.shape)} "
                                 f"({where}): {first_line(exc)}") from None
        shape = out.shape
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 2 or shape[0] != n:
            raise OnnxModelError(f"{self.label}: output {self.output_name!r} has shape {list(out.shape)} for a batch of "
                                 f"{n}, but the extractor needs one vector per example, [N, D] ({where})")
        if spec.dim is not None and shape[1] != spec.dim:
            raise OnnxModelError(f"{self.label}: output {self.output_name!r} has shape {list(out.shape)} for a batch of "
                                 f"{n}, but {where} declares dim {spec.dim}: [N, {spec.dim}]")
        self.dim = int(shape[1])

    def run(self, x: np.ndarray, *, threads: int, batch_size: int) -> np.ndarray:
        """Embeddings of a batch of inputs, shape (n, dim), float32; :class:`ModelError` if the model fails."""
        session = self.session(threads)
        step = self.static_batch or batch_size
        outs = []
        for i in range(0, len(x), step):
            part = x[i : i + step]
            n = len(part)
            if self.static_batch and n < step:
                part = np.concatenate([part, np.zeros((step - n,) + part.shape[1:], part.dtype)])
            try:
                out = session.run([self.output_name], {self.input_name: part})[0]
            except Exception as exc:
                raise ModelError(f"{self.label} failed on this clip: {first_line(exc)}") from None
            outs.append(np.asarray(out, np.float32).reshape(len(part), -1)[:n])
        emb = np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
        bad = ~np.isfinite(emb).all(axis=1)
        if bad.any():
            raise ModelError(f"{self.label} gave non-finite values for {int(bad.sum())} of {len(emb)} examples of this clip")
        return emb


_CACHE_LOCK = threading.Lock()
_MODELS: OrderedDict[tuple, _Model] = OrderedDict()  # (kind, model sha, sidecar sha, keys) -> model
_STORED: OrderedDict[tuple, _Model] = OrderedDict()  # (store, keys, identities) -> model


def _remember(cache: OrderedDict, key: tuple, value: _Model) -> _Model:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _model_from_bytes(kind: str, key: str, sidecar_key: str, model_bytes: bytes, sidecar_bytes: bytes) -> _Model:
    shas = (kind, key, sidecar_key, hashlib.sha256(model_bytes).hexdigest(), hashlib.sha256(sidecar_bytes).hexdigest())
    with _CACHE_LOCK:
        if shas in _MODELS:
            _MODELS.move_to_end(shas)
            return _MODELS[shas]
    model = _Model(kind, key, sidecar_key, model_bytes, sidecar_bytes)
    with _CACHE_LOCK:
        return _remember(_MODELS, shas, model)


def _find_sidecar(store, key: str, kind: str) -> str:
    from mlci.storage import ObjectNotFoundError

    stem = key[: -len(".onnx")] if key.lower().endswith(".onnx") else key
    tried = [stem + suffix for suffix in _SIDECAR_SUFFIXES]
    for candidate in tried:
        try:
            store.stat(candidate)
            return candidate
        except ObjectNotFoundError:
            continue
    raise OnnxModelError(f"{kind} model {key!r} has no sidecar in the store {store.uri} (tried {', '.join(tried)}); "
                         f"write one or give {kind}_sidecar")


def _load(store, kind: str, key: str, sidecar_key: str) -> _Model:
    """The model at ``key`` with its sidecar, read from ``store`` (once per content, per process)."""
    from mlci.storage import ObjectNotFoundError

    try:
        identities = (store.stat(key).identity, store.stat(sidecar_key).identity)
    except ObjectNotFoundError as exc:
        missing = key if not store.exists(key) else sidecar_key
        what = f"{kind} model" if missing == key else f"sidecar of the {kind} model"
        raise OnnxModelError(f"the {what} {missing!r} is not in the store {store.uri}") from exc
    cache_key = (store.uri, kind, key, sidecar_key) + identities
    with _CACHE_LOCK:
        if cache_key in _STORED:
            _STORED.move_to_end(cache_key)
            return _STORED[cache_key]
    model = _model_from_bytes(kind, key, sidecar_key, store.read_bytes(key), store.read_bytes(sidecar_key))
    with _CACHE_LOCK:
        return _remember(_STORED, cache_key, model)


def _digest(models: Mapping[str, _Model]) -> str:
    text = "".join(f"{kind}:{m.model_sha}:{m.sidecar_sha}\n" for kind, m in sorted(models.items()))
    return hashlib.sha256(text.encode()).hexdigest()


# -- running the models on one clip ---------------------------------------------------------------


class _Runner:
    """Collects one model's inputs as the decode goes, runs them in batches, keeps (time, vector) pairs."""

    def __init__(self, model: _Model, batch_size: int, threads: int):
        self.model, self.batch_size, self.threads = model, batch_size, threads
        self.times: list[np.ndarray] = []
        self.vectors: list[np.ndarray] = []
        self.pending_t: list[np.ndarray] = []
        self.pending_x: list[np.ndarray] = []
        self.n_pending = 0
        self.model_seconds = 0.0
        self.prep_seconds = 0.0

    def add(self, times: np.ndarray, x: np.ndarray) -> None:
        if len(x):
            self.pending_t.append(times)
            self.pending_x.append(x)
            self.n_pending += len(x)
        if self.n_pending >= self.batch_size:
            self.flush(whole_batches=True)

    def flush(self, whole_batches: bool = False) -> None:
        if not self.n_pending:
            return
        t, x = np.concatenate(self.pending_t), np.concatenate(self.pending_x)
        n = (len(x) // self.batch_size) * self.batch_size if whole_batches else len(x)
        t0 = time.perf_counter()
        self.vectors.append(self.model.run(x[:n], threads=self.threads, batch_size=self.batch_size))
        self.model_seconds += time.perf_counter() - t0
        self.times.append(t[:n])
        self.pending_t, self.pending_x = ([t[n:]], [x[n:]]) if n < len(x) else ([], [])
        self.n_pending = len(x) - n

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.flush()
        if not self.vectors:
            return np.zeros(0), np.zeros((0, self.model.dim), np.float32)
        return np.concatenate(self.times), np.concatenate(self.vectors)


class _ImageRunner(_Runner):
    def push(self, times: np.ndarray, rgb: np.ndarray) -> None:
        t0 = time.perf_counter()
        x = image_input(rgb, self.model.spec)
        self.prep_seconds += time.perf_counter() - t0
        self.add(times, x)

    def finish(self) -> None:
        self.flush()


class _AudioRunner(_Runner):
    """Mixes the sound to mono and cuts it into the model's examples (waveform or log-mel frames)."""

    def __init__(self, model: _Model, batch_size: int, threads: int):
        super().__init__(model, batch_size, threads)
        spec: AudioSpec = model.spec
        self.spec = spec
        self.samples = Framer(spec.frame_length, spec.frame_hop) if spec.features == "logmel" else None
        self.examples = Framer(spec.example_length, spec.example_hop)
        self.offset = 0.0
        self.n_samples = 0

    def push(self, samples: np.ndarray, offset: float) -> None:
        self.offset = offset
        ch = samples.shape[1]
        # A product with equal weights: numpy's mean over a short last axis is much slower.
        mono = samples @ np.full(ch, 1 / ch, np.float32) if ch > 1 else samples[:, 0]
        self.n_samples += len(mono)
        self._cut(mono)

    def _cut(self, mono: np.ndarray, centre: float | None = None) -> None:
        t0 = time.perf_counter()
        first = self.examples.next
        if self.samples is not None:
            frames = self.samples.push(mono)
            rows = log_mel(frames, self.spec) if len(frames) else np.zeros((0, self.spec.n_mels), np.float32)
            examples = self.examples.push(rows)
        else:
            examples = self.examples.push(mono.astype(np.float32, copy=False))
        x = audio_input(examples, self.spec)
        self.prep_seconds += time.perf_counter() - t0
        centres = self.offset + (first + np.arange(len(x))) * self.spec.hop_time + self.spec.example_seconds / 2
        self.add(centres if centre is None else np.full(len(x), centre), x)

    def finish(self) -> None:
        if self.examples.next == 0 and self.n_samples > 0:
            # Less sound than one example: one example, padded with silence, centred on the sound.
            spec = self.spec
            need = round(spec.example_seconds * spec.sample_rate)
            self._cut(np.zeros(max(0, need - self.n_samples), np.float32),
                      centre=self.offset + self.n_samples / spec.sample_rate / 2)
        self.flush()


def _decode_height(spec) -> int:
    """Frame height to decode at: the input's height, over ``crop_fraction`` (even, at least 16)."""
    fraction = spec.crop_fraction if spec.resize == "crop" else 1.0
    return max(16, 2 * math.ceil(spec.size[0] / fraction / 2))


def _windows_of(times: np.ndarray, vectors: np.ndarray, n: int, offset: float, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector per window of one grid and whether any vector fell in it (the last window takes the rest)."""
    acc = WindowAccumulator(vectors.shape[1])
    if len(times):
        acc.add(np.floor((times - offset) / window).astype(np.int64), vectors.astype(np.float64))
    mean, _, has = acc.pop(n, final=True)
    return np.where(has[:, None], mean, 0.0).astype(np.float32), has


@register_extractor
class OnnxExtractor(FeatureExtractor):
    """Embeddings from a pretrained ONNX image model (video) and/or audio model (audio).

    Per window of ``window`` seconds: video = the mean of the image model's vectors of the frames
    sampled in it (``sample_fps`` per second); audio = the mean of the audio model's vectors of the
    examples centred in it. The models and their sidecars are read from the store when the
    extractor is bound to it (:meth:`bind`); see ``docs/features.md`` for the sidecar fields.

    Parameters
    ----------
    image_model, audio_model : str, default=None
        Store keys of the ONNX files (at least one).
    image_sidecar, audio_sidecar : str, default=None
        Store keys of their sidecars; None: the model key with ``.onnx`` replaced by ``.json``,
        ``.yaml`` or ``.yml`` (the first that exists).
    digest : str, default=None
        SHA-256 of the models' and sidecars' bytes, set by :meth:`bind`; when given, binding to a
        store whose files differ is refused.
    sample_fps : float, default=2.0
        Frames per second fed to the image model.
    window : float, default=1.0
        Window length in seconds.
    frame_height : int, default=None
        Height the decoder scales frames to before cropping; None: the image model's input height
        (divided by the sidecar's ``crop_fraction``), so a landscape frame is cropped, not scaled.
        Raise it for portrait video or a wide input.
    skip_nonref, skip_loop_filter : bool, default=True
        As for the ``basic`` extractor.
    batch_size : int, default=32
        Frames or audio examples per model call.
    intra_op_threads : int, default=None
        onnxruntime threads per model call; None: the ``threads`` the runner gives each clip (one
        per worker by default, so workers x threads stays within the cores).

    ``batch_size`` and ``intra_op_threads`` change speed, not values: they are left out of the
    schema and its cache id.
    """

    name = "onnx"
    version = 1

    def __init__(
        self,
        *,
        image_model: str | None = None,
        image_sidecar: str | None = None,
        audio_model: str | None = None,
        audio_sidecar: str | None = None,
        digest: str | None = None,
        sample_fps: float = 2.0,
        window: float = 1.0,
        frame_height: int | None = None,
        skip_nonref: bool = True,
        skip_loop_filter: bool = True,
        batch_size: int = 32,
        intra_op_threads: int | None = None,
    ):
        self.image_model = image_model
        self.image_sidecar = image_sidecar
        self.audio_model = audio_model
        self.audio_sidecar = audio_sidecar
        self.digest = digest
        self.sample_fps = sample_fps
        self.window = window
        self.frame_height = frame_height
        self.skip_nonref = skip_nonref
        self.skip_loop_filter = skip_loop_filter
        self.batch_size = batch_size
        self.intra_op_threads = intra_op_threads

    def validate_params(self) -> None:
        from mlci.storage import InvalidKeyError, validate_key

        need = self._require
        num = (int, float)
        if self.image_model is None and self.audio_model is None:
            raise ValueError("the onnx extractor needs image_model, audio_model or both (store keys of .onnx files), but got neither")
        for name in ("image_model", "image_sidecar", "audio_model", "audio_sidecar"):
            value = getattr(self, name)
            if value is not None:
                need(isinstance(value, str), name, "a store key")
                try:
                    validate_key(value)
                except InvalidKeyError as exc:
                    raise ValueError(f"{name} must be a store key, but got {value!r}: {exc}") from None
        need(self.image_sidecar is None or self.image_model is not None, "image_sidecar", "None without an image_model")
        need(self.audio_sidecar is None or self.audio_model is not None, "audio_sidecar", "None without an audio_model")
        need(self.digest is None or (isinstance(self.digest, str) and len(self.digest) == 64
                                     and all(c in "0123456789abcdef" for c in self.digest)),
             "digest", "None or a SHA-256 hex digest")
        need(isinstance(self.sample_fps, num) and not isinstance(self.sample_fps, bool) and 0 < self.sample_fps <= 30,
             "sample_fps", "in (0, 30]")
        need(isinstance(self.window, num) and not isinstance(self.window, bool) and 0.1 <= self.window <= 60,
             "window", "in [0.1, 60] seconds")
        need(self.image_model is None or self.sample_fps * self.window >= 1, "window",
             "long enough for one sampled frame (sample_fps * window >= 1)")
        need(self.frame_height is None or (isinstance(self.frame_height, int) and not isinstance(self.frame_height, bool)
                                            and 16 <= self.frame_height <= 2160 and self.frame_height % 2 == 0),
             "frame_height", "None or an even int in [16, 2160]")
        need(isinstance(self.skip_nonref, bool), "skip_nonref", "a bool")
        need(isinstance(self.skip_loop_filter, bool), "skip_loop_filter", "a bool")
        need(isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool) and 1 <= self.batch_size <= 4096,
             "batch_size", "an int in [1, 4096]")
        need(self.intra_op_threads is None or (isinstance(self.intra_op_threads, int)
                                                and not isinstance(self.intra_op_threads, bool)
                                                and 1 <= self.intra_op_threads <= 256),
             "intra_op_threads", "None or an int in [1, 256]")

    # -- binding to the store --------------------------------------------------------------------

    def bind(self, store) -> OnnxExtractor:
        """This extractor with its models read from ``store`` and checked against their sidecars.

        The result's parameters name the sidecars and carry the ``digest`` of the models' and
        sidecars' bytes. Models are read once per content and process (a changed object is read
        again).

        Raises
        ------
        OnnxModelError
            A model or sidecar is missing or unreadable, a model does not match its sidecar (both
            shapes named), or ``digest`` is set and the files in the store differ from it.
        """
        models: dict[str, _Model] = {}
        sidecars = {"image": self.image_sidecar, "audio": self.audio_sidecar}
        for kind, key in (("image", self.image_model), ("audio", self.audio_model)):
            if key is not None:
                sidecars[kind] = sidecars[kind] or _find_sidecar(store, key, kind)
                models[kind] = _load(store, kind, key, sidecars[kind])
        digest = _digest(models)
        if self.digest is not None and self.digest != digest:
            raise OnnxModelError(
                f"the models in the store {store.uri} are not the ones these parameters name: digest "
                f"{digest[:12]}… in the store, {self.digest[:12]}… expected (a model or sidecar changed; "
                "drop the digest parameter to use the current files, which is a new feature version)"
            )
        params = self.get_params() | {"image_sidecar": sidecars["image"], "audio_sidecar": sidecars["audio"], "digest": digest}
        bound = type(self)(**params)
        bound.validate_params()
        bound.models_ = models
        return bound

    def _models(self) -> dict[str, _Model]:
        models = getattr(self, "models_", None)
        if models is None:
            raise OnnxModelError(
                "the onnx extractor reads its models from the store: bind it first "
                "(resolve_extractor(..., store=store) or extractor.bind(store))"
            )
        return models

    # -- the FeatureExtractor interface ----------------------------------------------------------

    @property
    def schema(self) -> FeatureSchema:
        audio, video = self.window_names()
        params = {k: v for k, v in self.get_params().items() if k not in RUNTIME_PARAMS}
        return FeatureSchema(self.name, self.version, params, tuple(audio), tuple(video))

    def window_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        models = self._models()

        def names(kind: str) -> tuple[str, ...]:
            dim = models[kind].dim if kind in models else 0
            width = max(3, len(str(dim - 1)))
            return tuple(f"{kind}_{i:0{width}d}" for i in range(dim))

        return names("audio"), names("image")

    def extract(self, path: str | os.PathLike, *, threads: int = 1) -> WindowFeatures:
        blocks: list[WindowBlock] = []
        end = self.stream(path, blocks.append, threads=threads)
        if end.error is not None:
            raise end.error
        (b,) = blocks
        return WindowFeatures(b.start, b.end, b.audio, b.video, b.window_has_audio, b.window_has_video,
                              end.duration, end.has_audio, end.has_video, end.info)

    def stream(
        self,
        path: str | os.PathLike,
        on_windows: Callable[[WindowBlock], None],
        *,
        offsets: Sequence[float] = (0.0,),
        threads: int = 1,
    ) -> StreamEnd:
        """Decode once, run the models as frames and sound arrive, then hand out each grid's windows.

        Memory holds the vectors (one per sampled frame and audio example), not the frames: a long
        video costs its embeddings. The windows are handed out at the end, one block per grid.
        """
        offsets = check_offsets(offsets, self.window_length)
        models = self._models()
        n_threads = self.intra_op_threads or max(1, int(threads))
        image = _ImageRunner(models["image"], self.batch_size, n_threads) if "image" in models else None
        audio = _AudioRunner(models["audio"], self.batch_size, n_threads) if "audio" in models else None
        height = (self.frame_height or _decode_height(image.model.spec)) if image else 16
        options = DecodeOptions(
            sample_fps=float(self.sample_fps),
            frame_height=height,
            audio_rate=audio.spec.sample_rate if audio else 16000,
            skip_nonref=self.skip_nonref,
            skip_loop_filter=self.skip_loop_filter,
            threads=threads,
        )
        stats = DecodeStats()
        error = None
        with threadpool_limits(limits=1, user_api="blas"):
            try:
                decode_file(path, options, on_frames=image.push if image else _ignore,
                            on_audio=audio.push if audio else _ignore, stats=stats)
            except ModelError:
                raise
            except MediaError as exc:
                if stats.duration <= 0:  # nothing decoded before the damage
                    raise
                error = exc
            for runner in (image, audio):
                if runner is not None:
                    runner.finish()
        duration = float(stats.duration)
        img_t, img_v = image.result() if image else (np.zeros(0), np.zeros((0, 0), np.float32))
        aud_t, aud_v = audio.result() if audio else (np.zeros(0), np.zeros((0, 0), np.float32))
        for grid, offset in enumerate(offsets):
            n = window_count(duration - offset, self.window, at_least_one=offset == 0)
            if n == 0:
                continue
            start = offset + np.arange(n) * self.window
            end = np.minimum(start + self.window, duration)
            end[-1] = max(duration, start[-1])
            video, has_video = _windows_of(img_t, img_v, n, offset, self.window)
            audio_w, has_audio = _windows_of(aud_t, aud_v, n, offset, self.window)
            on_windows(WindowBlock(grid, 0, start, end, audio_w, video, has_audio, has_video))
        info = {
            "source_size": stats.source_size,
            "analysis_size": stats.analysis_size,
            "frames_decoded": stats.frames_decoded,
            "frames_sampled": stats.frames_sampled,
            "skipped_nonref": stats.skipped_nonref,
            "audio_seconds": stats.audio_samples / options.audio_rate,
            "declared_duration": stats.declared_duration,
            "notes": stats.notes,
            "examples": {"image": int(len(img_t)), "audio": int(len(aud_t))},
            "model_seconds": {k: r.model_seconds for k, r in (("image", image), ("audio", audio)) if r is not None},
            "prep_seconds": {k: r.prep_seconds for k, r in (("image", image), ("audio", audio)) if r is not None},
        }
        return StreamEnd(duration, stats.has_audio, stats.has_video, info, error)

    def __reduce__(self):
        # By parameters plus the model files when bound (Dask ships a detector's extractor to its
        # workers, which may not reach the store it was bound to).
        models = getattr(self, "models_", None)
        payload = None if models is None else {
            kind: (m.key, m.sidecar_key, m.model_bytes, m.sidecar_bytes) for kind, m in models.items()
        }
        return (_rebuild, (type(self), self.get_params(), payload))


def import_registered_model(
    tracking_uri: str,
    model_uri: str,
    store,
    key: str,
    *,
    sidecar: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Copy an ONNX model registered in MLflow, and its sidecar, into the store for the extractor.

    The extractor reads its models from the store, where their bytes pin the feature version; this
    puts a registered version there (copying the same version again changes nothing).

    Parameters
    ----------
    tracking_uri : str
    model_uri : str
        ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (or any MLflow artifact URI of a
        logged model): an ``mlflow.onnx`` model, or a folder holding one ``.onnx`` file.
    store : Store
    key : str
        Where the model goes, ending in ``.onnx``; the sidecar goes next to it as ``.json``.
    sidecar : dict, default=None
        The sidecar's fields; None: the model's MLflow metadata ``mlci_sidecar``
        (``mlflow.onnx.log_model(..., metadata={"mlci_sidecar": {...}})``).

    Returns
    -------
    (model key, sidecar key)

    Raises
    ------
    OnnxModelError
        MLflow has no such model, it holds no single ONNX file, there is no sidecar, or the model
        does not match the sidecar (checked before anything is written).
    """
    import tempfile
    from pathlib import Path

    from mlci.storage import validate_key

    if not isinstance(key, str) or not key.endswith(".onnx"):
        raise ValueError(f"key must be a store key ending in .onnx, but got {key!r}")
    validate_key(key)
    with tempfile.TemporaryDirectory(prefix="mlci-onnx-") as tmp:
        try:
            import mlflow.artifacts

            from mlci.models.tracking import tracking_context

            with tracking_context(tracking_uri):  # models:/ URIs resolve through the registry URI too
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except Exception as exc:
            from mlci.redact import redact_url

            raise OnnxModelError(f"cannot download {model_uri!r} from MLflow at {redact_url(tracking_uri)}: "
                                 f"{first_line(exc)}") from None
        meta: dict = {}
        if (local / "MLmodel").is_file():
            import yaml

            meta = yaml.safe_load((local / "MLmodel").read_text()) or {}
        data = (meta.get("flavors", {}).get("onnx") or {}).get("data")
        files = [local / data] if data else sorted(local.rglob("*.onnx")) if local.is_dir() else [local]
        if len(files) != 1 or not files[0].is_file():
            raise OnnxModelError(f"{model_uri!r} holds {len(files)} .onnx files ({', '.join(f.name for f in files)}); "
                                 "need exactly one")
        model_bytes = files[0].read_bytes()
    fields = dict(sidecar) if sidecar is not None else (meta.get("metadata") or {}).get("mlci_sidecar")
    if not isinstance(fields, Mapping):
        raise OnnxModelError(f"{model_uri!r} has no sidecar: pass sidecar= or log the model with "
                             "metadata={'mlci_sidecar': {...}}")
    kind = fields.get("kind")
    if kind not in ("image", "audio"):
        raise OnnxModelError(f"the sidecar of {model_uri!r} must say kind: image or audio, but got {kind!r}")
    sidecar_key = key[: -len(".onnx")] + ".json"
    sidecar_bytes = json.dumps(dict(fields), indent=1, sort_keys=True).encode()
    _model_from_bytes(kind, key, sidecar_key, model_bytes, sidecar_bytes)  # refuse a mismatch before writing
    for where, data in ((key, model_bytes), (sidecar_key, sidecar_bytes)):
        # Features computed with what is there name it by its digest: never replace it.
        if store.exists(where) and store.read_bytes(where) != data:
            raise OnnxModelError(f"{where} already holds another model or sidecar; copy {model_uri!r} to another key")
    for where, data in ((key, model_bytes), (sidecar_key, sidecar_bytes)):
        store.write_if_absent(where, data)
    return key, sidecar_key


def _ignore(*args) -> None:
    return None


def _rebuild(cls, params, payload):
    extractor = cls(**params)
    if payload is not None:
        extractor.models_ = {kind: _model_from_bytes(kind, *files) for kind, files in payload.items()}
    return extractor

"""What an ONNX embedder's sidecar declares, and the model inputs made from frames and sound.

A sidecar (JSON or YAML, beside the ``.onnx`` file) says how to feed the model; it is parsed into
an :class:`ImageSpec` or an :class:`AudioSpec`. The functions here turn decoded frames and mono
sound into the model's input batches; they are pure numpy, so tests and benchmarks can call them
directly. :mod:`mlci.features.onnx` runs the models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlci.features.audio import hann_window, mel_filterbank
from mlci.features.exceptions import FeatureError

__all__ = [
    "AUDIO_LAYOUTS",
    "IMAGE_LAYOUTS",
    "AudioSpec",
    "Framer",
    "ImageSpec",
    "OnnxModelError",
    "audio_input",
    "image_input",
    "log_mel",
    "parse_sidecar",
    "read_sidecar",
    "resize_matrix",
]

IMAGE_LAYOUTS = ("NCHW", "NHWC")
#: Audio input layouts by input kind (T: samples or mel frames, F: mel bands, C: one channel).
AUDIO_LAYOUTS = {"waveform": ("NT", "NCT"), "logmel": ("NTF", "NCTF", "NFT", "NCFT")}


class OnnxModelError(FeatureError, ValueError):
    """A model or its sidecar cannot be used (missing, unreadable, or not matching each other).

    Raised when the extractor is bound to the store, before any clip is processed.
    """


# -- sidecars -------------------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    """An exception's message on one line (at most 300 characters)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines)[:300] if lines else type(exc).__name__


def _fail(where: str, message: str) -> OnnxModelError:
    return OnnxModelError(f"sidecar {where}: {message}")


def _number(data: Mapping, name: str, where: str, *, default=None, positive: bool = True) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        raise _fail(where, f"{name} must be a {'positive ' if positive else ''}number, but got {value!r}")
    return float(value)


def _channels(data: Mapping, name: str, where: str, n: int, default=None) -> tuple[float, ...]:
    value = data.get(name, default)
    values = [value] * n if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if (not isinstance(values, (list, tuple)) or len(values) != n
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values)):
        raise _fail(where, f"{name} must be a number or a list of {n} numbers, but got {value!r}")
    if name == "std" and any(v <= 0 for v in values):
        raise _fail(where, f"std must be > 0, but got {value!r}")
    return tuple(float(v) for v in values)


def _choice(data: Mapping, name: str, where: str, allowed: Sequence[str], default=None) -> str:
    value = data.get(name, default)
    if value not in allowed:
        raise _fail(where, f"{name} must be one of {list(allowed)}, but got {value!r}")
    return value


def _optional_name(data: Mapping, name: str, where: str) -> str | None:
    value = data.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail(where, f"{name} must be a tensor name, but got {value!r}")
    return value


def _fraction(data: Mapping, where: str) -> float:
    value = _number(data, "crop_fraction", where, default=1.0)
    if value > 1:
        raise _fail(where, f"crop_fraction must be in (0, 1], but got {value!r}")
    return value


def _optional_dim(data: Mapping, where: str) -> int | None:
    value = data.get("dim")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _fail(where, f"dim must be an int >= 1, but got {value!r}")
    return value


@dataclass(frozen=True)
class ImageSpec:
    """How to feed an image model: what its sidecar declares.

    Attributes
    ----------
    size : tuple of (int, int)
        Input (height, width) in pixels.
    layout : {"NCHW", "NHWC"}
    mean, std : tuple of 3 floats
        Per channel: the model sees ``(pixel / 255 * pixel_max - mean) / std``.
    pixel_max : float
        1.0 for models trained on [0, 1] pixels, 255.0 for [0, 255].
    resize : {"crop", "stretch"}
        ``crop``: the largest centred region of the input's aspect ratio, scaled to ``size`` (the
        usual "resize the short side, centre crop"); ``stretch``: the whole frame scaled to ``size``.
    crop_fraction : float
        With ``crop``, the share of that region kept (its centre): 0.875 is torchvision's "resize
        to 256, crop 224".
    channels : {"RGB", "BGR"}
    input, output : str or None
        Tensor names (None: the model's only input / only output).
    dim : int or None
        Declared embedding size, checked against the model.
    """

    size: tuple[int, int]
    layout: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_max: float = 1.0
    resize: str = "crop"
    crop_fraction: float = 1.0
    channels: str = "RGB"
    input: str | None = None
    output: str | None = None
    dim: int | None = None

    FIELDS = ("kind", "size", "layout", "mean", "std", "pixel_max", "resize", "crop_fraction", "channels", "input",
              "output", "dim")

    def input_shape(self) -> tuple:
        """The input shape this sidecar describes, batch first (None)."""
        h, w = self.size
        return (None, 3, h, w) if self.layout == "NCHW" else (None, h, w, 3)

    def describe(self) -> str:
        return f"layout {self.layout}, size {list(self.size)}"

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> ImageSpec:
        size = data.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            size = [size, size]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= 4096 for v in size)):
            raise _fail(where, f"size must be [height, width] (ints in [8, 4096]) or one int, but got {data.get('size')!r}")
        for name in ("mean", "std"):
            if name not in data:
                raise _fail(where, f"{name} is required (per channel, on the pixel_max scale)")
        return cls(
            size=(int(size[0]), int(size[1])),
            layout=_choice(data, "layout", where, IMAGE_LAYOUTS),
            mean=_channels(data, "mean", where, 3),
            std=_channels(data, "std", where, 3),
            pixel_max=_number(data, "pixel_max", where, default=1.0),
            resize=_choice(data, "resize", where, ("crop", "stretch"), default="crop"),
            crop_fraction=_fraction(data, where),
            channels=_choice(data, "channels", where, ("RGB", "BGR"), default="RGB"),
            input=_optional_name(data, "input", where),
            output=_optional_name(data, "output", where),
            dim=_optional_dim(data, where),
        )


@dataclass(frozen=True)
class AudioSpec:
    """How to feed an audio model: what its sidecar declares.

    Attributes
    ----------
    features : {"waveform", "logmel"}
        What one example is: mono samples, or log-mel frames (magnitude STFT, periodic Hann
        window, HTK mel filterbank, ``ln(mel + log_offset)``: the VGGish front end).
    sample_rate : int
        Audio is resampled to this rate.
    window_seconds : float
        Length of one example (a log-mel example has ``window_seconds / hop_ms`` frames).
    hop_seconds : float
        Start-to-start distance of consecutive examples.
    layout : str
        ``NT`` / ``NCT`` for waveforms; ``NTF``, ``NCTF``, ``NFT``, ``NCFT`` for log-mels.
    mean, std : float
        The model sees ``(x - mean) / std``.
    n_mels, win_ms, hop_ms, fmin, fmax, log_offset :
        The log-mel front end.
    input, output, dim :
        As in :class:`ImageSpec`.
    """

    features: str
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    layout: str
    mean: float = 0.0
    std: float = 1.0
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01
    input: str | None = None
    output: str | None = None
    dim: int | None = None

    FIELDS = ("kind", "features", "sample_rate", "window_seconds", "hop_seconds", "layout", "mean", "std", "n_mels",
              "win_ms", "hop_ms", "fmin", "fmax", "log_offset", "input", "output", "dim")

    @property
    def frame_length(self) -> int:
        """Samples per log-mel frame."""
        return round(self.win_ms * self.sample_rate / 1000)

    @property
    def frame_hop(self) -> int:
        """Samples between log-mel frames."""
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.frame_length - 1).bit_length()

    @property
    def example_length(self) -> int:
        """Samples (waveform) or frames (log-mel) per example."""
        if self.features == "waveform":
            return round(self.window_seconds * self.sample_rate)
        return max(1, round(self.window_seconds * 1000 / self.hop_ms))

    @property
    def example_hop(self) -> int:
        """Samples (waveform) or frames (log-mel) from one example's start to the next."""
        if self.features == "waveform":
            return max(1, round(self.hop_seconds * self.sample_rate))
        return max(1, round(self.hop_seconds * 1000 / self.hop_ms))

    @property
    def example_seconds(self) -> float:
        """Seconds of sound one example covers."""
        if self.features == "waveform":
            return self.example_length / self.sample_rate
        return ((self.example_length - 1) * self.frame_hop + self.frame_length) / self.sample_rate

    @property
    def hop_time(self) -> float:
        """Seconds from one example's start to the next."""
        scale = 1 if self.features == "waveform" else self.frame_hop
        return self.example_hop * scale / self.sample_rate

    def input_shape(self) -> tuple:
        dims = {"N": None, "C": 1, "T": self.example_length, "F": self.n_mels}
        return tuple(dims[c] for c in self.layout)

    def describe(self) -> str:
        extra = f", {self.n_mels} mel bands every {self.hop_ms:g} ms" if self.features == "logmel" else ""
        return f"{self.features}, layout {self.layout}, {self.window_seconds:g} s at {self.sample_rate} Hz{extra}"

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> AudioSpec:
        features = _choice(data, "features", where, tuple(AUDIO_LAYOUTS))
        rate = data.get("sample_rate")
        if isinstance(rate, bool) or not isinstance(rate, int) or not 4000 <= rate <= 96000:
            raise _fail(where, f"sample_rate must be an int in [4000, 96000] Hz, but got {rate!r}")
        window = _number(data, "window_seconds", where)
        hop = _number(data, "hop_seconds", where, default=window)
        if not 0.01 <= window <= 60:
            raise _fail(where, f"window_seconds must be in [0.01, 60], but got {window!r}")
        n_mels = data.get("n_mels", 64)
        if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not 1 <= n_mels <= 512:
            raise _fail(where, f"n_mels must be an int in [1, 512], but got {n_mels!r}")
        spec = cls(
            features=features,
            sample_rate=rate,
            window_seconds=window,
            hop_seconds=hop,
            layout=_choice(data, "layout", where, AUDIO_LAYOUTS[features]),
            mean=_number(data, "mean", where, default=0.0, positive=False),
            std=_number(data, "std", where, default=1.0),
            n_mels=n_mels,
            win_ms=_number(data, "win_ms", where, default=25.0),
            hop_ms=_number(data, "hop_ms", where, default=10.0),
            fmin=_number(data, "fmin", where, default=125.0, positive=False),
            fmax=_number(data, "fmax", where, default=7500.0),
            log_offset=_number(data, "log_offset", where, default=0.01),
            input=_optional_name(data, "input", where),
            output=_optional_name(data, "output", where),
            dim=_optional_dim(data, where),
        )
        if features == "logmel":
            if spec.frame_length > round(window * rate):
                raise _fail(where, f"win_ms={spec.win_ms:g} is longer than window_seconds={window:g}")
            try:
                mel_filterbank(sample_rate=rate, n_fft=spec.n_fft, n_mels=n_mels, fmin=spec.fmin, fmax=spec.fmax)
            except ValueError as exc:
                raise _fail(where, str(exc)) from None
        return spec


def parse_sidecar(data: Any, kind: str, where: str = "<sidecar>") -> ImageSpec | AudioSpec:
    """An :class:`ImageSpec` (``kind="image"``) or :class:`AudioSpec` from a sidecar's content.

    Raises :class:`OnnxModelError` naming the field, with the value received, for an unknown
    field, a missing required one, or a value out of range.
    """
    cls = ImageSpec if kind == "image" else AudioSpec
    if not isinstance(data, Mapping):
        raise _fail(where, f"must hold a mapping of fields, but got {type(data).__name__}")
    unknown = sorted(set(data) - set(cls.FIELDS))
    if unknown:
        raise _fail(where, f"unknown field(s) {unknown}; the fields of an {kind} sidecar are {list(cls.FIELDS)}")
    if data.get("kind", kind) != kind:
        raise _fail(where, f"describes an {data['kind']!r} model but is given as the {kind} model's sidecar")
    return cls.from_dict(data, where)


def read_sidecar(raw: bytes, key: str, kind: str) -> ImageSpec | AudioSpec:
    """The spec in a sidecar file's bytes: YAML when ``key`` ends in ``.yaml`` / ``.yml``, else JSON."""
    where = repr(key)
    try:
        if key.lower().endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except Exception as exc:  # UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError
        raise _fail(where, f"cannot be parsed: {first_line(exc)}") from None
    return parse_sidecar(data, kind, where)


# -- preprocessing (pure numpy) -------------------------------------------------------------------


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Weights of a linear (triangle) resampling of ``n_in`` samples to ``n_out``, antialiased.

    Returns
    -------
    ndarray of shape (n_out, n_in), float32
        Rows sum to 1. Downscaling widens the triangle to the scale factor (an area-like average,
        as PIL's bilinear filter does), so no input pixel is skipped.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    x = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(x[None, :] - centers[:, None]) / support)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def image_input(rgb: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """The image model's input for a batch of frames.

    Parameters
    ----------
    rgb : ndarray of shape (n_frames, height, width, 3), dtype uint8
    spec : ImageSpec

    Returns
    -------
    ndarray of shape ``spec.input_shape()`` with the batch ``n_frames``, float32
        Cropped (``resize="crop"``) to the input's aspect ratio and ``crop_fraction``, centred; scaled to ``spec.size``
        by :func:`resize_matrix` when the sizes differ; normalised; in ``spec.layout``.
    """
    n, h, w, _ = rgb.shape
    H, W = spec.size
    if spec.resize == "crop":
        # The largest centred region of the input's aspect ratio, times crop_fraction.
        ch, cw = (h, h * W / H) if w * H >= h * W else (w * H / W, w)
        ch, cw = max(1, round(ch * spec.crop_fraction)), max(1, round(cw * spec.crop_fraction))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        rgb = rgb[:, y0 : y0 + ch, x0 : x0 + cw]
    if spec.channels == "BGR":
        rgb = rgb[..., ::-1]
    # One converting copy to NCHW float32, then the normalisation in place (four times faster than
    # a per-channel table lookup); resizing, linear with rows summing to 1, commutes with it.
    x = np.empty((n, 3) + rgb.shape[1:3], np.float32)
    np.copyto(x, rgb.transpose(0, 3, 1, 2))
    std = np.asarray(spec.std, np.float32)
    x *= (np.float32(spec.pixel_max / 255.0) / std)[:, None, None]
    x -= (np.asarray(spec.mean, np.float32) / std)[:, None, None]
    if x.shape[2:] != (H, W):
        x = resize_matrix(x.shape[2], H) @ x @ resize_matrix(x.shape[3], W).T
    if spec.layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def log_mel(frames: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Log-mel energies of audio frames: ``ln(mel(|rfft(hann * frame)|) + log_offset)``.

    Parameters
    ----------
    frames : ndarray of shape (n_frames, spec.frame_length)
        Mono samples in [-1, 1].

    Returns
    -------
    ndarray of shape (n_frames, spec.n_mels), float32
    """
    import scipy.fft

    fb = _filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
    taper = hann_window(spec.frame_length).astype(np.float32)
    mag = np.abs(scipy.fft.rfft(np.asarray(frames, np.float32) * taper, n=spec.n_fft, axis=1))
    return np.log(mag @ fb + np.float32(spec.log_offset)).astype(np.float32)


_FILTERBANKS: dict[tuple, np.ndarray] = {}


def _filterbank(rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    key = (rate, n_fft, n_mels, fmin, fmax)
    if key not in _FILTERBANKS:
        _FILTERBANKS[key] = mel_filterbank(sample_rate=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)
    return _FILTERBANKS[key]


def audio_input(examples: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """The audio model's input for a batch of examples.

    Parameters
    ----------
    examples : ndarray of shape (n, example_length) for waveforms, (n, example_length, n_mels) for log-mels
    spec : AudioSpec

    Returns
    -------
    ndarray in ``spec.layout``, normalised, float32
    """
    x = (np.asarray(examples, np.float32) - np.float32(spec.mean)) * np.float32(1.0 / spec.std)
    if spec.layout in ("NFT", "NCFT"):
        x = x.transpose(0, 2, 1)
    if "C" in spec.layout:
        x = x[:, None]
    return np.ascontiguousarray(x)


class Framer:
    """Cuts a stream of rows into windows of ``length`` rows every ``hop`` rows, as the rows arrive."""

    def __init__(self, length: int, hop: int):
        self.length, self.hop = length, hop
        self.buf: np.ndarray | None = None  # rows from stream index ``buf_start`` on, not yet done with
        self.buf_start = 0
        self.next = 0  # index of the next window
        self.seen = 0  # rows pushed

    def push(self, rows: np.ndarray) -> np.ndarray:
        """Windows completed by ``rows``: shape (k, length, ...) (copies)."""
        self.seen += len(rows)
        buf = rows if self.buf is None or len(self.buf) == 0 else np.concatenate([self.buf, rows])
        start = self.next * self.hop - self.buf_start
        avail = len(buf) - start
        k = 0 if avail < self.length else (avail - self.length) // self.hop + 1
        if k:
            view = np.lib.stride_tricks.sliding_window_view(buf, self.length, axis=0)
            windows = np.ascontiguousarray(np.moveaxis(view[start : start + (k - 1) * self.hop + 1 : self.hop], -1, 1))
        else:
            windows = np.zeros((0, self.length) + buf.shape[1:], buf.dtype)
        self.next += k
        drop = min(self.next * self.hop - self.buf_start, len(buf))
        self.buf, self.buf_start = buf[drop:], self.buf_start + drop
        return windows

"""The extractor interface, the per-window result it returns, and the pooling of windows into clip vectors.

An extractor turns one media file into per-window audio and video vectors
(:class:`WindowFeatures`); :meth:`FeatureExtractor.stream` hands the same windows out as they are
completed (:class:`WindowBlock`), on one or more grids shifted by an offset, which the detection
flow uses to score a long video in bounded memory. Everything after that is shared:
:func:`pool_windows` makes the clip vectors (mean and standard deviation over windows,
L2-normalised per modality, ``combined`` the two renormalised), so a learned embedding plugged in
later is pooled and cached the same way.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlci.features.exceptions import MediaError
from mlci.features.schema import FeatureSchema

__all__ = [
    "ClipFeatures",
    "FeatureExtractor",
    "StreamEnd",
    "WindowBlock",
    "WindowFeatures",
    "check_offsets",
    "featurize",
    "l2_normalize",
    "pool_windows",
]


@dataclass
class WindowFeatures:
    """What an extractor computes from one file.

    Attributes
    ----------
    start, end : ndarray of shape (n_windows,)
        Window bounds in seconds from the start of the file.
    audio : ndarray of shape (n_windows, n_audio_window_features), dtype float32
        Zeros where ``window_has_audio`` is False.
    video : ndarray of shape (n_windows, n_video_window_features), dtype float32
        Zeros where ``window_has_video`` is False.
    window_has_audio, window_has_video : ndarray of bool of shape (n_windows,)
        Whether any audio (any sampled frame) fell into the window.
    duration : float
        Seconds of decoded content (the longer of the two streams).
    has_audio, has_video : bool
        Whether the file has a decodable audio / video stream.
    info : dict
        Facts about the decode worth logging (frames decoded, sampled, source size, ...).
    """

    start: np.ndarray
    end: np.ndarray
    audio: np.ndarray
    video: np.ndarray
    window_has_audio: np.ndarray
    window_has_video: np.ndarray
    duration: float
    has_audio: bool
    has_video: bool
    info: dict[str, Any]

    @property
    def n_windows(self) -> int:
        return int(self.start.size)


@dataclass
class WindowBlock:
    """Consecutive completed windows of one grid, as :meth:`FeatureExtractor.stream` hands them out.

    Grid ``grid`` has windows ``[offset + k * window, offset + (k + 1) * window)`` for
    ``k = 0, 1, ...`` (``offset = offsets[grid]``); this block holds windows ``first``,
    ``first + 1``, ... of it. Arrays are as in :class:`WindowFeatures`.
    """

    grid: int
    first: int
    start: np.ndarray
    end: np.ndarray
    audio: np.ndarray
    video: np.ndarray
    window_has_audio: np.ndarray
    window_has_video: np.ndarray

    @property
    def n_windows(self) -> int:
        return int(self.start.size)


@dataclass
class StreamEnd:
    """How a :meth:`FeatureExtractor.stream` ended.

    Attributes
    ----------
    duration, has_audio, has_video, info :
        As in :class:`WindowFeatures`, for what was decoded.
    error : MediaError or None
        Set when the file broke off or failed part way: the windows before the damage were handed
        out, and ``duration`` is where decoding stopped.
    """

    duration: float
    has_audio: bool
    has_video: bool
    info: dict[str, Any]
    error: MediaError | None = None


def check_offsets(offsets: Sequence[float], window: float) -> tuple[float, ...]:
    """``offsets`` as floats, checked: the first is 0 and each is in [0, ``window``)."""
    out = tuple(float(o) for o in offsets)
    if not out or out[0] != 0.0 or any(not 0.0 <= o < window for o in out) or len(set(out)) != len(out):
        raise ValueError(f"offsets must start with 0 and be distinct values in [0, {window:g}), got {list(offsets)}")
    return out


@dataclass
class ClipFeatures:
    """Clip-level vectors of one file plus the windows they were pooled from."""

    audio: np.ndarray
    video: np.ndarray
    combined: np.ndarray
    windows: WindowFeatures

    @property
    def has_audio(self) -> bool:
        return self.windows.has_audio

    @property
    def has_video(self) -> bool:
        return self.windows.has_video

    @property
    def duration(self) -> float:
        return self.windows.duration


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """``x`` divided by its L2 norm along the last axis; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _mean_std(windows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    sel = np.asarray(windows, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    if sel.shape[0] == 0:
        return np.zeros(2 * windows.shape[1])
    return np.concatenate([sel.mean(axis=0), sel.std(axis=0)])


def pool_windows(
    audio: np.ndarray,
    video: np.ndarray,
    *,
    window_has_audio: np.ndarray | None = None,
    window_has_video: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Pool window vectors into clip vectors.

    The detection flow uses this too, over sliding spans of windows, so that a model trained on
    clip vectors sees the same kind of vector.

    Parameters
    ----------
    audio : ndarray of shape (n_windows, n_audio)
    video : ndarray of shape (n_windows, n_video)
    window_has_audio, window_has_video : ndarray of bool of shape (n_windows,), default=None
        Windows to pool per modality (all when None). A modality with no window gives zeros.

    Returns
    -------
    dict with keys ``audio`` (shape (2 * n_audio,)), ``video`` (2 * n_video) and ``combined``
    (their concatenation), all float32 and L2-normalised; ``combined`` of a clip with one modality
    missing is the other modality alone, renormalised.
    """
    audio, video = np.atleast_2d(audio), np.atleast_2d(video)
    if audio.shape[0] != video.shape[0]:
        raise ValueError(f"audio and video must have the same number of windows, got {audio.shape[0]} and {video.shape[0]}")
    n = audio.shape[0]
    ma = np.ones(n, bool) if window_has_audio is None else window_has_audio
    mv = np.ones(n, bool) if window_has_video is None else window_has_video
    a = l2_normalize(_mean_std(audio, ma))
    v = l2_normalize(_mean_std(video, mv))
    c = l2_normalize(np.concatenate([a, v]))
    return {"audio": a.astype(np.float32), "video": v.astype(np.float32), "combined": c.astype(np.float32)}


class FeatureExtractor(ABC):
    """Turns one media file into per-window audio and video vectors.

    Subclasses set ``name`` and ``version`` (bump the version whenever the same file would give
    other numbers), take their parameters as keyword arguments stored under the same names, check
    them in :meth:`validate_params`, and implement :meth:`window_names` and :meth:`extract`.
    Register a subclass with :func:`~mlci.features.register_extractor`.

    ``extract`` raises a :class:`~mlci.features.MediaError` for a clip it cannot process; anything
    else it raises is treated as an extractor bug (the clip is quarantined as ``extractor_error``).
    """

    name: ClassVar[str]
    version: ClassVar[int]

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters and their values (the part of the cache key they make)."""
        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind is inspect.Parameter.KEYWORD_ONLY
        }

    def validate_params(self) -> None:
        """Raise ``ValueError`` naming a parameter whose value is not allowed."""

    def _require(self, ok: bool, name: str, rule: str) -> None:
        """For ``validate_params``: unless ``ok``, raise ``ValueError("<name> must be <rule>, got <value>")``."""
        if not ok:
            raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

    def bind(self, store) -> FeatureExtractor:
        """The extractor ready to run against ``store``: this one, unless it reads something from the store.

        An extractor whose parameters name objects in the store (a model file, imported vectors)
        overrides this to read them, check them, and return an instance whose parameters identify
        their content (so that other content is another feature version). Every reader and writer
        of features calls it through :func:`~mlci.features.resolve_extractor` with its store.
        """
        return self

    def featurize_clip(self, store, key: str, *, threads: int = 1) -> ClipFeatures:
        """Clip vectors of the clip stored under ``key``: :func:`featurize` of a local copy.

        The feature run calls this for every clip. An extractor that does not decode the clip
        overrides it (imported embeddings look the clip's vectors up by its key).
        """
        with store.local_copy(key) as path:
            return featurize(self, path, threads=threads)

    @abstractmethod
    def window_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Names of one window's audio entries and video entries, in order."""

    @abstractmethod
    def extract(self, path: str | os.PathLike, *, threads: int = 1) -> WindowFeatures:
        """Per-window features of the file at ``path``; ``threads`` is a decode hint only."""

    def stream(
        self,
        path: str | os.PathLike,
        on_windows: Callable[[WindowBlock], None],
        *,
        offsets: Sequence[float] = (0.0,),
        threads: int = 1,
    ) -> StreamEnd:
        """Hand out the file's windows as they are completed, on one grid per offset.

        Grid 0 (offset 0) is the grid of :meth:`extract`; a grid with offset ``o`` starts its
        first window at ``o`` seconds and ends the same way (a trailing remainder shorter than half
        a window joins its last window). Each grid's windows arrive in order, each exactly once.

        A file that breaks off part way is not an error here: the windows before the damage are
        handed out and :attr:`StreamEnd.error` says what happened. A file with nothing decodable
        raises :class:`~mlci.features.MediaError`.

        This default extracts the whole file first and supports offset 0 only; extractors that
        can, override it to stream in bounded memory.
        """
        if check_offsets(offsets, self.window_length) != (0.0,):
            raise ValueError(f"the {self.name!r} extractor cannot shift its windows; give offsets=(0.0,)")
        win = self.extract(path, threads=threads)
        on_windows(WindowBlock(0, 0, win.start, win.end, win.audio, win.video, win.window_has_audio, win.window_has_video))
        return StreamEnd(win.duration, win.has_audio, win.has_video, win.info)

    @property
    def window_length(self) -> float:
        """Seconds per window: the ``window`` parameter (1.0 for an extractor without one)."""
        return float(self.get_params().get("window", 1.0))

    @property
    def schema(self) -> FeatureSchema:
        audio, video = self.window_names()
        return FeatureSchema(self.name, self.version, self.get_params(), tuple(audio), tuple(video))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def featurize(extractor: FeatureExtractor, path: str | os.PathLike, *, threads: int = 1) -> ClipFeatures:
    """Extract the windows of one file and pool them into clip vectors."""
    win = extractor.extract(path, threads=threads)
    pooled = pool_windows(win.audio, win.video, window_has_audio=win.window_has_audio, window_has_video=win.window_has_video)
    return ClipFeatures(pooled["audio"], pooled["video"], pooled["combined"], win)

"""Detection windows: sliding spans of the extractor's windows, pooled like a training clip.

A model is trained on clip vectors: the extractor's window vectors (``window`` seconds each) of a
clip, pooled by :func:`~mlci.features.pool_windows`. A detection window ``length`` seconds long is
scored on exactly that kind of vector: the pool of ``length / window`` consecutive extractor
windows. A hop that is not a multiple of the extractor's window starts detection windows between
extractor windows, so the extractor runs on several grids at once, each shifted by a multiple of
``gcd(hop, window)`` (3 s every 1.5 s over 1 s windows: grids at 0 and 0.5 s). The video is still
decoded once; each frame's descriptors are added to every grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mlci.features import MODALITIES, WindowBlock, pool_windows

__all__ = ["MAX_GRIDS", "Windowing", "WindowAssembler"]

#: Most shifted grids a hop may need (each adds the cost of summing descriptors into windows).
MAX_GRIDS = 8


def _fraction(x: float) -> Fraction:
    return Fraction(x).limit_denominator(1000)


@dataclass(frozen=True)
class Windowing:
    """Detection windows ``length`` seconds long, one every ``hop`` seconds.

    Parameters
    ----------
    length : float, default=3.0
        Seconds; a multiple of the extractor's window.
    hop : float, default=1.5
        Seconds between window starts; at most ``length``, and a multiple of the extractor's
        window divided by at most :data:`MAX_GRIDS`.
    """

    length: float = 3.0
    hop: float = 1.5

    def check(self, base: float) -> None:
        """Raise ``ValueError`` saying what to change unless the windows fit extractor windows of ``base`` seconds."""
        for name in ("length", "hop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"window {name} must be a number of seconds > 0, got {value!r}")
        if self.hop > self.length:
            raise ValueError(f"hop ({self.hop:g} s) must not exceed the window length ({self.length:g} s): "
                             "parts of the video would never be scored")
        ratio = _fraction(self.length) / _fraction(base)
        if ratio.denominator != 1 or abs(float(ratio) * base - self.length) > 1e-6:
            raise ValueError(f"window length {self.length:g} s is not a multiple of the model's feature window "
                             f"({base:g} s): use {max(1, round(self.length / base)) * base:g} s")
        if len(self.offsets(base)) > MAX_GRIDS or abs(float(_fraction(self.hop)) - self.hop) > 1e-6:
            raise ValueError(f"hop {self.hop:g} s needs too many shifted feature grids (the feature window is "
                             f"{base:g} s): use a multiple of {base / MAX_GRIDS:g} s")

    def offsets(self, base: float) -> tuple[float, ...]:
        """Start offsets (seconds, in [0, base)) of the extractor grids the windows need; 0 first."""
        return tuple(float(o) for o in self._grids(base))

    def _grids(self, base: float) -> list[Fraction]:
        hop, b = _fraction(self.hop), _fraction(base)
        found: set[Fraction] = set()
        o = Fraction(0)
        while o not in found and len(found) <= MAX_GRIDS:
            found.add(o)
            o = (o + hop) % b
        return sorted(found)


class WindowAssembler:
    """Turns extractor window blocks into pooled detection-window vectors, in window order.

    Feed it every :class:`~mlci.features.WindowBlock` of a stream with :meth:`add`; collect the
    windows it completes from :meth:`take`, and after the stream's end :meth:`finish` them.
    Extractor windows are kept only until the last detection window that needs them is made.

    Parameters
    ----------
    windowing : Windowing
    base : float
        The extractor's window in seconds.
    modality : {"audio", "video", "combined"}
        Which pooled vector to produce.
    """

    def __init__(self, windowing: Windowing, base: float, modality: str):
        windowing.check(base)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.windowing, self.base, self.modality = windowing, float(base), modality
        self.offsets = windowing.offsets(base)
        self.span = round(windowing.length / base)
        self._hop, self._base = _fraction(windowing.hop), _fraction(base)
        self._grid_of = {o: g for g, o in enumerate(windowing._grids(base))}
        self._held: list[dict[str, np.ndarray] | None] = [None] * len(self.offsets)
        self._first = [0] * len(self.offsets)  # index of the first held extractor window per grid
        self._received = [0] * len(self.offsets)
        self.next_window = 0
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.vectors: list[np.ndarray] = []

    def _place(self, j: int) -> tuple[float, int, int]:
        """Window ``j``'s start (seconds), grid and first extractor window on that grid."""
        start = j * self._hop
        offset = start % self._base
        return float(start), self._grid_of[offset], int((start - offset) / self._base)

    def add(self, block: WindowBlock) -> None:
        g = block.grid
        if block.first != self._received[g]:
            raise ValueError(f"grid {g}: expected window {self._received[g]}, got {block.first}")
        arrays = {name: getattr(block, name) for name in
                  ("start", "end", "audio", "video", "window_has_audio", "window_has_video")}
        held = self._held[g]
        self._held[g] = arrays if held is None else {k: np.concatenate([held[k], v]) for k, v in arrays.items()}
        self._received[g] += block.n_windows
        self._assemble()

    def finish(self) -> None:
        """The stream has ended: make the remaining windows (a video shorter than one window gets one)."""
        self._assemble()
        if self.next_window == 0 and self._received[0] > 0:
            self._make(0, 0, 0, self._received[0])

    def _assemble(self) -> None:
        while True:
            start, grid, first = self._place(self.next_window)
            last = first + self.span  # one past the last extractor window needed
            if self._received[grid] < last:
                return  # not there yet; at the end of the stream, never
            self._make(grid, start, first, last)

    def _make(self, grid: int, start: float, first: int, last: int) -> None:
        held = self._held[grid]
        lo, hi = first - self._first[grid], last - self._first[grid]
        pooled = pool_windows(
            held["audio"][lo:hi],
            held["video"][lo:hi],
            window_has_audio=held["window_has_audio"][lo:hi],
            window_has_video=held["window_has_video"][lo:hi],
        )
        self.starts.append(float(start))
        self.ends.append(float(held["end"][hi - 1]))
        self.vectors.append(pooled[self.modality])
        self.next_window += 1
        # Later windows on this grid start after ``first``: what lies before it is not needed again.
        self._held[grid] = {k: v[lo:] for k, v in held.items()}
        self._first[grid] = first

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(starts, ends, X)`` of the windows made since the last call."""
        starts, ends = np.asarray(self.starts, dtype=np.float64), np.asarray(self.ends, dtype=np.float64)
        X = np.vstack(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)
        self.starts, self.ends, self.vectors = [], [], []
        return starts, ends, X

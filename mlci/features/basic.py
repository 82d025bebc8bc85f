"""The built-in extractor: hand-made audio and video descriptors, summarised per window."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from mlci.features.audio import (
    audio_frame_descriptors,
    audio_frame_names,
    frame_signal,
    hann_window,
    mel_filterbank,
)
from mlci.features.base import (
    FeatureExtractor,
    StreamEnd,
    WindowBlock,
    WindowFeatures,
    check_offsets,
)
from mlci.features.decode import DecodeOptions, DecodeStats, decode_file
from mlci.features.exceptions import MediaError
from mlci.features.registry import register_extractor
from mlci.features.video import video_frame_descriptors, video_frame_names
from mlci.features.windows import WindowAccumulator, window_count

__all__ = ["BasicExtractor"]


class _AudioAnalyzer:
    """Frames a mono stream as it arrives and adds each frame's descriptors to its window of each grid."""

    def __init__(self, ex: BasicExtractor, offsets: tuple[float, ...]):
        self.rate = ex.audio_rate
        self.win = round(ex.win_ms * self.rate / 1000)
        self.hop = round(ex.hop_ms * self.rate / 1000)
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window_s = ex.window
        self.fb = mel_filterbank(sample_rate=self.rate, n_fft=self.n_fft, n_mels=ex.n_mels, fmin=ex.fmin, fmax=ex.fmax)
        self.taper = hann_window(self.win)
        self.offsets = offsets
        self.accs = [WindowAccumulator(ex.n_mels + 4) for _ in offsets]
        # About four seconds at a time: fewer, larger numpy calls, which hold the GIL for less of
        # the time (two worker threads: 108 ms a clip with one-second blocks, 101 ms with these).
        self.block = max(4 * self.rate, self.win)
        self.rest = np.zeros(0, np.float32)  # mono samples not yet analysed
        self.pending: list[np.ndarray] = []  # decoded (samples, channels) chunks not yet mixed down
        self.buffered = 0
        self.next_frame = 0
        self.offset = 0.0
        self.started = False

    @property
    def done_until(self) -> float:
        """Every frame still to come starts at or after this time (seconds)."""
        return self.offset + self.next_frame * (self.hop / self.rate) if self.started else 0.0

    def push(self, samples: np.ndarray, offset: float) -> None:
        self.offset, self.started = offset, True
        self.pending.append(samples)
        self.buffered += samples.shape[0]
        if self.buffered >= self.block + self.win:
            self._analyse(final=False)

    def _mixdown(self) -> np.ndarray:
        parts = [self.rest]
        widths = {p.shape[1] for p in self.pending}
        # One mean over all pending chunks (a mean per decoded frame costs more than it computes).
        groups = [np.concatenate(self.pending)] if len(widths) == 1 else self.pending
        # A product with equal weights, not g.mean(axis=1): numpy's mean over a short last axis is
        # about 20x slower.
        parts += [g @ np.full(g.shape[1], 1 / g.shape[1], np.float32) if g.shape[1] > 1 else g[:, 0] for g in groups]
        self.pending = []
        return np.concatenate(parts)

    def _analyse(self, *, final: bool) -> None:
        buf = self._mixdown() if self.pending else self.rest
        if final and self.next_frame == 0 and 0 < buf.size < self.win:
            buf = np.pad(buf, (0, self.win - buf.size))  # a clip shorter than one frame still gets one
        if buf.size < self.win:
            self.rest, self.buffered = buf, buf.size
            return
        frames = frame_signal(buf, win_length=self.win, hop_length=self.hop)
        desc = audio_frame_descriptors(frames, window=self.taper, n_fft=self.n_fft, filterbank=self.fb, sample_rate=self.rate)
        idx = self.next_frame + np.arange(len(frames))
        times = self.offset + idx * (self.hop / self.rate)
        for acc, grid_offset in zip(self.accs, self.offsets):
            acc.add(np.floor((times - grid_offset) / self.window_s).astype(np.int64), desc)
        self.next_frame += len(frames)
        self.rest = buf[len(frames) * self.hop :]
        self.buffered = self.rest.size

    def finish(self) -> None:
        if self.pending or self.rest.size:
            self._analyse(final=True)


class _VideoAnalyzer:
    def __init__(self, ex: BasicExtractor, offsets: tuple[float, ...]):
        self.window_s = ex.window
        self.offsets = offsets
        self.accs = [WindowAccumulator(len(video_frame_names())) for _ in offsets]
        self.prev_luma = None
        #: Every sampled frame still to come is later than this time (seconds).
        self.done_until = 0.0

    def push(self, times: np.ndarray, rgb: np.ndarray) -> None:
        desc, self.prev_luma = video_frame_descriptors(rgb, self.prev_luma)
        for acc, grid_offset in zip(self.accs, self.offsets):
            acc.add(np.floor((times - grid_offset) / self.window_s).astype(np.int64), desc)
        self.done_until = float(times[-1])


class _Release:
    """Hands out each grid's windows once both streams are past them.

    A window is final once the streams are half a window past its end: only then is it sure not
    to be the file's last window, which absorbs a trailing remainder shorter than half a window.
    """

    def __init__(self, ex: BasicExtractor, audio: _AudioAnalyzer, video: _VideoAnalyzer, offsets: tuple[float, ...],
                 sink: Callable[[WindowBlock], None]):
        self.window, self.audio, self.video, self.offsets, self.sink = float(ex.window), audio, video, offsets, sink
        self.streams: list = []

    def open(self, stats: DecodeStats) -> None:
        self.streams = [a for a, present in ((self.audio, stats.has_audio), (self.video, stats.has_video)) if present]

    def check(self) -> None:
        if self.streams:
            reached = min(s.done_until for s in self.streams)
            for grid, offset in enumerate(self.offsets):
                self._emit(grid, int(np.floor((reached - offset) / self.window - 1.5)) + 1)

    def finish(self, duration: float) -> None:
        for grid, offset in enumerate(self.offsets):
            self._emit(grid, window_count(duration - offset, self.window, at_least_one=offset == 0), duration)

    def _emit(self, grid: int, stop: int, duration: float | None = None) -> None:
        a_acc, v_acc = self.audio.accs[grid], self.video.accs[grid]
        first = a_acc.first
        if stop <= first:
            return
        final = duration is not None
        a_mean, a_std, a_has = a_acc.pop(stop, final=final)
        v_mean, _, v_has = v_acc.pop(stop, final=final)
        start = self.offsets[grid] + np.arange(first, stop) * self.window
        end = start + self.window
        if final:
            end = np.minimum(end, duration)
            end[-1] = max(duration, start[-1])
        self.sink(WindowBlock(
            grid=grid,
            first=first,
            start=start,
            end=end,
            audio=np.where(a_has[:, None], np.hstack([a_mean, a_std]), 0.0).astype(np.float32),
            video=np.where(v_has[:, None], v_mean, 0.0).astype(np.float32),
            window_has_audio=a_has,
            window_has_video=v_has,
        ))


@register_extractor
class BasicExtractor(FeatureExtractor):
    """Colour, edge, layout and motion descriptors of sampled frames; log-mel and spectral shape of the sound.

    Per window of ``window`` seconds: video = the mean of the sampled frames' 68 descriptors;
    audio = mean and standard deviation over the window's 10 ms frames of ``n_mels`` log-mel
    energies and 4 spectral-shape values. See ``docs/features.md`` for each entry.

    Parameters
    ----------
    sample_fps : float, default=2.0
        Frames analysed per second of video.
    frame_height : int, default=90
        Height frames are scaled to before analysis (width follows the aspect ratio).
    window : float, default=1.0
        Window length in seconds.
    audio_rate : int, default=16000
        Sample rate audio is resampled to.
    n_mels : int, default=64
    win_ms, hop_ms : float, default=25.0, 10.0
        Audio frame length and hop in milliseconds.
    fmin, fmax : float, default=125.0, 7500.0
        Frequency range of the mel bands in Hz.
    skip_nonref : bool, default=True
        Skip decoding non-reference frames when the stream's frame rate is at least four times
        ``sample_fps`` (reference frames alone then still come faster than the samples).
    skip_loop_filter : bool, default=True
        Skip the decoder's deblocking filter: about 15 % less decode time, a mean pixel change
        below 1/255 that does not matter at the analysis size.
    """

    name = "basic"
    version = 1

    def __init__(
        self,
        *,
        sample_fps: float = 2.0,
        frame_height: int = 90,
        window: float = 1.0,
        audio_rate: int = 16000,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        fmin: float = 125.0,
        fmax: float = 7500.0,
        skip_nonref: bool = True,
        skip_loop_filter: bool = True,
    ):
        self.sample_fps = sample_fps
        self.frame_height = frame_height
        self.window = window
        self.audio_rate = audio_rate
        self.n_mels = n_mels
        self.win_ms = win_ms
        self.hop_ms = hop_ms
        self.fmin = fmin
        self.fmax = fmax
        self.skip_nonref = skip_nonref
        self.skip_loop_filter = skip_loop_filter

    def validate_params(self) -> None:
        need = self._require
        num = (int, float)
        need(isinstance(self.sample_fps, num) and 0 < self.sample_fps <= 30, "sample_fps", "in (0, 30]")
        need(isinstance(self.frame_height, int) and 16 <= self.frame_height <= 1080 and self.frame_height % 2 == 0,
             "frame_height", "an even int in [16, 1080]")
        need(isinstance(self.window, num) and 0.1 <= self.window <= 60, "window", "in [0.1, 60] seconds")
        need(isinstance(self.window, num) and self.sample_fps * self.window >= 1, "window", "long enough for one sampled frame (sample_fps * window >= 1)")
        need(isinstance(self.audio_rate, int) and 8000 <= self.audio_rate <= 48000, "audio_rate", "an int in [8000, 48000]")
        need(isinstance(self.n_mels, int) and 1 <= self.n_mels <= 256, "n_mels", "an int in [1, 256]")
        need(isinstance(self.win_ms, num) and 5 <= self.win_ms <= 200, "win_ms", "in [5, 200]")
        need(isinstance(self.hop_ms, num) and 1 <= self.hop_ms <= self.win_ms, "hop_ms", "in [1, win_ms]")
        need(isinstance(self.fmin, num) and 0 <= self.fmin, "fmin", ">= 0")
        need(isinstance(self.fmax, num) and self.fmin < self.fmax <= self.audio_rate / 2, "fmax", "in (fmin, audio_rate / 2]")
        need(isinstance(self.skip_nonref, bool), "skip_nonref", "a bool")
        need(isinstance(self.skip_loop_filter, bool), "skip_loop_filter", "a bool")
        win = round(self.win_ms * self.audio_rate / 1000)
        mel_filterbank(sample_rate=self.audio_rate, n_fft=1 << (win - 1).bit_length(), n_mels=self.n_mels,
                       fmin=self.fmin, fmax=self.fmax)

    def window_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        frame = audio_frame_names(self.n_mels)
        return tuple(f"{n}_mean" for n in frame) + tuple(f"{n}_std" for n in frame), video_frame_names()

    def extract(self, path: str | os.PathLike, *, threads: int = 1) -> WindowFeatures:
        blocks: list[WindowBlock] = []
        end = self.stream(path, blocks.append, threads=threads)
        if end.error is not None:
            raise end.error
        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(b, name) for b in blocks])

        return WindowFeatures(
            start=joined("start"),
            end=joined("end"),
            audio=joined("audio"),
            video=joined("video"),
            window_has_audio=joined("window_has_audio"),
            window_has_video=joined("window_has_video"),
            duration=end.duration,
            has_audio=end.has_audio,
            has_video=end.has_video,
            info=end.info,
        )

    def stream(
        self,
        path: str | os.PathLike,
        on_windows: Callable[[WindowBlock], None],
        *,
        offsets: Sequence[float] = (0.0,),
        threads: int = 1,
    ) -> StreamEnd:
        offsets = check_offsets(offsets, self.window_length)
        audio, video = _AudioAnalyzer(self, offsets), _VideoAnalyzer(self, offsets)
        release = _Release(self, audio, video, offsets, on_windows)
        options = DecodeOptions(
            sample_fps=float(self.sample_fps),
            frame_height=self.frame_height,
            audio_rate=self.audio_rate,
            skip_nonref=self.skip_nonref,
            skip_loop_filter=self.skip_loop_filter,
            threads=threads,
        )

        def on_frames(times: np.ndarray, rgb: np.ndarray) -> None:
            video.push(times, rgb)
            release.check()

        def on_audio(samples: np.ndarray, offset: float) -> None:
            audio.push(samples, offset)
            release.check()

        stats = DecodeStats()
        error = None
        # The matrix products here are small: BLAS threads would only spin, and the parallelism
        # comes from processing several clips at once.
        with threadpool_limits(limits=1, user_api="blas"):
            try:
                decode_file(path, options, on_frames=on_frames, on_audio=on_audio, on_open=release.open, stats=stats)
            except MediaError as exc:
                if stats.duration <= 0:  # nothing decoded before the damage
                    raise
                error = exc
            audio.finish()
        release.finish(stats.duration)
        info = {
            "source_size": stats.source_size,
            "analysis_size": stats.analysis_size,
            "frames_decoded": stats.frames_decoded,
            "frames_sampled": stats.frames_sampled,
            "skipped_nonref": stats.skipped_nonref,
            "audio_seconds": stats.audio_samples / self.audio_rate,
            "declared_duration": stats.declared_duration,
            "notes": stats.notes,
        }
        return StreamEnd(float(stats.duration), stats.has_audio, stats.has_video, info, error)

    def __reduce__(self):  # plain pickling by parameters (Dask ships extractors to workers)
        return (_rebuild, (type(self), self.get_params()))


def _rebuild(cls, params):
    return cls(**params)



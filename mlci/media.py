"""Write real mp4 files (H.264 video, AAC audio) with PyAV.

Used by the demo corpus, the tests and the benchmarks, which all need clips a real decoder reads.
Encoding is single-threaded and uses fixed encoder options, so the same input gives the same bytes.
:class:`ClipWriter` takes frames and sound piece by piece, interleaved as a camera would write
them, so an hour-long test video never has to be held in memory; :func:`encode_clip` writes a
whole clip in one call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = ["ClipWriter", "encode_clip"]

_AAC_FRAME = 1024
#: x264's instruction sets up to AVX2. Its AVX-512 code gave a different bitstream from one encode
#: to the next for the same frames (about one encode in three on a Xeon with AVX-512); up to AVX2
#: the output is the same as x264's plain C code, encode after encode.
_X264_ASM = "MMX2,SSE,SSE2,SSE2Fast,SSSE3,SSE4.1,SSE4.2,AVX,AVX2,FMA3,BMI1,BMI2,LZCNT"


@lru_cache(maxsize=1)
def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in fh)
    except OSError:
        return False


def _x264_options(preset: str, crf: int) -> dict[str, str]:
    options = {"preset": preset, "crf": str(crf)}
    # Only where AVX-512 is present, which implies every set in the list; elsewhere x264 picks
    # its own (naming a set the CPU lacks would crash it).
    if _has_avx512():
        options["x264-params"] = f"asm={_X264_ASM}"
    return options


class ClipWriter:
    """An mp4 file written piece by piece: RGB frames and float audio, in any interleaving.

    Parameters
    ----------
    path : path-like
        Output file.
    size : (width, height), default=None
        Frame size (both even); None writes an audio-only file.
    fps : float, default=15
        Nominal frame rate.
    sample_rate : int, default=None
        Audio sample rate; None writes a video-only file.
    channels : {1, 2}, default=1
    variable_timing : bool, default=False
        Frames come with their own presentation times (stream time base 1/1000 s).
    faststart : bool, default=False
        Put the index at the front of the file, as web videos do (a file cut short then still
        opens and plays up to the cut).
    crf, preset :
        x264 quality and speed.

    Use as a context manager, or call :meth:`close`; a writer closed after an error leaves a file
    that ends where the error happened.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        size: tuple[int, int] | None = None,
        fps: float = 15,
        sample_rate: int | None = None,
        channels: int = 1,
        variable_timing: bool = False,
        faststart: bool = False,
        crf: int = 28,
        preset: str = "veryfast",
    ):
        import av

        if size is None and sample_rate is None:
            raise ValueError("a clip needs a frame size, a sample rate or both; got neither")
        if size is not None and (size[0] % 2 or size[1] % 2):
            raise ValueError(f"frame size must be even for yuv420p, got {size[0]}x{size[1]}")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels!r}")
        self.size, self.sample_rate, self.channels = size, sample_rate, channels
        self._container = av.open(str(path), mode="w", format="mp4",
                                  options={"movflags": "faststart"} if faststart else None)
        self._video = self._audio = None
        self._n_frames = self._n_samples = 0
        self._pending = np.zeros((channels, 0), np.float32)
        self._variable = variable_timing
        if size is not None:
            self._rate = Fraction(fps).limit_denominator(1001)
            self._video = self._container.add_stream("libx264", rate=self._rate)
            self._video.width, self._video.height, self._video.pix_fmt = size[0], size[1], "yuv420p"
            self._video.options = _x264_options(preset, crf)
            self._video.codec_context.thread_count = 1
            if variable_timing:
                self._video.codec_context.time_base = Fraction(1, 1000)
        if sample_rate is not None:
            self._audio = self._container.add_stream("aac", rate=sample_rate)
            self._audio.layout = "mono" if channels == 1 else "stereo"
            self._audio.codec_context.thread_count = 1

    def add_frames(self, frames: Iterable[np.ndarray], times: Sequence[float] | None = None) -> None:
        """Encode RGB frames (height, width, 3) uint8; ``times`` (seconds) only with ``variable_timing``."""
        import av

        if self._video is None:
            raise ValueError("this writer has no video stream (no size was given)")
        if (times is not None) != self._variable:
            raise ValueError("give frame times exactly when the writer was made with variable_timing=True")
        for i, array in enumerate(frames):
            if array.shape[1::-1] != tuple(self.size):
                raise ValueError(f"frame {self._n_frames} is {array.shape[1]}x{array.shape[0]}, "
                                 f"the clip is {self.size[0]}x{self.size[1]}")
            frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(array), format="yuv420p")
            # Explicit timestamps: left unset, the encoder's output depends on earlier encodes.
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
            else:
                frame.pts, frame.time_base = self._n_frames, 1 / self._rate
            self._n_frames += 1
            self._mux(self._video.encode(frame))

    def add_audio(self, samples: np.ndarray) -> None:
        """Encode float samples in [-1, 1]: shape (n,) mono or (channels, n)."""
        if self._audio is None:
            raise ValueError("this writer has no audio stream (no sample_rate was given)")
        samples = np.atleast_2d(np.asarray(samples, dtype=np.float32))
        if samples.shape[0] != self.channels:
            raise ValueError(f"audio has {samples.shape[0]} channels, the clip {self.channels}")
        buf = np.concatenate([self._pending, samples], axis=1)
        whole = buf.shape[1] // _AAC_FRAME * _AAC_FRAME
        self._encode_audio(buf[:, :whole])
        self._pending = buf[:, whole:]

    def _encode_audio(self, samples: np.ndarray) -> None:
        import av

        layout = self._audio.layout.name
        for start in range(0, samples.shape[1], _AAC_FRAME):
            chunk = np.ascontiguousarray(samples[:, start : start + _AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = self.sample_rate
            frame.pts, frame.time_base = self._n_samples, Fraction(1, self.sample_rate)
            self._n_samples += chunk.shape[1]
            self._mux(self._audio.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self._container.mux(packet)

    def finish_video(self) -> None:
        """Flush the video encoder (no frames after this)."""
        if self._video is not None:
            self._mux(self._video.encode())
            self._video = None

    def finish_audio(self) -> None:
        """Encode the last partial audio frame and flush the audio encoder."""
        if self._audio is not None:
            if self._pending.shape[1]:
                self._encode_audio(self._pending)
            self._mux(self._audio.encode())
            self._audio = None

    def close(self) -> None:
        try:
            self.finish_video()
            self.finish_audio()
        finally:
            self._container.close()

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._container.close()


def encode_clip(
    path: str | os.PathLike,
    *,
    frames: Iterable[np.ndarray] | None = None,
    fps: float = 15,
    audio: np.ndarray | None = None,
    sample_rate: int = 22050,
    frame_times: Sequence[float] | None = None,
    crf: int = 28,
    preset: str = "veryfast",
) -> None:
    """Encode an mp4 file: all its frames, then all its sound.

    Parameters
    ----------
    path : path-like
        Output file.
    frames : iterable of ndarray of shape (height, width, 3), dtype uint8, default=None
        RGB frames. ``None`` writes an audio-only file. Width and height must be even.
    fps : float, default=15
        Nominal frame rate; the stream time base is ``1/1000`` s when ``frame_times`` is given.
    audio : ndarray of shape (n_samples,) or (n_channels, n_samples), default=None
        Float samples in [-1, 1]. ``None`` writes a video-only file.
    sample_rate : int, default=22050
    frame_times : sequence of float, default=None
        Presentation time of each frame in seconds, for variable frame rate clips.
    crf, preset :
        x264 quality and speed.
    """
    if frames is None and audio is None:
        raise ValueError("encode_clip needs frames, audio or both; got neither")
    frames_iter = iter(frames) if frames is not None else None
    first = next(frames_iter, None) if frames_iter is not None else None
    samples = np.atleast_2d(np.asarray(audio, dtype=np.float32)) if audio is not None else None
    writer = ClipWriter(
        path,
        size=None if first is None else (first.shape[1], first.shape[0]),
        fps=fps,
        sample_rate=None if samples is None else sample_rate,
        channels=1 if samples is None else samples.shape[0],
        variable_timing=frame_times is not None,
        crf=crf,
        preset=preset,
    )
    with writer:
        if first is not None:
            writer.add_frames(_chain(first, frames_iter), frame_times)
            writer.finish_video()
        if samples is not None:
            writer.add_audio(samples)
def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range conversion done here rather than by swscale, whose first conversion in
    a process can differ from later ones; doing it ourselves keeps encodes byte-identical."""
    x = rgb.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
    return np.concatenate([planes[0].ravel(), planes[1].ravel(), planes[2].ravel()]).reshape(h * 3 // 2, w)


def _chain(first, rest):
    yield first
    yield from rest

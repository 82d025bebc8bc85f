"""Write real mp4 files (H.264 video, AAC audio) with PyAV.

Used by the demo corpus, the tests and the benchmarks, which all need clips a real decoder reads.
Encoding is single-threaded and uses fixed encoder options, so the same input gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from fractions import Fraction

import numpy as np

__all__ = ["encode_clip"]

_AAC_FRAME = 1024


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
    """Encode an mp4 file.

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
    import av

    if frames is None and audio is None:
        raise ValueError("encode_clip needs frames, audio or both; got neither")
    container = av.open(str(path), mode="w", format="mp4")
    try:
        vstream = astream = None
        frames_iter = iter(frames) if frames is not None else None
        first = next(frames_iter) if frames_iter is not None else None
        if first is not None:
            height, width = first.shape[:2]
            if height % 2 or width % 2:
                raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
            rate = Fraction(fps).limit_denominator(1001)
            vstream = container.add_stream("libx264", rate=rate)
            vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
            vstream.options = {"preset": preset, "crf": str(crf)}
            vstream.codec_context.thread_count = 1
            if frame_times is not None:
                vstream.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            samples = np.atleast_2d(np.asarray(audio, dtype=np.float32))
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono" if samples.shape[0] == 1 else "stereo"
            astream.codec_context.thread_count = 1

        if vstream is not None:
            for i, array in enumerate(_chain(first, frames_iter)):
                frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(array), format="yuv420p")
                # Explicit timestamps: left unset, the encoder's output depends on earlier encodes.
                if frame_times is not None:
                    frame.pts = int(round(frame_times[i] * 1000))
                    frame.time_base = Fraction(1, 1000)
                else:
                    frame.pts = i
                    frame.time_base = 1 / rate
                for packet in vstream.encode(frame):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)

        if astream is not None:
            layout = astream.layout.name
            for start in range(0, samples.shape[1], _AAC_FRAME):
                chunk = np.ascontiguousarray(samples[:, start : start + _AAC_FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    finally:
        container.close()


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

"""PyAV decoding that does only the work the features need.

- one pass over the container, demuxing video and audio packets together;
- frame-threaded video decoding (bit-exact, so threads never change a feature);
- non-reference frames skipped when the stream has enough reference frames for the sampling
  rate, and optionally the deblocking filter skipped (a tiny, deterministic change of pixels);
- every sampled frame scaled down at once (area filter, swscale) to a small RGB frame, so a 4K
  clip costs no more memory than a few decoded frames;
- audio resampled (swresample) to one rate, four seconds at a time; the caller mixes it down (a
  mean over channels).

Errors are translated into :class:`~mlci.features.MediaError` subclasses that name the problem.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from mlci.features.exceptions import (
    DecodeError,
    EmptyFileError,
    MediaError,
    NoContentError,
    NoStreamsError,
    NotMediaError,
    TruncatedMediaError,
)

__all__ = ["DecodeOptions", "DecodeStats", "analysis_size", "decode_file"]

#: Box types an ISO-BMFF (mp4/mov/m4a) file may start with.
_ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"uuid"}
#: Other container signatures: Matroska/WebM, RIFF (AVI/WAV), MPEG-TS, FLV, Ogg.
_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"RIFF", b"\x47", b"FLV", b"OggS")
#: H.264/HEVC encoders put at most 3 non-reference frames between two reference frames (x264's
#: default maximum of consecutive B-frames), so the reference frames alone come at >= rate / 4.
_MAX_NONREF_RUN = 3
#: Undecodable packets tolerated per file (or 5 % of the packets, if more) before giving up.
_MAX_BAD_PACKETS = 10
#: Decoded content may fall short of the declared duration by this many seconds (or 5 %) before
#: the file counts as truncated (edit lists, encoder delay and the last frame's duration differ a bit).
_TRUNCATION_SLACK = 0.5


def _looks_like_media(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head[4:8] in _ISO_BOXES or any(head.startswith(sig) for sig in _SIGNATURES)


def _describe(exc: BaseException) -> str:
    """An FFmpeg error without the (temporary, local) file name PyAV appends."""
    strerror = getattr(exc, "strerror", None)
    return f"{strerror} ({getattr(exc, 'errno', '?')})" if strerror else str(exc)


def analysis_size(width: int, height: int, frame_height: int) -> tuple[int, int]:
    """(width, height) frames are scaled to: ``frame_height`` high, source aspect, even width."""
    aspect = width / height if width > 0 and height > 0 else 16 / 9
    w = round(frame_height * min(max(aspect, 0.25), 4.0) / 2) * 2
    return max(w, 2), frame_height


@dataclass(frozen=True)
class DecodeOptions:
    """How :func:`decode_file` samples and decodes (all but ``threads`` change the features)."""

    sample_fps: float
    frame_height: int
    audio_rate: int
    skip_nonref: bool = True
    skip_loop_filter: bool = True
    threads: int = 1


@dataclass
class DecodeStats:
    """What one decode did, for logs and tests."""

    has_video: bool = False
    has_audio: bool = False
    source_size: tuple[int, int] | None = None
    analysis_size: tuple[int, int] | None = None
    frames_decoded: int = 0
    frames_sampled: int = 0
    skipped_nonref: bool = False
    audio_samples: int = 0
    audio_offset: float = 0.0
    video_end: float = 0.0
    audio_end: float = 0.0
    declared_duration: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return max(self.video_end, self.audio_end)


class _FrameSampler:
    """Picks the frame on screen at each sample time ``k / fps`` and hands batches of small RGB frames on.

    A frame is on screen from its timestamp until the next frame's, so variable frame rates and
    skipped frames are handled by timestamps alone.
    """

    def __init__(self, fps: float, size: tuple[int, int], sink: Callable[[np.ndarray, np.ndarray], None], batch: int = 32):
        from av.video.reformatter import Interpolation, VideoReformatter

        self.step, self.size, self.sink, self.batch = 1.0 / fps, size, sink, batch
        # One reformatter keeps one scaler context; bit-exact flags make the scaled pixels the same
        # on every CPU, and one thread avoids a thread start per frame.
        self.reformatter = VideoReformatter()
        self.interpolation = Interpolation.AREA | Interpolation.BITEXACT | Interpolation.ACCURATE_RND
        self.k = 0
        self.prev = None
        self.prev_rgb = None
        self.times: list[float] = []
        self.frames: list[np.ndarray] = []
        self.last_time = None
        self.intervals: list[float] = []

    def _rgb(self):
        if self.prev_rgb is None:
            w, h = self.size
            self.prev_rgb = self.reformatter.reformat(
                self.prev, width=w, height=h, format="rgb24", interpolation=self.interpolation, threads=1
            ).to_ndarray()
        return self.prev_rgb

    def _emit_until(self, t_limit: float) -> None:
        # The tolerance keeps a sample time that equals a timestamp up to rounding on the new frame.
        while self.k * self.step < t_limit - 1e-6:
            self.times.append(self.k * self.step)
            self.frames.append(self._rgb())
            self.k += 1
            if len(self.frames) >= self.batch:
                self.flush()

    def push(self, frame, t: float) -> None:
        if self.last_time is not None and t > self.last_time:
            self.intervals.append(t - self.last_time)
        if self.prev is not None:
            self._emit_until(t)
        self.prev, self.prev_rgb, self.last_time = frame, None, t

    def finish(self, end: float) -> None:
        if self.prev is not None:
            self._emit_until(max(end, 2e-6))
        self.flush()
        self.prev = self.prev_rgb = None

    def flush(self) -> None:
        if self.frames:
            self.sink(np.asarray(self.times), np.stack(self.frames))
            self.times, self.frames = [], []

    @property
    def frame_duration(self) -> float:
        return float(np.median(self.intervals)) if self.intervals else 0.0


_NP_SAMPLE = {"flt": np.float32, "fltp": np.float32, "dbl": np.float64, "dblp": np.float64,
              "s16": np.int16, "s16p": np.int16, "s32": np.int32, "s32p": np.int32}


class _AudioStream:
    """Collects decoded audio frames and resamples them ``block`` seconds at a time.

    One resampler call (and one array per output) per block instead of per decoded frame: the
    per-call overhead was larger than the resampling itself, and it holds the GIL, which the other
    worker threads' decoders wait for.
    """

    def __init__(self, rate: int, sink: Callable[[np.ndarray, float], None], stats: DecodeStats, block: float = 4.0):
        self.rate, self.sink, self.stats, self.block = rate, sink, stats, block
        self.key = None
        self.resampler = None
        self.pending: list[list[np.ndarray]] = []  # per channel: decoded chunks not yet resampled
        self.n_pending = 0
        self.pts = 0
        self.offset = None

    @staticmethod
    def _planes(frame) -> list[np.ndarray]:
        """One array per channel in the frame's sample format, without ``to_ndarray``'s overhead."""
        fmt, n, ch = frame.format, frame.samples, frame.layout.nb_channels
        dtype = _NP_SAMPLE.get(fmt.name)
        if dtype is None:
            arr = frame.to_ndarray()
            return list(arr.reshape(ch, -1) if fmt.is_planar else arr.reshape(-1, ch).T)
        if fmt.is_planar:
            return [np.frombuffer(p, dtype=dtype, count=n) for p in frame.planes[:ch]]
        return list(np.frombuffer(frame.planes[0], dtype=dtype, count=n * ch).reshape(n, ch).T)

    def push(self, frame, t: float) -> None:
        import av

        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self.key:  # the stream changed format: finish with the old resampler
            self.flush(final=True)
            self.key = key
            self.resampler = av.AudioResampler(format="flt", rate=self.rate)
        if self.offset is None:
            self.offset = t
            self.stats.audio_offset = t
        if not self.pending:
            self.pending = [[] for _ in range(frame.layout.nb_channels)]
        for chunks, plane in zip(self.pending, self._planes(frame)):
            chunks.append(plane)
        self.n_pending += frame.samples
        if self.n_pending >= self.block * frame.sample_rate:
            self.flush()

    def flush(self, final: bool = False) -> None:
        import av

        outs = []
        if self.pending:
            fmt_name, layout, sample_rate = self.key
            # np.stack per decoded frame cost more than the resampling: concatenate per channel once.
            planar = np.stack([np.concatenate(chunks) for chunks in self.pending])
            fmt = av.AudioFormat(fmt_name)
            data = planar if fmt.is_planar else np.ascontiguousarray(planar.T).reshape(1, -1)
            big = av.AudioFrame.from_ndarray(data, format=fmt_name, layout=layout)
            big.sample_rate = sample_rate
            big.pts, big.time_base = self.pts, Fraction(1, sample_rate)
            self.pts += planar.shape[1]
            self.pending, self.n_pending = [], 0
            outs = self.resampler.resample(big)
        if final and self.resampler is not None:
            outs = list(outs) + list(self.resampler.resample(None))
        for out in outs:
            ch = out.layout.nb_channels
            samples = np.frombuffer(out.planes[0], dtype=np.float32, count=out.samples * ch).reshape(-1, ch)
            self.stats.audio_samples += samples.shape[0]
            self.sink(samples.copy(), self.offset)


def _open(path: Path):
    import av

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DecodeError(f"cannot read {path.name}: {exc}") from exc
    if size == 0:
        raise EmptyFileError("the file has 0 bytes")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_media(path):
            raise TruncatedMediaError(
                f"the file starts like a media container but cannot be opened ({size} bytes): {_describe(exc)}"
            ) from exc
        raise NotMediaError(f"not a media file the decoder recognises ({size} bytes): {_describe(exc)}") from exc


def decode_file(
    path: str | os.PathLike,
    options: DecodeOptions,
    *,
    on_frames: Callable[[np.ndarray, np.ndarray], None],
    on_audio: Callable[[np.ndarray, float], None],
    on_open: Callable[[DecodeStats], None] | None = None,
    stats: DecodeStats | None = None,
) -> DecodeStats:
    """Decode ``path`` once, calling the sinks as data arrives.

    When the file breaks off or fails part way, everything decoded before the damage still reaches
    the sinks and ``stats`` (pass one in to read it after the error) before the error is raised.

    Parameters
    ----------
    path : path-like
    options : DecodeOptions
    on_frames : callable(times, rgb)
        Sampled frames: ``times`` (seconds, shape (n,)) and ``rgb`` (n, height, width, 3) uint8.
    on_audio : callable(samples, offset)
        Consecutive float32 chunks of shape (n_samples, n_channels) at ``options.audio_rate``;
        ``offset`` is the time of the first sample of the stream (the same in every call).
    on_open : callable(stats), default=None
        Called once the streams are known (``stats.has_video`` / ``has_audio``: the file has such a
        stream), before any data is sent.
    stats : DecodeStats, default=None
        Filled in as decoding goes (a new one when None).

    Returns
    -------
    DecodeStats

    Raises
    ------
    MediaError
        The file is empty, not media, truncated, has no streams or nothing decodable.
    """
    import av

    path = Path(path)
    stats = DecodeStats() if stats is None else stats
    container = _open(path)
    try:
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        if vstream is None and astream is None:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise NoStreamsError(f"no video or audio stream (streams: {', '.join(kinds)})")
        t0 = container.start_time / av.time_base if container.start_time is not None else 0.0
        if container.duration:
            stats.declared_duration = container.duration / av.time_base

        sampler = None
        if vstream is not None:
            cc = vstream.codec_context
            cc.thread_type = "FRAME" if options.threads > 1 else "SLICE"
            cc.thread_count = max(1, options.threads)
            rate = vstream.average_rate or vstream.guessed_rate
            if options.skip_nonref and rate and float(rate) >= (_MAX_NONREF_RUN + 1) * options.sample_fps:
                cc.skip_frame = "NONREF"
                stats.skipped_nonref = True
            if options.skip_loop_filter:
                cc.options = {"skip_loop_filter": "all"}
            stats.source_size = (cc.width, cc.height)
            stats.analysis_size = analysis_size(cc.width, cc.height, options.frame_height)
            sampler = _FrameSampler(options.sample_fps, stats.analysis_size, on_frames)
            stats.has_video = True

        audio = None
        if astream is not None:
            # Packed float at the target rate, channels kept: the downmix is a plain mean, done by
            # the caller (swresample's stereo downmix is (L + R) / sqrt(2), which would make levels
            # depend on the channel count).
            audio = _AudioStream(options.audio_rate, on_audio, stats)
            stats.has_audio = True
        if on_open is not None:
            on_open(stats)

        n_video_index = 0
        bad_packets = n_packets = 0
        streams = [s for s in (vstream, astream) if s is not None]

        def where() -> str:
            return (
                f"after {stats.frames_decoded} video frames and "
                f"{stats.audio_samples / options.audio_rate:.2f} s of audio"
            )

        def decode(packet):
            # A damaged packet is skipped (the decoder conceals it in later frames); too many of
            # them means the file is broken, not damaged.
            nonlocal bad_packets
            try:
                return packet.decode()
            except av.error.FFmpegError as exc:
                bad_packets += 1
                if bad_packets > max(_MAX_BAD_PACKETS, 0.05 * n_packets):
                    raise DecodeError(f"{bad_packets} undecodable packets {where()}; last error: {_describe(exc)}") from exc
                return ()

        failure: MediaError | None = None
        try:
            for packet in container.demux(*streams):
                n_packets += 1
                if packet.stream is vstream:
                    for frame in decode(packet):
                        if frame.time is not None:
                            t = frame.time - t0
                        else:  # no timestamp: assume the nominal rate
                            t = n_video_index / float(vstream.average_rate or 25)
                        n_video_index += 1
                        stats.frames_decoded += 1
                        sampler.push(frame, t)
                else:
                    for frame in decode(packet):
                        audio.push(frame, max(0.0, (frame.time - t0) if frame.time is not None else 0.0))
        except DecodeError as exc:
            failure = exc
        except av.error.FFmpegError as exc:
            if isinstance(exc, (av.error.InvalidDataError, av.error.EOFError)):
                failure = TruncatedMediaError(f"the container breaks off {where()}: {_describe(exc)}")
            else:
                failure = DecodeError(f"decoding failed {where()}: {_describe(exc)}")
            failure.__cause__ = exc
        # What was decoded before any failure still reaches the sinks.
        if audio is not None:
            audio.flush(final=True)
        if bad_packets:
            stats.notes.append(f"{bad_packets} undecodable packets skipped")

        if sampler is not None and sampler.last_time is not None:
            rate = vstream.average_rate or vstream.guessed_rate
            nominal = 1.0 / float(rate) if rate else (sampler.frame_duration or 0.04)
            stats.video_end = sampler.last_time + nominal
            if vstream.duration and vstream.time_base and failure is None:
                # Skipped non-reference frames may have followed the last decoded one: trust the
                # stream's declared end when it is that close.
                declared_end = float(vstream.duration * vstream.time_base) + (vstream.start_time or 0) * float(vstream.time_base) - t0
                if 0 <= declared_end - stats.video_end <= (_MAX_NONREF_RUN + 1) * nominal:
                    stats.video_end = declared_end
            sampler.finish(stats.video_end)
            stats.frames_sampled = sampler.k
        else:
            stats.has_video = False
            if vstream is not None:
                stats.notes.append("video stream without decodable frames")
        if audio is not None and stats.audio_samples > 0:
            stats.audio_end = stats.audio_offset + stats.audio_samples / options.audio_rate
        else:
            if astream is not None:
                stats.notes.append("audio stream without decodable samples")
            stats.has_audio = False
        if failure is not None:
            raise failure
        if not stats.has_video and not stats.has_audio:
            raise NoContentError("the streams hold no decodable frame or sample")
        declared = stats.declared_duration
        if declared and stats.duration < declared - max(_TRUNCATION_SLACK, 0.05 * declared):
            raise TruncatedMediaError(
                f"decoded {stats.duration:.2f} s of the {declared:.2f} s the container declares"
            )
        return stats
    finally:
        container.close()


"""Audio descriptors: log-mel band energies and spectral shape, per 10 ms frame.

All functions are pure numpy. The mel filterbank is written here (HTK mel scale, triangular
filters) rather than taken from an audio library, which keeps the dependencies small.
"""

from __future__ import annotations

import numpy as np

__all__ = ["audio_frame_descriptors", "audio_frame_names", "frame_signal", "hann_window", "mel_filterbank"]

SPECTRAL_NAMES = ("centroid", "flatness", "zcr", "log_rms")


def hz_to_mel(hz):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters on the HTK mel scale, evaluated at the FFT bin frequencies.

    Returns
    -------
    ndarray of shape (n_fft // 2 + 1, n_mels)
        Column ``m`` weights the spectrum bins of band ``m`` (peak weight 1).

    Raises
    ------
    ValueError
        If a band falls between two FFT bins and would be empty (too many bands for ``n_fft``).
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}")
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, center, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (center - lo)
    down = (hi - freqs[None, :]) / (hi - center)
    fb = np.maximum(0.0, np.minimum(up, down)).T
    empty = np.flatnonzero(fb.sum(axis=0) == 0)
    if empty.size:
        raise ValueError(f"n_mels={n_mels} is too many for n_fft={n_fft}: bands {empty.tolist()} contain no FFT bin")
    return fb


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (the STFT convention)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


def audio_frame_names(n_mels: int) -> tuple[str, ...]:
    return tuple(f"logmel_{i:02d}" for i in range(n_mels)) + SPECTRAL_NAMES


def frame_signal(signal: np.ndarray, *, win_length: int, hop_length: int) -> np.ndarray:
    """Frames of ``signal`` starting every ``hop_length`` samples (a view; trailing partial frame dropped)."""
    n = 1 + (signal.size - win_length) // hop_length
    return np.lib.stride_tricks.sliding_window_view(signal, win_length)[: n * hop_length : hop_length]


def audio_frame_descriptors(
    frames: np.ndarray, *, window: np.ndarray, n_fft: int, filterbank: np.ndarray, sample_rate: int
) -> np.ndarray:
    """Descriptors of audio frames.

    Parameters
    ----------
    frames : ndarray of shape (n_frames, win_length)
        Mono samples in [-1, 1].
    window : ndarray of shape (win_length,)
    n_fft : int
    filterbank : ndarray of shape (n_fft // 2 + 1, n_mels)
    sample_rate : int

    Returns
    -------
    ndarray of shape (n_frames, n_mels + 4), float64
        ``ln(mel magnitude + 0.01)`` per band (the VGGish convention: silence is about -4.6, a
        loud tone about +5); spectral centroid as a fraction of the Nyquist frequency; spectral
        flatness (geometric over arithmetic mean of the power spectrum, 0 = tonal, 1 = noise);
        zero-crossing rate (crossings per sample); ``log10(RMS + 1e-4)``.
    """
    import scipy.fft

    # float32 throughout: half the memory traffic of float64, and far more precision than the
    # descriptors need.
    x = np.asarray(frames, dtype=np.float32)
    taper = np.asarray(window, dtype=np.float32)
    mag = np.abs(scipy.fft.rfft(x * taper, n=n_fft, axis=1))
    logmel = np.log(mag @ filterbank.astype(np.float32) + np.float32(0.01))
    power = mag * mag
    total = power.sum(axis=1, dtype=np.float64)
    freqs = np.arange(power.shape[1], dtype=np.float32) * np.float32(sample_rate / n_fft)
    centroid = np.divide(power @ freqs, total, out=np.zeros_like(total), where=total > 1e-10) / (sample_rate / 2)
    flatness = np.exp(np.log(power + np.float32(1e-10)).mean(axis=1, dtype=np.float64)) / (
        power.mean(axis=1, dtype=np.float64) + 1e-10
    )
    signs = np.signbit(x)
    zcr = (signs[:, 1:] != signs[:, :-1]).mean(axis=1)
    log_rms = np.log10(np.sqrt(np.square(x, dtype=np.float64).mean(axis=1)) + 1e-4)
    return np.column_stack([logmel.astype(np.float64), centroid, flatness, zcr, log_rms])

"""Merging scored windows into segments: hysteresis, gap bridging, a minimum duration.

Each window stands for the ``hop``-long slice around its centre (windows overlap, so their full
extent would stretch every segment by half the overlap on each side); the first and last window
reach the ends of the video. A segment opens at a window scoring at least ``enter`` and stays open
while windows score at least ``exit`` (hysteresis: one dip just under ``enter`` does not split it).
Segments at most ``max_gap`` seconds apart are then joined, and segments shorter than
``min_duration`` dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlci.tables import SEGMENTS, conform

__all__ = ["SegmentRule", "merge_segments", "window_slices"]


@dataclass(frozen=True)
class SegmentRule:
    """How windows above a concept's threshold become segments.

    Parameters
    ----------
    hysteresis : float, default=0.1
        A segment opens at ``score >= threshold`` and stays open while ``score >= threshold - hysteresis``.
    min_duration : float, default=2.0
        Seconds; shorter segments (after bridging) are dropped.
    max_gap : float, default=1.5
        Seconds; segments this close are joined.
    """

    hysteresis: float = 0.1
    min_duration: float = 2.0
    max_gap: float = 1.5

    def check(self) -> None:
        if not 0.0 <= self.hysteresis < 1.0:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis!r}")
        for name in ("min_duration", "max_gap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")


def window_slices(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slice of time each window stands for: from halfway to the previous window's centre to
    halfway to the next one's (one hop around its centre), the first and last window reaching the
    video's start and end."""
    starts, ends = np.asarray(starts, float), np.asarray(ends, float)
    if starts.size == 0:
        return starts, ends
    centre = (starts + ends) / 2
    lo = np.r_[starts[0], (centre[:-1] + centre[1:]) / 2]
    hi = np.r_[(centre[:-1] + centre[1:]) / 2, ends[-1]]
    return lo, hi


def merge_segments(
    starts: np.ndarray,
    ends: np.ndarray,
    scores: np.ndarray,
    *,
    threshold: float,
    rule: SegmentRule,
    tag: str,
) -> pd.DataFrame:
    """Segments of one concept as a :data:`~mlci.tables.SEGMENTS` table (possibly empty).

    Parameters
    ----------
    starts, ends : ndarray of shape (n_windows,)
        Window bounds in seconds, in order.
    scores : ndarray of shape (n_windows,)
    threshold : float
        The concept's enter threshold; the exit threshold is ``threshold - rule.hysteresis``.
    rule : SegmentRule
    tag : str
        The concept's name.
    """
    rule.check()
    scores = np.asarray(scores, float)
    lo, hi = window_slices(starts, ends)
    exit_ = max(0.0, threshold - rule.hysteresis)
    runs: list[list[int]] = []  # [first window, last window] of each open-then-closed run
    open_ = False
    for i, s in enumerate(scores):
        if open_ and s >= exit_:
            runs[-1][1] = i
        elif s >= threshold:
            runs.append([i, i])
            open_ = True
        else:
            open_ = False
    merged: list[list[int]] = []
    for run in runs:
        if merged and lo[run[0]] - hi[merged[-1][1]] <= rule.max_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    rows = []
    for a, b in merged:
        begin, end = float(lo[a]), float(hi[b])
        if end - begin < rule.min_duration:
            continue
        part = scores[a : b + 1]
        peak = a + int(np.argmax(part))
        rows.append({
            "tag": tag,
            "time_begin": round(begin, 3),
            "time_end": round(end, 3),
            "duration": round(end - begin, 3),
            "score_peak": round(float(scores[peak]), 4),
            "time_peak": round(float((starts[peak] + ends[peak]) / 2), 3),
            "score_mean": round(float(part.mean()), 4),
            "n_windows": b - a + 1,
            "threshold_enter": round(threshold, 4),
            "threshold_exit": round(exit_, 4),
        })
    return conform(pd.DataFrame(rows, columns=list(SEGMENTS.columns)), SEGMENTS)

"""Running per-window sums, so that a file of any length is summarised in bounded memory."""

from __future__ import annotations

import numpy as np

__all__ = ["WindowAccumulator", "window_layout"]


class WindowAccumulator:
    """Sums, sums of squares and counts of descriptor rows per window index (NaN entries skipped)."""

    def __init__(self, n_features: int):
        self.n_features = n_features
        self._sum = np.zeros((0, n_features))
        self._sq = np.zeros((0, n_features))
        self._count = np.zeros((0, n_features))

    def _grow(self, n_windows: int) -> None:
        if n_windows > self._sum.shape[0]:
            extra = max(n_windows - self._sum.shape[0], 16)
            pad = np.zeros((extra, self.n_features))
            self._sum, self._sq, self._count = (np.vstack([a, pad]) for a in (self._sum, self._sq, self._count))

    def add(self, windows: np.ndarray, rows: np.ndarray) -> None:
        """Add ``rows`` (shape (n, n_features)) to the windows ``windows`` (shape (n,), ints >= 0)."""
        if len(rows) == 0:
            return
        windows = np.asarray(windows, dtype=np.int64)
        self._grow(int(windows.max()) + 1)
        valid = ~np.isnan(rows)
        clean = np.where(valid, rows, 0.0)
        if np.all(windows[1:] >= windows[:-1]):
            # Rows arrive in time order: sum runs of equal windows with reduceat (much cheaper than add.at).
            starts = np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]])
            target = windows[starts]
            self._sum[target] += np.add.reduceat(clean, starts, axis=0)
            self._sq[target] += np.add.reduceat(clean * clean, starts, axis=0)
            self._count[target] += np.add.reduceat(valid.astype(np.float64), starts, axis=0)
        else:
            np.add.at(self._sum, windows, clean)
            np.add.at(self._sq, windows, clean * clean)
            np.add.at(self._count, windows, valid)

    def summarise(self, n_windows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, standard deviation and whether any row was added, for windows ``0..n_windows-1``.

        Rows added beyond the last window (the remainder of the file) count in the last window.
        Entries without any value are 0.
        """
        self._grow(n_windows)
        s, q, c = self._sum[:n_windows].copy(), self._sq[:n_windows].copy(), self._count[:n_windows].copy()
        if n_windows > 0:
            s[-1] += self._sum[n_windows:].sum(axis=0)
            q[-1] += self._sq[n_windows:].sum(axis=0)
            c[-1] += self._count[n_windows:].sum(axis=0)
        mean = np.divide(s, c, out=np.zeros_like(s), where=c > 0)
        var = np.divide(q, c, out=np.zeros_like(q), where=c > 0) - mean * mean
        return mean, np.sqrt(np.maximum(var, 0.0)), c.max(axis=1, initial=0) > 0


def window_layout(duration: float, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of the windows of a file of ``duration`` seconds.

    Windows are ``window`` long; a trailing remainder shorter than half a window joins the last
    window, a longer one is a window of its own, and a file shorter than a window has one window.
    """
    n = max(1, int(np.floor(duration / window + 0.5)))
    start = np.arange(n) * window
    end = np.minimum(start + window, duration)
    end[-1] = max(duration, start[-1])
    return start.astype(np.float64), end.astype(np.float64)

"""Running per-window sums, so that a file of any length is summarised in bounded memory."""

from __future__ import annotations

import numpy as np

__all__ = ["WindowAccumulator", "window_count", "window_layout"]


class WindowAccumulator:
    """Sums, sums of squares and counts of descriptor rows per window index (NaN entries skipped).

    Windows are handed out in order by :meth:`pop`, which forgets them, so the memory held is that
    of the windows still open, however long the file. Rows for a negative window index (before the
    grid starts) are ignored.
    """

    def __init__(self, n_features: int):
        self.n_features = n_features
        #: Index of the first window not yet popped.
        self.first = 0
        self._sum = np.zeros((0, n_features))
        self._sq = np.zeros((0, n_features))
        self._count = np.zeros((0, n_features))

    def _grow(self, n_held: int) -> None:
        if n_held > self._sum.shape[0]:
            size = max(n_held, 2 * self._sum.shape[0], 16)
            pad = np.zeros((size - self._sum.shape[0], self.n_features))
            self._sum, self._sq, self._count = (np.vstack([a, pad]) for a in (self._sum, self._sq, self._count))

    def add(self, windows: np.ndarray, rows: np.ndarray) -> None:
        """Add ``rows`` (shape (n, n_features)) to the windows ``windows`` (shape (n,), ints)."""
        windows = np.asarray(windows, dtype=np.int64)
        if windows.size and windows.min() < 0:
            keep = windows >= 0
            windows, rows = windows[keep], rows[keep]
        if len(rows) == 0:
            return
        if windows.min() < self.first:
            raise ValueError(f"rows for window {int(windows.min())}, which was already handed out (first open: {self.first})")
        windows = windows - self.first
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

    def pop(self, stop: int, *, final: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, standard deviation and whether any row was added, for windows ``first..stop-1``.

        The windows are then forgotten (``first`` becomes ``stop``). With ``final``, rows added
        beyond the last window (the remainder of the file) count in the last window and the
        accumulator is emptied. Entries without any value are 0.
        """
        n = max(0, stop - self.first)
        self._grow(n)
        s, q, c = self._sum[:n].copy(), self._sq[:n].copy(), self._count[:n].copy()
        if final and n > 0:
            s[-1] += self._sum[n:].sum(axis=0)
            q[-1] += self._sq[n:].sum(axis=0)
            c[-1] += self._count[n:].sum(axis=0)
        keep = 0 if final else self._sum.shape[0] - n
        # Copies, so that the popped part's memory is released.
        self._sum, self._sq, self._count = (a[n : n + keep].copy() for a in (self._sum, self._sq, self._count))
        self.first += n
        mean = np.divide(s, c, out=np.zeros_like(s), where=c > 0)
        var = np.divide(q, c, out=np.zeros_like(q), where=c > 0) - mean * mean
        return mean, np.sqrt(np.maximum(var, 0.0)), c.max(axis=1, initial=0) > 0


def window_count(duration: float, window: float, *, at_least_one: bool = True) -> int:
    """How many windows :func:`window_layout` lays over ``duration`` seconds."""
    n = int(np.floor(duration / window + 0.5)) if duration > 0 else 0
    return max(1, n) if at_least_one else max(0, n)


def window_layout(duration: float, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of the windows of a file of ``duration`` seconds.

    Windows are ``window`` long; a trailing remainder shorter than half a window joins the last
    window, a longer one is a window of its own, and a file shorter than a window has one window.
    """
    n = window_count(duration, window)
    start = np.arange(n) * window
    end = np.minimum(start + window, duration)
    end[-1] = max(duration, start[-1])
    return start.astype(np.float64), end.astype(np.float64)

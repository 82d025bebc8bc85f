"""Video descriptors of small RGB frames: colour, brightness, edges, layout and motion.

All functions are pure numpy and work on a batch of frames at once (per-frame Python overhead
would otherwise cost more than the arithmetic). Colour statistics go through a 15-bit colour
histogram (5 bits per channel) and one small matrix product with a table of each colour's
hue/saturation/value/luma, which is several times cheaper than converting every pixel.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["NEUTRAL", "N_VIDEO_FRAME_FEATURES", "video_frame_descriptors", "video_frame_names"]

HUE_BINS, SAT_BINS, VAL_BINS, ORIENT_BINS, GRID = 12, 4, 8, 8, 3
#: Gradient magnitude (Sobel, |gx| + |gy|, scaled so a full black/white step reads 1) above which
#: a pixel is an edge.
EDGE_THRESHOLD = 0.1
#: Colours below this saturation or value have no meaningful hue.
HUE_MIN_SAT = HUE_MIN_VAL = 0.2
#: Luma change between sampled frames above which a pixel counts as moving.
MOTION_THRESHOLD = 0.1
_BITS = 5
_LEVELS = 1 << _BITS


def video_frame_names() -> tuple[str, ...]:
    names = [f"hue_{i:02d}" for i in range(HUE_BINS)]
    names += [f"sat_{i}" for i in range(SAT_BINS)]
    names += [f"val_{i}" for i in range(VAL_BINS)]
    names += ["brightness", "brightness_std", "saturation", "saturation_std", "colourfulness"]
    names += ["edge_density", "gradient"] + [f"orient_{i}" for i in range(ORIENT_BINS)]
    names += [f"grid_{r}{c}_{ch}" for r in range(GRID) for c in range(GRID) for ch in "rgb"]
    names += ["motion", "motion_frac"]
    return tuple(names)


N_VIDEO_FRAME_FEATURES = len(video_frame_names())


def _neutral() -> np.ndarray:
    """The descriptors of a "neutral" frame: uniform histograms, mid-grey levels, no edges or motion.

    Descriptors are returned as offsets from it. Clip vectors are L2-normalised, and without the
    offset the large, nearly constant entries (mean colours around 0.5, histogram bins around
    1/bins) would set the direction of every vector; a cross-validated logistic regression on the
    demo corpus's video vectors went from macro AP 0.60 to 0.73 with it.
    """
    values = []
    for name in video_frame_names():
        if name.startswith("hue_"):
            values.append(1 / HUE_BINS)
        elif name.startswith("sat_"):
            values.append(1 / SAT_BINS)
        elif name.startswith(("val_", "orient_")):
            values.append(1 / VAL_BINS if name.startswith("val_") else 1 / ORIENT_BINS)
        elif name.startswith("grid_") or name in ("brightness", "saturation"):
            values.append(0.5)
        else:
            values.append(0.0)
    return np.asarray(values)


NEUTRAL = _neutral()


def _one_hot(values: np.ndarray, bins: int) -> np.ndarray:
    return np.eye(bins)[np.minimum((values * bins).astype(np.int64), bins - 1)]


@lru_cache(maxsize=1)
def _colour_table() -> np.ndarray:
    """Per quantised colour: hue/sat/val one-hots, then luma, luma², s, s², rg, rg², yb, yb²."""
    q = (np.arange(_LEVELS) + 0.5) / _LEVELS
    r, g, b = (a.ravel() for a in np.meshgrid(q, q, q, indexing="ij"))
    v = np.maximum(np.maximum(r, g), b)
    c = v - np.minimum(np.minimum(r, g), b)
    s = c / v
    safe = np.where(c > 0, c, 1.0)
    hue = np.where(v == r, ((g - b) / safe) % 6, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    chromatic = ((s >= HUE_MIN_SAT) & (v >= HUE_MIN_VAL) & (c > 0))[:, None]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    rg, yb = r - g, 0.5 * (r + g) - b
    table = np.column_stack(
        [_one_hot(hue, HUE_BINS) * chromatic, _one_hot(s, SAT_BINS), _one_hot(v, VAL_BINS),
         luma, luma**2, s, s**2, rg, rg**2, yb, yb**2]
    )
    return table.astype(np.float32)


def video_frame_descriptors(rgb: np.ndarray, prev_luma: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of a batch of frames.

    Parameters
    ----------
    rgb : ndarray of shape (n_frames, height, width, 3), dtype uint8
        Consecutive sampled frames.
    prev_luma : ndarray of shape (height, width), default=None
        Luma of the sampled frame before the batch, for the motion of the first frame; None means
        the batch starts the clip, and its first frame's motion is NaN (no pair).

    Returns
    -------
    descriptors : ndarray of shape (n_frames, 68), float64
        In :func:`video_frame_names` order, minus :data:`NEUTRAL`. Before the offset all values
        are in [0, 1]: histograms are fractions of the frame's pixels (hue only counts pixels with
        saturation and value >= 0.2; orientation is a distribution over edge pixels).
    last_luma : ndarray of shape (height, width), float32
        Luma of the last frame, to pass as ``prev_luma`` to the next batch.
    """
    n, h, w, _ = rgb.shape
    npx = h * w
    # Colour: one 15-bit histogram per frame, then the colour table turns counts into statistics.
    q = rgb >> (8 - _BITS)
    idx = (q[..., 0].astype(np.uint16) << (2 * _BITS)) | (q[..., 1].astype(np.uint16) << _BITS) | q[..., 2]
    # One bincount over all frames (each frame's colours offset into its own block of bins).
    offsets = (np.arange(n, dtype=np.int64) * _LEVELS**3)[:, None, None]
    hist = np.bincount((idx + offsets).ravel(), minlength=n * _LEVELS**3).reshape(n, -1).astype(np.float32)
    m = (hist @ _colour_table()).astype(np.float64) / npx
    hists = m[:, : HUE_BINS + SAT_BINS + VAL_BINS]
    luma_m, luma_q, s_m, s_q, rg_m, rg_q, yb_m, yb_q = m[:, HUE_BINS + SAT_BINS + VAL_BINS :].T
    std = lambda mean, sq: np.sqrt(np.maximum(sq - mean * mean, 0.0))
    colourfulness = np.hypot(std(rg_m, rg_q), std(yb_m, yb_q)) + 0.3 * np.hypot(rg_m, yb_m)
    stats = np.column_stack([luma_m, std(luma_m, luma_q), s_m, std(s_m, s_q), colourfulness])

    x = rgb.astype(np.float32)
    luma = (x[..., 0] * np.float32(0.299 / 255) + x[..., 1] * np.float32(0.587 / 255)) + x[..., 2] * np.float32(0.114 / 255)

    # Sobel on interior pixels; the 1/4 makes a full-contrast step read 1.
    cols = luma[:, :, :-2] + 2 * luma[:, :, 1:-1] + luma[:, :, 2:]
    rows = luma[:, :-2, :] + 2 * luma[:, 1:-1, :] + luma[:, 2:, :]
    gy = (cols[:, 2:, :] - cols[:, :-2, :]) * np.float32(0.25)
    gx = (rows[:, :, 2:] - rows[:, :, :-2]) * np.float32(0.25)
    mag = np.abs(gx) + np.abs(gy)
    edges = mag > EDGE_THRESHOLD
    n_edges = edges.sum(axis=(1, 2))
    frame_of = np.broadcast_to(np.arange(n)[:, None, None], edges.shape)[edges]
    angle = np.arctan2(gy[edges], gx[edges]) % np.pi
    obin = np.minimum((angle * (ORIENT_BINS / np.pi)).astype(np.int64), ORIENT_BINS - 1)
    orient = np.bincount(frame_of * ORIENT_BINS + obin, minlength=n * ORIENT_BINS).reshape(n, ORIENT_BINS)
    orient = np.divide(orient, n_edges[:, None], out=np.zeros(orient.shape), where=n_edges[:, None] > 0)
    edge_feats = np.column_stack([n_edges / edges[0].size, mag.mean(axis=(1, 2), dtype=np.float64)])

    rb = np.linspace(0, h, GRID + 1).astype(int)
    cb = np.linspace(0, w, GRID + 1).astype(int)
    row_sums = np.add.reduceat(x, rb[:-1], axis=1)  # float32 sums of at most h/3 * 255: exact
    sums = np.add.reduceat(row_sums, cb[:-1], axis=2, dtype=np.float64)
    area = (np.diff(rb)[:, None, None] * np.diff(cb)[None, :, None]) * 255.0
    grid = (sums / area).reshape(n, -1)

    first = luma[:1] if prev_luma is None else prev_luma[None]
    diff = np.abs(np.diff(np.concatenate([first, luma], axis=0), axis=0))
    motion = np.column_stack(
        [diff.mean(axis=(1, 2), dtype=np.float64), (diff > MOTION_THRESHOLD).mean(axis=(1, 2), dtype=np.float64)]
    )
    if prev_luma is None:
        motion[0] = np.nan

    out = np.concatenate([hists, stats, edge_feats, orient, grid, motion], axis=1) - NEUTRAL
    return out, luma[-1].copy()

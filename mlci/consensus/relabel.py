"""Relabel candidates: (clip, class) pairs whose consensus is too uncertain to train on with confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlci.tables import RELABEL, conform

__all__ = ["relabel_candidates", "validate_band"]


def validate_band(band: tuple[float, float]) -> tuple[float, float]:
    """Return ``band`` as floats if ``0 <= low <= 0.5 <= high <= 1``, else raise ValueError."""
    try:
        low, high = (float(x) for x in band)
    except (TypeError, ValueError):
        raise ValueError(f"band must be a pair (low, high), but got {band!r}") from None
    if not 0.0 <= low <= 0.5 <= high <= 1.0:
        raise ValueError(f"band must satisfy 0 <= low <= 0.5 <= high <= 1, but got {band!r}")
    return low, high


def relabel_candidates(
    consensus: pd.DataFrame, n_positive: np.ndarray | pd.Series, *, band: tuple[float, float] = (0.2, 0.8)
) -> pd.DataFrame:
    """Items whose consensus posterior lies within ``band``, or whose votes are tied.

    Parameters
    ----------
    consensus : pandas.DataFrame
        The CONSENSUS table.
    n_positive : array-like of shape (len(consensus),)
        Yes answers per row of ``consensus``.
    band : tuple of (float, float), default=(0.2, 0.8)
        Inclusive posterior interval counted as uncertain.

    Returns
    -------
    pandas.DataFrame
        The RELABEL table, most uncertain first (then fewest votes, then asset and class).
        ``reason`` is ``"tie"`` for as many yes as no answers, else ``"uncertain"``.
    """
    low, high = validate_band(band)
    n_positive = np.asarray(n_positive, dtype=np.int64)
    if len(n_positive) != len(consensus):
        raise ValueError(f"n_positive has {len(n_positive)} entries, consensus has {len(consensus)} rows")
    df = consensus[["asset", "class", "posterior", "label", "n_votes"]].copy()
    df["n_positive"] = n_positive
    tie = (df["n_votes"].to_numpy() >= 2) & (2 * n_positive == df["n_votes"].to_numpy())
    p = df["posterior"].to_numpy()
    uncertain = (p >= low) & (p <= high)
    df["reason"] = np.where(tie, "tie", "uncertain")
    df = df[tie | uncertain].assign(_distance=lambda d: (d["posterior"] - 0.5).abs())
    df = df.sort_values(["_distance", "n_votes", "asset", "class"], kind="mergesort").drop(columns="_distance")
    return conform(df, RELABEL)

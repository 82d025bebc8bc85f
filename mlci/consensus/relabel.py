"""Relabel candidates: (clip, class) pairs whose consensus is too uncertain to train on with confidence.

The one rule of what deserves another opinion: the consensus step stores the candidates (the
RELABEL table of each snapshot) and the round gives its relabel share to them
(:func:`clips_to_relabel`), most uncertain first. Repeated labeling of the most uncertain labels
follows Sheng, Provost & Ipeirotis (2008), "Get another label?".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from mlci.tables import RELABEL, conform

__all__ = ["clips_to_relabel", "relabel_candidates", "validate_band"]


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


def clips_to_relabel(relabel: pd.DataFrame, n: int, *, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Up to ``n`` distinct clips of a RELABEL table, in its order (most uncertain first).

    Parameters
    ----------
    relabel : pandas.DataFrame
        The RELABEL table of the consensus the round trains on.
    n : int
        Most clips to return (fewer, possibly none, when fewer are candidates).
    exclude : iterable of str, default=()
        Clips never to return (quarantined, or in a batch still out).

    Returns
    -------
    pandas.DataFrame
        Columns ``key`` and ``utility``: ``1 - |2 * posterior - 1|`` of the clip's most uncertain
        class (1 for a coin flip, 0 for a certain label).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(exclude, (str, bytes)):
        raise TypeError(f"exclude must be an iterable of keys, got a single string {exclude!r}")
    missing = [c for c in ("asset", "posterior") if c not in relabel.columns]
    if missing:
        raise ValueError(f"relabel table is missing columns {missing}; has {list(relabel.columns)}")
    rows = relabel[~relabel["asset"].isin(set(exclude))].drop_duplicates("asset").head(n)
    utility = 1.0 - np.abs(2.0 * rows["posterior"].to_numpy(dtype=np.float64) - 1.0)
    return pd.DataFrame({"key": rows["asset"].to_numpy(dtype=object), "utility": utility})

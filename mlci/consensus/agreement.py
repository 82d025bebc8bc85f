"""Inter-annotator agreement per class: Krippendorff's alpha, percent agreement, Fleiss' and Cohen's kappa.

Every figure comes with the number of clips and raters behind it. Inputs are per-unit count
tables ``counts[u] = (number of "no", number of "yes")`` or, for Cohen's kappa, the 2x2 tables of
each annotator pair, so that all figures are computed without building rater x clip matrices.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlci.consensus.votes import Votes, encode_votes

__all__ = [
    "krippendorff_alpha",
    "percent_agreement",
    "fleiss_kappa",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "agreement_report",
    "agreement_frame",
]


def _counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[1] < 2:
        raise ValueError(f"counts must have shape (n_units, n_categories>=2), but got {counts.shape}")
    return counts


def krippendorff_alpha(counts: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data from per-unit category counts.

    Units with fewer than two ratings carry no pairable values and are ignored (that is how
    alpha handles missing ratings). Returns NaN when no unit has two ratings or only one category
    was ever used (alpha is undefined without variation).

    Parameters
    ----------
    counts : array-like of shape (n_units, n_categories)
        ``counts[u, k]`` is the number of raters who put unit ``u`` in category ``k``.
    """
    import krippendorff

    counts = _counts(counts)
    pairable = counts[counts.sum(axis=1) >= 2]
    if not len(pairable) or (pairable.sum(axis=0) > 0).sum() < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


def percent_agreement(counts: np.ndarray) -> float:
    """Share of agreeing rater pairs per unit, averaged over units with at least two ratings.

    For a unit with ``n`` ratings of which ``n_k`` fall in category ``k`` this is
    ``sum_k n_k (n_k - 1) / (n (n - 1))``; NaN when no unit has two ratings.
    """
    counts = _counts(counts)
    n = counts.sum(axis=1)
    keep = n >= 2
    if not keep.any():
        return float("nan")
    c, n = counts[keep], n[keep]
    return float(np.mean((c * (c - 1)).sum(axis=1) / (n * (n - 1))))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa; every unit must have the same number (>= 2) of ratings.

    Returns NaN when the chance agreement is 1 (a single category used throughout).

    Raises
    ------
    ValueError
        Units have different numbers of ratings, or fewer than two.
    """
    counts = _counts(counts)
    n = counts.sum(axis=1)
    if not len(n) or n.min() != n.max() or n[0] < 2:
        raise ValueError(
            "fleiss_kappa needs the same number (>= 2) of ratings per unit, but got "
            f"{sorted(set(n.astype(int).tolist()))[:10]}"
        )
    m = n[0]
    p_unit = ((counts * (counts - 1)).sum(axis=1)) / (m * (m - 1))
    p_bar = p_unit.mean()
    p_cat = counts.sum(axis=0) / counts.sum()
    p_e = float((p_cat**2).sum())
    if math.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1 - p_e))


def _kappa_from_tables(n11, n10, n01, n00) -> np.ndarray:
    n = n11 + n10 + n01 + n00
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = (n11 + n00) / n
        p_a = (n11 + n10) / n
        p_b = (n11 + n01) / n
        p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
        kappa = (p_o - p_e) / (1 - p_e)
    return np.where(np.isclose(p_e, 1.0), np.nan, kappa)


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two raters' 0/1 ratings of the same units (NaN where undefined)."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of the same length, but got {a.shape} and {b.shape}")
    return float(_kappa_from_tables((a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()))


def pairwise_cohen_kappa(votes: Votes, class_code: int, *, min_overlap: int = 1) -> pd.DataFrame:
    """Cohen's kappa of every annotator pair on one class, over the clips both rated.

    Returns a frame with columns annotator_a, annotator_b, kappa, n_clips (pairs with at least
    ``min_overlap`` shared clips), computed from sparse yes/no indicator matrices.
    """
    rows = votes.row_class == class_code
    item = votes.row_item[rows]
    ann = votes.row_annotator[rows]
    yes = votes.value[rows].astype(bool)
    n_ann = len(votes.annotators)
    shape = (votes.n_items, n_ann)
    y = sp.csr_matrix((np.ones(yes.sum()), (item[yes], ann[yes])), shape=shape)
    n = sp.csr_matrix((np.ones((~yes).sum()), (item[~yes], ann[~yes])), shape=shape)
    n11 = (y.T @ y).toarray()
    n10 = (y.T @ n).toarray()
    n00 = (n.T @ n).toarray()
    ia, ib = np.triu_indices(n_ann, k=1)
    t11, t10, t01, t00 = n11[ia, ib], n10[ia, ib], n10[ib, ia], n00[ia, ib]
    overlap = t11 + t10 + t01 + t00
    keep = overlap >= max(1, min_overlap)
    return pd.DataFrame(
        {
            "annotator_a": votes.annotators[ia[keep]].astype(str),
            "annotator_b": votes.annotators[ib[keep]].astype(str),
            "kappa": _kappa_from_tables(t11[keep], t10[keep], t01[keep], t00[keep]),
            "n_clips": overlap[keep].astype(np.int64),
        }
    )


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def agreement_report(
    annotations: pd.DataFrame | Votes, *, min_overlap: int = 1, pairs: bool = True
) -> dict[str, Any]:
    """Agreement figures per class, each with the clips and raters behind it.

    Parameters
    ----------
    annotations : pandas.DataFrame or Votes
        Current view of the ANNOTATIONS table, or its encoding.
    min_overlap : int, default=1
        Annotator pairs sharing fewer clips get no Cohen's kappa.
    pairs : bool, default=True
        Include the list of pairwise kappas (the mean is always reported).

    Returns
    -------
    dict
        ``{class: {"n_clips", "n_raters", "n_ratings", "krippendorff_alpha", "percent_agreement",
        "fleiss_kappa", "cohen_kappa"}}``. Each figure is a dict with ``value`` (None where
        undefined), ``n_clips`` and ``n_raters``. Alpha and percent agreement use every clip with
        two or more ratings; Fleiss' kappa uses the largest group of clips with the same number of
        ratings (``ratings_per_clip``); Cohen's kappa is reported per annotator pair with its
        number of shared clips, and as the mean over pairs weighted by shared clips.
    """
    votes = annotations if isinstance(annotations, Votes) else encode_votes(annotations)
    out: dict[str, Any] = {}
    row_class = votes.row_class
    for c, name in enumerate(votes.classes):
        in_class = votes.item_class == c
        n_votes = votes.n_votes[in_class]
        n_pos = votes.n_positive[in_class]
        counts = np.column_stack([n_votes - n_pos, n_pos])
        items = np.flatnonzero(in_class)
        rows_c = row_class == c

        def raters(item_mask: np.ndarray) -> int:
            sel = np.zeros(votes.n_items, bool)
            sel[items[item_mask]] = True
            return int(len(np.unique(votes.row_annotator[rows_c & sel[votes.row_item]])))

        multi = n_votes >= 2
        entry: dict[str, Any] = {
            "n_clips": int(in_class.sum()),
            "n_raters": raters(np.ones(len(items), bool)),
            "n_ratings": int(n_votes.sum()),
        }
        base = {"n_clips": int(multi.sum()), "n_raters": raters(multi)}
        entry["krippendorff_alpha"] = {"value": _num(krippendorff_alpha(counts)), **base}
        entry["percent_agreement"] = {"value": _num(percent_agreement(counts)), **base}
        if multi.any():
            sizes, freq = np.unique(n_votes[multi], return_counts=True)
            m = int(sizes[np.lexsort((sizes, freq))[-1]])  # most clips; ties go to more ratings
            same = n_votes == m
            entry["fleiss_kappa"] = {
                "value": _num(fleiss_kappa(counts[same])),
                "n_clips": int(same.sum()),
                "n_raters": raters(same),
                "ratings_per_clip": m,
                "all_clips": bool(same.sum() == multi.sum()),
            }
        else:
            entry["fleiss_kappa"] = {"value": None, "n_clips": 0, "n_raters": 0, "ratings_per_clip": None,
                                     "all_clips": False}
        kappas = pairwise_cohen_kappa(votes, c, min_overlap=min_overlap)
        defined = kappas.dropna(subset=["kappa"])
        mean = float(np.average(defined["kappa"], weights=defined["n_clips"])) if len(defined) else float("nan")
        entry["cohen_kappa"] = {
            "mean": _num(mean),
            "n_pairs": int(len(defined)),
            "n_raters": int(len(set(defined["annotator_a"]) | set(defined["annotator_b"]))),
            "n_clips": base["n_clips"],
        }
        if pairs:
            entry["cohen_kappa"]["pairs"] = [
                {"annotator_a": r.annotator_a, "annotator_b": r.annotator_b, "kappa": _num(r.kappa),
                 "n_clips": int(r.n_clips)}
                for r in kappas.itertuples(index=False)
            ]
        out[str(name)] = entry
    return out


def agreement_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per class with the headline figures of :func:`agreement_report`."""
    rows = []
    for name, e in report.items():
        rows.append(
            {
                "class": name,
                "clips": e["n_clips"],
                "raters": e["n_raters"],
                "alpha": e["krippendorff_alpha"]["value"],
                "alpha_clips": e["krippendorff_alpha"]["n_clips"],
                "pct_agree": e["percent_agreement"]["value"],
                "fleiss": e["fleiss_kappa"]["value"],
                "fleiss_clips": e["fleiss_kappa"]["n_clips"],
                "cohen_mean": e["cohen_kappa"]["mean"],
                "cohen_pairs": e["cohen_kappa"]["n_pairs"],
            }
        )
    return pd.DataFrame(rows)

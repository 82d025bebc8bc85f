"""Majority vote per (clip, class), with an explicit tie rule."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from mlci.consensus.votes import Votes, encode_votes
from mlci.tables import CONSENSUS, conform

__all__ = ["majority_vote", "hard_labels", "TIE_RULES"]

TIE_RULES = ("negative", "positive")


def hard_labels(posterior: np.ndarray, tie: Literal["negative", "positive"] = "negative") -> np.ndarray:
    """0/1 labels from posteriors: above 0.5 is 1, below is 0, exactly 0.5 follows ``tie``."""
    if tie not in TIE_RULES:
        raise ValueError(f"tie must be one of {TIE_RULES}, but got {tie!r}")
    posterior = np.asarray(posterior, dtype=float)
    label = posterior > 0.5
    if tie == "positive":
        label |= posterior == 0.5
    return label.astype(np.int8)


def _majority_frame(votes: Votes, tie: str) -> pd.DataFrame:
    posterior = votes.n_positive / votes.n_votes
    df = votes.item_frame()
    df["posterior"] = posterior
    df["label"] = hard_labels(posterior, tie)
    df["n_votes"] = votes.n_votes
    df["method"] = np.where(votes.n_votes == 1, "single", "majority")
    return conform(df, CONSENSUS)


def majority_vote(annotations: pd.DataFrame, *, tie: Literal["negative", "positive"] = "negative") -> pd.DataFrame:
    """Majority vote of the annotators, each class on its own.

    Parameters
    ----------
    annotations : pandas.DataFrame
        Current view of the ANNOTATIONS table (columns asset, annotator, class, value).
    tie : {"negative", "positive"}, default="negative"
        Label of an item with as many yes as no answers. ``"negative"`` asks for a strict majority
        before calling a class present; tied items are also offered for relabeling.

    Returns
    -------
    pandas.DataFrame
        The CONSENSUS table: ``posterior`` is the share of yes answers, ``method`` is
        ``"majority"`` (or ``"single"`` for items with one answer, which pass through).
    """
    if tie not in TIE_RULES:
        raise ValueError(f"tie must be one of {TIE_RULES}, but got {tie!r}")
    return _majority_frame(encode_votes(annotations), tie)

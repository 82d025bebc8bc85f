"""Integer encoding of a long annotations table, shared by every consensus method.

An *item* is one (asset, class) pair: binary relevance treats each class on its own, so each item
gets its own yes/no answers. Codes are assigned in sorted order, so the encoding (and everything
computed from it) does not depend on the row order of the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlci.consensus.exceptions import NoAnnotationsError

__all__ = ["Votes", "encode_votes", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("asset", "annotator", "class", "value")


@dataclass(frozen=True)
class Votes:
    """Annotations as integer codes.

    Attributes
    ----------
    assets, annotators, classes : ndarray of str
        Sorted vocabularies.
    item_asset, item_class : ndarray of shape (n_items,)
        Asset and class code of each item; items are sorted by (asset, class).
    row_item, row_annotator : ndarray of shape (n_rows,)
        Item and annotator code of each answer.
    value : ndarray of shape (n_rows,), dtype int8
        The 0/1 answers.
    n_votes, n_positive : ndarray of shape (n_items,)
        Answers and positive answers per item.
    """

    assets: np.ndarray
    annotators: np.ndarray
    classes: np.ndarray
    item_asset: np.ndarray
    item_class: np.ndarray
    row_item: np.ndarray
    row_annotator: np.ndarray
    value: np.ndarray
    n_votes: np.ndarray
    n_positive: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.item_asset)

    @property
    def n_rows(self) -> int:
        return len(self.value)

    @property
    def row_class(self) -> np.ndarray:
        return self.item_class[self.row_item]

    def item_frame(self) -> pd.DataFrame:
        """(asset, class) of every item, in item order."""
        return pd.DataFrame(
            {
                "asset": pd.array(self.assets[self.item_asset], dtype="string"),
                "class": pd.array(self.classes[self.item_class], dtype="string"),
            }
        )


def _codes(column: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    if column.isna().any():
        raise ValueError(f"annotations column {name!r} has {int(column.isna().sum())} missing values")
    codes, uniques = pd.factorize(column.astype(str), sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def encode_votes(annotations: pd.DataFrame) -> Votes:
    """Encode an annotations table (current view: one answer per asset, annotator and class).

    Raises
    ------
    NoAnnotationsError
        The table has no rows.
    ValueError
        A required column is missing, a value is not 0/1, or an (asset, annotator, class) key
        repeats (pass the current view, not the history).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in annotations.columns]
    if missing:
        raise ValueError(f"annotations must have columns {list(REQUIRED_COLUMNS)}; missing {missing}")
    if not len(annotations):
        raise NoAnnotationsError("annotations table is empty: ingest labels first (mlci labels ingest)")
    asset, assets = _codes(annotations["asset"], "asset")
    annotator, annotators = _codes(annotations["annotator"], "annotator")
    cls, classes = _codes(annotations["class"], "class")
    raw = annotations["value"]
    if raw.isna().any():
        raise ValueError(f"annotations column 'value' has {int(raw.isna().sum())} missing values")
    value = raw.to_numpy()
    if not np.isin(value, (0, 1)).all():
        bad = pd.unique(value[~np.isin(value, (0, 1))])[:5]
        raise ValueError(f"annotations column 'value' must be 0 or 1, but got {list(bad)}")
    value = value.astype(np.int8)
    item_key = asset * len(classes) + cls
    uniq, row_item = np.unique(item_key, return_inverse=True)
    # Sorting is much faster here than np.unique's hash path on a million keys.
    pair = np.sort(row_item.astype(np.int64) * len(annotators) + annotator)
    n_dup = int(np.count_nonzero(pair[1:] == pair[:-1]))
    if n_dup:
        raise ValueError(
            f"annotations repeat {n_dup} (asset, annotator, class) keys; "
            "pass the current view (mlci.labels.load_annotations(store, current=True))"
        )
    n_votes = np.bincount(row_item, minlength=len(uniq)).astype(np.int64)
    n_positive = np.bincount(row_item, weights=value, minlength=len(uniq)).astype(np.int64)
    return Votes(
        assets=assets,
        annotators=annotators,
        classes=classes,
        item_asset=uniq // len(classes),
        item_class=uniq % len(classes),
        row_item=row_item.astype(np.int64),
        row_annotator=annotator,
        value=value,
        n_votes=n_votes,
        n_positive=n_positive,
    )

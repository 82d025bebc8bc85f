"""``mlci.tables.conform``: the check every table writer runs, on its own."""

from __future__ import annotations

import pandas as pd
import pytest

from mlci import layout
from mlci.tables import BATCH, CONSENSUS, TABLES, TableSchemaError, conform


def consensus_frame() -> pd.DataFrame:
    # Columns out of declared order, plain Python types, a non-default index.
    return pd.DataFrame(
        {
            "method": ["majority", "majority"],
            "asset": ["clips/a.mp4", "clips/b.mp4"],
            "class": ["holiday", "holiday"],
            "posterior": [1, 0],
            "label": [1, 0],
            "n_votes": [3, 2],
        },
        index=[7, 9],
    )


def test_conform_returns_declared_columns_in_order_with_declared_dtypes():
    out = conform(consensus_frame(), CONSENSUS)
    assert list(out.columns) == list(CONSENSUS.columns)
    assert {c: str(t) for c, t in out.dtypes.items()} == CONSENSUS.columns
    assert list(out.index) == [0, 1]
    assert out["asset"].tolist() == ["clips/a.mp4", "clips/b.mp4"]
    assert out["posterior"].tolist() == [1.0, 0.0]


def test_conform_does_not_change_its_input():
    df = consensus_frame()
    conform(df, CONSENSUS)
    assert list(df.columns) == ["method", "asset", "class", "posterior", "label", "n_votes"]
    assert str(df["posterior"].dtype) == "int64"


def test_conform_names_missing_columns():
    df = consensus_frame().drop(columns=["posterior", "n_votes"])
    with pytest.raises(TableSchemaError, match=r"table 'consensus' is missing columns \['posterior', 'n_votes'\]"):
        conform(df, CONSENSUS)


def test_conform_names_the_column_of_a_wrong_dtype():
    df = consensus_frame()
    df["n_votes"] = ["three", "two"]
    with pytest.raises(TableSchemaError, match=r"table 'consensus' column 'n_votes' cannot be int64"):
        conform(df, CONSENSUS)


def test_conform_rejects_extra_columns_unless_the_table_allows_them():
    df = consensus_frame().assign(note=["x", "y"])
    with pytest.raises(TableSchemaError, match=r"table 'consensus' does not allow extra columns \['note'\]"):
        conform(df, CONSENSUS)


def test_conform_keeps_extra_columns_after_the_declared_ones_when_allowed():
    assert BATCH.extra_columns is not None
    df = pd.DataFrame(
        {
            "score_holiday": [0.9, 0.4],
            "reason": ["uncertain", "diverse"],
            "utility": [0.5, 0.25],
            "url": ["https://m/a.mp4", "https://m/b.mp4"],
            "key": ["clips/a.mp4", "clips/b.mp4"],
            "rank": [1, 2],
        }
    )
    out = conform(df, BATCH)
    assert list(out.columns) == [*BATCH.columns, "score_holiday"]
    assert {c: str(out[c].dtype) for c in BATCH.columns} == BATCH.columns
    assert out["score_holiday"].tolist() == [0.9, 0.4]


def test_table_locations_are_layout_patterns():
    assert CONSENSUS.location == layout.consensus_key("<snapshot>", "labels.parquet") == "consensus/<snapshot>/labels.parquet"
    store_tables = [t for t in TABLES.values() if not t.location.startswith("MLflow")]
    assert len(store_tables) == len(TABLES) - 1
    for table in store_tables:
        assert table.location.startswith(layout.STORE_PREFIXES), table.name

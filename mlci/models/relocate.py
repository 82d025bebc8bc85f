"""An embedded MLflow store (a SQLite database with ``mlartifacts/`` beside it) that was moved or copied.

MLflow records absolute artifact locations in the database (experiments, runs, logged models, model
versions), so a copy of ``MLCI_HOME`` would read and write the original's artifacts, and a moved
one would find none. :func:`check_store_location` refuses such a store before anything is read or
written; :func:`relocate_store` rewrites the recorded locations to the ``mlartifacts/`` beside the
database. MLflow has no API to change a recorded location, hence plain SQL on its tables here, in
one transaction; the columns are those of MLflow 3's schema (pinned in pyproject.toml).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlci.models.exceptions import TrackingStoreMovedError, TrackingStoreNotFoundError
from mlci.models.tracking import default_artifact_location, sqlite_database

__all__ = ["check_store_location", "recorded_artifact_roots", "relocate_store"]

#: The columns of MLflow's schema that hold an artifact location, as (table, column).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)
_ROOT_NAME = "/mlartifacts"


def recorded_artifact_roots(db: Path) -> list[str]:
    """The ``…/mlartifacts`` roots the experiments of the SQLite store ``db`` record, sorted."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        try:
            rows = con.execute("SELECT artifact_location FROM experiments WHERE artifact_location LIKE ?",
                               (f"%{_ROOT_NAME}",)).fetchall()
        except sqlite3.OperationalError:  # no tables yet: MLflow creates them on first use
            return []
    return sorted({location for (location,) in rows})


def check_store_location(tracking_uri: str) -> None:
    """Raise :class:`TrackingStoreMovedError` if a SQLite store records artifacts outside its folder.

    Other stores (servers, databases other than SQLite) and a database not yet created pass.
    """
    db = sqlite_database(tracking_uri)
    if db is None or not db.is_file():
        return
    expected = default_artifact_location(tracking_uri)
    elsewhere = [root for root in recorded_artifact_roots(db) if root != expected]
    if elsewhere:
        raise TrackingStoreMovedError(
            f"the MLflow database {db.resolve()} keeps its artifacts in {elsewhere[0]}, not beside it: its folder "
            f"was moved or copied; run `mlci relocate` to use {expected}"
        )


def relocate_store(tracking_uri: str) -> dict[str, int]:
    """Point every recorded artifact location of a moved or copied SQLite store at the ``mlartifacts/``
    beside its database; returns the rows changed per table (all zero when nothing pointed elsewhere).

    The artifacts themselves are not copied: move or copy the whole folder first.

    Raises
    ------
    TrackingStoreNotFoundError
        ``tracking_uri`` is not a SQLite database that exists.
    """
    db = sqlite_database(tracking_uri)
    if db is None or not db.is_file():
        raise TrackingStoreNotFoundError(f"{tracking_uri} is not a SQLite MLflow database that exists: "
                                         "only the embedded store (sqlite:///...) can be relocated")
    new_root = default_artifact_location(tracking_uri)
    changed = {table: 0 for table, _ in ARTIFACT_COLUMNS}
    old_roots = [root for root in recorded_artifact_roots(db) if root != new_root]
    with sqlite3.connect(db) as con:  # one transaction: committed at the end of the block, or rolled back
        for old_root in old_roots:
            for forms in _forms(old_root, new_root):
                for table, column in ARTIFACT_COLUMNS:
                    changed[table] += con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} = ? OR {column} LIKE ? ESCAPE '\\'",
                        (forms[1], len(forms[0]) + 1, forms[0], _like_prefix(forms[0] + "/")),
                    ).rowcount
    return changed


def _forms(old_root: str, new_root: str) -> list[tuple[str, str]]:
    # MLflow records a location as the URI it was given (file:///...) or as a plain path.
    pairs = [(old_root, new_root)]
    if old_root.startswith("file://") and new_root.startswith("file://"):
        pairs.append((old_root.removeprefix("file://"), new_root.removeprefix("file://")))
    return pairs


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

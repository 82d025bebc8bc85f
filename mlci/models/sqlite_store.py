"""The embedded MLflow store: a SQLite database with ``mlartifacts/`` beside it (the default).

- Where it is (:func:`sqlite_database`, :func:`default_artifact_location`) and that reading never
  creates it (:func:`check_tracking_store`).
- Moved or copied: MLflow records absolute artifact locations (experiments, runs, logged models,
  model versions), so a copy of ``MLCI_HOME`` would read and write the original's artifacts and a
  moved one would find none. :func:`check_store_location` refuses such a store before anything is
  read or written; :func:`relocate_store` rewrites the locations to the ``mlartifacts/`` beside the
  database, in one transaction (MLflow has no API to change a recorded location).
- :func:`read_versions`: the registry's versions in one query, without importing MLflow (2-4 s):
  the command line's listings answer in about a second.

The SQL reads and writes MLflow 3's schema (pinned in pyproject.toml; the tests run it against
databases MLflow itself created).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlci.models.exceptions import TrackingStoreMovedError, TrackingStoreNotFoundError
from mlci.models.versions import ModelVersionInfo, cross_validated

__all__ = [
    "check_store_location",
    "check_tracking_store",
    "default_artifact_location",
    "read_versions",
    "recorded_artifact_roots",
    "relocate_store",
    "sqlite_database",
]

def sqlite_database(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for other stores and in-memory databases."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri[len("sqlite:///"):].split("?", 1)[0]
    return None if not db or db == ":memory:" else Path(db)


def check_tracking_store(tracking_uri: str) -> None:
    """Raise :class:`TrackingStoreNotFoundError` if ``tracking_uri`` is a SQLite file that does not exist.

    Reading from MLflow must not create its database: MLflow would create an empty one, and a
    mistyped ``MLCI_MLFLOW_TRACKING_URI`` would read as "no models yet".
    """
    db = sqlite_database(tracking_uri)
    if db is not None and not db.is_file():
        raise TrackingStoreNotFoundError(
            f"no MLflow database at {db.resolve()}: train a model first (`mlci train` or `mlci nightly`) "
            "or check MLCI_MLFLOW_TRACKING_URI"
        )


def default_artifact_location(tracking_uri: str) -> str | None:
    """``<folder>/mlartifacts`` beside a SQLite database file; None (the server decides) otherwise.

    Without it MLflow would put a SQLite store's artifacts under ``./mlruns`` of the working directory.
    """
    db = sqlite_database(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


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


def read_versions(tracking_uri: str, model_name: str) -> list[ModelVersionInfo] | None:
    """Every version of ``model_name`` in a SQLite store, newest first, with aliases, tags and the
    run's cross-validated macro metrics; None when ``tracking_uri`` is no SQLite store.

    Raises :class:`TrackingStoreNotFoundError` / :class:`TrackingStoreMovedError` as the registry does.
    """
    db = sqlite_database(tracking_uri)
    if db is None:
        return None
    check_tracking_store(tracking_uri)
    check_store_location(tracking_uri)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        try:
            versions = con.execute(
                "SELECT version, run_id, creation_time FROM model_versions WHERE name = ? AND current_stage != 'Deleted_Internal' ORDER BY version DESC",
                (model_name,)).fetchall()
        except sqlite3.OperationalError:  # an empty database: MLflow creates its tables on first use
            return []
        aliases: dict[str, list[str]] = {}
        for alias, version in con.execute("SELECT alias, version FROM registered_model_aliases WHERE name = ?",
                                          (model_name,)):
            aliases.setdefault(str(version), []).append(alias)
        tags: dict[str, dict[str, str]] = {}
        for version, key, value in con.execute("SELECT version, key, value FROM model_version_tags WHERE name = ?",
                                               (model_name,)):
            tags.setdefault(str(version), {})[key] = value
        metrics: dict[str, dict[str, float]] = {}
        run_ids = sorted({run_id for _, run_id, _ in versions if run_id})
        if run_ids:
            marks = ",".join("?" * len(run_ids))
            for run_id, key, value, is_nan in con.execute(
                    f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})", run_ids):
                metrics.setdefault(run_id, {})[key] = float("nan") if is_nan else float(value)
    return [
        ModelVersionInfo(
            name=model_name, version=str(version), run_id=run_id or "",
            aliases=tuple(sorted(aliases.get(str(version), ()))), tags=tags.get(str(version), {}),
            metrics={k: v for k, v in cross_validated(metrics.get(run_id, {})).items() if k.startswith("macro_")},
            created_at_ms=int(created or 0),
        )
        for version, run_id, created in versions
    ]

"""Lineage and yield of labeling batches: the answers each batch got back, the consensus snapshot and
model version that first used them, and what each batch bought.

Plain functions over the store and DataFrames, without MLflow: registered versions come in as a
``versions`` table (:func:`versions_frame` builds it from :func:`mlci.models.versions.list_versions`).
The schemas are :data:`mlci.tables.LINEAGE` and :data:`mlci.tables.BATCH_YIELD`; ``docs/flows.md``
("Lineage and yield") says how to read them.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from mlci.batches.publish import read_batches
from mlci.layout import CONSENSUS_PREFIX, consensus_key, consensus_manifest_snapshot
from mlci.storage import ObjectNotFoundError, Store
from mlci.tables import ANNOTATIONS, BATCH_YIELD, CONSENSUS, LINEAGE, conform

__all__ = [
    "SNAPSHOT_TAG",
    "VERSION_COLUMNS",
    "versions_frame",
    "list_batches",
    "lineage_table",
    "batch_yield",
    "batches_first_used_by",
]

#: The tag on every registered version naming its label snapshot (``mlci.models.registry`` writes it;
#: spelled here so that reading it needs no MLflow import).
SNAPSHOT_TAG = "mlci.label_snapshot_id"

#: Columns of the ``versions`` table :func:`lineage_table` and :func:`batch_yield` take: one row per
#: registered model version.
VERSION_COLUMNS = {
    "version": "string",
    "label_snapshot": "string",  # the consensus snapshot it was trained on; NA when unknown
    "created_at": "datetime64[us, UTC]",
    "cv_macro_ap": "float64",
}

#: Answer identity in the annotations history: one record of one label file, for one clip and annotator.
_ANSWER = ["asset", "annotator", "source_file", "record_index"]


def versions_frame(infos: Iterable[Any]) -> pd.DataFrame:
    """The ``versions`` table (:data:`VERSION_COLUMNS`) of registered versions.

    Parameters
    ----------
    infos : iterable of ModelVersionInfo
        As :func:`mlci.models.versions.list_versions` returns them: ``version``, ``tags`` (the label
        snapshot under :data:`SNAPSHOT_TAG`), ``metrics`` (``macro_ap`` is the run's ``cv_macro_ap``)
        and ``created_at_ms``.
    """
    rows = []
    for info in infos:
        snapshot = info.tags.get(SNAPSHOT_TAG)
        rows.append({
            "version": str(info.version),
            "label_snapshot": None if snapshot in (None, "", "none") else snapshot,
            "created_at": pd.Timestamp(info.created_at_ms, unit="ms", tz="UTC") if info.created_at_ms else pd.NaT,
            "cv_macro_ap": info.metrics.get("macro_ap", math.nan),
        })
    return _versions(pd.DataFrame(rows, columns=list(VERSION_COLUMNS)))


def _versions(versions: pd.DataFrame | None) -> pd.DataFrame:
    """``versions`` checked and typed, in registration order (version number, then creation time)."""
    if versions is None or (versions.empty and not len(versions.columns)):
        versions = pd.DataFrame(columns=list(VERSION_COLUMNS))
    missing = [c for c in VERSION_COLUMNS if c not in versions.columns]
    if missing:
        raise ValueError(f"versions must have the columns {list(VERSION_COLUMNS)}, but got {list(versions.columns)} "
                         f"(missing {missing})")
    out = versions[list(VERSION_COLUMNS)].copy()
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    out = out.astype(VERSION_COLUMNS)
    number = pd.to_numeric(out["version"], errors="coerce")
    order = out.assign(_n=number).sort_values(["_n", "created_at", "version"], kind="mergesort", na_position="last")
    return order.drop(columns="_n").reset_index(drop=True)


class _Snapshots:
    """The store's consensus snapshots in creation order, each one's labels read at most once.

    Read here rather than through :func:`mlci.consensus.list_snapshots` because importing
    :mod:`mlci.consensus` imports scikit-learn, which ``mlci batches`` does not otherwise need;
    the order is the same: ``created_at``, then snapshot id.
    """

    def __init__(self, store: Store):
        self.store = store
        keys = [k for k in store.list(CONSENSUS_PREFIX) if consensus_manifest_snapshot(k) is not None]
        manifests = [json.loads(store.read_text(k)) for k in keys]
        manifests = sorted((m for m in manifests if m.get("created_at")),
                           key=lambda m: (pd.Timestamp(m["created_at"]), m["snapshot"]))
        self.ids: list[str] = [m["snapshot"] for m in manifests]
        self.created = pd.to_datetime([m["created_at"] for m in manifests], utc=True)
        self.rank = {s: i for i, s in enumerate(self.ids)}
        self._labels: dict[str, pd.DataFrame | None] = {}
        self._clips: dict[str, frozenset[str]] = {}

    def labels(self, snapshot: str | None) -> pd.DataFrame | None:
        """The CONSENSUS table of ``snapshot``; None when it is not in the store."""
        if snapshot is None or snapshot not in self.rank:
            return None
        if snapshot not in self._labels:
            try:
                data = self.store.read_bytes(consensus_key(snapshot, "labels.parquet"))
            except ObjectNotFoundError:
                self._labels[snapshot] = None
            else:
                self._labels[snapshot] = conform(pd.read_parquet(io.BytesIO(data)), CONSENSUS)
        return self._labels[snapshot]

    def holding(self, key: str, ingested_at: pd.Timestamp) -> str | None:
        """The first snapshot created at or after ``ingested_at`` whose labels hold clip ``key``."""
        start = int(self.created.searchsorted(ingested_at, side="left"))
        for snapshot in self.ids[start:]:
            if snapshot not in self._clips:
                labels = self.labels(snapshot)
                self._clips[snapshot] = frozenset() if labels is None else frozenset(labels["asset"])
            if key in self._clips[snapshot]:
                return snapshot
        return None


def _first_trained(snapshots: _Snapshots, versions: pd.DataFrame) -> dict[str, str]:
    """Snapshot -> the first registered version trained on it or on a later snapshot."""
    ranks = versions["label_snapshot"].map(lambda s: snapshots.rank.get(s, -1) if pd.notna(s) else -1)
    out = {}
    for snapshot, rank in snapshots.rank.items():
        later = versions.loc[ranks.to_numpy() >= rank, "version"]
        if len(later):
            out[snapshot] = later.iloc[0]  # versions are in registration order
    return out


def _published(store: Store) -> list[tuple[dict[str, Any], pd.DataFrame, pd.Timestamp]]:
    """Published batches, oldest first: (manifest, batch.csv, publish time in UTC)."""
    return [(m, b, pd.to_datetime(m["created_at"], utc=True)) for m, b in read_batches(store)]


def _answers_to_batches(batches, annotations: pd.DataFrame) -> pd.DataFrame:
    """Each answer joined to the batch it answers (see :func:`lineage_table`); empty when none does."""
    annotations = conform(annotations, ANNOTATIONS)
    if not batches or annotations.empty:
        return pd.DataFrame(columns=[*_ANSWER, "created_at", "ingested_at", "round_id", "batch_created_at", "reason"])
    members = pd.concat([
        pd.DataFrame({
            "round_id": manifest["round_id"],
            "batch_created_at": created,
            "asset": batch["key"].astype(str),
            "reason": batch["reason"] if "reason" in batch.columns else pd.NA,
        })
        for manifest, batch, created in batches
    ], ignore_index=True)
    answers = annotations.groupby(_ANSWER, sort=False, dropna=False).agg(
        created_at=("created_at", "min"), ingested_at=("ingested_at", "min")).reset_index()
    joined = answers.merge(members, on="asset", how="inner")
    joined = joined[joined["ingested_at"] > joined["batch_created_at"]]
    # The latest batch published before the answer came in is the one it answers.
    return joined.sort_values(["batch_created_at", "round_id"], kind="mergesort").drop_duplicates(_ANSWER, keep="last")


def list_batches(store: Store, annotations: pd.DataFrame) -> pd.DataFrame:
    """Published batches, oldest first, with how many of their clips have come back labeled.

    ``n_returned`` counts the clips with an answer that belongs to the batch, as in
    :func:`lineage_table` (a clip in two batches counts for the later one its answer came after);
    ``annotations`` is the history table, with ``ingested_at``. Reads no consensus snapshot.
    """
    batches = _published(store)
    returned = _answers_to_batches(batches, annotations).groupby("round_id")["asset"].nunique()
    rows = [{"round_id": m["round_id"], "created_at": created, "model_version": m.get("model_version"),
             "strategy": m.get("strategy"), "n_clips": len(b), "n_returned": int(returned.get(m["round_id"], 0))}
            for m, b, created in batches]
    return pd.DataFrame(rows, columns=["round_id", "created_at", "model_version", "strategy", "n_clips", "n_returned"])


def lineage_table(store: Store, annotations: pd.DataFrame, versions: pd.DataFrame | None) -> pd.DataFrame:
    """One row per answer returned to a batch, with the snapshot and model version that first used it.

    An answer (one record of a label file, for one clip and annotator) belongs to a batch when its
    clip is in the batch and it was ingested after the batch was published; a clip in several
    batches gives it to the latest batch published before it was ingested. Its ``label_snapshot`` is
    the first consensus snapshot created at or after its ingestion that holds the clip, and its
    ``model_version`` the first registered version trained on that snapshot or a later one (by
    snapshot creation order); NA while there is none.

    Parameters
    ----------
    store : Store
        Holds ``batches/`` and ``consensus/``.
    annotations : DataFrame
        The annotations history (``mlci.labels.load_annotations(store, current=False)``), following
        :data:`mlci.tables.ANNOTATIONS`.
    versions : DataFrame or None
        Registered model versions, columns :data:`VERSION_COLUMNS` (:func:`versions_frame`); None
        or empty when none is registered.

    Returns
    -------
    DataFrame
        Follows :data:`mlci.tables.LINEAGE`, by batch (oldest first), clip, then answer time.
    """
    versions = _versions(versions)
    joined = _answers_to_batches(_published(store), annotations)
    if joined.empty:
        return conform(pd.DataFrame({c: pd.Series(dtype=d) for c, d in LINEAGE.columns.items()}), LINEAGE)
    snapshots = _Snapshots(store)
    first_version = _first_trained(snapshots, versions)
    joined["label_snapshot"] = [snapshots.holding(k, t) for k, t in zip(joined["asset"], joined["ingested_at"])]
    joined["model_version"] = [first_version.get(s) if s is not None else None for s in joined["label_snapshot"]]
    joined["answered_at"] = joined["created_at"].fillna(joined["ingested_at"])
    out = joined.rename(columns={"asset": "key"}).sort_values(
        ["batch_created_at", "round_id", "key", "answered_at", "annotator", "source_file", "record_index"],
        kind="mergesort")
    return conform(out[list(LINEAGE.columns)], LINEAGE)


def _concept_suffix(concept: str) -> str:
    # Spelled as in batch.csv's score_<concept> (mlci.batches.publish.score_column).
    return "_".join(concept.split())


def _disagreement(values: pd.DataFrame) -> float:
    """Share of clips with two or more annotators whose latest answers differ on some concept.

    ``values``: the batch's answer rows (asset, annotator, class, value, answered_at, ...).
    """
    if values.empty:
        return math.nan
    order = values.sort_values(["answered_at", "ingested_at", "source_file", "record_index"], kind="mergesort")
    latest = order.drop_duplicates(["asset", "annotator", "class"], keep="last")
    per_item = latest.groupby(["asset", "class"])["value"].agg(["count", "nunique"])
    per_clip = per_item.groupby(level="asset").agg(
        shared=("count", "max"), differ=("nunique", "max"))
    multi = per_clip[per_clip["shared"] >= 2]
    return float((multi["differ"] > 1).mean()) if len(multi) else math.nan


def _flipped(snapshots: _Snapshots, before: str | None, rows: pd.DataFrame, relabel_keys: set[str]) -> Any:
    """(clip, concept) consensus labels of relabel clips that differ between ``before`` and the
    first snapshot holding the clip's new answer; NA when there is nothing to compare."""
    old = snapshots.labels(before)
    held = rows[rows["key"].isin(relabel_keys) & rows["label_snapshot"].notna()]
    if old is None or held.empty:
        return pd.NA
    first = held.assign(_rank=held["label_snapshot"].map(snapshots.rank)).sort_values("_rank", kind="mergesort")
    first = first.drop_duplicates("key")
    n = 0
    for key, snapshot in zip(first["key"], first["label_snapshot"]):
        new = snapshots.labels(snapshot)
        if new is None:  # its labels file is gone: nothing to compare for this clip
            continue
        pair = old[old["asset"] == key].merge(new[new["asset"] == key], on="class", suffixes=("_old", "_new"))
        n += int((pair["label_old"] != pair["label_new"]).sum())
    return n


def batch_yield(
    store: Store, lineage: pd.DataFrame, annotations: pd.DataFrame, versions: pd.DataFrame | None
) -> pd.DataFrame:
    """What each published batch bought, one row per batch, oldest first.

    Parameters
    ----------
    store : Store
        Holds ``batches/`` and ``consensus/``; positives are counted by its latest consensus snapshot.
    lineage : DataFrame
        :func:`lineage_table` of the same store, annotations and versions.
    annotations : DataFrame
        The annotations history (:data:`mlci.tables.ANNOTATIONS`): the values behind the
        disagreement rate.
    versions : DataFrame or None
        Registered model versions, columns :data:`VERSION_COLUMNS`; None or empty when none is.

    Returns
    -------
    DataFrame
        Follows :data:`mlci.tables.BATCH_YIELD`, then ``positives_per_100_<concept>`` and
        ``prior_per_100_<concept>`` for each concept of the latest consensus or of a manifest's
        ``pool_prior``, by concept name. Per batch: ``n_answered`` clips with an answer;
        ``hours_to_answer`` the median over them of first answer minus publish time;
        ``positives_per_100_<c>`` positives by the latest consensus per 100 answered clips it
        labels (NaN when it labels none); ``prior_per_100_<c>`` 100 x the manifest's
        ``pool_prior`` (NaN when absent); ``disagreement_rate`` among answered clips with two or
        more annotators in the batch, the share whose latest answers differ on some concept;
        ``relabels_flipped`` the (clip, concept) consensus labels of answered ``relabel`` clips
        that changed from the batch's label snapshot to the first snapshot holding the new answer;
        ``next_model_version`` the first version trained on any of its answers, and
        ``delta_cv_ap`` that version's ``cv_macro_ap`` minus the one of the version that chose
        the batch.
    """
    lineage = conform(lineage, LINEAGE)
    annotations = conform(annotations, ANNOTATIONS)
    versions = _versions(versions)
    batches = _published(store)
    snapshots = _Snapshots(store)
    latest = snapshots.labels(snapshots.ids[-1]) if snapshots.ids else None
    concepts = set() if latest is None else set(latest["class"])
    for manifest, _, _ in batches:
        concepts |= set((manifest.get("pool_prior") or {}).keys())
    concepts = sorted(concepts)
    order = {v: i for i, v in enumerate(versions["version"])}
    ap = dict(zip(versions["version"], versions["cv_macro_ap"]))
    by_concept = {} if latest is None else {
        str(c): g.set_index("asset")["label"].astype("float64") for c, g in latest.groupby("class", observed=True)}
    values = lineage.rename(columns={"key": "asset"}).merge(annotations[[*_ANSWER, "class", "value"]], on=_ANSWER)

    rows = []
    for manifest, batch, created in batches:
        rid = manifest["round_id"]
        mine = lineage[lineage["round_id"] == rid]
        answered = set(mine["key"])
        first = mine.groupby("key")["answered_at"].min()
        hours = ((first - created).dt.total_seconds() / 3600).median() if len(first) else math.nan
        chosen_by = manifest.get("model_version")
        chosen_by = None if chosen_by is None else str(chosen_by)
        used = [v for v in mine["model_version"].dropna().unique()]
        next_version = min(used, key=order.__getitem__) if used else None
        delta = ap.get(next_version, math.nan) - ap.get(chosen_by, math.nan) if next_version else math.nan
        relabel_keys = set(batch.loc[batch["reason"] == "relabel", "key"]) if "reason" in batch.columns else set()
        row = {
            "round_id": rid,
            "created_at": created,
            "strategy": manifest.get("strategy"),
            "model_version": chosen_by,
            "n_clips": len(batch),
            "n_answered": len(answered),
            "share_answered": len(answered) / len(batch) if len(batch) else math.nan,
            "hours_to_answer": hours,
            "disagreement_rate": _disagreement(values[values["round_id"] == rid]),
            "relabels_flipped": _flipped(snapshots, manifest.get("label_snapshot"), mine, relabel_keys),
            "next_model_version": next_version,
            "delta_cv_ap": delta,
        }
        prior = manifest.get("pool_prior") or {}
        for concept in concepts:
            labeled = by_concept[concept].reindex(sorted(answered)).dropna() if concept in by_concept else ()
            suffix = _concept_suffix(concept)
            row[f"positives_per_100_{suffix}"] = 100 * float(labeled.mean()) if len(labeled) else math.nan
            row[f"prior_per_100_{suffix}"] = 100 * float(prior[concept]) if prior.get(concept) is not None else math.nan
        rows.append(row)
    extra = [f"{kind}_per_100_{_concept_suffix(c)}" for c in concepts for kind in ("positives", "prior")]
    out = pd.DataFrame(rows, columns=[*BATCH_YIELD.columns, *extra])
    return conform(out, BATCH_YIELD)


def batches_first_used_by(lineage: pd.DataFrame, model_version: str | int) -> list[str]:
    """Round ids (oldest batch first) whose answers version ``model_version`` was the first to train on.

    ``lineage`` is :func:`lineage_table`'s result.
    """
    mine = lineage["model_version"].eq(str(model_version)).fillna(False).to_numpy(dtype=bool)
    return list(dict.fromkeys(lineage.loc[mine, "round_id"]))

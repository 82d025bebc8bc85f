"""run_consensus / load_consensus against both store backends: written once per snapshot, never overwritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mlci.catalog import ClassCatalog
from mlci.config import default_class_catalog
from mlci.consensus import (
    ConsensusConflictError,
    NoAnnotationsError,
    SnapshotNotFoundError,
    list_snapshots,
    load_consensus,
    load_consensus_result,
    run_consensus,
)
from mlci.labels import ingest_labels, label_snapshot_id, load_annotations

BASE = "https://clips.example.invalid/"


@pytest.fixture(scope="module")
def catalog():
    return ClassCatalog.from_json(default_class_catalog())


def answers(annotator, labels_by_clip):
    return json.dumps(
        [{"data": BASE + clip, "labels": labels, "annotator": annotator} for clip, labels in labels_by_clip.items()]
    ).encode()


def test_run_store_and_load(store, catalog):
    with pytest.raises(NoAnnotationsError):
        run_consensus(store)
    with pytest.raises(SnapshotNotFoundError):
        load_consensus(store)
    clips = {f"c{i}.mp4": (["holiday"] if i % 3 else ["none of the above"]) for i in range(12)}
    store.write_bytes("labels/ann.json", answers("ann", clips))
    store.write_bytes("labels/bo.json", answers("bo", {**clips, "c0.mp4": ["holiday", "gift giving"]}))
    store.write_bytes("labels/cy.json", answers("cy", {"c0.mp4": ["holiday"], "c1.mp4": []}))
    ingest_labels(store, catalog, base_url=BASE)
    snapshot = label_snapshot_id(load_annotations(store))

    result = run_consensus(store, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert result.snapshot == snapshot and result.method == "dawid_skene"
    folder = f"consensus/{snapshot}/"
    assert store.list(folder) == [folder + f for f in
                                  ("agreement.json", "annotators.parquet", "labels.parquet", "manifest.json",
                                   "relabel.parquet")]
    manifest = json.loads(store.read_text(folder + "manifest.json"))
    assert manifest["n_clips"] == 12 and manifest["n_annotators"] == 3 and manifest["fit"]["converged"]
    before = {k: store.read_bytes(k) for k in store.list("consensus/")}

    # Same snapshot, same parameters: nothing is written, the stored result comes back.
    again = run_consensus(store)
    assert {k: store.read_bytes(k) for k in store.list("consensus/")} == before
    assert again.labels.equals(result.labels) and again.agreement == result.agreement
    # Another method for the same snapshot is refused, not overwritten.
    with pytest.raises(ConsensusConflictError, match="already holds method 'dawid_skene'"):
        run_consensus(store, method="majority")

    labels = load_consensus(store)
    assert labels.attrs["snapshot"] == snapshot
    assert labels.equals(result.labels)
    c0 = labels[labels["asset"] == "clips/c0.mp4"].set_index("class")
    assert c0.loc["holiday", "label"] == 1 and c0.loc["holiday", "n_votes"] == 3
    stored = load_consensus_result(store, snapshot)
    assert stored.relabel.equals(result.relabel) and stored.annotators.equals(result.annotators)
    assert stored.agreement["holiday"]["krippendorff_alpha"]["n_raters"] == 3

    # New labels make a new snapshot; the latest is loaded by default, the old one stays loadable.
    store.write_bytes("labels/dee.json", answers("dee", {"c5.mp4": ["halloween"]}))
    ingest_labels(store, catalog, base_url=BASE)
    newer = run_consensus(store, method="majority", now=datetime(2025, 2, 1, tzinfo=UTC))
    assert newer.snapshot != snapshot
    assert [m["snapshot"] for m in list_snapshots(store)] == [snapshot, newer.snapshot]
    assert load_consensus(store).attrs["snapshot"] == newer.snapshot
    assert load_consensus(store, snapshot).equals(labels)
    with pytest.raises(SnapshotNotFoundError):
        load_consensus(store, "0" * 16)


def test_leftover_of_an_interrupted_run_is_not_overwritten(local_store, catalog):
    local_store.write_bytes("labels/a.json", answers("ann", {"c1.mp4": ["holiday"]}))
    ingest_labels(local_store, catalog, base_url=BASE)
    snapshot = label_snapshot_id(load_annotations(local_store))
    local_store.write_bytes(f"consensus/{snapshot}/labels.parquet", b"something else")
    with pytest.raises(ConsensusConflictError, match="without a manifest"):
        run_consensus(local_store)
    assert local_store.read_bytes(f"consensus/{snapshot}/labels.parquet") == b"something else"

"""Ingestion into the store: idempotent, incremental, lossless; bad files reported, others still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mlci.labels import current_view, ingest_labels, label_snapshot_id, load_annotations

SEED_BASE = "https://vmlr-workshop.STORAGE/"
BASE = "https://clips.example.invalid/"
T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 2, 1, tzinfo=UTC)
T3 = datetime(2025, 3, 1, tzinfo=UTC)


def flat(*records) -> bytes:
    return json.dumps(list(records)).encode()


def snapshot_of_store(store) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list("")}


def positives(df, asset, annotator):
    rows = df[(df["asset"] == asset) & (df["annotator"] == annotator)]
    return set(rows.loc[rows["value"] == 1, "class"])


def test_seed_ingest_is_idempotent(store, catalog, seed_labels_path):
    store.write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())
    first = ingest_labels(store, catalog, base_url=SEED_BASE, now=T1)
    assert first.n_new == 1 and first.n_accepted == 998 and first.n_rows_new == 4990
    assert first.report_key.startswith("reports/labels/ingest-")
    stored = json.loads(store.read_text(first.report_key))
    # The test store holds no clips: every answer is kept and flagged as naming a clip not in the store.
    assert stored["files"][0]["notes_by_reason"] == {
        "clip_not_in_store": 998, "empty_labels": 2, "none_of_the_above_conflict": 15
    }
    annotations = load_annotations(store)
    before = snapshot_of_store(store)

    again = ingest_labels(store, catalog, base_url=SEED_BASE, now=T2)
    assert again.n_new == 0 and again.n_already_ingested == 1 and again.files[0].n_accepted == 998
    assert again.report_key == first.report_key
    assert snapshot_of_store(store) == before  # nothing written, nothing changed
    after = load_annotations(store)
    assert after.equals(annotations)
    assert label_snapshot_id(after) == label_snapshot_id(annotations)
    assert (after["ingested_at"] == T1).all()


def test_incremental_replace_keeps_history(store, catalog):
    a, b = BASE + "a.mp4", BASE + "b.mp4"
    store.write_bytes("labels/round1.json", flat(
        {"labels": ["holiday"], "data": a, "annotator": "ann", "created_at": "2025-01-01T00:00:00Z"},
        {"labels": ["halloween"], "data": b, "annotator": "ann"},
        {"labels": ["gift giving"], "data": a, "annotator": "bo"},
    ))
    ingest_labels(store, catalog, base_url=BASE, now=T1)
    snap1 = label_snapshot_id(load_annotations(store))

    # Round 2: ann re-labels a (with a later created_at) and b (no created_at: ingestion time decides).
    store.write_bytes("labels/round2.json", flat(
        {"labels": ["none of the above"], "data": a, "annotator": "ann", "created_at": "2025-01-05T00:00:00Z"},
        {"labels": ["family moments", "halloween"], "data": b, "annotator": "ann"},
    ))
    report = ingest_labels(store, catalog, base_url=BASE, now=T2)
    assert {f.source: f.status for f in report.files} == {
        "labels/round1.json": "already_ingested", "labels/round2.json": "ingested"
    }
    current = load_annotations(store)
    history = load_annotations(store, current=False)
    assert positives(current, "clips/a.mp4", "ann") == set()
    assert positives(current, "clips/b.mp4", "ann") == {"family moments", "halloween"}
    assert positives(current, "clips/a.mp4", "bo") == {"gift giving"}  # other annotators untouched
    assert len(current) == 3 * 5 and len(history) == 5 * 5  # the earlier answers stay in the history
    old = history[(history["asset"] == "clips/a.mp4") & (history["annotator"] == "ann")
                  & (history["source_file"] == "labels/round1.json")]
    assert set(old.loc[old["value"] == 1, "class"]) == {"holiday"}
    snap2 = label_snapshot_id(current)
    assert snap2 != snap1

    # An answer created before the current one does not replace it, even if ingested later.
    store.write_bytes("labels/late.json", flat(
        {"labels": ["shopping scenes"], "data": a, "annotator": "ann", "created_at": "2025-01-03T00:00:00Z"},
    ))
    ingest_labels(store, catalog, base_url=BASE, now=T3)
    current = load_annotations(store)
    assert positives(current, "clips/a.mp4", "ann") == set()
    assert len(load_annotations(store, current=False)) == 6 * 5
    assert label_snapshot_id(current) == snap2


def test_bad_files_reported_and_others_ingested(store, catalog, tmp_path):
    store.write_bytes("labels/binary.json", bytes(range(256)))
    store.write_bytes("labels/empty.csv", b"")
    store.write_bytes("labels/.hidden.json", b"not even json")  # hidden files are not label files
    store.write_bytes("labels/partly_bad.json", flat(
        {"labels": ["holiday"], "data": BASE + "ok.mp4"},
        {"labels": ["holiday"], "data": BASE + "../../escape.mp4"},
        {"labels": ["yule log"], "data": BASE + "ok.mp4"},
    ))
    local = tmp_path / "extra"
    local.mkdir()
    (local / "more.csv").write_text("asset,annotator,label\nclips/c.mp4,cy,halloween\n")
    (local / "same.json").write_bytes(store.read_bytes("labels/partly_bad.json"))  # identical content
    report = ingest_labels(store, catalog, base_url=BASE, paths=[local, tmp_path / "missing.json"], now=T1)
    status = {f.source.rsplit("/", 1)[-1]: f for f in report.files}
    assert set(status) == {"binary.json", "empty.csv", "partly_bad.json", "more.csv", "same.json", "missing.json"}
    assert status["binary.json"].status == "rejected" and status["binary.json"].error.startswith("not_text")
    assert status["empty.csv"].status == "rejected" and status["empty.csv"].error.startswith("empty_file")
    assert status["missing.json"].status == "rejected" and status["missing.json"].error.startswith("unreadable")
    bad = status["partly_bad.json"]
    assert bad.status == "ingested" and bad.n_accepted == 1
    assert bad.rejected_by_reason == {"clip_ref_escapes_store": 1, "unknown_class": 1}
    assert [(r["index"], r["reason"]) for r in bad.rejected] == [(1, "clip_ref_escapes_store"), (2, "unknown_class")]
    assert status["same.json"].status == "already_ingested"
    assert status["same.json"].duplicate_of == "labels/partly_bad.json"
    assert status["more.csv"].status == "ingested"
    assert report.n_rejected_files == 3 and report.rejected_by_reason["not_text"] == 1
    current = load_annotations(store)
    assert sorted(current["asset"].unique()) == ["clips/c.mp4", "clips/ok.mp4"]
    frame = report.to_frame()
    assert list(frame.columns[:4]) == ["source", "format", "status", "read"]

    # Re-running changes nothing; the stored run report is the same object.
    before = snapshot_of_store(store)
    again = ingest_labels(store, catalog, base_url=BASE, paths=[local, tmp_path / "missing.json"], now=T2)
    assert again.report_key == report.report_key
    assert snapshot_of_store(store) == before


def test_current_view_and_snapshot_are_order_independent(local_store, catalog):
    local_store.write_bytes("labels/x.json", flat(
        *({"labels": ["holiday"] if i % 2 else ["halloween"], "data": BASE + f"c{i}.mp4", "annotator": f"a{i % 3}"}
          for i in range(20))
    ))
    ingest_labels(local_store, catalog, base_url=BASE, now=T1)
    history = load_annotations(local_store, current=False)
    shuffled = history.sample(frac=1.0, random_state=0)
    assert current_view(shuffled).equals(current_view(history))
    assert label_snapshot_id(current_view(shuffled)) == label_snapshot_id(load_annotations(local_store))
    with pytest.raises(ValueError, match="current view"):
        label_snapshot_id(history.iloc[[0, 0]])
    with pytest.raises(ValueError, match="missing"):
        label_snapshot_id(history.drop(columns="value"))


def test_empty_store_has_empty_annotations(local_store, catalog):
    report = ingest_labels(local_store, catalog, base_url=BASE)
    assert report.n_files == 0
    df = load_annotations(local_store)
    assert len(df) == 0 and "ingested_at" in df.columns


def _label_studio_export(refs: list[str]) -> bytes:
    """A Label Studio JSON export: one task per clip reference, one annotation each."""
    return json.dumps([
        {"id": i, "data": {"video": ref, "rank": i + 1},
         "annotations": [{"completed_by": {"id": 1, "email": "ann@example.com"}, "created_at": "2025-01-02T00:00:00Z",
                          "result": [{"from_name": "concepts", "to_name": "video", "type": "choices",
                                      "value": {"choices": ["holiday"]}}]}]}
        for i, ref in enumerate(refs)
    ]).encode()


KEYS = ["clips/real/my clip #1?.mp4", "clips/a+b 100%.mp4", "clips/plain.mp4"]


def test_label_studio_export_with_s3_storage_uris_ingests_into_the_clip_keys(s3_store, catalog):
    for key in KEYS:
        s3_store.write_bytes(key, b"\x00")
    # Label Studio's S3 storage names each object s3://bucket/<object key>, the key written literally.
    refs = [f"s3://{s3_store.bucket}/{s3_store.prefix}/{key}" for key in KEYS]
    s3_store.write_bytes("labels/ls-export.json", _label_studio_export(refs))
    report = ingest_labels(s3_store, catalog, base_url=BASE, now=T1)
    (f,) = report.files
    assert (f.n_accepted, f.n_rejected, f.notes_by_reason) == (3, 0, {})
    annotations = load_annotations(s3_store)
    assert sorted(set(annotations["asset"])) == sorted(KEYS)
    assert set(annotations.loc[annotations["value"] == 1, "class"]) == {"holiday"}


def test_label_studio_export_with_local_files_urls_ingests_under_the_files_root(local_store, catalog, tmp_path):
    from urllib.parse import quote

    for key in KEYS:
        local_store.write_bytes(key, b"\x00")
    # Label Studio's local files storage: [host]/data/local-files/?d=<path under its document root>, quoted.
    refs = [f"http://localhost:8080/data/local-files/?d={quote('store/' + key)}" for key in KEYS]
    local_store.write_bytes("labels/ls-export.json", _label_studio_export(refs))

    refused = ingest_labels(local_store, catalog, base_url=BASE, now=T1)
    assert refused.files[0].n_accepted == 0 and refused.files[0].rejected_by_reason == {"unresolvable_clip_ref": 3}
    assert "MLCI_LABEL_STUDIO_FILES_ROOT" in refused.files[0].rejected[0]["message"]

    # Configuring the root reads the file again (new settings) and stores each answer under its clip.
    report = ingest_labels(local_store, catalog, base_url=BASE, files_root=tmp_path, now=T2)
    (f,) = report.files
    assert (f.status, f.n_accepted, f.n_rejected, f.notes_by_reason) == ("retried", 3, 0, {})
    assert sorted(set(load_annotations(local_store)["asset"])) == sorted(KEYS)
    stored = json.loads(local_store.read_text(report.report_key))
    assert stored["params"]["files_root"] == str(tmp_path.resolve())

"""Answers rejected because of settings are read again when the settings change; none is stored twice.

Also: ``reingest`` on request, a pass that stopped half-way, stores written before passes existed,
and the same answers dropped in again under another name (not a second annotator).
"""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime

from mlci.config import DEFAULT_CLIP_BASE_URL
from mlci.labels import (
    ingest_labels,
    load_annotations,
    normalize_label_file,
    read_label_file,
)
from mlci.tables import ANNOTATIONS, conform, json_bytes, parquet_bytes

SEED_BASE = "https://vmlr-workshop.STORAGE/"
T1 = datetime(2025, 1, 1, tzinfo=UTC)
T2 = datetime(2025, 2, 1, tzinfo=UTC)
T3 = datetime(2025, 3, 1, tzinfo=UTC)
T4 = datetime(2025, 4, 1, tzinfo=UTC)
ROW_ID = ["asset", "annotator", "class", "source_file", "record_index"]


def flat(*records) -> bytes:
    return json.dumps(list(records)).encode()


def snapshot_of_store(store) -> dict[str, bytes]:
    return {k: store.read_bytes(k) for k in store.list("")}


def test_wrong_base_url_then_fixed_stores_every_answer_once(store, catalog, seed_labels_path):
    store.write_bytes("labels/labels_final.json", seed_labels_path.read_bytes())

    # MLCI_CLIP_BASE_URL not set yet: the default base matches none of the seed's URLs.
    wrong = ingest_labels(store, catalog, base_url=DEFAULT_CLIP_BASE_URL, now=T1)
    f = wrong.files[0]
    assert (f.status, f.n_accepted, f.n_rejected, f.n_skipped) == ("ingested", 0, 1000, 0)
    assert f.rejected_by_reason == {"unresolvable_clip_ref": 1000}
    assert wrong.without_answers == ["labels/labels_final.json"]
    assert len(load_annotations(store, current=False)) == 0

    # The same settings again: nothing to gain, nothing read, nothing written.
    before = snapshot_of_store(store)
    same = ingest_labels(store, catalog, base_url=DEFAULT_CLIP_BASE_URL, now=T2)
    assert same.files[0].status == "already_ingested" and same.files[0].n_accepted == 0
    assert snapshot_of_store(store) == before

    # Fixed: the rejected answers are read again and stored, once.
    fixed = ingest_labels(store, catalog, base_url=SEED_BASE, now=T3)
    f = fixed.files[0]
    assert (f.status, f.n_accepted, f.n_new, f.n_rejected, f.n_skipped) == ("retried", 998, 998, 0, 2)
    assert fixed.n_rows_new == 998 * 5 and fixed.without_answers == []
    history = load_annotations(store, current=False)
    assert len(history) == 998 * 5 and not history.duplicated(ROW_ID).any()
    assert len(load_annotations(store)) == 998 * 5
    assert (history["ingested_at"] == T3).all()

    # A re-run after that changes nothing; back on the wrong base, no answer is read again either
    # (only that run's own validation report is new).
    before = snapshot_of_store(store)
    again = ingest_labels(store, catalog, base_url=SEED_BASE, now=T4)
    assert again.files[0].status == "already_ingested" and again.files[0].n_accepted == 998
    assert again.n_rows_new == 0 and again.report_key == fixed.report_key
    assert snapshot_of_store(store) == before
    back = ingest_labels(store, catalog, base_url=DEFAULT_CLIP_BASE_URL, now=T4)
    assert back.files[0].status == "already_ingested" and back.files[0].n_accepted == 998
    assert {k: v for k, v in snapshot_of_store(store).items() if not k.startswith("reports/")} == {
        k: v for k, v in before.items() if not k.startswith("reports/")}
    assert load_annotations(store, current=False).equals(history)


def test_partly_accepted_file_stores_the_rest_later_and_nothing_twice(local_store, catalog):
    a, b = "https://a.example/", "https://b.example/"
    records = [{"labels": ["holiday"], "data": a + f"x{i}.mp4", "annotator": "ann"} for i in range(3)]
    records += [{"labels": ["halloween"], "data": b + f"y{i}.mp4", "annotator": "ann"} for i in range(2)]
    records += [{"labels": [], "data": a + "e.mp4", "annotator": "ann"}]
    local_store.write_bytes("labels/mixed.json", flat(*records))

    first = ingest_labels(local_store, catalog, base_url=a, now=T1).files[0]
    assert (first.n_accepted, first.n_rejected, first.n_skipped) == (3, 2, 1)
    second = ingest_labels(local_store, catalog, base_url=b, now=T2).files[0]
    assert (second.status, second.n_accepted, second.n_new) == ("retried", 5, 2)
    # The answers accepted under the first base are not read again under the second: no answer
    # lands on two clips, and none is stored twice.
    assert second.rejected_by_reason == {"unresolvable_clip_ref": 1} and second.rejected[0]["index"] == 5
    third = ingest_labels(local_store, catalog, base_url=a, empty="negative", now=T3).files[0]
    assert (third.status, third.n_accepted, third.n_new, third.n_skipped) == ("retried", 6, 1, 0)
    assert third.label_counts == {"holiday": 3, "halloween": 2} and third.notes_by_reason == {"empty_labels": 1, "clip_not_in_store": 6}

    history = load_annotations(local_store, current=False)
    assert len(history) == 6 * 5 and not history.duplicated(ROW_ID).any()
    assert sorted(history["asset"].unique()) == ["clips/e.mp4", "clips/x0.mp4", "clips/x1.mp4", "clips/x2.mp4",
                                                 "clips/y0.mp4", "clips/y1.mp4"]
    assert third.n_clips == 6 and third.n_rows == 30


def test_reingest_on_request_is_idempotent(local_store, catalog, tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(flat(
        {"labels": ["holiday"], "data": "https://a.example/x.mp4", "annotator": "ann"},
        {"labels": ["holiday"], "data": "https://b.example/y.mp4", "annotator": "ann"},
    ))
    first = ingest_labels(local_store, catalog, base_url="https://a.example/", paths=[path], now=T1)
    assert first.files[0].n_accepted == 1
    before = snapshot_of_store(local_store)
    # Forced with the same settings: read again, nothing new, nothing written; asked twice, the same.
    for now in (T2, T3):
        forced = ingest_labels(local_store, catalog, base_url="https://a.example/", reingest=[path], now=now)
        assert [(f.source, f.status, f.n_new) for f in forced.files] == [(str(path), "retried", 0)]
        assert snapshot_of_store(local_store) == before

    local_store.write_bytes("labels/in-store.json", path.read_bytes())  # the same answers, in the store
    forced = ingest_labels(local_store, catalog, base_url="https://b.example/", reingest=["labels/in-store.json"],
                           now=T4)
    (f,) = forced.files
    assert (f.source, f.status, f.n_accepted, f.n_new, f.duplicate_of) == (
        "labels/in-store.json", "retried", 2, 1, str(path))
    assert len(load_annotations(local_store, current=False)) == 2 * 5

    missing = ingest_labels(local_store, catalog, base_url="https://b.example/", reingest=["labels/nope.json"])
    assert [f.status for f in missing.files if f.source == "labels/nope.json"] == ["rejected"]
    assert "neither a local file nor a key" in missing.files[0].error


def test_label_studio_s3_references_rejected_then_accepted(s3_store, catalog):
    def task(i, key, choices, who):
        return {"id": i, "data": {"video": f"s3://media-bucket/clips/{key}"},
                "annotations": [{"id": 10 + i, "completed_by": who, "updated_at": "2025-01-0%dT10:00:00Z" % (i + 1),
                                 "result": [{"from_name": "concepts", "to_name": "video", "type": "choices",
                                             "value": {"choices": choices}}]}]}

    export = [task(0, "gifts/a b #1?.mp4", ["holiday"], 7), task(1, "xmas/c.mp4", ["gift giving"], 7),
              task(2, "xmas/c.mp4", ["none of the above"], 8)]
    s3_store.write_bytes("labels/project-1.json", json.dumps(export).encode())

    # The media bucket is not the store's: every reference is outside the store until the base says where clips are.
    wrong = ingest_labels(s3_store, catalog, base_url=DEFAULT_CLIP_BASE_URL, now=T1).files[0]
    assert (wrong.format, wrong.n_accepted, wrong.rejected_by_reason) == ("label_studio", 0, {"clip_ref_escapes_store": 3})
    fixed = ingest_labels(s3_store, catalog, base_url="s3://media-bucket/clips/", now=T2).files[0]
    assert (fixed.status, fixed.n_accepted, fixed.n_new) == ("retried", 3, 3)
    current = load_annotations(s3_store)
    assert sorted(current["asset"].unique()) == ["clips/gifts/a b #1?.mp4", "clips/xmas/c.mp4"]  # s3 keys are literal
    assert sorted(current["annotator"].unique()) == ["7", "8"] and len(current) == 3 * 5
    before = snapshot_of_store(s3_store)
    again = ingest_labels(s3_store, catalog, base_url="s3://media-bucket/clips/", now=T3).files[0]
    assert again.status == "already_ingested" and snapshot_of_store(s3_store) == before


def test_pass_stopped_between_marker_and_shard_is_redone(local_store, catalog):
    base = "https://a.example/"
    local_store.write_bytes("labels/x.json", flat(*({"labels": ["holiday"], "data": base + f"c{i}.mp4"}
                                                    for i in range(4))))
    ingest_labels(local_store, catalog, base_url=base, now=T1)
    (shard,) = local_store.list("annotations/history/")
    complete = local_store.read_bytes(shard)
    local_store.delete(shard)  # the state a run leaves when it stops after the marker
    assert len(load_annotations(local_store)) == 0

    redo = ingest_labels(local_store, catalog, base_url=base, now=T2).files[0]
    assert (redo.status, redo.n_accepted, redo.n_new) == ("ingested", 4, 4)
    assert local_store.list("annotations/history/") == [shard]
    assert len(load_annotations(local_store, current=False)) == 4 * 5
    assert len(local_store.read_bytes(shard)) == len(complete)


def test_store_written_before_passes_keeps_its_answers_once(local_store, catalog):
    # What the ingestion before passes wrote: a report and a shard named by the file's sha256.
    base = "https://a.example/"
    data = flat({"labels": ["holiday"], "data": base + "x.mp4", "annotator": "ann"},
                {"labels": ["halloween"], "data": "https://b.example/y.mp4", "annotator": "ann"},
                {"labels": [], "data": base + "z.mp4", "annotator": "ann"})
    local_store.write_bytes("labels/old.json", data)
    sha = hashlib.sha256(data).hexdigest()
    old = normalize_label_file(read_label_file(data, source="labels/old.json"), catalog, store=local_store, base_url=base)
    rows = old.annotations.assign(ingested_at=T1)
    local_store.write_bytes(f"annotations/history/{sha}.parquet", parquet_bytes(conform(rows, ANNOTATIONS)))
    legacy = old.report
    legacy.sha256, legacy.status, legacy.ingested_at = sha, "ingested", T1.isoformat()
    local_store.write_bytes(f"annotations/ingested/{sha}.json",
                            json_bytes({k: v for k, v in legacy.to_dict().items() if k not in ("content", "n_new",
                                                                                                "n_rows_new")}))
    same = ingest_labels(local_store, catalog, base_url=base, now=T2).files[0]
    # The old marker did not record its settings: the rejected and skipped answers are read again
    # once, and nothing new is accepted under the same base URL.
    assert (same.status, same.n_accepted, same.n_new) == ("retried", 1, 0)
    fixed = ingest_labels(local_store, catalog, base_url="https://b.example/", now=T3).files[0]
    assert (fixed.status, fixed.n_accepted, fixed.n_new) == ("retried", 2, 1)
    history = load_annotations(local_store, current=False)
    assert len(history) == 2 * 5 and not history.duplicated(ROW_ID).any()


# --- the same answers dropped in again under a new name (issue 12, item 8) -----------------------

def seed_like(n, seed):
    rng = random.Random(seed)
    return [{"etag": f"{rng.getrandbits(64):016x}", "labels": rng.sample(["holiday", "gift giving", "halloween"], 2),
             "data": f"https://a.example/c{i}.mp4"} for i in range(n)]


def test_same_answers_under_a_new_name_are_not_a_second_annotator(local_store, catalog):
    base = "https://a.example/"
    records = seed_like(40, 0)
    local_store.write_bytes("labels/workshop.json", flat(*records))
    # A real second annotator who disagrees on one clip is a second annotator.
    other = [dict(r) for r in records]
    other[0] = {**other[0], "labels": ["shopping scenes"]}
    local_store.write_bytes("labels/second.json", flat(*other))
    first = ingest_labels(local_store, catalog, base_url=base, now=T1)
    assert [f.status for f in first.files] == ["ingested", "ingested"]

    # The same export dropped in again: other etags, other order, labels in another order, new name.
    again = [{**r, "etag": "x" + r["etag"], "labels": r["labels"][::-1]} for r in records[::-1]]
    local_store.write_bytes("labels/workshop (1).json", flat(*again))
    report = ingest_labels(local_store, catalog, base_url=base, now=T2)
    by_name = {f.source: f for f in report.files}
    dup = by_name["labels/workshop (1).json"]
    assert (dup.status, dup.duplicate_of, dup.n_new, dup.n_accepted) == ("duplicate", "labels/workshop.json", 0, 40)
    assert report.n_duplicates == 1 and report.without_answers == [] and report.n_rows_new == 0
    current = load_annotations(local_store)
    assert sorted(current["annotator"].unique()) == ["second.json", "workshop.json"]
    assert len(load_annotations(local_store, current=False)) == 2 * 40 * 5
    stored = json.loads(local_store.read_text(report.report_key))
    assert {f["source"]: f["status"] for f in stored["files"]}["labels/workshop (1).json"] == "duplicate"
    assert "same answers as labels/workshop.json" in report.to_frame().set_index("source").loc[
        "labels/workshop (1).json", "problems"]

    before = snapshot_of_store(local_store)
    rerun = ingest_labels(local_store, catalog, base_url=base, now=T3)
    assert {f.source: f.status for f in rerun.files} == {
        "labels/second.json": "already_ingested", "labels/workshop (1).json": "duplicate",
        "labels/workshop.json": "already_ingested"}
    assert rerun.report_key == report.report_key and snapshot_of_store(local_store) == before


def test_re_export_recovers_answers_the_lost_original_could_not_store(local_store, catalog, tmp_path):
    base = "https://a.example/"
    original = tmp_path / "ann.json"
    original.write_bytes(flat(*seed_like(10, 1)))
    first = ingest_labels(local_store, catalog, base_url=DEFAULT_CLIP_BASE_URL, paths=[original], now=T1)
    assert first.files[0].n_accepted == 0
    original.unlink()  # the local file is gone; a re-export under another name arrives
    re_export = tmp_path / "ann-reexport.json"
    re_export.write_bytes(flat(*({**r, "etag": "y"} for r in seed_like(10, 1)[::-1])))
    report = ingest_labels(local_store, catalog, base_url=base, paths=[re_export], now=T2)
    (f,) = report.files
    assert (f.status, f.duplicate_of, f.n_accepted, f.n_new) == ("duplicate", str(original), 10, 10)
    current = load_annotations(local_store)
    # Stored under the original's annotator: the same source, not a second person.
    assert set(current["annotator"]) == {"ann.json"} and len(current) == 10 * 5
    assert set(current["source_file"]) == {str(re_export)}

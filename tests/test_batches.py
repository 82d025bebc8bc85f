"""Planning and publishing labeling batches."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from mlci.batches import (
    BatchConflictError,
    RoundInputs,
    consensus_matrix,
    label_studio_tasks,
    list_batches,
    open_batch_keys,
    plan_round,
    prefill_confidence,
    publish_batch,
    round_id,
)
from mlci.catalog import ClassCatalog, Concept
from mlci.consensus import relabel_candidates
from mlci.labelstudio import labeling_config
from mlci.strategies import get_strategy

CLASSES = ["holiday", "halloween", "gift giving"]
CATALOG = ClassCatalog(tuple(Concept(c, f"scenes of {c} & \"friends\"") for c in CLASSES))
QUESTION = "Which concepts appear?"
CONFIG = labeling_config(CATALOG, QUESTION)


def _inputs(n=60, n_labeled=10, unavailable=(), seed=0):
    return _round_data(n, n_labeled, unavailable, seed)[0]


def _round_data(n=60, n_labeled=10, unavailable=(), seed=0) -> tuple[RoundInputs, pd.DataFrame]:
    """Round inputs and the consensus table they were made from (clip c000 is a coin flip)."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"clips/c{i:03d}.mp4" for i in range(n)], dtype=object)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    proba = rng.uniform(size=(n, len(CLASSES)))
    labeled = keys[:n_labeled]
    rows = []
    for i, key in enumerate(labeled):
        for j, c in enumerate(CLASSES):
            post = 0.5 if (i == 0 and j == 0) else float(rng.choice([0.02, 0.97]))
            rows.append({"asset": key, "class": c, "posterior": post, "label": int(post > 0.5),
                         "n_votes": 2, "method": "dawid_skene"})
    consensus = pd.DataFrame(rows)
    lk, ly = consensus_matrix(consensus, CLASSES)
    relabel = relabel_candidates(consensus, np.round(consensus["posterior"] * 2).astype(int))
    return RoundInputs(keys, X, proba, CLASSES, lk, ly, relabel, frozenset(unavailable)), consensus


@pytest.mark.parametrize("name", ["margin", "entropy", "random", "kmeans_diversity", "anomaly"])
def test_plan_respects_batch_pool_and_exclusions(name):
    inputs = _inputs(unavailable={"clips/c020.mp4", "clips/c021.mp4"})
    plan = plan_round(inputs, get_strategy(name), batch_size=10, relabel_share=0.2, random_state=1)
    batch = plan.batch
    assert len(batch) == 10 and batch["key"].is_unique
    assert list(batch["rank"]) == list(range(1, 11))
    new = batch[batch["reason"] != "relabel"]
    assert not set(new["key"]) & set(inputs.labeled_keys)
    assert not set(batch["key"]) & inputs.unavailable
    relabel = batch[batch["reason"] == "relabel"]
    assert 1 <= len(relabel) <= 2 and "clips/c000.mp4" in set(relabel["key"])
    assert plan.n_pool == 60 - 10 - 2
    again = plan_round(inputs, get_strategy(name), batch_size=10, relabel_share=0.2, random_state=1)
    pd.testing.assert_frame_equal(batch, again.batch)


def test_plan_scores_and_untrained_concepts():
    inputs = _inputs()
    proba = inputs.proba.copy()
    proba[:, 2] = np.nan  # a concept the champion could not train
    inputs = RoundInputs(inputs.keys, inputs.X, proba, CLASSES, inputs.labeled_keys, inputs.labeled_y,
                         inputs.relabel)
    plan = plan_round(inputs, get_strategy("margin"), batch_size=5, relabel_share=0,
                      url_for=lambda k: "https://x/" + k)
    assert plan.dropped_concepts == ["gift giving"]
    row = plan.batch.iloc[0]
    i = list(inputs.keys).index(row["key"])
    assert row["score_holiday"] == pytest.approx(inputs.proba[i, 0])
    assert row["url"] == "https://x/" + row["key"]


def test_plan_with_small_pool_returns_what_there_is():
    plan = plan_round(_inputs(n=14, n_labeled=10), get_strategy("margin"), batch_size=50, relabel_share=0)
    assert len(plan.batch) == 4


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_plan_rejects_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        plan_round(_inputs(), get_strategy("margin"), batch_size=bad, relabel_share=0.1)


def test_round_id_is_stable_and_sensitive():
    base = {"model_version": "3", "label_snapshot": "abc", "strategy": "margin", "params": {"policy": "max"}}
    assert round_id(base) == round_id(dict(reversed(list(base.items()))))
    assert round_id(base) != round_id({**base, "model_version": "4"})


def test_publish_once_and_list(store):
    plan = plan_round(_inputs(), get_strategy("margin"), batch_size=6, relabel_share=0)
    tasks = label_studio_tasks(plan.batch, CLASSES, model_version="mlci-concepts/1", uri_for=store.url_for)
    assert tasks[0]["data"]["key"] == plan.batch["key"][0]
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    first = publish_batch(store, "r-1", plan.batch, tasks, {"model_version": "1", "strategy": "margin"},
                          labeling_config=CONFIG, now=t0)
    assert first.published and first.n_clips == 6
    assert store.list("batches/r-1/") == sorted(f"batches/r-1/{n}" for n in
                                                ("tasks.json", "batch.csv", "labeling_config.xml", "manifest.json"))
    assert store.read_text("batches/r-1/labeling_config.xml") == CONFIG
    assert json.loads(store.read_text("batches/r-1/tasks.json")) == tasks
    before = {k: store.stat(k).identity for k in store.list("batches/")}
    second = publish_batch(store, "r-1", plan.batch, tasks, {"model_version": "1"}, labeling_config=CONFIG + "<!-- -->",
                           now=t0 + timedelta(hours=1))
    assert not second.published
    assert {k: store.stat(k).identity for k in store.list("batches/")} == before
    manifest = json.loads(store.read_text("batches/r-1/manifest.json"))
    assert manifest["round_id"] == "r-1" and manifest["n_clips"] == 6

    returned = pd.DataFrame({"asset": list(plan.batch["key"][:2]) + ["clips/other.mp4"], "annotator": "ann",
                             "class": "holiday", "value": 1, "source_file": "labels/day1.json",
                             "record_index": [0, 1, 2], "created_at": pd.Series([pd.NaT] * 3, dtype="datetime64[us, UTC]"),
                             "ingested_at": [t0 + timedelta(days=1)] * 3})
    listing = list_batches(store, returned)
    assert listing.loc[0, "n_returned"] == 2 and listing.loc[0, "n_clips"] == 6
    still_out = open_batch_keys(store, returned, expiry=timedelta(days=7), now=t0 + timedelta(days=2))
    assert still_out == set(plan.batch["key"][2:])
    assert open_batch_keys(store, returned, expiry=timedelta(days=7), now=t0 + timedelta(days=8)) == set()


def test_half_published_batch_with_other_content_is_not_overwritten(store):
    plan = plan_round(_inputs(), get_strategy("margin"), batch_size=4, relabel_share=0)
    store.write_bytes("batches/r-2/tasks.json", b"[]")
    with pytest.raises(BatchConflictError, match="tasks.json"):
        publish_batch(store, "r-2", plan.batch, [{"data": {}}], {}, labeling_config=CONFIG)
    assert store.read_bytes("batches/r-2/tasks.json") == b"[]"
    assert not store.exists("batches/r-2/manifest.json")


def test_a_crashed_publish_is_completed_with_the_labeling_config(store):
    plan = plan_round(_inputs(), get_strategy("margin"), batch_size=4, relabel_share=0)
    tasks = label_studio_tasks(plan.batch, CLASSES, model_version="m/1")
    store.write_bytes("batches/r-3/tasks.json", json.dumps(tasks, indent=1).encode())  # the crash left only this
    assert publish_batch(store, "r-3", plan.batch, tasks, {}, labeling_config=CONFIG).published
    assert store.read_text("batches/r-3/labeling_config.xml") == CONFIG
    with pytest.raises(BatchConflictError, match="labeling_config.xml"):
        store.delete("batches/r-3/manifest.json")
        publish_batch(store, "r-3", plan.batch, tasks, {}, labeling_config=labeling_config(CATALOG, "Other?"))


def test_prefill_confidence_is_the_chance_that_no_tick_needs_changing():
    assert prefill_confidence([0.9, 0.2, 0.5]) == pytest.approx(0.9 * 0.8 * 0.5)
    assert prefill_confidence([0.9, 0.2], threshold=0.95) == pytest.approx(0.1 * 0.8)
    assert prefill_confidence([0.99, float("nan")]) == pytest.approx(0.99)  # an untrained concept is left out
    assert prefill_confidence([float("nan"), None]) is None


def test_tasks_rank_utility_and_reason_are_columns_and_the_score_is_the_confidence():
    batch = pd.DataFrame({
        "rank": [1, 2, 3], "key": ["clips/a.mp4", "clips/b.mp4", "clips/c.mp4"],
        "url": ["https://m.example/a.mp4", "https://m.example/b.mp4", "https://m.example/c.mp4"],
        "utility": [0.97, 0.5, float("nan")], "reason": ["margin", "margin", "relabel"],
        "score_holiday": [0.6, 0.1, 0.9], "score_halloween": [0.4, 0.05, float("nan")],
        "score_gift_giving": [0.5, 0.2, float("nan")],
    })
    tasks = label_studio_tasks(batch, CLASSES, model_version="mlci-concepts/7", uri_for=lambda k: "s3://b/p/" + k)
    assert tasks[0] == {
        "data": {"video": "https://m.example/a.mp4", "key": "clips/a.mp4", "rank": 1, "utility": 0.97,
                 "reason": "margin", "uri": "s3://b/p/clips/a.mp4"},
        "predictions": [{
            "model_version": "mlci-concepts/7",
            "score": pytest.approx(0.6 * 0.6 * 0.5),
            "result": [{"from_name": "concepts", "to_name": "video", "type": "choices",
                        "value": {"choices": ["holiday", "gift giving"]}}],
        }],
    }
    # The clip most worth labeling is the least sure one: its confidence is the lowest, not "0.00 %" by rank.
    assert tasks[1]["predictions"][0]["score"] == pytest.approx(0.9 * 0.95 * 0.8)
    assert tasks[1]["predictions"][0]["result"][0]["value"]["choices"] == ["none of the above"]
    assert tasks[2]["data"]["utility"] is None and tasks[2]["predictions"][0]["score"] == pytest.approx(0.9)
    json.dumps(tasks, allow_nan=False)  # valid JSON for Label Studio
    labels = set(CATALOG.names) | {"none of the above"}
    assert all(set(t["predictions"][0]["result"][0]["value"]["choices"]) <= labels for t in tasks)


def test_a_round_with_nothing_to_label_publishes_nothing_and_says_why(store):
    from mlci.batches import run_round
    from mlci.models import MultiLabelModel

    inputs, consensus = _round_data(n=30, n_labeled=30)  # every clip already has a consensus label
    Y = inputs.labeled_y.astype(int)
    Y[0] = 1 - Y[1]  # both values in every concept
    schema = {"extractor": "basic", "version": "1"}
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(inputs.X, Y)
    empty_history = pd.DataFrame({"asset": pd.Series(dtype=str), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]")})
    result = run_round(store, model=model, model_name="m", model_version="1", keys=inputs.keys, X=inputs.X,
                       feature_schema=schema, consensus=consensus, relabel=inputs.relabel,
                       label_snapshot="s", annotations_history=empty_history, catalog=CATALOG, question=QUESTION,
                       quarantined=["clips/c000.mp4"],
                       strategy="margin", batch_size=50, relabel_share=0.0, open_batch_expiry=timedelta(days=7))
    assert not result.published and result.batch.empty
    assert result.reason == "no clip to label: pool of 0 clips (30 labeled, 1 quarantined, 0 in batches still out)"
    assert result.summary() == f"round {result.round_id}: nothing published: {result.reason}"
    assert store.list("batches/") == []


def test_a_round_refuses_a_model_with_concepts_the_interface_lacks(local_store):
    from mlci.batches import run_round
    from mlci.models import MultiLabelModel

    inputs, consensus = _round_data(n=20, n_labeled=10)
    Y = inputs.labeled_y.astype(int).clip(0, 1)
    Y[0], Y[1] = 1, 0
    model = MultiLabelModel(CLASSES, feature_schema={"extractor": "basic", "version": "1"}).fit(inputs.X[:10], Y)
    history = pd.DataFrame({"asset": pd.Series(dtype=str), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]")})
    with pytest.raises(ValueError, match=r"concepts \['gift giving'\] are not in the class catalog"):
        run_round(local_store, model=model, model_name="m", model_version="1", keys=inputs.keys, X=inputs.X,
                  feature_schema={"extractor": "basic", "version": "1"}, consensus=consensus, relabel=inputs.relabel,
                  label_snapshot="s", annotations_history=history, catalog=ClassCatalog(CATALOG.concepts[:2]),
                  question=QUESTION, strategy="margin", batch_size=5, relabel_share=0.0,
                  open_batch_expiry=timedelta(days=7))
    assert local_store.list("batches/") == []


def test_run_round_publishes_new_clips_and_the_consensus_relabel_candidates_once(store):
    from mlci.batches import run_round
    from mlci.models import MultiLabelModel

    inputs, consensus = _round_data(n=40, n_labeled=10)
    Y = inputs.labeled_y.astype(int).clip(0, 1)
    Y[0], Y[1] = 1, 0  # both values in every concept
    schema = {"extractor": "basic", "version": "1"}
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(inputs.X[:10], Y)
    history = pd.DataFrame({"asset": pd.Series(dtype=str), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]")})

    def run(quarantined=(), batch_size=10):
        return run_round(store, model=model, model_name="m", model_version="1", keys=inputs.keys, X=inputs.X,
                         feature_schema=schema, consensus=consensus, relabel=inputs.relabel, label_snapshot="s",
                         annotations_history=history, catalog=CATALOG, question=QUESTION,
                         quarantined=list(quarantined), strategy="margin",
                         batch_size=batch_size, relabel_share=0.2, open_batch_expiry=timedelta(days=7),
                         now=datetime(2026, 3, 1, tzinfo=timezone.utc))

    # A quarantined clip is never offered, not even for relabeling.
    other = run(quarantined=["clips/c000.mp4"], batch_size=11)
    assert other.published and "clips/c000.mp4" not in set(other.batch["key"])
    assert (other.batch["reason"] != "relabel").all()

    result = run()  # another round (another batch size); the first batch's clips are still out
    assert result.published and len(result.batch) == 10
    relabel = result.batch[result.batch["reason"] == "relabel"]
    assert relabel["key"].tolist() == ["clips/c000.mp4"]  # the one coin flip in the consensus
    assert relabel["utility"].tolist() == [1.0]
    assert not set(result.batch["key"]) - {"clips/c000.mp4"} & set(inputs.labeled_keys)
    manifest = json.loads(store.read_text(f"batches/{result.round_id}/manifest.json"))
    assert manifest["counts"] == {"pool": 19, "new": 9, "relabel": 1, "quarantined": 0, "still_out": 11}
    assert store.read_text(f"batches/{result.round_id}/labeling_config.xml") == CONFIG
    assert not set(result.batch["key"]) & set(other.batch["key"])
    published = {k: store.stat(k).identity for k in store.list("batches/")}

    again = run()
    assert not again.published and again.round_id == result.round_id
    pd.testing.assert_frame_equal(again.batch, result.batch, check_dtype=False)
    assert {k: store.stat(k).identity for k in store.list("batches/")} == published



# --- clip URLs in published batches are percent-encoded and come back to the same clip -----------

ODD_KEYS = ["clips/real/my clip #1?.mp4", "clips/real/café 100%.mp4", "clips/real/a+b&c=d.mp4", "clips/plain.mp4"]


def _round_with_odd_keys(store, tmp_path, base_url):
    from mlci.batches import run_round
    from mlci.media import encode_clip
    from mlci.models import FeatureSpec, MultiLabelModel

    frame = np.zeros((16, 16, 3), dtype=np.uint8)
    for i, key in enumerate(ODD_KEYS):  # real mp4 clips under the odd keys
        path = tmp_path / f"clip{i}.mp4"
        encode_clip(path, frames=[frame] * 3, fps=15)
        store.upload(key, path)
    rng = np.random.default_rng(0)
    X_train, Y_train = rng.normal(size=(24, 4)), np.tile([[1, 0, 1], [0, 1, 0]], (12, 1))
    schema = FeatureSpec("demo", "1")
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(X_train, Y_train)
    history = pd.DataFrame({"asset": pd.Series(dtype="string"), "ingested_at": pd.Series(dtype="datetime64[us, UTC]")})
    return run_round(store, model=model, model_name="m", model_version="1", keys=np.array(ODD_KEYS, dtype=object),
                     X=rng.normal(size=(len(ODD_KEYS), 4)), feature_schema=schema, consensus=pd.DataFrame(),
                     relabel=pd.DataFrame({"asset": [], "posterior": []}), label_snapshot="s", annotations_history=history,
                     catalog=CATALOG, question=QUESTION, strategy="random",
                     batch_size=len(ODD_KEYS), relabel_share=0, open_batch_expiry=timedelta(days=7), base_url=base_url, now=datetime(2026, 3, 1, tzinfo=timezone.utc))


def test_round_publishes_encoded_urls_that_ingest_back_to_the_same_clip(store, tmp_path):
    from mlci.catalog import ClassCatalog
    from mlci.config import default_class_catalog
    from mlci.labels import ingest_labels, load_annotations

    base = "https://media.example/v/"
    result = _round_with_odd_keys(store, tmp_path, base)
    assert result.published
    tasks = json.loads(store.read_text(f"batches/{result.round_id}/tasks.json"))
    urls = {t["data"]["key"]: t["data"]["video"] for t in tasks}
    assert urls["clips/real/my clip #1?.mp4"] == base + "real/my%20clip%20%231%3F.mp4"
    assert urls["clips/real/café 100%.mp4"] == base + "real/caf%C3%A9%20100%25.mp4"
    batch = pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{result.round_id}/batch.csv")))
    assert dict(zip(batch["key"], batch["url"])) == urls

    # The labeling tool sends the tasks back with answers (Label Studio JSON export).
    for t in tasks:
        t["annotations"] = [{"completed_by": 3, "result": [{"from_name": "concepts", "to_name": "video",
                                                           "type": "choices", "value": {"choices": ["holiday"]}}]}]
    # An answer for a URL published before encoding: cut at '#', it names no clip in the store.
    tasks.append({"data": {"video": base + "real/my clip #1?.mp4"}, "annotations": tasks[0]["annotations"]})
    store.write_bytes("labels/export.json", json.dumps(tasks).encode())
    catalog = ClassCatalog.from_json(default_class_catalog())
    report = ingest_labels(store, catalog, base_url=base)
    (f,) = report.files
    assert (f.n_accepted, f.n_rejected) == (len(ODD_KEYS) + 1, 0)
    assert f.notes_by_reason == {"clip_not_in_store": 1}  # flagged, kept: nothing is lost
    (note,) = f.notes
    assert note["key"] == "clips/real/my clip " and note["index"] == len(ODD_KEYS)
    assert report.to_frame().loc[0, "no_clip"] == 1
    stored = json.loads(store.read_text(report.report_key))
    assert stored["files"][0]["notes_by_reason"] == {"clip_not_in_store": 1}
    assert stored["totals"]["clip_not_in_store"] == 1
    assets = set(load_annotations(store)["asset"])
    assert assets == set(ODD_KEYS) | {"clips/real/my clip "}

    # The clip uploaded later: the flag goes away on the next run, the answer stays where it was.
    store.write_bytes("clips/real/my clip ", b"late upload")
    again = ingest_labels(store, catalog, base_url=base)
    assert again.files[0].status == "already_ingested" and again.files[0].notes_by_reason == {}


def test_cli_table_and_report_count_clips_not_in_store(tmp_path):
    from typer.testing import CliRunner

    from cli import app
    from mlci.storage import open_store

    store = tmp_path / "store"
    export = tmp_path / "export.csv"
    export.write_text("asset,annotator,label\nclips/real/my%20clip%20%231%3F.mp4,ann,holiday\n"
                      "clips/real/my clip ,ann,halloween\nclips/other.mp4,ann,holiday\n")
    open_store(str(store)).write_bytes("clips/real/my clip #1?.mp4", b"\x00")
    res = CliRunner().invoke(app, ["labels", "ingest", "--store", str(store), str(export)],
                             env={"MLCI_HOME": str(tmp_path / "home")})
    assert res.exit_code == 0, res.output
    header, row = res.output.splitlines()[:2]
    assert header.split()[-2:] == ["no_clip", "problems"] and row.split()[-1] == "2"
    # The CSV reader strips cells: the cut key is 'clips/real/my clip'.
    assert "2 answers in " in res.output
    assert "name clips not in the store (kept): 'clips/real/my clip', 'clips/other.mp4'" in res.output


def test_a_batch_is_recorded_once_as_an_mlflow_run_and_a_lost_recording_is_completed(tmp_path):
    from mlflow import MlflowClient

    from mlci.batches import RoundResult, record_batch_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    batch = pd.DataFrame({"rank": [1, 2, 3], "key": ["a", "b", "c"], "reason": ["uncertain", "coverage", "relabel"]})
    manifest = {"model_name": "m", "model_version": "2", "label_snapshot": "s1", "strategy": "margin_coverage",
                "strategy_params": {"coverage_share": 0.5}}
    result = RoundResult("r-1", "file:///store/batches/r-1/", True, batch, manifest)
    run_id = record_batch_run(uri, "exp", result)
    assert record_batch_run(uri, "exp", result) == run_id  # the same round again: the same run
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("exp-batches").experiment_id])
    assert run.info.run_name == "r-1" and run.info.status == "FINISHED"
    assert run.data.params == {"strategy": "margin_coverage", "strategy.coverage_share": "0.5", "batch_size": "3",
                               "model": "m/2", "label_snapshot": "s1"}
    assert run.data.metrics == {"clips_coverage": 1.0, "clips_relabel": 1.0, "clips_uncertain": 1.0}
    assert run.data.tags["mlflow.note.content"] == ("3 clips chosen by margin_coverage with model m version 2 on label "
                                                    "snapshot s1: 1 coverage, 1 relabel, 1 uncertain. "
                                                    "Batch: file:///store/batches/r-1/")
    assert pd.read_csv(client.download_artifacts(run_id, "batch.csv")).equals(batch)
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the working directory

    # A process died after creating the run: the next call finishes that run instead of adding one.
    experiment = client.get_experiment_by_name("exp-batches").experiment_id
    orphan = client.create_run(experiment, run_name="r-2", tags={"mlci.round_id": "r-2"}).info.run_id
    assert record_batch_run(uri, "exp", RoundResult("r-2", "loc", False, batch, manifest)) == orphan
    assert client.get_run(orphan).info.status == "FINISHED"
    assert client.get_run(orphan).data.metrics["clips_uncertain"] == 1.0
    # A round that chose nothing has nothing to record.
    assert record_batch_run(uri, "exp", RoundResult("r-3", "loc", False, batch.iloc[:0], {}, reason="empty")) is None
    assert len(client.search_runs([experiment])) == 2

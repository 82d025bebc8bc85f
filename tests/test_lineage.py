"""Lineage and yield of labeling batches: answers back to batches, the snapshot and model version that
first used them, and what each batch bought; against a real folder store, real ingestion and consensus.

The story (all times explicit, UTC):

- Jan 1 00:00  ann's seed answers for a0, a1, a2 are ingested; consensus S1 at 01:00; v1 trained on S1.
- Jan 2 00:00  batch r-1 (by v1, on S1): c1, c2, c3, c4 (uncertain) and a0 (relabel); pool prior
               holiday 0.2, halloween 0.1.
- Jan 3 00:00  ann and bo answer c1 (they disagree on halloween), c2 (they agree) and bo relabels a0
               (holiday 1 -> a tie, so 0); consensus S2 at 01:00; v2 trained on S2.
- Jan 4 00:00  batch r-2 (by v2, on S2, no pool prior): c3 (also in r-1, never answered), c5, c6.
- Jan 5 00:00  carl answers c3 (no created_at) and c5, dee answers c4 of r-1; consensus S3 at 01:00;
               v3 is trained on S2 again (not on the new answers).
- Jan 6 00:00  erin answers c6; no consensus after it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mlci.batches import (
    batch_yield,
    batches_first_used_by,
    lineage_table,
    list_batches,
    publish_batch,
    versions_frame,
)
from mlci.batches.lineage import SNAPSHOT_TAG, VERSION_COLUMNS
from mlci.consensus import run_consensus
from mlci.labels import ingest_labels, load_annotations
from mlci.models.versions import ModelVersionInfo
from mlci.tables import BATCH_YIELD, LINEAGE

BASE = "https://clips.example.invalid/"


def day(d: int, hour: int = 0) -> datetime:
    return datetime(2025, 1, d, hour, tzinfo=UTC)


def answer(key: str, annotator: str, labels: list[str], created: datetime | None = None) -> dict:
    record = {"labels": labels or ["none of the above"], "data": BASE + key, "annotator": annotator}
    if created is not None:
        record["created_at"] = created.isoformat().replace("+00:00", "Z")
    return record


def ingest(store, catalog, name: str, records: list[dict], when: datetime) -> None:
    store.write_bytes(f"labels/{name}.json", json.dumps(records).encode())
    report = ingest_labels(store, catalog, base_url=BASE, now=when)
    assert report.n_answers_new == len(records)


def publish(store, round_id: str, keys: list[str], reasons: list[str], when: datetime, **manifest) -> None:
    batch = pd.DataFrame({"rank": range(1, len(keys) + 1), "key": ["clips/" + k for k in keys],
                          "url": [BASE + k for k in keys],
                          "utility": 0.5, "reason": reasons})
    assert publish_batch(store, round_id, batch, [], manifest, labeling_config="<View/>", now=when).published


def versions(*rows: tuple[str, str, datetime, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(VERSION_COLUMNS))


@pytest.fixture
def story(local_store, catalog):
    """The store after the story above, and the snapshot id of each consensus."""
    store = local_store
    ingest(store, catalog, "seed", [answer("a0", "ann", ["holiday"]), answer("a1", "ann", ["halloween"]),
                                    answer("a2", "ann", [])], day(1))
    s1 = run_consensus(store, method="majority", now=day(1, 1)).snapshot
    publish(store, "r-1", ["c1", "c2", "c3", "c4", "a0"], ["uncertain"] * 4 + ["relabel"], day(2),
            model_version="1", label_snapshot=s1, strategy="margin", pool_prior={"holiday": 0.2, "halloween": 0.1})
    ingest(store, catalog, "r1-ann", [answer("c1", "ann", ["holiday"], day(2, 6)),
                                      answer("c2", "ann", ["halloween"], day(2, 12))], day(3))
    ingest(store, catalog, "r1-bo", [answer("c1", "bo", ["holiday", "halloween"], day(2, 8)),
                                     answer("c2", "bo", ["halloween"], day(2, 20)),
                                     answer("a0", "bo", [], day(2, 3))], day(3))
    s2 = run_consensus(store, method="majority", now=day(3, 1)).snapshot
    publish(store, "r-2", ["c3", "c5", "c6"], ["uncertain", "diverse", "uncertain"], day(4),
            model_version="2", label_snapshot=s2, strategy="random")
    ingest(store, catalog, "r2-carl", [answer("c3", "carl", ["holiday"]),
                                       answer("c5", "carl", ["family moments"], day(4, 12))], day(5))
    ingest(store, catalog, "late-dee", [answer("c4", "dee", ["gift giving"], day(4, 18))], day(5))
    s3 = run_consensus(store, method="majority", now=day(5, 1)).snapshot
    ingest(store, catalog, "r2-erin", [answer("c6", "erin", ["holiday"], day(5, 12))], day(6))
    registered = versions(("1", s1, day(1, 2), 0.50), ("2", s2, day(3, 2), 0.58), ("3", s2, day(5, 2), 0.61))
    return store, registered, (s1, s2, s3)


def test_lineage_links_each_answer_to_its_batch_snapshot_and_first_model(story):
    store, registered, (s1, s2, s3) = story
    history = load_annotations(store, current=False)
    lineage = lineage_table(store, history, registered)

    assert list(lineage.columns) == list(LINEAGE.columns)
    assert {c: str(t) for c, t in lineage.dtypes.items()} == LINEAGE.columns
    got = [(r.round_id, r.key, r.reason, r.annotator, r.label_snapshot, r.model_version)
           for r in lineage.itertuples()]
    assert [tuple(None if v is pd.NA else v for v in row) for row in got] == [
        ("r-1", "clips/a0", "relabel", "bo", s2, "2"),
        ("r-1", "clips/c1", "uncertain", "ann", s2, "2"),
        ("r-1", "clips/c1", "uncertain", "bo", s2, "2"),
        ("r-1", "clips/c2", "uncertain", "ann", s2, "2"),
        ("r-1", "clips/c2", "uncertain", "bo", s2, "2"),
        # c4 is only in r-1: answered after r-2 came out, it is still r-1's; v3 trained on S2, not S3.
        ("r-1", "clips/c4", "uncertain", "dee", s3, None),
        # c3 is in both batches: answered after r-2 was published, it answers r-2.
        ("r-2", "clips/c3", "uncertain", "carl", s3, None),
        ("r-2", "clips/c5", "diverse", "carl", s3, None),
        ("r-2", "clips/c6", "uncertain", "erin", None, None),  # no consensus since
    ]
    c3 = lineage[lineage["key"] == "clips/c3"].iloc[0]
    assert c3["answered_at"] == c3["ingested_at"] == pd.Timestamp(day(5))  # no created_at: ingestion time
    assert lineage.loc[lineage["key"] == "clips/c1", "answered_at"].tolist() == [pd.Timestamp(day(2, 6)),
                                                                                 pd.Timestamp(day(2, 8))]
    assert (lineage["source_file"].str.startswith("labels/")).all()
    assert batches_first_used_by(lineage, "2") == ["r-1"]
    assert batches_first_used_by(lineage, 1) == [] and batches_first_used_by(lineage, "3") == []

    # A version trained on S3 is the first to use the answers S3 holds, in both batches.
    with_v4 = lineage_table(store, history, pd.concat([registered, versions(("4", s3, day(5, 3), 0.66))]))
    assert with_v4.loc[with_v4["label_snapshot"] == s3, "model_version"].tolist() == ["4", "4", "4"]
    assert batches_first_used_by(with_v4, "4") == ["r-1", "r-2"]
    assert batches_first_used_by(with_v4, "2") == ["r-1"]


def test_yield_per_batch(story, catalog):
    store, registered, _ = story
    history = load_annotations(store, current=False)
    lineage = lineage_table(store, history, registered)
    table = batch_yield(store, lineage, history, registered)

    concepts = ["family_moments", "gift_giving", "halloween", "holiday", "shopping_scenes"]
    extra = [f"{kind}_per_100_{c}" for c in concepts for kind in ("positives", "prior")]
    assert list(table.columns) == [*BATCH_YIELD.columns, *extra]
    r1, r2 = (row for _, row in table.iterrows())
    assert (r1["round_id"], r1["strategy"], r1["model_version"]) == ("r-1", "margin", "1")
    assert r1["created_at"] == pd.Timestamp(day(2))
    assert (r1["n_clips"], r1["n_answered"], r1["share_answered"]) == (5, 4, 0.8)
    # First answers: a0 3 h, c1 6 h (ann before bo), c2 12 h, c4 66 h after publishing.
    assert r1["hours_to_answer"] == 9.0
    # Latest consensus (S3) of a0, c1, c2, c4: c1 holiday (halloween tied 1-1: negative), c2 halloween,
    # c4 gift giving, a0 nothing (its holiday tied 1-1).
    assert (r1["positives_per_100_holiday"], r1["prior_per_100_holiday"]) == (25.0, 20.0)
    assert (r1["positives_per_100_halloween"], r1["prior_per_100_halloween"]) == (25.0, 10.0)
    assert r1["positives_per_100_gift_giving"] == 25.0 and math.isnan(r1["prior_per_100_gift_giving"])
    assert r1["positives_per_100_family_moments"] == 0.0
    # Two annotators in the batch on c1 (they disagree on halloween) and c2 (they agree); a0 has only
    # bo's answer in the batch (ann's is the seed's).
    assert r1["disagreement_rate"] == 0.5
    assert r1["relabels_flipped"] == 1  # a0's holiday: 1 in S1, 0 in S2
    assert (r1["next_model_version"], r1["delta_cv_ap"]) == ("2", pytest.approx(0.08))

    assert (r2["round_id"], r2["strategy"], r2["model_version"]) == ("r-2", "random", "2")
    assert (r2["n_clips"], r2["n_answered"], r2["share_answered"]) == (3, 3, 1.0)
    assert r2["hours_to_answer"] == 24.0  # c3 24 h (ingestion time), c5 12 h, c6 36 h
    # c6 is not in any consensus yet: per 100 of c3 and c5, which S3 labels.
    assert (r2["positives_per_100_holiday"], r2["positives_per_100_family_moments"]) == (50.0, 50.0)
    assert math.isnan(r2["prior_per_100_holiday"])  # an older manifest: no pool prior
    assert math.isnan(r2["disagreement_rate"])  # one annotator per clip
    assert r2["relabels_flipped"] is pd.NA  # no relabel clip
    assert r2["next_model_version"] is pd.NA and math.isnan(r2["delta_cv_ap"])

    # Re-running gives the identical tables; so does re-running ingestion and consensus.
    pd.testing.assert_frame_equal(lineage_table(store, history, registered), lineage)
    pd.testing.assert_frame_equal(batch_yield(store, lineage, history, registered), table)
    before = {k: store.read_bytes(k) for k in store.list("")}
    ingest_labels(store, catalog, base_url=BASE, now=day(7))
    assert {k: store.read_bytes(k) for k in store.list("")} == before
    again = load_annotations(store, current=False)
    pd.testing.assert_frame_equal(batch_yield(store, lineage_table(store, again, registered), again, registered),
                                  table)


def test_list_batches_counts_each_answer_for_one_batch_as_the_yield_does(story):
    store, registered, _ = story
    history = load_annotations(store, current=False)
    table = batch_yield(store, lineage_table(store, history, registered), history, registered)
    listing = list_batches(store, history)
    # c3 is in both batches; its answer came after r-2 was published, so it counts for r-2 only.
    assert listing["n_returned"].tolist() == table["n_answered"].tolist() == [4, 3]


def test_without_versions_the_model_columns_are_blank(story):
    store, _, _ = story
    history = load_annotations(store, current=False)
    for none in (None, pd.DataFrame(), versions()):
        lineage = lineage_table(store, history, none)
        assert lineage["model_version"].isna().all() and lineage["label_snapshot"].notna().sum() == 8
        table = batch_yield(store, lineage, history, none)
        assert table["next_model_version"].isna().all() and table["delta_cv_ap"].isna().all()
        assert table["n_answered"].tolist() == [4, 3]
    incomplete = pd.DataFrame({"version": ["1"], "label_snapshot": ["x"], "created_at": [day(1)]})
    with pytest.raises(ValueError, match=r"versions must have the columns .*missing \['cv_macro_ap'\]"):
        lineage_table(store, history, incomplete)


def test_empty_store_no_answers_and_unanswered_batches(local_store, catalog):
    store = local_store
    empty_history = load_annotations(store, current=False)
    lineage = lineage_table(store, empty_history, None)
    assert lineage.empty and list(lineage.columns) == list(LINEAGE.columns)
    table = batch_yield(store, lineage, empty_history, None)
    assert table.empty and list(table.columns) == list(BATCH_YIELD.columns)
    assert batches_first_used_by(lineage, "1") == []

    # A batch nobody answered, whose label snapshot is not in the store, with a pool prior.
    publish(store, "r-9", ["c1", "c2"], ["uncertain", "relabel"], day(2), model_version="1", label_snapshot="gone",
            strategy="margin", pool_prior={"holiday": 0.25})
    # An answer ingested before the batch was published does not answer it.
    ingest(store, catalog, "early", [answer("c1", "ann", ["holiday"])], day(1))
    history = load_annotations(store, current=False)
    lineage = lineage_table(store, history, None)
    assert lineage.empty
    [row] = batch_yield(store, lineage, history, None).to_dict(orient="records")
    assert (row["n_clips"], row["n_answered"], row["share_answered"]) == (2, 0, 0.0)
    assert math.isnan(row["hours_to_answer"]) and math.isnan(row["disagreement_rate"])
    assert pd.isna(row["relabels_flipped"]) and pd.isna(row["next_model_version"])
    assert math.isnan(row["positives_per_100_holiday"]) and row["prior_per_100_holiday"] == 25.0

    # Answered, but no consensus ever computed and the relabel clip's old snapshot is gone.
    ingest(store, catalog, "late", [answer("c2", "bo", ["halloween"], day(2, 5))], day(3))
    history = load_annotations(store, current=False)
    lineage = lineage_table(store, history, None)
    assert lineage[["key", "annotator"]].values.tolist() == [["clips/c2", "bo"]]
    assert lineage["label_snapshot"].isna().all() and lineage["model_version"].isna().all()
    [row] = batch_yield(store, lineage, history, None).to_dict(orient="records")
    assert (row["n_answered"], row["hours_to_answer"]) == (1, 5.0)
    assert pd.isna(row["relabels_flipped"])


def test_versions_frame_reads_registered_versions():
    from mlci.models.registry import _TAG

    assert SNAPSHOT_TAG == f"{_TAG}label_snapshot_id"  # the tag the registry writes on every version
    infos = [
        ModelVersionInfo("m", "10", "run-b", tags={SNAPSHOT_TAG: "s2"}, metrics={"macro_ap": 0.7},
                         created_at_ms=1_736_000_000_000),
        ModelVersionInfo("m", "9", "run-a", tags={SNAPSHOT_TAG: "none"}, created_at_ms=0),
    ]
    frame = versions_frame(infos)
    assert frame["version"].tolist() == ["9", "10"]  # registration order, numerically
    assert frame["label_snapshot"].isna().tolist() == [True, False] and frame.loc[1, "label_snapshot"] == "s2"
    assert frame["created_at"].isna().tolist() == [True, False]
    assert frame.loc[1, "created_at"] == pd.Timestamp(1_736_000_000_000, unit="ms", tz="UTC")
    assert np.isnan(frame.loc[0, "cv_macro_ap"]) and frame.loc[1, "cv_macro_ap"] == 0.7
    assert versions_frame([]).empty and list(versions_frame([]).columns) == list(VERSION_COLUMNS)


def test_cli_batches_prints_one_line_per_batch_and_json_the_table(story, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    store, _, _ = story
    env = {"MLCI_HOME": str(tmp_path / "home")}  # no MLflow database there: no versions yet
    now = datetime.now(UTC)
    res = CliRunner().invoke(app, ["batches", "--store", store.uri], env=env)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = lines[0].split()
    assert header == ["round_id", "age", "strategy", "answered", "hours", "family_moments", "gift_giving", "halloween",
                      "holiday", "shopping_scenes", "disagree", "flipped", "ΔCV_AP"]
    r1, r2 = lines[1].split(), lines[2].split()
    age = f"{(now - day(2)).days}d"
    assert r1 == ["r-1", age, "margin", "4/5", "9.0", "0/-", "25/-", "25/10", "25/20", "0/-", "50%", "1", "-"]
    assert r2 == ["r-2", f"{(now - day(4)).days}d", "random", "3/3", "24.0", "50/-", "0/-", "0/-", "50/-", "0/-",
                  "-", "-", "-"]
    assert "positives per 100 answered clips / pool prior per 100" in res.output

    res = CliRunner().invoke(app, ["batches", "--store", store.uri, "--json"], env=env)
    assert res.exit_code == 0, res.output
    r1, r2 = json.loads(res.output)
    assert set(r1) >= set(BATCH_YIELD.columns) and r1["prior_per_100_holiday"] == 20.0
    assert (r1["n_answered"], r1["relabels_flipped"], r1["next_model_version"], r1["delta_cv_ap"]) == (4, 1, None, None)
    assert r2["created_at"] == "2025-01-04T00:00:00+00:00" and r2["prior_per_100_holiday"] is None


def test_cli_batches_on_a_store_without_batches(local_store, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    local_store.write_bytes("clips/x.mp4", b"\x00")  # a store that exists
    res = CliRunner().invoke(app, ["batches", "--store", local_store.uri], env={"MLCI_HOME": str(tmp_path / "h")})
    assert res.exit_code == 0 and res.output.strip() == "no batches published yet"


def test_cli_batches_shows_the_next_models_change_in_cv_ap(story, tmp_path, monkeypatch):
    """Registered versions read from a real SQLite MLflow store (versions created by hand, no training)."""
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from cli import app

    monkeypatch.chdir(tmp_path)  # MLflow's default experiment points at ./mlruns
    store, _, (s1, s2, _) = story
    home = tmp_path / "home"
    home.mkdir()
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.create_experiment("lineage", artifact_location=(home / "mlartifacts").as_uri())
    client.create_registered_model("mlci-concepts")
    for snapshot, ap in ((s1, 0.5), (s2, 0.58)):
        run = client.create_run(experiment).info.run_id
        client.log_metric(run, "cv_macro_ap", ap)
        client.set_terminated(run)
        client.create_model_version("mlci-concepts", f"runs:/{run}/model", run_id=run,
                                    tags={SNAPSHOT_TAG: snapshot})
    res = CliRunner().invoke(app, ["batches", "--store", store.uri], env={"MLCI_HOME": str(home)})
    assert res.exit_code == 0, res.output
    r1 = res.output.splitlines()[1].split()
    assert r1[0] == "r-1" and r1[-2:] == ["v2", "+0.080"]

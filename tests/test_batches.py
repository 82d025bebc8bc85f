"""Planning and publishing labeling batches."""

from __future__ import annotations

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
    publish_batch,
    round_id,
)
from mlci.strategies import get_strategy

CLASSES = ["holiday", "halloween", "gift giving"]


def _inputs(n=60, n_labeled=10, unavailable=(), seed=0):
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
    return RoundInputs(keys, X, proba, CLASSES, lk, ly, consensus, frozenset(unavailable))


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
                         inputs.consensus)
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
        plan_round(_inputs(), get_strategy("margin"), batch_size=bad)


def test_round_id_is_stable_and_sensitive():
    base = {"model_version": "3", "label_snapshot": "abc", "strategy": "margin", "params": {"policy": "max"}}
    assert round_id(base) == round_id(dict(reversed(list(base.items()))))
    assert round_id(base) != round_id({**base, "model_version": "4"})


def test_publish_once_and_list(store):
    plan = plan_round(_inputs(), get_strategy("margin"), batch_size=6, relabel_share=0)
    tasks = label_studio_tasks(plan.batch, CLASSES, model_version="mlci-concepts/1", uri_for=store.url_for)
    assert tasks[0]["predictions"][0]["score"] == 0.0
    assert tasks[-1]["predictions"][0]["score"] > tasks[0]["predictions"][0]["score"]
    assert tasks[0]["data"]["key"] == plan.batch["key"][0]
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    first = publish_batch(store, "r-1", plan.batch, tasks, {"model_version": "1", "strategy": "margin"}, now=t0)
    assert first.published and first.n_clips == 6
    before = {k: store.stat(k).identity for k in store.list("batches/")}
    second = publish_batch(store, "r-1", plan.batch, tasks, {"model_version": "1"}, now=t0 + timedelta(hours=1))
    assert not second.published
    assert {k: store.stat(k).identity for k in store.list("batches/")} == before
    manifest = json.loads(store.read_text("batches/r-1/manifest.json"))
    assert manifest["round_id"] == "r-1" and manifest["n_clips"] == 6

    returned = pd.DataFrame({"asset": list(plan.batch["key"][:2]) + ["clips/other.mp4"],
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
        publish_batch(store, "r-2", plan.batch, [{"data": {}}], {})
    assert store.read_bytes("batches/r-2/tasks.json") == b"[]"
    assert not store.exists("batches/r-2/manifest.json")


def test_a_round_with_nothing_to_label_publishes_nothing_and_says_why(store):
    from mlci.batches import run_round
    from mlci.models import MultiLabelModel

    inputs = _inputs(n=30, n_labeled=30)  # every clip already has a consensus label
    Y = inputs.labeled_y.astype(int)
    Y[0] = 1 - Y[1]  # both values in every concept
    schema = {"extractor": "basic", "version": "1"}
    model = MultiLabelModel(CLASSES, feature_schema=schema).fit(inputs.X, Y)
    empty_history = pd.DataFrame({"asset": pd.Series(dtype=str), "ingested_at": pd.Series(dtype="datetime64[ns, UTC]")})
    result = run_round(store, model=model, model_name="m", model_version="1", keys=inputs.keys, X=inputs.X,
                       feature_schema=schema, consensus=inputs.consensus,
                       label_snapshot="s", annotations_history=empty_history, quarantined=["clips/c000.mp4"],
                       relabel_share=0.0)
    assert not result.published and result.batch.empty
    assert result.reason == "no clip to label: pool of 0 clips (30 labeled, 1 quarantined, 0 in batches still out)"
    assert result.summary() == f"round {result.round_id}: nothing published: {result.reason}"
    assert store.list("batches/") == []

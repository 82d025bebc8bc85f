"""Simulated nights on the demo corpus: the stop advice against the real plateau, and the lineage.

A demo corpus starts with few labels; every night the nightly flow runs (Prefect test server,
SQLite MLflow, a local store of real clips), then a careful simulated annotator answers its batch
(:func:`annotators.answer_batch`). After each night:

- the version the night trained is scored against the ground truth of a held-out corpus (clips
  the platform never sees, drawn the same way): its *true* AP per concept, which the advisor never
  sees. A concept's real plateau is the first night from which its true AP stays within 1 % of
  the last night's (the analysis flow's 99 % point, made robust to a curve that touches the level
  once and dips again);
- the lineage table is complete and agrees with the store: every answer to a batch is in it once,
  linked to the batch, the first consensus snapshot holding it and the first version trained on it.

Then: no concept is advised to stop before its plateau; some concept is advised to stop before
the pool runs out, within ``STOP_WITHIN`` labels after its plateau; re-running the last night
changes nothing.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest

from annotators import answer_batch
from mlci.demo import DemoCorpusSpec, generate_demo_corpus, load_truth
from mlci.storage import open_store

pytestmark = pytest.mark.slow

BATCH_SIZE = 30
MAX_NIGHTS = 12
CLIPS = 450
#: Some concept must be advised to stop at most this many labels after its real plateau: six nights.
#: The default rule waits for three stable nights after predictions settle, so it stops late rather
#: than early (docs/advisor.md).
STOP_WITHIN = 6 * BATCH_SIZE


@pytest.fixture(scope="module")
def nights(prefect_harness, tmp_path_factory):
    """Run nights until every concept is advised to stop or MAX_NIGHTS; what each night saw."""
    from flows.nightly import nightly
    from mlci.batches import lineage_table, versions_frame
    from mlci.features import compute_features, load_features
    from mlci.labels import load_annotations
    from mlci.models import list_versions, load_model

    home = tmp_path_factory.mktemp("advisor-nights")
    tracking = f"sqlite:///{home / 'mlflow.db'}"
    store = open_store(str(home / "store"))
    spec = DemoCorpusSpec(n_clips=CLIPS, seed=5, duration=1.0, size=(48, 32), labeled_share=0.04)
    generate_demo_corpus(store, spec, n_jobs=2)
    held_out = open_store(str(home / "held-out"))
    generate_demo_corpus(held_out, dataclasses.replace(spec, n_clips=200, seed=6), n_jobs=2)
    compute_features(held_out)
    test_keys, X_test, test_schema = load_features(held_out)
    truth = load_truth(held_out).set_index("key").loc[list(test_keys)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCI_HOME", str(home))
        mp.setenv("MLCI_STORE", str(home / "store"))
        mp.setenv("MLCI_MLFLOW_TRACKING_URI", tracking)
        mp.setenv("MLCI_ADVISOR__MIN_POSITIVES", "5")
        mp.setenv("MLCI_ADVISOR__STOP_SET_SIZE", "200")
        mp.setenv("MLCI_TRAINING__CONSENSUS_METHOD", "majority")  # one careful annotator answers the batches
        records = []
        for night in range(1, MAX_NIGHTS + 1):
            summary = nightly(batch_size=BATCH_SIZE, relabel_share=0.0)
            assert summary.status == "completed", summary.warnings
            model = load_model(tracking, "mlci-concepts", version=summary.model.version)
            scores = model.predict_proba(X_test, feature_schema=test_schema)
            true_ap = {c: _ap(truth[c].to_numpy(), scores[:, j]) for j, c in enumerate(model.classes_)}
            versions = versions_frame(list_versions(tracking, "mlci-concepts"))
            annotations = load_annotations(store, current=False)
            lineage = lineage_table(store, annotations, versions)
            records.append({"night": night, "summary": summary, "true_ap": true_ap, "lineage": lineage,
                            "annotations": annotations, "versions": versions,
                            "advice": {c: v for c, v, _ in summary.advice.concepts}})
            if not summary.batch.published or night == MAX_NIGHTS:
                break  # the last batch stays out: a re-run of the last night must find nothing new
            answer_batch(store, summary.batch.round_id, f"night-{night}", seed=night)
        yield store, records


def _ap(y, score) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, score))


def test_no_concept_is_stopped_before_its_plateau_and_the_easiest_soon_after(nights):
    store, records = nights
    from mlci.advisor import load_history

    history = load_history(store, "mlci-concepts")
    concepts = list(records[-1]["true_ap"])
    version_of = [r["summary"].model.version for r in records]
    table = []
    for concept in concepts:
        curve = np.array([r["true_ap"][concept] for r in records])
        mine = history[history["concept"] == concept].set_index("model_version")["labels"]
        labels = [int(mine[v]) for v in version_of]
        below = np.flatnonzero(curve < 0.99 * curve[-1])
        plateau = int(below[-1] + 1) if below.size else 0
        stops = [i for i, r in enumerate(records) if r["advice"][concept] == "stop"]
        first_stop = stops[0] if stops else None
        table.append((concept, plateau, labels[plateau], first_stop, None if first_stop is None else labels[first_stop],
                      np.round(curve, 3).tolist()))
        if first_stop is not None:
            assert first_stop >= plateau, (concept, table[-1])
    print("\n".join(map(str, table)))
    # Stops that came while the pool still had clips to offer (the advice is worth something).
    stopped = [(row[4] - row[2], row) for row in table if row[3] is not None and records[row[3]]["summary"].batch.published]
    assert stopped, f"no concept was advised to stop before the pool ran out ({len(records)} nights): {table}"
    closest, row = min(stopped)
    assert 0 <= closest <= STOP_WITHIN, row


def test_the_lineage_is_complete_and_agrees_with_the_store_after_every_night(nights):
    store, records = nights
    for r in records:
        lineage, annotations = r["lineage"], r["annotations"]
        batches = {m: pd.read_csv(io.BytesIO(store.read_bytes(f"batches/{m}/batch.csv")))
                   for m in lineage["round_id"].unique()}
        # Every answer to a batch is in the table once, for a clip of that batch.
        answered = annotations[annotations["source_file"].str.startswith("labels/answers/")]
        expected = answered.drop_duplicates(["asset", "annotator", "source_file", "record_index"])
        assert len(lineage) == len(expected)
        assert not lineage.duplicated(["round_id", "key", "annotator", "source_file", "record_index"]).any()
        for rid, rows in lineage.groupby("round_id"):
            assert set(rows["key"]) <= set(batches[rid]["key"])
        # Each answer is linked to a consensus snapshot in the store that holds its clip.
        for snapshot, rows in lineage.dropna(subset=["label_snapshot"]).groupby("label_snapshot"):
            labels = pd.read_parquet(io.BytesIO(store.read_bytes(f"consensus/{snapshot}/labels.parquet")))
            assert set(rows["key"]) <= set(labels["asset"])
        # ... and to the first version trained on it, whose label snapshot is that one or later.
        linked = lineage.dropna(subset=["model_version"])
        assert set(linked["model_version"]) <= set(r["versions"]["version"].astype(str))
    # Every answered batch but the last has its answers in the consensus and in a model by the last night.
    last = records[-1]["lineage"]
    waiting = last[last["model_version"].isna()]
    assert waiting["round_id"].nunique() <= 1


def test_rerunning_the_last_night_changes_nothing(nights):
    store, records = nights
    from flows.nightly import nightly

    before = {k: store.stat(k).identity for k in store.list("")}
    again = nightly(batch_size=BATCH_SIZE, relabel_share=0.0)
    assert again.model.version == records[-1]["summary"].model.version
    assert [c[:2] for c in again.advice.concepts] == [c[:2] for c in records[-1]["summary"].advice.concepts]
    after = {k: store.stat(k).identity for k in store.list("") if not k.startswith(("locks/", "reports/labels/"))}
    assert after == {k: v for k, v in before.items() if not k.startswith(("locks/", "reports/labels/"))}

"""The nightly summary: built from each step's own result, rendered as the artifact's markdown."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from mlci.reporting import (
    AdviceStep,
    BatchStep,
    ConsensusStep,
    FeaturesStep,
    LabelsStep,
    ModelStep,
    NightlySummary,
)


def _summary(**overrides) -> NightlySummary:
    parts = dict(
        status="completed",
        labels=LabelsStep(files_new=2, rows_added=40, records_rejected=1),
        features=FeaturesStep(computed=10, cached=290, quarantined=1),
        consensus=ConsensusStep(snapshot="abc123", method="dawid_skene", n_clips=180),
        model=ModelStep(name="mlci-concepts", version="3", run_id="r9", promoted=True, decision="macro AP up 0.02",
                        champion_version="2", metrics={"cv_ap_holiday": 0.91, "cv_macro_ap": 0.8, "cv_macro_roc_auc": 0.9},
                        class_status={"holiday": "trained", "halloween": "too_few_positives"},
                        classes=[("holiday", "holiday"), ("halloween", "halloween")]),
        batch=BatchStep(round_id="r-1", location="s3://b/batches/r-1/", published=True, n_clips=50,
                        strategy="margin_coverage", reasons={"coverage": 23, "relabel": 5, "uncertain": 22}),
    )
    return NightlySummary(**{**parts, **overrides})


def test_a_completed_run_reads_as_counts_metrics_decision_and_batch():
    text = _summary().to_markdown()
    assert text.startswith("# mlci nightly round\n")
    assert "| labels | 2 new file(s), 40 answers added, 1 records rejected |" in text
    assert "| features | 10 computed, 290 cached, 1 quarantined |" in text
    assert "| consensus | snapshot `abc123`, 180 labeled clips, method dawid_skene |" in text
    assert "| model | mlci-concepts version 3, MLflow run `r9` |" in text and "| batch | 50 clips (23 coverage, 5 relabel, 22 uncertain), published |" in text
    assert "| holiday | 0.910 | - | - | trained |" in text  # a metric not logged shows as '-'
    assert "| halloween | - | - | - | too_few_positives |" in text
    assert "| **macro** | 0.800 | 0.900 | - | |" in text
    assert "Promoted to champion: macro AP up 0.02" in text
    assert "Round `r-1` at `s3://b/batches/r-1/` (strategy margin_coverage)." in text
    assert "Warnings" not in text


def test_the_stop_advice_is_a_row_and_a_table_with_the_reasons():
    from mlci.advisor import AdvisorNight

    advice = pd.DataFrame({"concept": ["holiday", "halloween", "gift"], "verdict": ["stop", "keep labeling", "slowing"],
                           "reason": ["predictions stable: …", "too few to judge: …", "kappa ≥ 0.99 last night"]})
    night = AdvisorNight("3", advice, pd.DataFrame(), "stabilizing_predictions", recorded=True)
    step = AdviceStep.from_night(night, reassigned=True)
    assert step.line() == "keep labeling: halloween; slowing: gift; stop: holiday"
    text = _summary(advice=step).to_markdown()
    assert "| stop advice | keep labeling: halloween; slowing: gift; stop: holiday |" in text
    assert ("## Stop advice\n\nVersion 3, rule stabilizing_predictions. Concepts advised to stop gave their share "
            "of the batch to the others.\n") in text
    assert "| holiday | **stop** | predictions stable: … |" in text
    kept = _summary(advice=AdviceStep.from_night(night, reassigned=False)).to_markdown()
    assert "gave their share" not in kept
    assert "Stop advice" not in _summary().to_markdown()  # a run without advice (e.g. skipped) shows none


def test_problems_and_warnings_are_spelled_out():
    summary = _summary(
        status="incomplete",
        warnings=["3 clips have no features"],
        labels=LabelsStep(files_new=1, duplicates=1, files_without_answers=2, clip_not_in_store=4),
        features=FeaturesStep(computed=5, failed=3, failed_chunks={2: "EndpointUnreachableError: cut"}),
        model=ModelStep(name="m", version="1", reused=True, decision="nothing new"),
        batch=BatchStep(round_id="r-2", reason="no clip to label: pool of 0 clips"),
    )
    text = summary.to_markdown()
    assert text.startswith("# mlci nightly round (INCOMPLETE)\n") and "- 3 clips have no features" in text
    assert ("1 duplicate file(s) not added again, 2 file(s) without answers (see `mlci labels ingest`), "
            "4 answers for clips not in the store |") in text
    assert "3 FAILED (not in the pool)" in text and not summary.features.complete
    assert "| model | m version 1, MLflow run `-` (reused: nothing new to train on) |" in text
    assert "| batch | nothing published: no clip to label: pool of 0 clips |" in text
    assert "No new decision: nothing new to train on, version 1 reused" in text and "Per-concept metrics" not in text
    assert summary.headline() == "nothing new to train on: v1 reused; no batch: no clip to label: pool of 0 clips"


def test_a_tracking_server_gets_links_to_the_run_and_the_version():
    from mlci.models.tracking import ui_links

    links = ui_links("https://bob:secret@mlflow.example.org/base/", "r9", "mlci concepts", "3")
    assert links == ("https://mlflow.example.org/base/#/runs/r9",
                     "https://mlflow.example.org/base/#/models/mlci%20concepts/versions/3")
    model = ModelStep(name="mlci concepts", version="3", run_id="r9", links=links)
    assert ("| model | [mlci concepts version 3](https://mlflow.example.org/base/#/models/mlci%20concepts/versions/3), "
            "MLflow run [`r9`](https://mlflow.example.org/base/#/runs/r9) |") in _summary(model=model).to_markdown()
    assert ui_links("sqlite:////home/me/.mlci/mlflow.db", "r9", "m", "1") is None  # `mlflow ui` serves it anywhere


def test_the_headline_says_what_this_run_changed():
    assert _summary().headline() == "v3 promoted to champion; batch r-1 published (50 clips)"
    kept = _summary(model=ModelStep(version="4", champion_version="2", decision="worse"))
    assert kept.headline().startswith("v4 registered, not promoted: champion v2 kept; ")
    # A re-run with nothing new does not repeat the old run's decision as its own.
    rerun = _summary(labels=LabelsStep(), model=ModelStep(version="2", reused=True, champion_version="2",
                                                         decision="no champion yet: the first model becomes champion"),
                     batch=BatchStep(round_id="r-1", published=False, n_clips=50))
    assert rerun.headline() == "no new labels: champion v2 kept; batch r-1 already published"
    text = rerun.to_markdown()
    assert "**no new labels: champion v2 kept; batch r-1 already published**" in text
    assert "Promoted to champion" not in text


def test_a_skipped_run_says_only_why():
    text = NightlySummary(status="skipped", reason="lock 'nightly' is held by x since 2026").to_markdown()
    assert text == "# mlci nightly: skipped\n\nlock 'nightly' is held by x since 2026\n"


def test_steps_are_built_from_the_steps_own_results():
    ingest = SimpleNamespace(n_new=2, n_rows_new=30, n_rejected=3, n_duplicates=1, without_answers=["a.json"],
                             n_clip_not_in_store=5)
    assert LabelsStep.from_report(ingest) == LabelsStep(2, 30, 3, 1, 1, 5)
    features = SimpleNamespace(n_computed=4, n_reused=6, n_quarantined=1, n_failed=2, failed_chunks={0: "x"})
    assert FeaturesStep.from_report(features) == FeaturesStep(4, 6, 1, 2, {0: "x"})
    result = SimpleNamespace(round_id="r-9", location="loc", published=False, reason="",
                             batch=pd.DataFrame({"key": ["a", "b"], "reason": ["random", "random"]}))
    assert BatchStep.from_round(result, "random") == BatchStep("r-9", "loc", False, "", 2, "random", {"random": 2})
    assert "already published (nothing new)" in _summary(batch=BatchStep.from_round(result, "random")).to_markdown()
    # The champion after the run: promoted now, or the version the registry already had.
    assert ModelStep(version="2", champion_version="2").is_champion and ModelStep(promoted=True).is_champion
    assert not ModelStep(version="3", champion_version="2").is_champion
    assert _summary().as_dict()["model"]["classes"] == [("holiday", "holiday"), ("halloween", "halloween")]


def test_the_label_studio_row_shows_what_moved_or_why_nothing_did():
    from mlci.reporting import LabelStudioStep

    done = LabelStudioStep(project_id=3, pulled_new=4, pulled_changed=1, published={"r-9": 6})
    assert "| label studio | project 3: 4 new and 1 changed answers pulled; published r-9: 6 tasks |" in \
        _summary(label_studio=done).to_markdown()
    failed = LabelStudioStep(problem="could not pull answers from Label Studio: did not answer")
    assert "| label studio | FAILED: could not pull answers from Label Studio: did not answer |" in \
        _summary(label_studio=failed).to_markdown()
    assert "label studio" not in _summary().to_markdown()  # not configured: no row

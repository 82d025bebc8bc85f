"""Registration against a real ``mlflow server`` that is killed (SIGKILL) in the middle of it.

At each point of :func:`~mlci.models.log_and_register` the server's process group is killed from
inside the call (a wrapper around the MLflow function about to run), so the point is hit every time.
The server (one for the module; each test has its own registered model and experiment) is then
started again on the same database and the state left behind is checked: at a, b and c the
``champion`` alias has not moved; at d (aliases set, final tag not yet) it has moved to the new
version, which was created whole in one call and is only still tagged pending. Then the next call
with the same inputs (the training step again, or a retry of the same ``log_and_register``) must
complete: one usable version for those inputs, its aliases set, no version pending, no run of those
inputs left RUNNING.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow.sklearn
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow_server import MlflowServer
from test_models import CLASSES, make_corpus

from mlci.models import (
    CHALLENGER,
    CHAMPION,
    FeatureSpec,
    PromotionDecision,
    TrackingUnreachableError,
    TrainedModel,
    TrainingConfig,
    TrainingResult,
    TrainingSet,
    build_training_set,
    compare_with_champion,
    find_reusable_run,
    load_champion,
    load_model,
    log_and_register,
    run_fingerprint,
    train,
)
from mlci.models.comparison import ChampionComparison
from mlci.models.registry import ABANDONED_TAG, COMPLETE, PENDING, REGISTRATION_TAG

pytestmark = pytest.mark.slow

SPEC = FeatureSpec("demo-av", "1")
BASELINE = TrainingConfig()
CHALLENGING = TrainingConfig(estimator_params={"C": 0.01})
TOLERANCE = 1.0  # the challenger is always promoted, so the champion has to move


@dataclass
class Prepared:
    """Everything the training step hands to ``log_and_register``, and where."""

    uri: str
    model: str
    experiment: str
    ts: TrainingSet
    trained: TrainedModel
    comparison: ChampionComparison
    decision: PromotionDecision
    fingerprint: str
    tolerance: float


def prepare(where: tuple[str, str, str], ts: TrainingSet, config: TrainingConfig, tolerance: float) -> Prepared:
    uri, model, experiment = where
    trained = train(ts, config, feature_schema=SPEC)
    comparison = compare_with_champion(ts, trained, load_champion(uri, model))
    decision = comparison.decide(trained, tolerance=tolerance, min_new_labels=50)
    fingerprint = run_fingerprint(ts, config, SPEC, model_name=model, label_snapshot_id="snap-1",
                                  tolerance=tolerance, min_new_labels=50)
    return Prepared(uri, model, experiment, ts, trained, comparison, decision, fingerprint, tolerance)


def register(p: Prepared) -> TrainingResult:
    """``log_and_register`` as the training step calls it (and as a retry of its task calls it again)."""
    return log_and_register(
        p.ts, p.trained, p.comparison, p.decision, tracking_uri=p.uri, experiment_name=p.experiment,
        model_name=p.model, feature_schema=SPEC, fingerprint=p.fingerprint, label_snapshot_id="snap-1",
        tolerance=p.tolerance,
    )


def training_step(where: tuple[str, str, str], ts: TrainingSet, config: TrainingConfig,
                  tolerance: float) -> TrainingResult:
    """flows/training.py's steps 1-6 without Prefect: reuse, else train, compare, decide, log and register."""
    uri, model, experiment = where
    fingerprint = run_fingerprint(ts, config, SPEC, model_name=model, label_snapshot_id="snap-1",
                                  tolerance=tolerance, min_new_labels=50)
    earlier = find_reusable_run(uri, experiment_name=experiment, model_name=model, fingerprint=fingerprint)
    return earlier or register(prepare(where, ts, config, tolerance))


#: Where the server dies: the MLflow function that is about to be called, and which of its calls.
POINTS = {
    "a-run-created-model-not-logged": (mlflow.sklearn, "log_model", lambda *a, **k: True),
    "b-run-finished-no-version": (MlflowClient, "create_model_version", lambda *a, **k: True),
    "c-version-created-no-aliases": (MlflowClient, "set_registered_model_alias", lambda *a, **k: True),
    "d-aliases-set-not-complete": (MlflowClient, "set_model_version_tag",
                                   lambda self, name, version, key, value: key == REGISTRATION_TAG),
}


def kill_server_at(monkeypatch, server, point: str) -> list[bool]:
    """Make the first matching call of the point's function kill the server first; returns [True] once it did."""
    owner, name, matches = POINTS[point]
    original = getattr(owner, name)
    killed: list[bool] = []

    def dying(*args, **kwargs):
        if not killed and matches(*args, **kwargs):
            server.kill()
            killed.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, dying)
    return killed


def state(p: Prepared):
    """The runs with ``p``'s fingerprint, the versions registered from them, every version and the aliases."""
    client = MlflowClient(p.uri, p.uri)
    experiment = client.get_experiment_by_name(p.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlci.fingerprint` = '{p.fingerprint}'")
    every = client.search_model_versions(f"name = '{p.model}'")
    mine = [v for v in every if v.run_id in {r.info.run_id for r in runs}]
    aliases = dict(client.get_registered_model(p.model).aliases)
    return runs, mine, every, aliases


def pending(versions) -> list[str]:
    return sorted(str(v.version) for v in versions if (v.tags or {}).get(REGISTRATION_TAG) == PENDING)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """One real ``mlflow server`` for the module: it takes ~25 s to start on a busy machine."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-faults") / "server").start()
    yield server
    server.stop()


@pytest.fixture
def server(module_server, monkeypatch):
    """The module's server, up; a dead server fails a call at once instead of after MLflow's retries (minutes)."""
    if module_server.process.poll() is not None:  # a failed test left it dead
        module_server.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return module_server


#: (point, next call): the next call is the training step again (find_reusable_run first) or a retry of
#: the same log_and_register (Prefect retries its task). Both resume b and c; at a both log a new run.
#: Each point once, each kind of next call twice: a server restart costs 10-25 s on two cores.
CASES = [
    ("a-run-created-model-not-logged", "training_step"),
    ("b-run-finished-no-version", "retry"),
    ("c-version-created-no-aliases", "training_step"),
    ("d-aliases-set-not-complete", "retry"),
]


@pytest.mark.parametrize(("point", "next_call"), CASES)
def test_registration_survives_the_server_dying(point, next_call, server, monkeypatch):
    where = (server.url, f"concepts-{point[0]}-{next_call}", f"mlci-faults-{point[0]}-{next_call}")
    uri = server.url
    keys, X, consensus, _ = make_corpus(120, seed=4)
    ts = build_training_set(keys, X, consensus, CLASSES)
    baseline = training_step(where, ts, BASELINE, 0.0)
    assert (baseline.model_version, baseline.promoted) == ("1", True)

    p = prepare(where, ts, CHALLENGING, TOLERANCE)
    assert p.decision.promote
    killed = kill_server_at(monkeypatch, server, point)
    with pytest.raises(TrackingUnreachableError, match=r"unreachable after 0 retries \(could not connect\)"):
        register(p)
    assert killed == [True]
    server.start()

    # What the dead server left behind.
    runs, mine, every, aliases = state(p)
    statuses = sorted(r.info.status for r in runs)
    if point.startswith("a-"):
        assert (statuses, mine) == (["RUNNING"], [])
    elif point.startswith("b-"):
        assert (statuses, mine) == (["FINISHED"], [])
    else:
        assert statuses == ["FINISHED"] and [(v.version, pending([v])) for v in mine] == [("2", ["2"])]
        # The version was created whole, in one call: its tags and description are all there.
        assert mine[0].description == p.decision.reason and mine[0].tags["mlci.promotion.promote"] == "true"
    if point.startswith("d-"):
        # The aliases have moved; only the final tag is missing (the window between the two calls).
        assert aliases == {CHAMPION: "2", CHALLENGER: "2"}
    else:
        assert aliases == {CHAMPION: "1", CHALLENGER: "1"}
        assert aliases[CHAMPION] not in pending(every)

    # The next call with the same inputs completes.
    if next_call == "training_step":
        result = training_step(where, ts, CHALLENGING, TOLERANCE)
    else:
        result = register(p)
    assert result.reused == (not point.startswith("a-"))
    assert (result.model_version, result.promoted) == ("2", True)
    assert result.decision.reason == p.decision.reason and result.class_status == p.trained.class_status
    assert result.metrics["cv_macro_ap"] == pytest.approx(p.trained.evaluation.macro["macro_ap"])

    runs, mine, every, aliases = state(p)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert [r.info.run_id for r in finished] == [result.run_id]
    assert all(r.info.status in ("FINISHED", "FAILED") for r in runs)
    for run in runs:
        if run.info.status == "FAILED":  # left RUNNING by the killed call (point a only)
            assert run.data.tags[ABANDONED_TAG].endswith(f"superseded by run {result.run_id}")
    assert len(runs) == (2 if point.startswith("a-") else 1)
    assert [v.version for v in mine] == ["2"] and len(every) == 2
    assert pending(every) == [] and mine[0].tags[REGISTRATION_TAG] == COMPLETE
    assert aliases == {CHAMPION: "2", CHALLENGER: "2"}

    # Version 2 carries the same tags as a registration that never failed (version 1), and loads.
    v1 = next(v for v in every if v.version == "1")
    assert set(mine[0].tags) == set(v1.tags) and mine[0].description == p.decision.reason
    assert mine[0].tags["mlci.cv_macro_ap"] == f"{p.trained.evaluation.macro['macro_ap']:.6g}"
    assert mine[0].tags["mlci.trigger"] == "manual" and mine[0].tags["mlci.label_snapshot_id"] == "snap-1"
    np.testing.assert_allclose(load_model(uri, p.model).predict_proba(X), p.trained.model.predict_proba(X))

    # And the run after that reuses it, changing nothing.
    again = training_step(where, ts, CHALLENGING, TOLERANCE)
    assert again.reused and (again.run_id, again.model_version) == (result.run_id, "2")
    runs_after, _, every_after, aliases_after = state(p)
    assert (len(runs_after), len(every_after), aliases_after) == (len(runs), 2, aliases)


def test_a_late_completion_leaves_newer_aliases_alone(server, monkeypatch):
    """A registration completed after a newer version took the aliases does not take them back."""
    where = (server.url, "concepts-late", "mlci-faults-late")
    keys, X, consensus, _ = make_corpus(120, seed=4)
    ts = build_training_set(keys, X, consensus, CLASSES)
    training_step(where, ts, BASELINE, 0.0)
    p = prepare(where, ts, CHALLENGING, TOLERANCE)
    killed = kill_server_at(monkeypatch, server, "c-version-created-no-aliases")
    with pytest.raises(TrackingUnreachableError):
        register(p)
    assert killed == [True]
    server.start()
    newer = training_step(where, ts, TrainingConfig(estimator_params={"C": 0.1}), TOLERANCE)
    assert (newer.model_version, newer.promoted) == ("3", True)

    late = training_step(where, ts, CHALLENGING, TOLERANCE)
    assert late.reused and (late.run_id, late.model_version, late.promoted) == (state(p)[0][0].info.run_id, "2", True)
    _, mine, every, aliases = state(p)
    assert [v.version for v in mine] == ["2"] and mine[0].tags[REGISTRATION_TAG] == COMPLETE
    assert pending(every) == [] and aliases == {CHAMPION: "3", CHALLENGER: "3"}

"""Query strategies: one list of every strategy runs each behavioural test; then per-strategy checks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlci.strategies import (
    POLICIES,
    STRATEGIES,
    CoreSet,
    KMeansDiversity,
    LabeledSet,
    LabelLeakError,
    Margin,
    MarginCoverage,
    MissingScoresError,
    NotEnoughLabelsError,
    Pool,
    PoolExhaustedError,
    QueryStrategy,
    RankedBatch,
    Selection,
    UnknownStrategyError,
    concept_quotas,
    get_strategy,
    greedy_k_center,
    linear_proba,
    rank_by_policy,
    stack_linear,
    top_k,
)
from mlci.strategies.uncertainty import (
    binary_entropy,
    binary_least_confidence,
    binary_margin,
    entropy,
    least_confidence,
    margin,
)

N_POOL, N_LABELED, N_FEATURES, N_CONCEPTS = 240, 60, 6, 3

# Every registered strategy, plus the multi-label policies on a per-concept one.
CASES = [pytest.param(name, {}, id=name) for name in STRATEGIES] + [
    pytest.param("margin", {"policy": "mean"}, id="margin-mean"),
    pytest.param("entropy", {"policy": "round_robin"}, id="entropy-round_robin"),
    pytest.param("least_confidence", {"policy": "round_robin", "quotas": [3, 1, 1]}, id="lc-round_robin-quotas"),
    pytest.param("kmeans_diversity", {"policy": "round_robin", "beta": None}, id="kmeans-all-round_robin"),
    pytest.param("ranked_batch", {"alpha": 0.5, "uncertainty": "entropy"}, id="ranked_batch-0.5"),
    pytest.param("coreset", {"max_candidates": 50}, id="coreset-subsample"),
    pytest.param("margin_coverage", {"policy": "round_robin", "max_candidates": 40}, id="margin_coverage-rr-subsample"),
    pytest.param("margin_coverage", {"coverage_share": 1.0}, id="margin_coverage-all-coverage"),
]


def _linear_models(X, Y):
    return [LogisticRegression().fit(X, Y[:, j]) for j in range(Y.shape[1])]


@pytest.fixture(scope="module")
def data():
    """A labeled set and a pool scored by per-concept logistic regressions fitted on it."""
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=3.0, size=(4, N_FEATURES))
    X = (centers[rng.integers(0, 4, N_POOL + N_LABELED)] + rng.normal(size=(N_POOL + N_LABELED, N_FEATURES)))
    X = X.astype(np.float32)
    W = rng.normal(size=(N_CONCEPTS, N_FEATURES))
    Y = (X @ W.T + rng.normal(scale=2.0, size=(len(X), N_CONCEPTS)) > 0).astype(np.int8)
    keys = np.array([f"clips/demo/{i:04d}.mp4" for i in range(len(X))], dtype=object)
    labeled = LabeledSet(keys[:N_LABELED], X[:N_LABELED], Y[:N_LABELED])
    models = _linear_models(X[:N_LABELED], Y[:N_LABELED])
    proba = np.column_stack([m.predict_proba(X[N_LABELED:])[:, 1] for m in models])
    pool = Pool(keys[N_LABELED:], X[N_LABELED:], proba)
    return pool, labeled, models


def _query(name, params, data, **kwargs):
    pool, labeled, _ = data
    kwargs.setdefault("labeled", labeled)
    kwargs.setdefault("random_state", 0)
    return get_strategy(name, **params).query(pool, **kwargs)


def test_cases_cover_every_registered_strategy():
    assert {p.values[0] for p in CASES} == set(STRATEGIES)


# --- behaviour of every strategy -------------------------------------------------------------


@pytest.mark.parametrize("name, params", CASES)
@pytest.mark.parametrize("batch_size", [1, 7, 30])
def test_batch_size_respected(name, params, batch_size, data):
    selection = _query(name, params, data, batch_size=batch_size)
    assert isinstance(selection, Selection)
    assert len(selection) == batch_size
    for field in (selection.keys, selection.utility, selection.reason, selection.concept):
        assert len(field) == batch_size
    assert list(selection.keys) == list(data[0].keys[selection.indices])


@pytest.mark.parametrize("name, params", CASES)
def test_no_duplicates(name, params, data):
    selection = _query(name, params, data, batch_size=60)
    assert len(set(selection.indices.tolist())) == 60
    assert len(set(selection.keys.tolist())) == 60


@pytest.mark.parametrize("name, params", CASES)
def test_excluded_keys_are_never_selected(name, params, data):
    pool = data[0]
    free = _query(name, params, data, batch_size=20)
    exclude = set(free.keys[::2]) | set(pool.keys[100:150]) | {"clips/not/in/pool.mp4"}
    selection = _query(name, params, data, batch_size=20, exclude=exclude)
    assert len(selection) == 20
    assert not exclude.intersection(selection.keys)


@pytest.mark.parametrize("name, params", CASES)
def test_deterministic_with_a_seed(name, params, data):
    pool, labeled, _ = data
    first = _query(name, params, data, batch_size=15, random_state=3)
    # A fresh strategy and a copy of the pool: nothing may depend on object identity or state.
    copy = Pool(pool.keys.copy(), pool.X.copy(), pool.proba.copy())
    again = get_strategy(name, **params).query(copy, labeled=labeled, batch_size=15, random_state=3)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.utility, again.utility)
    np.testing.assert_array_equal(first.reason, again.reason)
    generator = _query(name, params, data, batch_size=15, random_state=np.random.default_rng(3))
    generator_again = _query(name, params, data, batch_size=15, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(generator.indices, generator_again.indices)


@pytest.mark.parametrize("name, params", CASES)
def test_pool_exhausted(name, params, data):
    pool = data[0]
    exclude = pool.keys[3:]
    with pytest.raises(PoolExhaustedError, match="pool exhausted: 3 available, 10 requested") as info:
        _query(name, params, data, batch_size=10, exclude=exclude)
    assert (info.value.available, info.value.requested) == (3, 10)
    # Exactly what is left can still be taken.
    assert set(_query(name, params, data, batch_size=3, exclude=exclude).keys) == set(pool.keys[:3])


@pytest.mark.parametrize("name, params", CASES)
def test_bad_batch_size_is_named(name, params, data):
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match=f"batch_size must be an int >= 1, got {bad!r}"):
            _query(name, params, data, batch_size=bad)


@pytest.mark.parametrize("name, params", CASES)
def test_refuses_a_labeled_set_as_pool(name, params, data):
    _, labeled, _ = data
    with pytest.raises(LabelLeakError):
        get_strategy(name, **params).query(labeled, batch_size=2)


@pytest.mark.parametrize("name, params", CASES)
def test_repr_shows_parameters(name, params):
    strategy = get_strategy(name, **params)
    text = repr(strategy)
    assert text.startswith(type(strategy).__name__ + "(")
    for key, value in params.items():
        assert f"{key}={value!r}" in text
    assert strategy.get_params() == {**get_strategy(name).get_params(), **params}
    assert type(strategy).__doc__ and len(type(strategy).__doc__) > 80  # the published method is cited


# --- the pool carries no labels ---------------------------------------------------------------


def test_pool_refuses_labels(data):
    pool, labeled, _ = data
    for name in ("y", "labels", "truth"):
        with pytest.raises(LabelLeakError, match="carries no labels"):
            Pool(pool.keys, pool.X, pool.proba, **{name: labeled.y})
    with pytest.raises(LabelLeakError, match="float probabilities"):
        Pool(pool.keys[:5], pool.X[:5], np.array([0, 1, 1, 0, 1], dtype=np.int8))
    with pytest.raises(LabelLeakError):
        Pool(pool.keys, labeled)
    assert not hasattr(pool, "y") and "y" not in Pool.__slots__
    with pytest.raises(AttributeError):
        pool.y = labeled.y  # frozen, slotted: no attribute can be added
    with pytest.raises(ValueError):
        pool.X[0, 0] = 1.0  # exposed read-only


def test_no_oracle_strategies_and_no_label_arguments():
    assert not [n for n in STRATEGIES if "inlier" in n or n == "outlier" or "oracle" in n]
    for cls in STRATEGIES.values():
        params = inspect.signature(cls.query).parameters
        assert list(params)[:2] == ["self", "pool"]
        assert not {"y", "labels", "y_pool"} & set(params)


def test_pool_input_validation():
    X = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="unique"):
        Pool(["a", "b", "a"], X)
    with pytest.raises(ValueError, match=r"shape \(n_clips=3, n_features\)"):
        Pool(["a", "b", "c"], np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Pool(["a", "b", "c"], X, np.array([0.1, 1.2, 0.5]))
    with pytest.raises(ValueError, match="non-finite"):
        Pool(["a", "b", "c"], X, np.array([0.1, np.nan, 0.5]))
    with pytest.raises(ValueError, match="0/1 labels"):
        LabeledSet(["a", "b", "c"], X, [0, 2, 1])
    pool = Pool(["a", "b", "c"], np.zeros((3, 2)), [0.1, 0.5, 0.9])  # 1-D proba = one concept
    assert pool.X.dtype == np.float32 and pool.proba.shape == (3, 1) and pool.n_concepts == 1


def test_query_input_validation(data):
    pool, labeled, _ = data
    with pytest.raises(MissingScoresError, match="pool.proba is None"):
        Margin().query(Pool(pool.keys, pool.X), batch_size=3)
    with pytest.raises(NotEnoughLabelsError, match="needs at least 2 labeled clips, got 0"):
        get_strategy("anomaly").query(pool, batch_size=3)
    with pytest.raises(NotEnoughLabelsError, match="got 1"):
        get_strategy("local_outlier").query(pool, labeled=LabeledSet(["x"], pool.X[:1], [[1, 0, 1]]), batch_size=3)
    with pytest.raises(ValueError, match="labeled has 2 features but the pool has 6"):
        get_strategy("coreset").query(pool, labeled=LabeledSet(["x"], np.zeros((1, 2)), [1]), batch_size=3)
    with pytest.raises(TypeError, match="single string"):
        Margin().query(pool, batch_size=3, exclude=pool.keys[0])
    with pytest.raises(ValueError, match="policy must be one of"):
        Margin(policy="min").query(pool, batch_size=3)
    with pytest.raises(ValueError, match="one weight per concept"):
        Margin(policy="round_robin", quotas=[1, 1]).query(pool, batch_size=3)
    with pytest.raises(ValueError, match="quotas only apply"):
        get_strategy("entropy", quotas=[1, 1, 1])


def test_registry_errors_name_the_problem():
    with pytest.raises(UnknownStrategyError, match="unknown query strategy 'inlier'; known: .*margin"):
        get_strategy("inlier")
    with pytest.raises(TypeError, match="does not take parameters"):
        get_strategy("margin", batch_size=3)
    with pytest.raises(ValueError, match="beta must be None or an int >= 1, got 0"):
        get_strategy("kmeans_diversity", beta=0)
    with pytest.raises(ValueError, match="alpha must be"):
        get_strategy("ranked_batch", alpha=1.5)
    assert all(issubclass(cls, QueryStrategy) for cls in STRATEGIES.values())


# --- multi-label policy ------------------------------------------------------------------------


def _skewed_pool():
    """Concept 0 is near 0.5 on clips 0-39; concept 1 only mildly uncertain on 40-79; 2 rare."""
    rng = np.random.default_rng(1)
    proba = np.full((120, 3), 0.99)
    proba[:40, 0] = 0.5 + rng.uniform(-0.02, 0.02, 40)
    proba[40:80, 1] = 0.3 + rng.uniform(-0.05, 0.05, 40)
    proba[80:90, 2] = 0.1 + rng.uniform(-0.02, 0.02, 10)
    proba[40:42, 0] = 0.51  # two clips uncertain on two concepts
    keys = [f"c{i:03d}" for i in range(120)]
    return Pool(keys, np.zeros((120, 1), dtype=np.float32), proba)


def test_round_robin_gives_each_concept_its_share():
    pool = _skewed_pool()
    greedy = Margin(policy="max").query(pool, batch_size=12)
    assert set(greedy.concept) == {0}  # max: the rare concepts get nothing
    fair = Margin(policy="round_robin").query(pool, batch_size=12)
    assert np.bincount(fair.concept, minlength=3).tolist() == [4, 4, 4]
    assert fair.concept[:3].tolist() == [0, 1, 2]  # concepts take turns
    assert len(set(fair.indices.tolist())) == 12
    by_concept = {j: set(fair.indices[fair.concept == j].tolist()) for j in range(3)}
    assert by_concept[2] <= set(range(80, 90)) and by_concept[1] <= set(range(40, 80))
    # The concept's own utility is reported, and each concept's picks are its best in order.
    np.testing.assert_allclose(fair.utility, binary_margin(pool.proba[fair.indices, fair.concept]))
    weighted = Margin(policy="round_robin", quotas=[2, 1, 1]).query(pool, batch_size=12)
    assert np.bincount(weighted.concept, minlength=3).tolist() == [6, 3, 3]


def test_round_robin_never_takes_a_clip_twice_and_fills_from_others():
    # Every concept ranks the same clips first; the batch still has 6 distinct clips.
    proba = np.tile(np.linspace(0.5, 0.99, 8)[:, None], (1, 3))
    pool = Pool([f"k{i}" for i in range(8)], np.zeros((8, 0), np.float32), proba)
    selection = Margin(policy="round_robin").query(pool, batch_size=6)
    assert selection.indices.tolist() == [0, 1, 2, 3, 4, 5]
    # A concept with no candidates left hands its quota to the others.
    assert Margin(policy="round_robin").query(pool, batch_size=8).indices.size == 8


def test_concept_quotas():
    assert concept_quotas(10, 3).tolist() == [4, 3, 3]
    assert concept_quotas(2, 5).tolist() == [1, 1, 0, 0, 0]
    assert concept_quotas(10, 3, [8, 1, 1]).tolist() == [8, 1, 1]
    assert concept_quotas(7, 2, [0, 1]).tolist() == [0, 7]
    with pytest.raises(ValueError, match="non-negative"):
        concept_quotas(5, 2, [-1, 2])


def test_mean_policy_prefers_clips_uncertain_on_several_concepts():
    pool = _skewed_pool()
    selection = Margin(policy="mean").query(pool, batch_size=2)
    assert set(selection.indices.tolist()) == {40, 41}
    assert (selection.concept == -1).all()
    assert set(POLICIES) == {"max", "mean", "round_robin"}


# --- ranking maths ------------------------------------------------------------------------------


def test_top_k_matches_a_stable_full_sort_with_ties():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        u = rng.integers(0, 20, 5000).astype(dtype)  # many ties
        available = rng.random(5000) > 0.3
        for k in (1, 17, 100, int(available.sum())):
            reference = np.flatnonzero(available)[np.argsort(-u[available], kind="stable")][:k]
            np.testing.assert_array_equal(top_k(u, k, available), reference)
    u = np.array([0.2, np.nan, 0.9, -np.inf])
    assert top_k(u, 2).tolist() == [2, 0]
    with pytest.raises(PoolExhaustedError, match="2 available, 3 requested"):
        top_k(u, 3)


def test_rank_by_policy_max_reports_the_deciding_concept():
    u = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    idx, utility, concept = rank_by_policy(u, 3, policy="max")
    assert idx.tolist() == [0, 1, 2] and utility.tolist() == [0.9, 0.8, 0.5] and concept.tolist() == [1, 0, 0]


def test_uncertainty_measures_on_class_distributions():
    proba = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(least_confidence(proba), [0.3, 2 / 3, 0.0])
    np.testing.assert_allclose(margin(proba), [0.5, 1.0, 0.0])
    first = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(entropy(proba), [first, np.log(3), 0])
    p = np.array([0.0, 0.25, 0.5, 1.0])
    two = np.column_stack([1 - p, p])
    np.testing.assert_array_equal(binary_least_confidence(p), least_confidence(two))
    np.testing.assert_array_equal(binary_margin(p), margin(two))
    np.testing.assert_array_equal(binary_entropy(p), entropy(two))


# --- cross-check against scikit-activeml (test only) --------------------------------------------


@pytest.mark.parametrize(
    "name, method", [("least_confidence", "least_confident"), ("margin", "margin_sampling"), ("entropy", "entropy")]
)
@pytest.mark.parametrize("batch_size", [1, 10, 40])
def test_uncertainty_equals_scikit_activeml(name, method, batch_size, data):
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import UncertaintySampling

    pool, labeled, _ = data
    for j in range(N_CONCEPTS):
        clf = SklearnClassifier(LogisticRegression(), classes=[0, 1]).fit(labeled.X, labeled.y[:, j])
        theirs = UncertaintySampling(method=method, random_state=0).query(
            X=pool.X, y=np.full(len(pool), np.nan), clf=clf, fit_clf=False, batch_size=batch_size
        )
        concept_pool = Pool(pool.keys, pool.X, clf.predict_proba(pool.X)[:, 1])
        ours = get_strategy(name).query(concept_pool, batch_size=batch_size)
        np.testing.assert_array_equal(ours.indices, theirs)  # same clips, same order


def test_linear_proba_equals_logistic_regression(data):
    pool, _, models = data
    coef, intercept = stack_linear(models)
    fast = linear_proba(pool.X, coef, intercept)
    assert fast.dtype == np.float32 and fast.shape == (len(pool), N_CONCEPTS)
    reference = np.column_stack([m.predict_proba(pool.X)[:, 1] for m in models])
    np.testing.assert_allclose(fast, reference, atol=1e-6)
    np.testing.assert_allclose(linear_proba(pool.X.astype(np.float64), coef, intercept), reference, atol=1e-6)
    with pytest.raises(ValueError, match="coef has 4 features but X has 6"):
        linear_proba(pool.X, coef[:, :4], intercept)
    with pytest.raises(TypeError, match="not a fitted binary linear classifier"):
        stack_linear([KMeansDiversity()])


# --- what each family is for --------------------------------------------------------------------


def _blobs():
    """Three far-apart blobs; blob A (0-29) is the most uncertain, B (30-59) and C (60-89) less."""
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(c, 0.3, size=(30, 2)) for c in ((0, 0), (20, 0), (0, 20))]).astype(np.float32)
    p = np.concatenate([rng.uniform(0.48, 0.52, 30), rng.uniform(0.35, 0.4, 30), rng.uniform(0.35, 0.4, 30)])
    return Pool([f"b{i:02d}" for i in range(90)], X, p), X


def test_kmeans_diversity_spreads_the_batch_over_clusters():
    pool, _ = _blobs()
    assert set(Margin().query(pool, batch_size=3).indices // 30) == {0}
    diverse = KMeansDiversity(beta=None).query(pool, batch_size=3, random_state=0)
    assert sorted((diverse.indices // 30).tolist()) == [0, 1, 2]
    blob_best = [max(range(b * 30, b * 30 + 30), key=lambda i: binary_margin(pool.proba[i, 0])) for b in range(3)]
    assert sorted(diverse.indices.tolist()) == sorted(blob_best)  # the most uncertain of each cluster
    assert (diverse.reason == "diverse").all()


def test_coreset_covers_what_the_labels_miss():
    pool, X = _blobs()
    labeled = LabeledSet(["l0", "l1"], X[:2] + 0.01, [0, 1])
    picks = CoreSet().query(pool, labeled=labeled, batch_size=2)
    assert sorted((picks.indices // 30).tolist()) == [1, 2]
    assert picks.utility[0] >= picks.utility[1] > 10


def test_greedy_k_center_matches_brute_force():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    C = rng.normal(size=(5, 3)).astype(np.float32)
    indices, distances = greedy_k_center(X, 6, centers=C)
    chosen, centers = [], list(C)
    for _ in range(6):
        d = np.array([min(np.linalg.norm(x - c) for c in centers) for x in X])
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
        centers.append(X[chosen[-1]])
    assert indices.tolist() == chosen
    assert np.isfinite(distances).all() and (np.diff(distances) <= 1e-5).all()


def test_ranked_batch_moves_from_uncertainty_to_diversity_with_alpha():
    pool, X = _blobs()
    uncertain = RankedBatch(alpha=0.0, beta=None).query(pool, batch_size=3)
    np.testing.assert_array_equal(uncertain.indices, Margin().query(pool, batch_size=3).indices)
    assert (uncertain.reason == "uncertain").all()
    labeled = LabeledSet(["l0"], X[:1], [1])
    diverse = RankedBatch(alpha=1.0, beta=None).query(pool, labeled=labeled, batch_size=2)
    assert sorted((diverse.indices // 30).tolist()) == [1, 2] and (diverse.reason == "diverse").all()


def test_margin_coverage_takes_the_uncertain_half_then_covers_what_is_unlabeled():
    pool, X = _blobs()
    labeled = LabeledSet(["l0", "l1"], X[30:32] + 0.01, [0, 1])  # blob B labeled; A uncertain; C untouched
    picks = MarginCoverage().query(pool, labeled=labeled, batch_size=4, random_state=0)
    assert picks.reason.tolist() == ["uncertain", "coverage", "uncertain", "coverage"]  # alternating
    uncertain, coverage = picks.reason == "uncertain", picks.reason == "coverage"
    np.testing.assert_array_equal(picks.indices[uncertain], Margin().query(pool, batch_size=2).indices)
    assert set((picks.indices[coverage] // 30).tolist()) == {2}  # the blob neither labeled nor chosen
    assert (picks.concept[coverage] == -1).all() and picks.utility[coverage][0] > 2  # in standard deviations
    odd = MarginCoverage(coverage_share=0.4).query(pool, labeled=labeled, batch_size=5, random_state=0)
    assert odd.reason.tolist() == ["uncertain", "coverage", "uncertain", "coverage", "uncertain"]


def test_margin_coverage_share_and_features_on_different_scales():
    pool, X = _blobs()
    only_margin = MarginCoverage(coverage_share=0.0).query(pool, batch_size=3)
    np.testing.assert_array_equal(only_margin.indices, Margin().query(pool, batch_size=3).indices)
    # A feature in large units must not decide the distances alone: blobs differ in x and y by
    # the same number of standard deviations once y is in thousandths.
    stretched = Pool(pool.keys, X * np.array([1.0, 1000.0], dtype=np.float32), pool.proba)
    labeled = LabeledSet(["l0"], stretched.X[:1], [1])
    picks = MarginCoverage(coverage_share=1.0).query(stretched, labeled=labeled, batch_size=2, random_state=0)
    assert sorted((picks.indices // 30).tolist()) == [1, 2]
    assert (picks.reason == "coverage").all()


def test_margin_coverage_keeps_the_round_robin_quotas(data):
    pool, labeled, _ = data
    picks = MarginCoverage(policy="round_robin", quotas=[2, 1, 1]).query(pool, labeled=labeled, batch_size=8,
                                                                          random_state=0)
    uncertain = picks.concept[picks.reason == "uncertain"]
    assert np.bincount(uncertain, minlength=3).tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match="coverage_share must be a number in \\[0, 1\\], got 1.5"):
        get_strategy("margin_coverage", coverage_share=1.5)


def test_novelty_strategies_rank_far_clips_first():
    rng = np.random.default_rng(5)
    labeled = LabeledSet([f"l{i}" for i in range(80)], rng.normal(size=(80, 4)), rng.integers(0, 2, 80))
    X = np.vstack([rng.normal(size=(50, 4)), rng.normal(8, 1, size=(5, 4))]).astype(np.float32)
    pool = Pool([f"p{i}" for i in range(55)], X)
    for name in ("anomaly", "local_outlier"):
        picks = get_strategy(name).query(pool, labeled=labeled, batch_size=5, random_state=0)
        assert set(picks.indices.tolist()) == set(range(50, 55)), name
        assert (picks.reason == "anomalous").all()


def test_label_spreading_entropy_is_highest_between_the_classes():
    rng = np.random.default_rng(6)
    X_lab = np.vstack([rng.normal(-3, 0.5, (20, 1)), rng.normal(3, 0.5, (20, 1))])
    labeled = LabeledSet([f"l{i}" for i in range(40)], X_lab, [0] * 20 + [1] * 20)
    X = np.array([[-3.0], [-2.5], [0.0], [0.2], [2.5], [3.0]], dtype=np.float32)
    pool = Pool([f"p{i}" for i in range(6)], X)
    picks = get_strategy("label_spreading_entropy", kernel="rbf", gamma=0.5).query(pool, labeled=labeled, batch_size=2)
    assert set(picks.indices.tolist()) == {2, 3}


def test_positive_and_negative_order_by_score():
    pool = Pool(["a", "b", "c", "d"], np.zeros((4, 0), np.float32), [0.2, 0.9, 0.5, 0.05])
    assert get_strategy("positive").query(pool, batch_size=4).keys.tolist() == ["b", "c", "a", "d"]
    assert get_strategy("negative").query(pool, batch_size=4).keys.tolist() == ["d", "a", "c", "b"]


def test_random_depends_on_the_seed_only(data):
    a = _query("random", {}, data, batch_size=20, random_state=1)
    b = _query("random", {}, data, batch_size=20, random_state=2)
    assert set(a.keys) != set(b.keys)


def test_selection_frame(data):
    frame = _query("margin", {}, data, batch_size=4).to_frame()
    assert frame.columns.tolist() == ["rank", "key", "utility", "reason", "concept"]
    assert frame["rank"].tolist() == [1, 2, 3, 4] and (frame["utility"].diff().dropna() <= 0).all()


def test_spread_entropy_counts_unreached_clips_as_most_uncertain():
    from mlci.strategies.label_spreading import spread_entropy

    dist = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.0], [np.nan, np.nan]])
    out = spread_entropy(dist)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(np.log(2))
    assert out[2] == pytest.approx(np.log(2)) and out[3] == pytest.approx(np.log(2))

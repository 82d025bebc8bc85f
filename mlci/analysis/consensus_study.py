"""Question 3: which consensus method should merge several people's answers into one label?

Simulated annotators of known quality answer about the pool clips of a repetition (every concept
of a clip at once, as the labeling question asks). For ``k`` answers bought per clip and a budget
of labels bought, the first ``budget // k`` clips of the pool order get ``k`` answers each from
``k`` different annotators (drawn in proportion to their share); the answers are merged by

``single``
    the first answer alone (what one annotator per clip gives; only at ``k = 1``),
``majority``
    :func:`mlci.consensus.majority_vote` (ties count as absent),
``dawid_skene`` / ``one_coin``
    :class:`mlci.consensus.DawidSkene` / :class:`mlci.consensus.OneCoinDawidSkene`,

and judged by **label accuracy** (share of (clip, concept) labels equal to the truth) and by the
**downstream AP** on the repetition's test split of a logistic regression trained on those labels.

"Truth" is whatever the simulation was given: the demo corpus's ground truth, or consensus labels
when the analysis runs on real labels (then the study says how the methods would fare if those
labels were right).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from mlci.analysis.engine import Repetition, SimulationConfig, SimulationData
from mlci.analysis.linear import fit_logistic
from mlci.analysis.metrics import column_metrics
from mlci.analysis.strategies import strategy_seed
from mlci.consensus import DawidSkene, OneCoinDawidSkene, majority_vote

__all__ = [
    "CONSENSUS_METHODS",
    "DEFAULT_PROFILES",
    "AnnotatorProfile",
    "consensus_study",
    "merge_answers",
    "simulate_answers",
]

CONSENSUS_METHODS = ("single", "majority", "dawid_skene", "one_coin")


@dataclass(frozen=True)
class AnnotatorProfile:
    """A simulated annotator.

    Parameters
    ----------
    name : str
    sensitivity : float
        P(answers "present" | the concept is present).
    specificity : float
        P(answers "absent" | the concept is absent).
    share : float, default=1.0
        Relative chance of being asked about a clip.
    """

    name: str
    sensitivity: float
    specificity: float
    share: float = 1.0

    def validate(self) -> None:
        for field in ("sensitivity", "specificity"):
            v = getattr(self, field)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"annotator {self.name!r}: {field} must be in [0, 1], got {v!r}")
        if not self.share > 0:
            raise ValueError(f"annotator {self.name!r}: share must be > 0, got {self.share!r}")


#: Good, noisy, a spammer (answers at random) and one biased towards "yes".
DEFAULT_PROFILES = (
    AnnotatorProfile("good-1", 0.95, 0.95, share=1.0),
    AnnotatorProfile("good-2", 0.92, 0.96, share=1.0),
    AnnotatorProfile("noisy-1", 0.75, 0.80, share=1.0),
    AnnotatorProfile("noisy-2", 0.70, 0.85, share=1.0),
    AnnotatorProfile("spammer", 0.50, 0.50, share=0.5),
    AnnotatorProfile("yes-biased", 0.95, 0.60, share=1.0),
)


def simulate_answers(
    truth: np.ndarray, profiles: Sequence[AnnotatorProfile], k_max: int, *, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Who answers about each clip, in order, and what they say.

    Parameters
    ----------
    truth : ndarray of {0, 1} of shape (n_clips, n_concepts)
    profiles : sequence of AnnotatorProfile
    k_max : int
        Answers per clip (at most the number of annotators); the first ``k`` of them are used
        for ``k`` answers, so budgets and ``k`` compare nested sets of answers.
    random_state : int

    Returns
    -------
    who : ndarray of int64 of shape (n_clips, k_max)
        Annotator index of each answer.
    said : ndarray of int8 of shape (n_clips, k_max, n_concepts)
    """
    for p in profiles:
        p.validate()
    if not 1 <= k_max <= len(profiles):
        raise ValueError(f"k must be between 1 and the number of annotators ({len(profiles)}), got {k_max}")
    rng = np.random.default_rng(random_state)
    n, m = truth.shape
    share = np.array([p.share for p in profiles], dtype=np.float64)
    # Weighted sampling without replacement: order annotators by Exponential(1) / share keys.
    keys = rng.exponential(size=(n, len(profiles))) / share
    who = np.argsort(keys, axis=1, kind="stable")[:, :k_max]
    se = np.array([p.sensitivity for p in profiles])[who][:, :, None]
    sp = np.array([p.specificity for p in profiles])[who][:, :, None]
    u = rng.random((n, k_max, m))
    t = truth[:, None, :].astype(bool)
    said = np.where(t, u < se, u >= sp).astype(np.int8)
    return who, said


def merge_answers(
    keys: np.ndarray,
    who: np.ndarray,
    said: np.ndarray,
    concepts: Sequence[str],
    profiles: Sequence[AnnotatorProfile],
    method: str,
) -> np.ndarray:
    """Merge ``k`` answers per clip into 0/1 labels of shape (n_clips, n_concepts) with ``method``."""
    n, k, m = said.shape
    if method == "single":
        return said[:, 0, :].astype(np.int8)
    if method not in CONSENSUS_METHODS:
        raise ValueError(f"method must be one of {CONSENSUS_METHODS}, got {method!r}")
    names = np.array([p.name for p in profiles], dtype=object)
    annotations = pd.DataFrame({
        "asset": np.repeat(np.asarray(keys, dtype=object), k * m),
        "annotator": np.repeat(names[who].ravel(), m),
        "class": np.tile(np.asarray(concepts, dtype=object), n * k),
        "value": said.ravel().astype(np.int8),
    })
    if method == "majority":
        table = majority_vote(annotations, tie="negative")
        labels = table.set_index(["asset", "class"])["label"]
    else:
        model = (DawidSkene if method == "dawid_skene" else OneCoinDawidSkene)(max_iter=500)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = model.fit(annotations).predict()
    matrix = labels.unstack("class").reindex(index=list(keys), columns=list(concepts))
    return matrix.to_numpy(dtype=np.int8)


def _budgets(n_pool: int, ks: Sequence[int], n_budgets: int, min_clips: int) -> np.ndarray:
    # A geometric grid up to the pool size (where every k can be compared), plus each k's whole pool.
    lo = min(n_pool, max(min_clips * max(ks), 10))
    grid = np.unique(np.round(np.geomspace(lo, n_pool, n_budgets)).astype(np.int64))
    return np.unique(np.concatenate([grid, [k * n_pool for k in ks]]))


def consensus_study(
    data: SimulationData,
    repetitions: Sequence[Repetition],
    config: SimulationConfig,
    *,
    profiles: Sequence[AnnotatorProfile] = DEFAULT_PROFILES,
    ks: Sequence[int] = (1, 3, 5),
    methods: Sequence[str] = ("majority", "dawid_skene", "one_coin"),
    n_budgets: int = 6,
    min_clips: int = 20,
) -> pd.DataFrame:
    """Label accuracy and downstream AP of each consensus method, per ``k`` and budget.

    Parameters
    ----------
    data : SimulationData
    repetitions : sequence of Repetition
        From :func:`~mlci.analysis.engine.prepare_repetition` (the same splits as the strategy runs).
    config : SimulationConfig
    profiles : sequence of AnnotatorProfile, default=DEFAULT_PROFILES
    ks : sequence of int, default=(1, 3, 5)
        Answers bought per clip. ``single`` runs at ``k = 1``; the merging methods at ``k >= 2``.
    methods : sequence of str, default=("majority", "dawid_skene", "one_coin")
    n_budgets : int, default=6
        Budgets (labels bought) on a geometric grid up to the pool size, plus ``k * n_pool`` for
        every ``k`` (the whole pool with ``k`` answers per clip).
    min_clips : int, default=20
        Smallest number of labeled clips a budget may give.

    Returns
    -------
    pandas.DataFrame
        One row per (repetition, method, k, budget, concept): ``n_clips``, ``label_accuracy``,
        ``test_ap``, ``test_auc``.
    """
    ks = sorted({int(k) for k in ks})
    bad = [m for m in methods if m not in CONSENSUS_METHODS or m == "single"]
    if bad:
        raise ValueError(f"methods must be among {CONSENSUS_METHODS[1:]}, got {bad}")
    rows = []
    for rep in repetitions:
        pool = rep.pool
        truth = data.Y[pool]
        who, said = simulate_answers(truth, profiles, max(ks), random_state=strategy_seed(config.seed, rep.index, "annotators"))
        budgets = _budgets(len(pool), ks, n_budgets, min_clips)
        for k in ks:
            arms = ["single"] if k == 1 else list(methods)
            for budget in budgets:
                n_clips = int(min(len(pool), budget // k))
                if n_clips < min_clips or budget > k * len(pool):
                    continue
                sub = slice(0, n_clips)
                for method in arms:
                    labels = merge_answers(data.keys[pool[sub]], who[sub, :k], said[sub, :k], data.concepts, profiles, method)
                    accuracy = (labels == truth[sub]).mean(axis=0)
                    with threadpool_limits(config.blas_threads):
                        fit = fit_logistic(data.X[pool[sub]], labels, C=config.C)
                        scores = column_metrics(data.Y[rep.test], fit.predict(data.X[rep.test]))
                    for j, concept in enumerate(data.concepts):
                        rows.append({
                            "repetition": rep.index,
                            "method": method,
                            "k": k,
                            "budget": int(k * n_clips),
                            "n_clips": n_clips,
                            "concept": concept,
                            "label_accuracy": float(accuracy[j]),
                            "test_ap": float(scores["ap"][j]),
                            "test_auc": float(scores["auc"][j]),
                        })
    return pd.DataFrame(rows).drop_duplicates(["repetition", "method", "k", "budget", "concept"]).reset_index(drop=True)

"""Dawid–Skene EM for binary relevance labels, vectorised with numpy.

Each (clip, class) item has an unknown true label y. Annotator j answers about class c with
sensitivity ``se[j, c] = P(yes | y=1)`` and specificity ``sp[j, c] = P(no | y=0)``; the class has a
prevalence ``pi[c]``. EM alternates the posterior ``P(y=1 | answers)`` of every item (E-step) with
smoothed estimates of ``se``, ``sp`` and ``pi`` (M-step). All classes are fitted at once: a
"worker" of the model is an (annotator, class) pair, so one sparse matrix-vector product over the
answers does the work of a loop over classes; SQUAREM extrapolation cuts the number of steps.

Reference: A. P. Dawid and A. M. Skene, "Maximum likelihood estimation of observer error-rates
using the EM algorithm", Applied Statistics 28(1), 1979.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp_sparse
from scipy.special import expit, logit
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from mlci.consensus.majority import hard_labels
from mlci.consensus.votes import Votes, encode_votes

__all__ = ["DawidSkene", "OneCoinDawidSkene", "em_binary"]


@dataclass(frozen=True)
class _EMResult:
    posterior: np.ndarray  # (n_items,)
    sensitivity: np.ndarray  # (n_workers,)
    specificity: np.ndarray  # (n_workers,)
    class_prior: np.ndarray  # (n_classes,)
    n_iter: int
    converged: bool
    log_likelihood: float


_LOGIT_CLIP = 30.0  # keeps extrapolated parameters strictly inside (0, 1)


class _BinaryEM:
    """The EM map of binary Dawid–Skene on a sparse answer matrix.

    ``X[i, 2w + v] = 1`` when worker ``w`` answered ``v`` about item ``i``: the E-step sums
    log-likelihood ratios per item (``X @ llr``) and the M-step sums posteriors per (worker,
    answer) (``X.T @ T``), two sparse matrix-vector products per iteration. Parameters are held
    as one vector of logits ``[se (n_workers), sp (n_workers), pi (n_classes)]`` so that an
    extrapolated step stays a valid parameter.
    """

    def __init__(self, row_item, row_worker, value, item_class, *, n_workers, n_classes, one_coin,
                 fit_items, prior, class_prior):
        self.n_items = len(item_class)
        self.n_workers, self.n_classes = n_workers, n_classes
        self.item_class = item_class
        self.one_coin = one_coin
        self.a, self.b = prior
        self.ca, self.cb = class_prior
        v8 = np.asarray(value).astype(bool).astype(np.int8)
        col = np.asarray(row_worker, dtype=np.int64) * 2 + v8
        self.x = sp_sparse.csr_matrix((np.ones(len(v8)), (row_item, col)), shape=(self.n_items, 2 * n_workers))
        self.xt = self.x.T.tocsr()
        self.fit = np.ones(self.n_items) if fit_items is None else fit_items.astype(np.float64)
        counts = self.xt @ self.fit  # answers per (worker, answer) on the fitting items
        self.n_no, self.n_yes = counts[0::2], counts[1::2]
        self.n_items_class = np.bincount(item_class, minlength=n_classes).astype(np.float64)

    def initial_posterior(self) -> np.ndarray:
        """The soft majority vote: share of yes answers per item (deterministic start)."""
        n_votes = np.asarray(self.x.sum(axis=1)).ravel()
        return (self.x @ np.tile([0.0, 1.0], self.n_workers)) / n_votes

    def m_step(self, posterior: np.ndarray) -> np.ndarray:
        s = self.xt @ (posterior * self.fit)
        pos, tp, tn = s[0::2] + s[1::2], s[1::2], self.n_no - s[0::2]
        a, b = self.a, self.b
        if self.one_coin:
            se = spec = (tp + tn + a) / (self.n_no + self.n_yes + a + b)
        else:
            se = (tp + a) / (pos + a + b)
            spec = (tn + a) / (self.n_no + self.n_yes - pos + a + b)
        pi = (np.bincount(self.item_class, weights=posterior, minlength=self.n_classes) + self.ca) / (
            self.n_items_class + self.ca + self.cb
        )
        return np.clip(logit(np.concatenate([se, spec, pi])), -_LOGIT_CLIP, _LOGIT_CLIP)

    def unpack(self, theta: np.ndarray):
        w = self.n_workers
        p = expit(theta)
        return p[:w], p[w : 2 * w], p[2 * w :]

    def e_step(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """Posteriors under ``theta`` and the objective: log-likelihood plus log Beta priors."""
        se, spec, pi = self.unpack(theta)
        l1 = np.empty(2 * self.n_workers)
        l0 = np.empty(2 * self.n_workers)
        l1[0::2], l1[1::2] = np.log1p(-se), np.log(se)  # log P(answer | y=1)
        l0[0::2], l0[1::2] = np.log(spec), np.log1p(-spec)  # log P(answer | y=0)
        s0 = self.x @ l0
        log1 = np.log(pi)[self.item_class] + s0 + self.x @ (l1 - l0)
        log0 = np.log1p(-pi)[self.item_class] + s0
        posterior = expit(log1 - log0)
        a, b = self.a, self.b
        # The M-step is the mode of these priors, so EM never decreases this objective.
        log_prior = float((a * np.log(se) + b * np.log1p(-se)).sum())
        if not self.one_coin:
            log_prior += float((a * np.log(spec) + b * np.log1p(-spec)).sum())
        log_prior += float((self.ca * np.log(pi) + self.cb * np.log1p(-pi)).sum())
        loglik = float(np.logaddexp(log1, log0).sum())
        return posterior, loglik + log_prior, loglik


def em_binary(
    row_item: np.ndarray,
    row_worker: np.ndarray,
    value: np.ndarray,
    item_class: np.ndarray,
    *,
    n_workers: int,
    n_classes: int,
    one_coin: bool = False,
    fit_items: np.ndarray | None = None,
    prior: tuple[float, float] = (2.0, 1.0),
    class_prior: tuple[float, float] = (1.0, 1.0),
    tol: float = 1e-6,
    max_iter: int = 500,
    accelerate: bool = True,
) -> _EMResult:
    """Binary Dawid–Skene EM on integer-coded answers.

    Parameters
    ----------
    row_item, row_worker : ndarray of shape (n_rows,)
        Item and worker code of each answer.
    value : ndarray of shape (n_rows,)
        The 0/1 answers.
    item_class : ndarray of shape (n_items,)
        Class code of each item (its prevalence parameter).
    n_workers, n_classes : int
        Number of worker and class codes.
    one_coin : bool, default=False
        Tie sensitivity and specificity into one accuracy per worker.
    fit_items : ndarray of bool of shape (n_items,), default=None
        Items whose answers estimate worker quality (None: all).
    prior : (float, float), default=(2.0, 1.0)
        Pseudo-counts of (agreeing, disagreeing) answers added to every worker's counts.
    class_prior : (float, float), default=(1.0, 1.0)
        Pseudo-counts of (positive, negative) items added to every class's counts.
    tol : float, default=1e-6
        Stop when no posterior changes by more than ``tol`` between two EM steps.
    max_iter : int, default=500
        Maximum number of EM steps (E-step + M-step evaluations).
    accelerate : bool, default=True
        Extrapolate every two EM steps with SQUAREM (Varadhan and Roland, Scand. J. Statist. 35,
        2008); an extrapolation that lowers the objective is discarded, so the fixed point is the
        one plain EM reaches, in far fewer steps.
    """
    em = _BinaryEM(row_item, row_worker, value, item_class, n_workers=n_workers, n_classes=n_classes,
                   one_coin=one_coin, fit_items=fit_items, prior=prior, class_prior=class_prior)
    last = em.initial_posterior()  # posterior of theta_last
    theta = em.m_step(last)
    theta_last = theta
    n_iter, converged = 0, False
    loglik, reference = float("-inf"), float("-inf")
    fallback = None  # the plain EM point an extrapolation started from

    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b), initial=0.0))

    while n_iter < max_iter:
        post0, obj0, ll0 = em.e_step(theta)
        n_iter += 1
        if fallback is not None and obj0 < reference - 1e-9 * abs(reference):
            theta, fallback = fallback, None  # the extrapolation lowered the objective: undo it
            continue
        theta1 = em.m_step(post0)
        if not accelerate or n_iter >= max_iter:
            # Plain EM step (or the last allowed one).
            converged = fallback is None and change(post0, last) < tol
            last, theta_last, loglik, fallback = post0, theta, ll0, None
            theta = theta1
            if converged:
                break
            continue
        post1, obj1, ll1 = em.e_step(theta1)
        n_iter += 1
        theta2 = em.m_step(post1)
        last, theta_last, loglik, reference = post1, theta1, ll1, obj1
        if change(post1, post0) < tol:  # two consecutive EM steps agree
            converged = True
            break
        # SQUAREM (scheme S3): extrapolate along the last two EM steps; alpha = -1 is plain EM.
        r = theta1 - theta
        v = theta2 - theta1 - r
        norm_v = float(np.linalg.norm(v))
        alpha = -1.0 if norm_v == 0.0 else min(-float(np.linalg.norm(r)) / norm_v, -1.0)
        theta = np.clip(theta - 2 * alpha * r + alpha**2 * v, -_LOGIT_CLIP, _LOGIT_CLIP)
        fallback = theta2
    se, spec, pi = em.unpack(theta_last)
    return _EMResult(last, se, spec, pi, n_iter, converged, loglik)


class DawidSkene(BaseEstimator):
    """Dawid–Skene consensus for multi-label answers, one binary model per class.

    Each annotator has a sensitivity and a specificity per class, estimated by EM together with
    every clip's posterior probability of each class. Estimates are smoothed with Beta
    pseudo-counts so that an annotator with few answers does not get an extreme estimate.
    The fit is deterministic (initialised from the majority vote; no randomness).

    Parameters
    ----------
    tol : float, default=1e-6
        Convergence tolerance: EM stops when no posterior changes by more than ``tol``.
    max_iter : int, default=500
        Maximum number of EM steps; a :class:`~sklearn.exceptions.ConvergenceWarning` is
        raised when it is reached first.
    prior : tuple of (float, float), default=(2.0, 1.0)
        Beta pseudo-counts ``(agree, disagree)`` added to each sensitivity and specificity:
        ``se = (true positives + agree) / (positives + agree + disagree)``. The default pulls an
        annotator with no evidence to 2/3, better than chance.
    class_prior : tuple of (float, float), default=(1.0, 1.0)
        Beta pseudo-counts ``(positive, negative)`` for each class's prevalence.
    min_votes : int, default=2
        Only items with at least this many answers estimate annotator quality: a lone answer
        cannot disagree with anyone and would only confirm its own annotator.
    accelerate : bool, default=True
        SQUAREM extrapolation of the EM steps (see :func:`em_binary`): the same fixed point in
        several times fewer steps. False runs plain EM.

    Attributes
    ----------
    classes_ : ndarray of str of shape (n_classes,)
    annotators_ : ndarray of str of shape (n_annotators,)
    items_ : pandas.DataFrame of shape (n_items, 4)
        asset, class, n_votes, n_positive of every (clip, class) item, sorted by (asset, class).
    posterior_ : ndarray of shape (n_items,)
        P(class present | answers) of each item of ``items_``.
    sensitivity_, specificity_ : pandas.DataFrame of shape (n_annotators, n_classes)
        Estimated per annotator (rows) and class (columns); NaN where the annotator gave no answer
        about the class.
    class_prior_ : pandas.Series of shape (n_classes,)
        Estimated prevalence of each class.
    n_iter_ : int
        EM steps (E-step + M-step evaluations) run.
    converged_ : bool
    log_likelihood_ : float
        Marginal log-likelihood of all answers under the fitted parameters.

    Examples
    --------
    >>> model = DawidSkene(tol=1e-6, max_iter=100).fit(annotations)  # doctest: +SKIP
    >>> model.predict()  # hard labels per (asset, class)  # doctest: +SKIP
    """

    _one_coin = False

    def __init__(
        self,
        *,
        tol: float = 1e-6,
        max_iter: int = 500,
        prior: tuple[float, float] = (2.0, 1.0),
        class_prior: tuple[float, float] = (1.0, 1.0),
        min_votes: int = 2,
        accelerate: bool = True,
    ):
        self.tol = tol
        self.max_iter = max_iter
        self.prior = prior
        self.class_prior = class_prior
        self.min_votes = min_votes
        self.accelerate = accelerate

    def _validate_params(self) -> None:
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, but got {self.tol!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, but got {self.max_iter!r}")
        for name in ("prior", "class_prior"):
            val = getattr(self, name)
            if not (isinstance(val, (tuple, list)) and len(val) == 2 and all(isinstance(x, (int, float)) and x > 0 for x in val)):
                raise ValueError(f"{name} must be a pair of positive pseudo-counts, but got {val!r}")
        if not (isinstance(self.min_votes, (int, np.integer)) and self.min_votes >= 1):
            raise ValueError(f"min_votes must be an integer >= 1, but got {self.min_votes!r}")
        if not isinstance(self.accelerate, (bool, np.bool_)):
            raise ValueError(f"accelerate must be True or False, but got {self.accelerate!r}")

    def _worker_codes(self, votes: Votes) -> tuple[np.ndarray, int]:
        """Model worker of each answer: an (annotator, class) pair."""
        n_classes = len(votes.classes)
        return votes.row_annotator * n_classes + votes.row_class, len(votes.annotators) * n_classes

    def _quality_frame(self, per_worker: np.ndarray, votes: Votes, answered: np.ndarray) -> pd.DataFrame:
        table = per_worker.reshape(len(votes.annotators), len(votes.classes)).astype(float)
        table = np.where(answered, table, np.nan)
        return pd.DataFrame(table, index=pd.Index(votes.annotators, name="annotator"),
                            columns=pd.Index(votes.classes, name="class"))

    def fit(self, annotations: pd.DataFrame) -> DawidSkene:
        """Estimate annotator quality and item posteriors from an annotations table.

        Parameters
        ----------
        annotations : pandas.DataFrame
            Current view of the ANNOTATIONS table (columns asset, annotator, class, value).

        Returns
        -------
        self
        """
        self._validate_params()
        return self._fit_votes(encode_votes(annotations))

    def _fit_votes(self, votes: Votes) -> DawidSkene:
        self._validate_params()
        worker, n_workers = self._worker_codes(votes)
        res = em_binary(
            votes.row_item,
            worker,
            votes.value,
            votes.item_class,
            n_workers=n_workers,
            n_classes=len(votes.classes),
            one_coin=self._one_coin,
            fit_items=votes.n_votes >= self.min_votes,
            prior=tuple(self.prior),
            class_prior=tuple(self.class_prior),
            tol=self.tol,
            max_iter=self.max_iter,
            accelerate=bool(self.accelerate),
        )
        if not res.converged:
            warnings.warn(
                f"{type(self).__name__} did not converge within max_iter={self.max_iter} iterations "
                f"(tol={self.tol}); raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        answered = np.zeros((len(votes.annotators), len(votes.classes)), bool)
        answered[votes.row_annotator, votes.row_class] = True
        se, sp = self._per_annotator_class(res.sensitivity, votes), self._per_annotator_class(res.specificity, votes)
        self.classes_ = votes.classes
        self.annotators_ = votes.annotators
        items = votes.item_frame()
        items["n_votes"] = votes.n_votes
        items["n_positive"] = votes.n_positive
        self.items_ = items
        self.posterior_ = res.posterior
        self.sensitivity_ = self._quality_frame(se, votes, answered)
        self.specificity_ = self._quality_frame(sp, votes, answered)
        self.class_prior_ = pd.Series(res.class_prior, index=pd.Index(votes.classes, name="class"), name="class_prior")
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.log_likelihood_ = res.log_likelihood
        self._votes = votes
        return self

    def _per_annotator_class(self, per_worker: np.ndarray, votes: Votes) -> np.ndarray:
        return per_worker

    def _index(self) -> pd.MultiIndex:
        return pd.MultiIndex.from_frame(self.items_[["asset", "class"]])

    def predict_proba(self, annotations: pd.DataFrame | None = None) -> pd.Series:
        """Posterior P(class present) per (asset, class).

        Parameters
        ----------
        annotations : pandas.DataFrame or None, default=None
            None returns the posteriors of the fitted items. A table of (possibly new) answers is
            scored with the fitted annotator quality and class prevalence; an annotator unknown to
            the model gets the prior mean quality.

        Returns
        -------
        pandas.Series
            Named ``posterior``, indexed by (asset, class).
        """
        check_is_fitted(self, "posterior_")
        if annotations is None:
            return pd.Series(self.posterior_, index=self._index(), name="posterior")
        votes = encode_votes(annotations)
        unknown = sorted(set(votes.classes) - set(self.classes_))
        if unknown:
            raise ValueError(f"annotations name classes {unknown} that the model was not fitted on ({list(self.classes_)})")
        cls_map = pd.Index(self.classes_).get_indexer(votes.classes)
        ann_map = pd.Index(self.annotators_).get_indexer(votes.annotators)
        a, b = self.prior
        default = a / (a + b)
        se = self.sensitivity_.to_numpy()
        sp = self.specificity_.to_numpy()
        row_cls = cls_map[votes.row_class]
        row_ann = ann_map[votes.row_annotator]
        known = row_ann >= 0
        r_se = np.full(votes.n_rows, default)
        r_sp = np.full(votes.n_rows, default)
        r_se[known] = se[row_ann[known], row_cls[known]]
        r_sp[known] = sp[row_ann[known], row_cls[known]]
        r_se = np.where(np.isnan(r_se), default, r_se)
        r_sp = np.where(np.isnan(r_sp), default, r_sp)
        v = votes.value.astype(bool)
        llr = np.where(v, np.log(r_se) - np.log1p(-r_sp), np.log1p(-r_se) - np.log(r_sp))
        pi = self.class_prior_.to_numpy()[cls_map[votes.item_class]]
        post = expit(logit(pi) + np.bincount(votes.row_item, weights=llr, minlength=votes.n_items))
        return pd.Series(post, index=pd.MultiIndex.from_frame(votes.item_frame()), name="posterior")

    def predict(
        self, annotations: pd.DataFrame | None = None, *, tie: Literal["negative", "positive"] = "negative"
    ) -> pd.Series:
        """Hard 0/1 labels per (asset, class): posterior above 0.5, exactly 0.5 follows ``tie``."""
        proba = self.predict_proba(annotations)
        return pd.Series(hard_labels(proba.to_numpy(), tie), index=proba.index, name="label")


class OneCoinDawidSkene(DawidSkene):
    """Dawid–Skene with one accuracy per annotator ("one-coin"), for sparse data.

    Sensitivity and specificity are tied into one accuracy, shared by all classes: each annotator
    has a single parameter, so a few answers per annotator are enough to estimate it. Prefer
    :class:`DawidSkene` once annotators have answered tens of items per class.

    Parameters and attributes are those of :class:`DawidSkene`; ``sensitivity_`` and
    ``specificity_`` both hold the annotator's accuracy (in every class it answered about).
    """

    _one_coin = True

    def _worker_codes(self, votes: Votes) -> tuple[np.ndarray, int]:
        return votes.row_annotator, len(votes.annotators)

    def _per_annotator_class(self, per_worker: np.ndarray, votes: Votes) -> np.ndarray:
        return np.repeat(per_worker, len(votes.classes))

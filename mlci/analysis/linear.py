"""L2-regularised logistic regression for many binary problems at once (Newton's method).

A simulation fits thousands of small logistic regressions (every concept, round, strategy and
repetition). scikit-learn's ``LogisticRegression`` solves each with L-BFGS to a loose tolerance and
spends most of its time in Python and validation overhead. Here the problems that share a feature
matrix (every concept of a shared labeled set, every fold of a cross-validation) are solved
together by damped Newton steps, warm-started from the previous round: one weighted Gram matrix
and one (d+1) x (d+1) solve per problem and iteration, or, when there are fewer rows than features,
one n x n solve through the kernel matrix ``X X'`` (the same step, exactly). The objective is scikit-learn's, so the
solution is its optimum (to ``tol``)::

    C * sum_i s_i * (log(1 + exp(z_i)) - y_i z_i) + ||w||^2 / 2,   z_i = x_i . w + b

with an unpenalised intercept ``b``. Above ``newton_max_features`` features the Hessian would be
expensive, so each problem is solved by L-BFGS (scipy) on the same objective instead.

A problem whose labels hold one class has no finite optimum (the intercept runs off to infinity):
it gets the constant model ``P = (n_pos + 1) / (n + 2)`` (Laplace's rule of succession), which
is what a classifier that has never seen the other class can honestly say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import fmin_l_bfgs_b
from scipy.special import expit, logit

__all__ = ["LogisticFit", "fit_logistic", "predict_logistic"]


@dataclass(frozen=True)
class LogisticFit:
    """Fitted parameters of ``m`` binary logistic regressions.

    Attributes
    ----------
    coef : ndarray of float64 of shape (m, n_features)
    intercept : ndarray of float64 of shape (m,)
    constant : ndarray of bool of shape (m,)
        True where the labels held one class and the model is the constant Laplace estimate.
    n_iter : ndarray of int64 of shape (m,)
    """

    coef: np.ndarray
    intercept: np.ndarray
    constant: np.ndarray
    n_iter: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """P(present) of every row of ``X`` for every problem: ndarray of shape (n, m)."""
        return predict_logistic(X, self.coef, self.intercept)


def predict_logistic(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """``sigmoid(X @ coef.T + intercept)`` in float64, shape (n, m)."""
    z = np.asarray(X, dtype=np.float64) @ coef.T
    z += intercept
    return expit(z, out=z)


def _objective(Xa: np.ndarray, Y: np.ndarray, S: np.ndarray, theta: np.ndarray, C: float) -> np.ndarray:
    z = Xa @ theta.T  # (n, m)
    loss = (S * (np.logaddexp(0.0, z) - Y * z)).sum(axis=0)
    return C * loss + 0.5 * (theta[:, :-1] ** 2).sum(axis=1)


def fit_logistic(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    C: float = 1.0,
    sample_weight: np.ndarray | None = None,
    coef_init: np.ndarray | None = None,
    intercept_init: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 100,
    newton_max_features: int = 512,
) -> LogisticFit:
    """Fit ``m`` binary logistic regressions that share the rows of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    Y : ndarray of {0, 1} of shape (n, m) or (n,)
        One column per problem.
    C : float, default=1.0
        Inverse regularisation strength (scikit-learn's ``C``).
    sample_weight : ndarray of shape (n, m) or (n,), default=None
        Per-problem row weights; 0 leaves a row out of a problem (e.g. a cross-validation fold).
    coef_init, intercept_init : ndarray, default=None
        Warm start, shapes (m, n_features) and (m,).
    tol : float, default=1e-12
        Stop when half the Newton decrement is below ``tol * max(1, objective)``.
    max_iter : int, default=100
    newton_max_features : int, default=512
        Above this many features each problem is solved by L-BFGS instead of Newton's method.

    Returns
    -------
    LogisticFit
    """
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"X must be (n, n_features) and Y (n, m) with the same n, got {X.shape} and {Y.shape}")
    n, d = X.shape
    m = Y.shape[1]
    S = np.ones_like(Y) if sample_weight is None else np.broadcast_to(
        np.asarray(sample_weight, dtype=np.float64).reshape(n, -1), Y.shape
    )
    n_w = S.sum(axis=0)
    n_pos = (S * Y).sum(axis=0)
    constant = (n_pos <= 0) | (n_pos >= n_w)
    theta = np.zeros((m, d + 1))
    if coef_init is not None:
        theta[:, :-1] = coef_init
        theta[:, -1] = intercept_init
    else:
        prior = (n_pos + 1.0) / (n_w + 2.0)
        theta[:, -1] = logit(prior)
    n_iter = np.zeros(m, dtype=np.int64)
    active = np.flatnonzero(~constant)
    if active.size:
        Xa = np.hstack([X, np.ones((n, 1))])
        solve = _newton if d + 1 <= newton_max_features else _lbfgs
        theta[active], n_iter[active] = solve(Xa, Y[:, active], S[:, active], theta[active], C, tol, max_iter)
    # One-class problems: the constant Laplace estimate (no slope).
    theta[constant, :-1] = 0.0
    theta[constant, -1] = logit((n_pos[constant] + 1.0) / (n_w[constant] + 2.0))
    return LogisticFit(theta[:, :-1].copy(), theta[:, -1].copy(), constant, n_iter)


def _step_primal(Xa, weights, grad, penalty):
    """Newton step from the (d+1) x (d+1) Hessians (cheaper when rows outnumber features)."""
    m, d1 = grad.shape
    H = np.empty((m, d1, d1))
    for k in range(m):
        H[k] = (Xa * weights[:, k : k + 1]).T @ Xa
    H[:, np.arange(d1), np.arange(d1)] += penalty
    return np.linalg.solve(H, grad[:, :, None])[:, :, 0]


def _step_dual(X, K, weights, grad):
    """The same Newton step through n x n systems (cheaper when features outnumber rows).

    With ``W = diag(weights)`` and ``s = sum(weights)``, eliminating the unpenalised intercept
    leaves ``(I + X' M X) dw = r`` with ``M = W - W 1 1' W / s`` and ``r = g_w - X' W 1 g_b / s``;
    the push-through identity ``(I + X' M X)^-1 = I - X' (I + M K)^-1 M X`` (``K = X X'``) turns
    it into one n x n solve. Then ``db = (g_b - 1' W X dw) / s``.
    """
    n = X.shape[0]
    g_w, g_b = grad[:, :-1], grad[:, -1]
    s = np.maximum(weights.sum(axis=0), 1e-300)
    r = g_w - (X.T @ weights).T * (g_b / s)[:, None]
    u = X @ r.T  # (n, m)
    wu = weights * u
    Mu = wu - weights * (wu.sum(axis=0) / s)
    wt = weights.T  # (m, n)
    A = wt[:, :, None] * K[None, :, :] - wt[:, :, None] * (wt @ K)[:, None, :] / s[:, None, None]
    A[:, np.arange(n), np.arange(n)] += 1.0
    z = np.linalg.solve(A, Mu.T[:, :, None])[:, :, 0]  # (m, n)
    dw = r - z @ X
    db = (g_b - (weights * (X @ dw.T)).sum(axis=0)) / s
    return np.hstack([dw, db[:, None]])


def _newton(Xa, Y, S, theta, C, tol, max_iter):
    m, d1 = theta.shape
    n = Xa.shape[0]
    penalty = np.ones(d1)
    penalty[-1] = 0.0
    dual = n < d1 - 1
    if dual:
        X = Xa[:, :-1]
        K = X @ X.T
    f = _objective(Xa, Y, S, theta, C)
    n_iter = np.zeros(m, dtype=np.int64)
    todo = np.ones(m, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(todo)
        if not idx.size:
            break
        th = theta[idx]
        z = Xa @ th.T
        p = expit(z)
        r = S[:, idx] * (p - Y[:, idx])
        grad = C * (Xa.T @ r).T + th * penalty
        w = C * S[:, idx] * p * (1.0 - p)
        step = _step_dual(X, K, w, grad) if dual else _step_primal(Xa, w, grad, penalty)
        decrement = 0.5 * np.einsum("ij,ij->i", grad, step)
        n_iter[idx] += 1
        done = decrement <= tol * np.maximum(1.0, np.abs(f[idx]))
        # Backtracking (Armijo) keeps the damped Newton step a descent step far from the optimum.
        t = np.ones(idx.size)
        f_new = _objective(Xa, Y[:, idx], S[:, idx], th - step, C)
        for _ in range(30):
            bad = ~done & (f_new > f[idx] - 1e-4 * t * 2 * decrement)
            if not bad.any():
                break
            t[bad] *= 0.5
            f_new[bad] = _objective(
                Xa, Y[:, idx[bad]], S[:, idx[bad]], th[bad] - t[bad, None] * step[bad], C
            )
        move = ~done
        theta[idx[move]] = th[move] - t[move, None] * step[move]
        f[idx[move]] = f_new[move]
        todo[idx[done]] = False
    return theta, n_iter


def _lbfgs(Xa, Y, S, theta, C, tol, max_iter):
    m = theta.shape[0]
    n_iter = np.zeros(m, dtype=np.int64)
    for j in range(m):
        y, s = Y[:, j], S[:, j]

        def fun(th, y=y, s=s):
            z = Xa @ th
            p = expit(z)
            f = C * (s * (np.logaddexp(0.0, z) - y * z)).sum() + 0.5 * th[:-1] @ th[:-1]
            g = C * (Xa.T @ (s * (p - y)))
            g[:-1] += th[:-1]
            return f, g

        theta[j], _, info = fmin_l_bfgs_b(fun, theta[j], pgtol=1e-10, factr=10.0, maxiter=50 * max_iter)
        n_iter[j] = info["nit"]
    return theta, n_iter

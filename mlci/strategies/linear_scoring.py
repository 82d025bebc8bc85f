"""Fast scoring of a large pool by linear per-concept models: one matrix product, then a sigmoid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit

__all__ = ["linear_proba", "stack_linear"]


def linear_proba(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray | float = 0.0) -> np.ndarray:
    """P(concept present) for every clip and concept: ``sigmoid(X @ coef.T + intercept)``.

    The same values as each binary ``LogisticRegression.predict_proba(X)[:, 1]`` (up to float32
    rounding), computed for all concepts at once: a single BLAS product over the pool instead of
    one ``predict_proba`` (and one float64 copy of ``X``) per concept.

    Parameters
    ----------
    X : ndarray of shape (n_clips, n_features)
        float32 stays float32 (no copy); float64 is computed in float64.
    coef : ndarray of shape (n_concepts, n_features) or (n_features,)
        One row per concept, e.g. from :func:`stack_linear`.
    intercept : ndarray of shape (n_concepts,) or float, default=0.0

    Returns
    -------
    ndarray of float32 of shape (n_clips, n_concepts)
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_clips, n_features), got shape {X.shape}")
    dtype = np.float64 if X.dtype == np.float64 else np.float32
    X = X.astype(dtype, copy=False)
    W = np.atleast_2d(np.asarray(coef, dtype=dtype))
    if W.shape[1] != X.shape[1]:
        raise ValueError(f"coef has {W.shape[1]} features but X has {X.shape[1]}")
    b = np.broadcast_to(np.asarray(intercept, dtype=dtype), (W.shape[0],))
    z = X @ np.ascontiguousarray(W.T)
    z += b
    return expit(z, out=z).astype(np.float32, copy=False)


def stack_linear(estimators: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(coef, intercept)`` of fitted binary linear classifiers, one row per concept.

    Parameters
    ----------
    estimators : sequence of fitted binary classifiers with ``coef_`` of shape (1, n_features)
        and ``intercept_`` (e.g. ``LogisticRegression``), in concept order.

    Returns
    -------
    coef : ndarray of float32 of shape (n_concepts, n_features)
    intercept : ndarray of float32 of shape (n_concepts,)
    """
    coefs, intercepts = [], []
    for j, est in enumerate(estimators):
        coef = getattr(est, "coef_", None)
        if coef is None or np.asarray(coef).shape[0] != 1:
            raise TypeError(
                f"estimator {j} ({type(est).__name__}) is not a fitted binary linear classifier "
                "(needs coef_ of shape (1, n_features))"
            )
        coefs.append(np.asarray(coef)[0])
        intercepts.append(float(np.ravel(getattr(est, "intercept_", 0.0))[0]))
    if not coefs:
        raise ValueError("estimators must not be empty")
    return np.vstack(coefs).astype(np.float32), np.asarray(intercepts, dtype=np.float32)

"""The binary classifier behind each concept: which estimators exist, their defaults, how one is fit.

Three estimators are offered (names are the values of the ``estimator`` parameter):

``logistic_regression``
    ``sklearn.linear_model.LogisticRegression`` — the seed notebook's model. Parameters: ``C``,
    ``class_weight``, ``max_iter``.
``linear_svm``
    ``sklearn.svm.LinearSVC`` wrapped in ``CalibratedClassifierCV`` (an SVM has no probabilities of
    its own, so it is always calibrated; ``calibration=None`` means sigmoid). Parameters: ``C``,
    ``class_weight``, ``max_iter``.
``hist_gradient_boosting``
    ``sklearn.ensemble.HistGradientBoostingClassifier``. Parameters: ``learning_rate``, ``max_iter``,
    ``max_leaf_nodes``, ``l2_regularization``, ``class_weight``. Early stopping is off by default so
    that a fit does not depend on an internal validation split.

Any other parameter of the underlying scikit-learn class may be given too; ``random_state`` is set
by mlci. ``calibration`` (``None``, ``"sigmoid"`` or ``"isotonic"``) wraps the estimator in
``CalibratedClassifierCV`` with a stratified k-fold of at most 3 folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from mlci.models.exceptions import TooFewLabelsError

__all__ = [
    "ESTIMATORS",
    "CALIBRATIONS",
    "MODALITIES",
    "DEFAULT_ESTIMATOR",
    "check_modality",
    "resolve_estimator_params",
    "effective_calibration",
    "make_binary_classifier",
    "fit_binary",
]

#: name -> (scikit-learn class, mlci's default parameters)
ESTIMATORS: dict[str, tuple[type[BaseEstimator], dict[str, Any]]] = {
    "logistic_regression": (LogisticRegression, {"C": 1.0, "class_weight": None, "max_iter": 1000}),
    "linear_svm": (LinearSVC, {"C": 1.0, "class_weight": None, "max_iter": 5000}),
    "hist_gradient_boosting": (
        HistGradientBoostingClassifier,
        {
            "learning_rate": 0.1,
            "max_iter": 100,
            "max_leaf_nodes": 15,
            "l2_regularization": 0.0,
            "class_weight": None,
            "early_stopping": False,
        },
    ),
}
DEFAULT_ESTIMATOR = "logistic_regression"
CALIBRATIONS = (None, "sigmoid", "isotonic")
MODALITIES = ("audio", "video", "combined")
#: Most folds the calibration's internal cross-validation uses.
CALIBRATION_FOLDS = 3


def check_modality(modality: str) -> None:
    """Raise ``ValueError`` unless ``modality`` is one of :data:`MODALITIES`, alone or followed by
    more blocks after ``+`` (``combined+embeddings:<source>``, which the features package checks)."""
    if not isinstance(modality, str) or modality.partition("+")[0] not in MODALITIES:
        raise ValueError(
            f"modality must be one of {MODALITIES}, optionally followed by '+embeddings[:<source>]', but got {modality!r}"
        )


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, but got {estimator!r}")


def resolve_estimator_params(estimator: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """mlci's defaults for ``estimator`` updated with ``params``, after checking every name.

    Raises
    ------
    ValueError
        Unknown estimator, a parameter the estimator does not have, or ``random_state``.
    """
    _check_estimator(estimator)
    cls, defaults = ESTIMATORS[estimator]
    params = dict(params or {})
    allowed = set(cls().get_params())
    for name in params:
        if name == "random_state":
            raise ValueError("estimator_params must not set 'random_state'; pass random_state to the model")
        if name not in allowed:
            raise ValueError(
                f"estimator_params has {name!r}, which {cls.__name__} does not accept; valid: {sorted(allowed - {'random_state'})}"
            )
    return {**defaults, **params}


def effective_calibration(estimator: str, calibration: str | None) -> str | None:
    """The calibration actually applied: a linear SVM is always calibrated (sigmoid by default)."""
    _check_estimator(estimator)
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, but got {calibration!r}")
    if estimator == "linear_svm" and calibration is None:
        return "sigmoid"
    return calibration


def make_binary_classifier(
    estimator: str,
    params: dict[str, Any] | None = None,
    *,
    calibration: str | None = None,
    calibration_folds: int = CALIBRATION_FOLDS,
    random_state: int | None = None,
) -> BaseEstimator:
    """An unfitted binary classifier with ``predict_proba``.

    Parameters
    ----------
    estimator : str
        One of :data:`ESTIMATORS`.
    params : dict, default=None
        Parameters of the underlying scikit-learn class (see the module docstring).
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Wrap in ``CalibratedClassifierCV``; a linear SVM is always wrapped.
    calibration_folds : int, default=3
        Folds of the calibration's stratified split.
    random_state : int, default=None
        Seed of the estimator and of the calibration split.
    """
    resolved = resolve_estimator_params(estimator, params)
    cls = ESTIMATORS[estimator][0]
    method = effective_calibration(estimator, calibration)
    base = cls(**resolved, random_state=random_state)
    if method is None:
        return base
    cv = StratifiedKFold(n_splits=calibration_folds, shuffle=True, random_state=random_state)
    return CalibratedClassifierCV(base, method=method, cv=cv)


def fit_binary(
    estimator: str,
    params: dict[str, Any] | None,
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    *,
    calibration: str | None = None,
    random_state: int | None = None,
) -> BaseEstimator:
    """Fit one binary classifier on ``y`` in {0, 1}.

    A calibrated estimator needs at least 2 positives and 2 negatives (its internal split uses
    ``min(3, n_positive, n_negative)`` folds); an uncalibrated one needs at least 1 of each.

    Raises
    ------
    TooFewLabelsError
        Fewer labels of one kind than the estimator needs; ``status`` says which kind.
    """
    y = np.asarray(y)
    n_pos = int(np.count_nonzero(y == 1))
    n_neg = int(np.count_nonzero(y == 0))
    calibrated = effective_calibration(estimator, calibration) is not None
    needed = 2 if calibrated else 1
    if n_pos < needed or n_neg < needed:
        status = "too_few_positives" if n_pos < needed else "too_few_negatives"
        raise TooFewLabelsError(status, n_pos, n_neg, needed)
    clf = make_binary_classifier(
        estimator,
        params,
        calibration=calibration,
        calibration_folds=min(CALIBRATION_FOLDS, n_pos, n_neg),
        random_state=random_state,
    )
    return clf.fit(X, y, sample_weight=sample_weight)

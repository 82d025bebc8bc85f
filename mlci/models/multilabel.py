"""One multi-label model: a binary classifier per concept, with its class list and feature schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_is_fitted

from mlci.models.estimators import (
    DEFAULT_ESTIMATOR,
    check_modality,
    effective_calibration,
    fit_binary,
    resolve_estimator_params,
)
from mlci.models.exceptions import (
    FeatureSchemaMismatchError,
    ModelError,
    TooFewLabelsError,
)
from mlci.models.schema import feature_spec_from

__all__ = ["MultiLabelModel", "SKOPS_TRUSTED_TYPES", "CLASS_STATUSES", "UNKNOWN_LABEL", "check_label_matrix", "check_sample_weight"]

#: Per-class outcome of :meth:`MultiLabelModel.fit`.
CLASS_STATUSES = ("trained", "too_few_positives", "too_few_negatives")
#: Value of a label matrix entry whose label is not known.
UNKNOWN_LABEL = -1
_UNTRAINED_SCORES = ("prior", "nan")

#: Types a saved :class:`MultiLabelModel` holds beyond skops' default trusted set: our own classes
#: and the scikit-learn internals of calibration and gradient boosting. Loading trusts exactly this
#: list (kept in code, never read from the artifact being loaded).
SKOPS_TRUSTED_TYPES = [
    "mlci.models.multilabel.MultiLabelModel",
    "mlci.models.schema.FeatureSpec",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.model_selection._split.StratifiedKFold",
]


def check_label_matrix(Y: Any, n_samples: int, n_classes: int) -> np.ndarray:
    """``Y`` as an int8 array of shape (n_samples, n_classes) with values in {-1, 0, 1}."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape != (n_samples, n_classes):
        raise ValueError(f"Y must have shape ({n_samples}, {n_classes}), but got {Y.shape}")
    bad = ~np.isin(Y, (UNKNOWN_LABEL, 0, 1))
    if bad.any():
        raise ValueError(f"Y values must be -1 (unknown), 0 or 1, but got {np.unique(Y[bad])[:5].tolist()}")
    return Y.astype(np.int8)


def check_sample_weight(sample_weight: Any, n_samples: int, n_classes: int) -> np.ndarray | None:
    """``sample_weight`` as None or a float array of shape (n_samples, n_classes)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape == (n_samples,):
        w = np.repeat(w[:, None], n_classes, axis=1)
    if w.shape != (n_samples, n_classes):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) or ({n_samples}, {n_classes}), but got {w.shape}"
        )
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return w


class MultiLabelModel(BaseEstimator):
    """One binary classifier per concept (one-vs-rest), fit on a partly known label matrix.

    Parameters
    ----------
    classes : sequence of str
        Concept names, in the column order of ``Y`` and of :meth:`predict_proba`.
    estimator : str, default="logistic_regression"
        Binary estimator, see :mod:`mlci.models.estimators`.
    estimator_params : dict, default=None
        Parameters of that estimator (mlci's defaults fill the rest).
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Probability calibration of each binary classifier.
    modality : {"audio", "video", "combined"} or str, default="combined"
        Which feature columns the model is fit on (or e.g. ``"combined+embeddings:<source>"``, with
        an imported embeddings source beside them); recorded, and checked by :meth:`check_features`
        when the features' schema names its modality.
    feature_schema : object with ``extractor`` and ``version``, default=None
        Schema of the features ``X`` (e.g. :class:`~mlci.models.schema.FeatureSpec`).
    min_positives, min_negatives : int, default=2
        Fewest positives / negatives a concept needs to be trained.
    untrained_score : {"prior", "nan"}, default="prior"
        Score :meth:`predict_proba` gives a concept that could not be trained: its positive rate
        among the known labels (0.0 when it has none), or NaN.
    random_state : int or None, default=0
        Seed; each concept's classifier gets its own seed drawn from it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Concept names.
    class_status_ : dict
        ``class -> "trained" | "too_few_positives" | "too_few_negatives"``.
    estimators_ : list
        Fitted binary classifier per concept, None for an untrained one.
    n_positive_, n_negative_ : ndarray of shape (n_classes,)
        Known labels per concept.
    priors_ : ndarray of shape (n_classes,)
        Positive rate among the known labels (0.0 when none are known).
    feature_schema_ : dict or None
        ``{"extractor", "version", "modality"}`` of the training features (and ``"params_hash"``
        when the schema has one).
    n_features_in_ : int
        Width of ``X``.

    Examples
    --------
    >>> from mlci.models import FeatureSpec, MultiLabelModel
    >>> model = MultiLabelModel(["holiday", "gift giving"], feature_schema=FeatureSpec("demo", "1"))
    >>> model.fit(X, Y).predict_proba(X_new).shape  # doctest: +SKIP
    (n_new, 2)
    """

    def __init__(
        self,
        classes: Sequence[str] = (),
        *,
        estimator: str = DEFAULT_ESTIMATOR,
        estimator_params: dict | None = None,
        calibration: str | None = None,
        modality: str = "combined",
        feature_schema: Any = None,
        min_positives: int = 2,
        min_negatives: int = 2,
        untrained_score: str = "prior",
        standardize: bool = True,
        random_state: int | None = 0,
    ):
        self.classes = classes
        self.estimator = estimator
        self.estimator_params = estimator_params
        self.calibration = calibration
        self.modality = modality
        self.feature_schema = feature_schema
        self.min_positives = min_positives
        self.min_negatives = min_negatives
        self.untrained_score = untrained_score
        self.standardize = standardize
        self.random_state = random_state

    # -- parameters --------------------------------------------------------------------------

    def check_params(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter (``fit`` calls it first).

        Public so that callers can check a model before any work; named apart from scikit-learn's
        private ``_validate_params``, which this class does not use.
        """
        if isinstance(self.classes, str) or len(self.classes) == 0:
            raise ValueError(f"classes must be a non-empty sequence of names, but got {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique, but got {list(self.classes)}")
        resolve_estimator_params(self.estimator, self.estimator_params)
        effective_calibration(self.estimator, self.calibration)
        check_modality(self.modality)
        for name in ("min_positives", "min_negatives"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, but got {value!r}")
        if self.untrained_score not in _UNTRAINED_SCORES:
            raise ValueError(f"untrained_score must be one of {_UNTRAINED_SCORES}, but got {self.untrained_score!r}")
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"standardize must be True or False, but got {self.standardize!r}")
        if self.feature_schema is not None:
            feature_spec_from(self.feature_schema)

    def class_seeds(self) -> np.ndarray:
        """Seed of each concept's classifier, drawn from ``random_state``."""
        rng = np.random.default_rng(self.random_state)
        return rng.integers(2**31 - 1, size=len(self.classes))

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, X, Y, sample_weight=None) -> MultiLabelModel:
        """Fit one classifier per concept on its known labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        Y : array-like of shape (n_samples, n_classes)
            1 present, 0 absent, -1 unknown (the row is left out for that concept).
        sample_weight : array-like of shape (n_samples,) or (n_samples, n_classes), default=None

        Returns
        -------
        self
            Concepts that cannot be trained are recorded in ``class_status_``; the others train.
        """
        self.check_params()
        X = check_array(X, dtype=(np.float32, np.float64))
        k = len(self.classes)
        Y = check_label_matrix(Y, X.shape[0], k)
        W = check_sample_weight(sample_weight, X.shape[0], k)
        seeds = self.class_seeds()
        self.classes_ = np.asarray(list(self.classes), dtype=object)
        self.estimators_ = []
        self.class_status_ = {}
        self.n_positive_ = np.count_nonzero(Y == 1, axis=0).astype(np.int64)
        self.n_negative_ = np.count_nonzero(Y == 0, axis=0).astype(np.int64)
        known = self.n_positive_ + self.n_negative_
        self.priors_ = np.divide(self.n_positive_, known, out=np.zeros(k), where=known > 0)
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        for j, name in enumerate(self.classes_):
            if self.n_positive_[j] < self.min_positives:
                status, clf = "too_few_positives", None
            elif self.n_negative_[j] < self.min_negatives:
                status, clf = "too_few_negatives", None
            else:
                rows = Y[:, j] != UNKNOWN_LABEL
                try:
                    clf = fit_binary(
                        self.estimator,
                        self.estimator_params,
                        X[rows],
                        Y[rows, j],
                        None if W is None else W[rows, j],
                        calibration=self.calibration,
                        random_state=int(seeds[j]),
                    )
                    status = "trained"
                except TooFewLabelsError as exc:
                    status, clf = exc.status, None
            self.class_status_[str(name)] = status
            self.estimators_.append(clf)
        self.n_features_in_ = X.shape[1]
        self.feature_schema_ = self._schema_record()
        return self

    def _schema_record(self) -> dict[str, str] | None:
        if self.feature_schema is None:
            return None
        return {**feature_spec_from(self.feature_schema).as_dict(), "modality": self.modality}

    # -- prediction --------------------------------------------------------------------------

    @property
    def trained_mask_(self) -> np.ndarray:
        """Boolean array of shape (n_classes,): which concepts have a classifier."""
        check_is_fitted(self, "estimators_")
        return np.array([clf is not None for clf in self.estimators_])

    def check_features(self, schema: Any) -> None:
        """Raise :class:`FeatureSchemaMismatchError` unless ``schema`` is what the model was fit on.

        Compares extractor name and version, the parameters digest when both record one, and the
        modality when ``schema`` names one.
        """
        check_is_fitted(self, "estimators_")
        if self.feature_schema_ is None:
            raise ModelError("this model records no feature schema, so features cannot be checked against it")
        spec = feature_spec_from(schema)
        expected = {k: self.feature_schema_[k] for k in ("extractor", "version")}
        got = {"extractor": spec.extractor, "version": spec.version}
        # Parameters are compared only when both sides know them (a bare name + version does not).
        if self.feature_schema_.get("params_hash") is not None and spec.params_hash is not None:
            expected["params_hash"], got["params_hash"] = self.feature_schema_["params_hash"], spec.params_hash
        modality = schema.get("modality") if isinstance(schema, dict) else getattr(schema, "modality", None)
        if modality is not None:
            expected["modality"], got["modality"] = self.feature_schema_["modality"], str(modality)
        if expected != got:
            raise FeatureSchemaMismatchError(expected, got)

    def predict_proba(self, X, *, feature_schema: Any = None) -> np.ndarray:
        """Probability of each concept.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        feature_schema : object with ``extractor`` and ``version``, default=None
            When given, checked first with :meth:`check_features`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Untrained concepts get their prior (``untrained_score="prior"``) or NaN.
        """
        check_is_fitted(self, "estimators_")
        if feature_schema is not None:
            self.check_features(feature_schema)
        X = check_array(X, dtype=(np.float32, np.float64))
        if X.shape[1] != self.n_features_in_:
            raise FeatureSchemaMismatchError({"n_features": self.n_features_in_}, {"n_features": X.shape[1]})
        if getattr(self, "scaler_", None) is not None:
            X = self.scaler_.transform(X)
        out = np.empty((X.shape[0], len(self.estimators_)), dtype=np.float64)
        for j, clf in enumerate(self.estimators_):
            if clf is not None:
                out[:, j] = clf.predict_proba(X)[:, list(clf.classes_).index(1)]
            else:
                out[:, j] = self.priors_[j] if self.untrained_score == "prior" else np.nan
        return out

    def predict(self, X, *, threshold: float = 0.5, feature_schema: Any = None) -> np.ndarray:
        """0/1 per concept: ``predict_proba >= threshold`` (int8, shape (n_samples, n_classes))."""
        return (self.predict_proba(X, feature_schema=feature_schema) >= threshold).astype(np.int8)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

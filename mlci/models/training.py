"""Training: out-of-fold evaluation of a multi-label model, then its fit on every label. No MLflow.

What is logged and registered afterwards is :mod:`mlci.models.registry`; whether the result
replaces the champion is :mod:`mlci.models.comparison` and :mod:`mlci.models.promotion`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlci.models.dataset import TrainingSet
from mlci.models.estimators import DEFAULT_ESTIMATOR
from mlci.models.evaluation import Evaluation, check_cv_params, cross_validate
from mlci.models.multilabel import MultiLabelModel
from mlci.models.schema import feature_spec_from

__all__ = ["TrainingConfig", "TrainedModel", "train"]


@dataclass(frozen=True)
class TrainingConfig:
    """How to train: the model's parameters and those of its out-of-fold evaluation.

    Parameters
    ----------
    estimator, estimator_params, calibration, modality, min_positives, min_negatives
        See :class:`~mlci.models.multilabel.MultiLabelModel`.
    use_sample_weights : bool, default=True
        Fit with the training set's weights when it has them.
    n_splits : int, default=5
        Cross-validation folds (fewer for a concept with fewer positives or negatives).
    threshold : float, default=0.5
        Decision threshold of accuracy, precision, recall and F1.
    random_state : int, default=0
        Seed of the classifiers and of the folds.
    """

    estimator: str = DEFAULT_ESTIMATOR
    estimator_params: dict[str, Any] | None = None
    calibration: str | None = None
    modality: str = "combined"
    min_positives: int = 2
    min_negatives: int = 2
    use_sample_weights: bool = True
    n_splits: int = 5
    threshold: float = 0.5
    random_state: int = 0

    def make_model(self, classes: Sequence[str], feature_schema: Any) -> MultiLabelModel:
        """The unfitted model of ``classes`` on features of ``feature_schema``, its parameters checked.

        Raises
        ------
        ValueError
            A parameter of the model, ``n_splits`` or ``threshold`` is invalid.
        """
        check_cv_params(n_splits=self.n_splits, threshold=self.threshold)
        model = MultiLabelModel(
            list(classes),
            estimator=self.estimator,
            estimator_params=self.estimator_params,
            calibration=self.calibration,
            modality=self.modality,
            feature_schema=feature_spec_from(feature_schema),
            min_positives=self.min_positives,
            min_negatives=self.min_negatives,
            random_state=self.random_state,
        )
        model.check_params()
        return model

    def sample_weight(self, training_set: TrainingSet) -> np.ndarray | None:
        """The weights the model is fit with: the training set's, unless ``use_sample_weights`` is off."""
        return training_set.weights if self.use_sample_weights else None


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train` produced.

    Attributes
    ----------
    model : MultiLabelModel
        Fitted on every known label of the training set.
    evaluation : Evaluation
        Out-of-fold scores and metrics of the same configuration.
    config : TrainingConfig
    weighted : bool
        Whether the fit used sample weights.
    """

    model: MultiLabelModel
    evaluation: Evaluation
    config: TrainingConfig
    weighted: bool

    @property
    def class_status(self) -> dict[str, str]:
        """``class -> "trained" | "too_few_positives" | "too_few_negatives"`` of the fitted model."""
        return dict(self.model.class_status_)


def train(training_set: TrainingSet, config: TrainingConfig, *, feature_schema: Any) -> TrainedModel:
    """Cross-validate the configured model on ``training_set``, then fit it on all of it.

    Parameters
    ----------
    training_set : TrainingSet
        From :func:`~mlci.models.dataset.build_training_set`.
    config : TrainingConfig
    feature_schema : object with ``extractor`` and ``version``
        Schema of ``training_set.X``, recorded on the model.

    Returns
    -------
    TrainedModel
    """
    model = config.make_model(training_set.classes, feature_schema)
    weights = config.sample_weight(training_set)
    evaluation = cross_validate(
        model, training_set.X, training_set.Y, sample_weight=weights,
        n_splits=config.n_splits, threshold=config.threshold, random_state=config.random_state,
    )
    model.fit(training_set.X, training_set.Y, sample_weight=weights)
    return TrainedModel(model=model, evaluation=evaluation, config=config, weighted=weights is not None)

"""Per-concept classifiers: training sets, estimators, evaluation, MLflow tracking, registry and promotion.

Plain library code (no Prefect). The usual path is::

    ts = build_training_set(keys, X, consensus, classes)
    result = train_and_register(ts, tracking_uri=..., experiment_name=..., model_name=..., feature_schema=schema)
    model = load_model(tracking_uri, model_name)           # models:/<name>@champion
    proba = model.predict_proba(X_new, feature_schema=schema)
"""

from mlci.models.dataset import TrainingSet, build_training_set
from mlci.models.estimators import CALIBRATIONS, ESTIMATORS, MODALITIES
from mlci.models.evaluation import Evaluation, binary_metrics, cross_validate, plot_class_curves, plot_summary
from mlci.models.exceptions import (
    FeatureSchemaMismatchError,
    ModelError,
    ModelNotFoundError,
    TooFewLabelsError,
    TrackingStoreNotFoundError,
    TrackingUnreachableError,
    TrainingDataError,
    UnsafeModelFormatError,
)
from mlci.models.multilabel import CLASS_STATUSES, SKOPS_TRUSTED_TYPES, MultiLabelModel
from mlci.models.promotion import PromotionDecision, decide_promotion
from mlci.models.registry import (
    CHALLENGER,
    CHAMPION,
    ModelVersionInfo,
    TrainingResult,
    list_versions,
    load_model,
    resolve_version,
    train_and_register,
)
from mlci.models.schema import FeatureSpec, feature_spec_from

__all__ = [
    "TrainingSet",
    "build_training_set",
    "ESTIMATORS",
    "CALIBRATIONS",
    "MODALITIES",
    "MultiLabelModel",
    "CLASS_STATUSES",
    "SKOPS_TRUSTED_TYPES",
    "Evaluation",
    "binary_metrics",
    "cross_validate",
    "plot_class_curves",
    "plot_summary",
    "PromotionDecision",
    "decide_promotion",
    "TrainingResult",
    "ModelVersionInfo",
    "train_and_register",
    "load_model",
    "resolve_version",
    "list_versions",
    "CHAMPION",
    "CHALLENGER",
    "FeatureSpec",
    "feature_spec_from",
    "ModelError",
    "FeatureSchemaMismatchError",
    "ModelNotFoundError",
    "TooFewLabelsError",
    "TrainingDataError",
    "UnsafeModelFormatError",
    "TrackingStoreNotFoundError",
    "TrackingUnreachableError",
]

"""Per-concept classifiers: training sets, training, evaluation, champion comparison, promotion, registry.

Plain library code (no Prefect). One step per module; ``flows/training.py`` composes them::

    ts = build_training_set(keys, X, consensus, classes)
    trained = train(ts, TrainingConfig(), feature_schema=schema)                     # training.py
    comparison = compare_with_champion(ts, trained, load_champion(uri, name))         # comparison.py
    decision = comparison.decide(trained, tolerance=0.0, min_new_labels=50)           # promotion.py
    result = log_and_register(ts, trained, comparison, decision, tracking_uri=uri, ...)  # registry.py
    model = load_model(uri, name)                                                     # models:/<name>@champion
"""

from mlci.models.comparison import (
    ChampionComparison,
    ChampionSnapshot,
    compare_with_champion,
)
from mlci.models.dataset import TrainingSet, build_training_set
from mlci.models.estimators import CALIBRATIONS, ESTIMATORS, MODALITIES
from mlci.models.evaluation import (
    Evaluation,
    binary_metrics,
    cross_validate,
    plot_class_curves,
    plot_summary,
)
from mlci.models.exceptions import (
    FeatureSchemaMismatchError,
    ModelError,
    ModelNotFoundError,
    TooFewLabelsError,
    TrackingStoreMovedError,
    TrackingStoreNotFoundError,
    TrackingUnreachableError,
    TrainingDataError,
    UnsafeModelFormatError,
)
from mlci.models.multilabel import CLASS_STATUSES, SKOPS_TRUSTED_TYPES, MultiLabelModel
from mlci.models.promotion import (
    PromotionDecision,
    check_promotion_params,
    decide_promotion,
)
from mlci.models.registry import (
    CHALLENGER,
    CHAMPION,
    ModelVersionInfo,
    TrainingResult,
    check_run_params,
    find_reusable_run,
    list_versions,
    load_champion,
    load_model,
    log_and_register,
    resolve_version,
    run_fingerprint,
)
from mlci.models.schema import FeatureSpec, feature_spec_from
from mlci.models.training import TrainedModel, TrainingConfig, train

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
    "TrainingConfig",
    "TrainedModel",
    "train",
    "ChampionSnapshot",
    "ChampionComparison",
    "compare_with_champion",
    "PromotionDecision",
    "check_promotion_params",
    "decide_promotion",
    "TrainingResult",
    "ModelVersionInfo",
    "check_run_params",
    "run_fingerprint",
    "find_reusable_run",
    "load_champion",
    "log_and_register",
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
    "TrackingStoreMovedError",
    "TrackingStoreNotFoundError",
    "TrackingUnreachableError",
]

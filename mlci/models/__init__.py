"""Per-concept classifiers: training sets, training, evaluation, champion comparison, promotion, registry.

Plain library code (no Prefect). One step per module; ``flows/training.py`` composes them::

    ts = build_training_set(keys, X, consensus, classes)
    trained = train(ts, TrainingConfig(), feature_schema=schema)                     # training.py
    comparison = compare_with_champion(ts, trained, load_champion(uri, name))         # comparison.py
    decision = comparison.decide(trained, tolerance=0.0, min_new_labels=50)           # promotion.py
    result = log_and_register(ts, trained, comparison, decision, tracking_uri=uri, ...)  # registry.py
    model = load_model(uri, name)                                                     # models:/<name>@champion
"""

from __future__ import annotations

from mlci._lazy import lazy_exports

# Imported on first use (PEP 562): `mlci models` and `mlci status` read the registry through the
# light modules without paying for scikit-learn and MLflow, which the training modules import.
_SOURCES = {
    "TrainingSet": "mlci.models.dataset",
    "build_training_set": "mlci.models.dataset",
    "ESTIMATORS": "mlci.models.estimators",
    "CALIBRATIONS": "mlci.models.estimators",
    "MODALITIES": "mlci.models.estimators",
    "MultiLabelModel": "mlci.models.multilabel",
    "CLASS_STATUSES": "mlci.models.multilabel",
    "SKOPS_TRUSTED_TYPES": "mlci.models.multilabel",
    "Evaluation": "mlci.models.evaluation",
    "binary_metrics": "mlci.models.evaluation",
    "cross_validate": "mlci.models.evaluation",
    "plot_class_curves": "mlci.models.evaluation",
    "plot_summary": "mlci.models.evaluation",
    "TrainingConfig": "mlci.models.training",
    "TrainedModel": "mlci.models.training",
    "train": "mlci.models.training",
    "ChampionSnapshot": "mlci.models.comparison",
    "ChampionComparison": "mlci.models.comparison",
    "compare_with_champion": "mlci.models.comparison",
    "PromotionDecision": "mlci.models.promotion",
    "check_promotion_params": "mlci.models.promotion",
    "decide_promotion": "mlci.models.promotion",
    "TrainingResult": "mlci.models.registry",
    "ModelVersionInfo": "mlci.models.versions",
    "check_run_params": "mlci.models.registry",
    "run_fingerprint": "mlci.models.registry",
    "find_reusable_run": "mlci.models.registry",
    "load_champion": "mlci.models.registry",
    "log_and_register": "mlci.models.registry",
    "load_model": "mlci.models.registry",
    "resolve_version": "mlci.models.registry",
    "list_versions": "mlci.models.versions",
    "CHAMPION": "mlci.models.versions",
    "CHALLENGER": "mlci.models.versions",
    "FeatureSpec": "mlci.models.schema",
    "feature_spec_from": "mlci.models.schema",
    "ModelError": "mlci.models.exceptions",
    "FeatureSchemaMismatchError": "mlci.models.exceptions",
    "ModelNotFoundError": "mlci.models.exceptions",
    "TooFewLabelsError": "mlci.models.exceptions",
    "TrainingDataError": "mlci.models.exceptions",
    "UnsafeModelFormatError": "mlci.models.exceptions",
    "TrackingStoreMovedError": "mlci.models.exceptions",
    "TrackingStoreNotFoundError": "mlci.models.exceptions",
    "TrackingUnreachableError": "mlci.models.exceptions",
}

__all__ = list(_SOURCES)

__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)

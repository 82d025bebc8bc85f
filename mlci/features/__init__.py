"""Audio and video features of clips: extraction, cache in the store, loading for training.

Typical use::

    from mlci.features import compute_features, load_features

    report = compute_features(store)                    # new and changed clips only
    keys, X, schema = load_features(store, modality="combined")

See ``docs/features.md``.
"""

from mlci.features.base import ClipFeatures, FeatureExtractor, WindowFeatures, featurize, l2_normalize, pool_windows
from mlci.features.basic import BasicExtractor
from mlci.features.exceptions import (
    ERROR_KINDS,
    DecodeError,
    EmptyFileError,
    FeatureError,
    FeaturesNotComputedError,
    MediaError,
    MissingFeaturesError,
    NoContentError,
    NoStreamsError,
    NotMediaError,
    TruncatedMediaError,
    UnknownExtractorError,
)
from mlci.features.registry import available_extractors, get_extractor, register_extractor, resolve_extractor
from mlci.features.schema import MODALITIES, FeatureSchema
from mlci.features.cache import list_quarantined, load_features, load_window_features, window_matrix
from mlci.features.run import (
    ChunkResult,
    FeatureRunPlan,
    FeatureRunReport,
    commit_feature_run,
    compute_feature_chunk,
    compute_features,
    plan_feature_run,
)

DEFAULT_EXTRACTOR = "basic"

__all__ = [
    "compute_features",
    "load_features",
    "load_window_features",
    "window_matrix",
    "list_quarantined",
    "plan_feature_run",
    "compute_feature_chunk",
    "commit_feature_run",
    "FeatureRunPlan",
    "ChunkResult",
    "FeatureRunReport",
    "DEFAULT_EXTRACTOR",
    "MODALITIES",
    "FeatureSchema",
    "FeatureExtractor",
    "BasicExtractor",
    "WindowFeatures",
    "ClipFeatures",
    "featurize",
    "pool_windows",
    "l2_normalize",
    "register_extractor",
    "get_extractor",
    "available_extractors",
    "resolve_extractor",
    "ERROR_KINDS",
    "FeatureError",
    "MediaError",
    "EmptyFileError",
    "NotMediaError",
    "TruncatedMediaError",
    "NoStreamsError",
    "NoContentError",
    "DecodeError",
    "UnknownExtractorError",
    "FeaturesNotComputedError",
    "MissingFeaturesError",
]

"""Audio and video features of clips: extraction, cache in the store, loading for training.

Typical use::

    from mlci.features import compute_features, load_features

    report = compute_features(store)                    # new and changed clips only
    keys, X, schema = load_features(store, modality="combined")

See ``docs/features.md``.
"""

from mlci.features.base import (
    ClipFeatures,
    FeatureExtractor,
    StreamEnd,
    WindowBlock,
    WindowFeatures,
    featurize,
    l2_normalize,
    pool_windows,
)
from mlci.features.basic import BasicExtractor
from mlci.features.cache import (
    list_quarantined,
    load_features,
    load_window_features,
    window_matrix,
)
from mlci.features.exceptions import (
    ERROR_KINDS,
    DecodeError,
    EmptyFileError,
    FeatureError,
    FeaturesNotComputedError,
    MediaError,
    MissingFeaturesError,
    ModelError,
    NoContentError,
    NoEmbeddingError,
    NoStreamsError,
    NotMediaError,
    TruncatedMediaError,
    UnknownExtractorError,
)
from mlci.features.imported import (
    EmbeddingsChangedError,
    EmbeddingsError,
    ImportedExtractor,
    inspect_embeddings,
    read_embeddings,
)
from mlci.features.onnx import OnnxExtractor, OnnxModelError
from mlci.features.registry import (
    available_extractors,
    get_extractor,
    register_extractor,
    resolve_extractor,
)
from mlci.features.run import (
    ChunkResult,
    FeatureRunPlan,
    FeatureRunReport,
    commit_feature_run,
    compute_feature_chunk,
    compute_features,
    plan_feature_run,
)
from mlci.features.schema import MODALITIES, FeatureSchema

__all__ = [
    "ERROR_KINDS",
    "MODALITIES",
    "BasicExtractor",
    "EmbeddingsChangedError",
    "EmbeddingsError",
    "ImportedExtractor",
    "ChunkResult",
    "ClipFeatures",
    "DecodeError",
    "EmptyFileError",
    "FeatureError",
    "FeatureExtractor",
    "FeatureRunPlan",
    "FeatureRunReport",
    "FeatureSchema",
    "FeaturesNotComputedError",
    "MediaError",
    "MissingFeaturesError",
    "ModelError",
    "NoContentError",
    "NoEmbeddingError",
    "NoStreamsError",
    "NotMediaError",
    "OnnxExtractor",
    "OnnxModelError",
    "StreamEnd",
    "TruncatedMediaError",
    "UnknownExtractorError",
    "WindowBlock",
    "WindowFeatures",
    "available_extractors",
    "commit_feature_run",
    "compute_feature_chunk",
    "compute_features",
    "featurize",
    "get_extractor",
    "inspect_embeddings",
    "l2_normalize",
    "list_quarantined",
    "load_features",
    "load_window_features",
    "plan_feature_run",
    "read_embeddings",
    "pool_windows",
    "register_extractor",
    "resolve_extractor",
    "window_matrix",
]

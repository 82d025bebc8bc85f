"""Errors of feature extraction, and the vocabulary of quarantine reasons.

A :class:`MediaError` is a problem with one clip: the clip goes to the quarantine table under its
``kind`` and the run goes on. Every other exception (storage, configuration) stops the step so that
it can be retried.
"""

from __future__ import annotations

__all__ = [
    "ERROR_KINDS",
    "EXTRACTOR_ERROR",
    "DecodeError",
    "EmptyFileError",
    "FeatureError",
    "FeaturesNotComputedError",
    "MediaError",
    "MissingFeaturesError",
    "ModelError",
    "NoContentError",
    "NoEmbeddingError",
    "NoStreamsError",
    "NotMediaError",
    "TruncatedMediaError",
    "UnknownExtractorError",
]

#: Kind recorded when an extractor raises something that is not a :class:`MediaError` (a bug or
#: an unexpected stream); such clips are retried when the extractor's version changes.
EXTRACTOR_ERROR = "extractor_error"


class FeatureError(Exception):
    """Base class of feature errors."""


class MediaError(FeatureError):
    """A clip cannot be turned into features; ``kind`` names why (a quarantine ``error_kind``)."""

    kind = "decode_error"


class EmptyFileError(MediaError):
    """The file has zero bytes."""

    kind = "empty_file"


class NotMediaError(MediaError):
    """The file is not in any container format the decoder knows (e.g. text named ``.mp4``)."""

    kind = "not_media"


class TruncatedMediaError(MediaError):
    """The file starts like media but ends early (index missing, or less content than declared)."""

    kind = "truncated"


class NoStreamsError(MediaError):
    """The container holds neither a video nor an audio stream."""

    kind = "no_streams"


class NoContentError(MediaError):
    """The streams exist but not a single frame or sample could be decoded."""

    kind = "no_content"


class DecodeError(MediaError):
    """The decoder failed in the middle of the file."""

    kind = "decode_error"


class ModelError(MediaError):
    """A learned extractor's model failed on this clip (a runtime error, or non-finite outputs)."""

    kind = "model_error"


class NoEmbeddingError(MediaError):
    """The imported embeddings have no vector for this clip."""

    kind = "no_embedding"


ERROR_KINDS = tuple(
    cls.kind
    for cls in (EmptyFileError, NotMediaError, TruncatedMediaError, NoStreamsError, NoContentError, DecodeError, ModelError,
                NoEmbeddingError)
) + (EXTRACTOR_ERROR,)


class UnknownExtractorError(FeatureError, KeyError):
    """No extractor is registered under the name."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class FeaturesNotComputedError(FeatureError, LookupError):
    """The store has no feature run for the extractor (run ``mlci features`` first)."""


class MissingFeaturesError(FeatureError, KeyError):
    """Some requested clips have no features (not in the store, or quarantined)."""

    def __init__(self, missing: list[str], n_requested: int):
        self.missing = missing
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} of {n_requested} requested clips have no features: {shown}")

    def __str__(self) -> str:
        return str(self.args[0])

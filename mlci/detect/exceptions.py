"""Errors of the detection package."""

from __future__ import annotations

__all__ = ["DetectError", "DetectionSchemaError", "NoVideosError"]


class DetectError(Exception):
    """Base class of the errors :mod:`mlci.detect` raises about its input."""


class DetectionSchemaError(DetectError, ValueError):
    """The model was trained on other features than the extractor detection would run."""


class NoVideosError(DetectError, LookupError):
    """Nothing to run detection on under the given key or prefix."""

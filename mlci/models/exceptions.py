"""Errors of the models package: one base class, messages that carry the numbers."""

from __future__ import annotations

__all__ = [
    "ModelError",
    "FeatureSchemaMismatchError",
    "TrainingDataError",
    "TooFewLabelsError",
    "ModelNotFoundError",
    "UnsafeModelFormatError",
    "TrackingStoreNotFoundError",
    "TrackingUnreachableError",
]


class ModelError(Exception):
    """Base class of every error raised by :mod:`mlci.models`."""


class FeatureSchemaMismatchError(ModelError, ValueError):
    """Features come from another extractor, extractor version or width than the model was fit on."""

    def __init__(self, expected: dict, got: dict):
        self.expected, self.got = dict(expected), dict(got)
        diffs = [f"{k}: model expects {expected.get(k)!r}, got {got.get(k)!r}" for k in expected if expected.get(k) != got.get(k)]
        super().__init__(
            "feature schema mismatch (" + "; ".join(diffs) + "). Recompute the features with the model's "
            "extractor, or train a model on the new features."
        )

    def __reduce__(self):  # picklable across processes (Prefect, Dask) despite the custom __init__
        return type(self), (self.expected, self.got)


class TrainingDataError(ModelError, ValueError):
    """Features and labels cannot be turned into a training set (duplicates, bad values, no overlap)."""


class TooFewLabelsError(ModelError, ValueError):
    """A binary problem has too few positives or negatives to fit (or calibrate) a classifier."""

    def __init__(self, status: str, n_positive: int, n_negative: int, needed: int):
        self.status, self.n_positive, self.n_negative, self.needed = status, n_positive, n_negative, needed
        super().__init__(f"{status}: {n_positive} positives and {n_negative} negatives, at least {needed} of each needed")

    def __reduce__(self):
        return type(self), (self.status, self.n_positive, self.n_negative, self.needed)


class ModelNotFoundError(ModelError, LookupError):
    """No registered model, version or alias under the requested name."""


class UnsafeModelFormatError(ModelError):
    """A registered model is not stored in the skops format (mlci never unpickles a model)."""


class TrackingStoreNotFoundError(ModelNotFoundError):
    """The MLflow tracking store does not exist (a SQLite file that is not there); nothing was created."""


class TrackingStoreMovedError(ModelError):
    """A SQLite MLflow store's recorded artifact location is not the ``mlartifacts/`` beside it: the
    folder was moved or copied (``mlci relocate`` points it at its own artifacts)."""


# Not a ModelError: an I/O failure that a task may retry (tasks retry everything but ModelError).
class TrackingUnreachableError(ConnectionError):
    """The MLflow tracking server did not answer within the configured timeout and retries."""

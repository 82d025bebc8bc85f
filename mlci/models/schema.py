"""What a model records about the features it was fit on: extractor name and version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["FeatureSpec", "FeatureSchemaLike", "feature_spec_from"]


@runtime_checkable
class FeatureSchemaLike(Protocol):
    """Any object naming the extractor and its version (e.g. the features package's schema)."""

    extractor: str
    version: Any


@dataclass(frozen=True)
class FeatureSpec:
    """Extractor name and version of a feature matrix.

    Parameters
    ----------
    extractor : str
        Name of the feature extractor.
    version : str
        Version of the extractor; stored as a string so ``2`` and ``"2"`` compare equal.
    """

    extractor: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"extractor": self.extractor, "version": self.version}


def feature_spec_from(schema: Any) -> FeatureSpec:
    """A :class:`FeatureSpec` from any object with ``extractor`` and ``version`` attributes, or a dict.

    Raises
    ------
    TypeError
        ``schema`` has no ``extractor``/``version``.
    """
    if isinstance(schema, FeatureSpec):
        return schema
    if isinstance(schema, dict):
        extractor, version = schema.get("extractor"), schema.get("version")
    else:
        extractor, version = getattr(schema, "extractor", None), getattr(schema, "version", None)
    if not extractor or version is None or version == "":
        raise TypeError(
            f"feature schema must have a non-empty 'extractor' and a 'version', got {schema!r}"
        )
    return FeatureSpec(str(extractor), str(version))

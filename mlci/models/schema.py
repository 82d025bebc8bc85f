"""What a model records about the features it was fit on: extractor name and version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["FeatureSpec", "FeatureSchemaLike", "feature_spec_from"]


@runtime_checkable
class FeatureSchemaLike(Protocol):
    """Any object naming the extractor and its version (e.g. the features package's schema).

    An optional ``params_hash`` attribute is recorded and compared too.
    """

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
    params_hash : str, default=None
        Digest of the extractor's parameters, when the features carry one (the features package's
        ``FeatureSchema.params_hash``): same extractor and version with other parameters are other
        features.
    """

    extractor: str
    version: str
    params_hash: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"extractor": self.extractor, "version": self.version}
        if self.params_hash is not None:
            out["params_hash"] = self.params_hash
        return out


def feature_spec_from(schema: Any) -> FeatureSpec:
    """A :class:`FeatureSpec` from any object with ``extractor`` and ``version`` attributes, or a dict.

    Raises
    ------
    TypeError
        ``schema`` has no ``extractor``/``version``.
    """
    if isinstance(schema, FeatureSpec):
        return schema
    get = schema.get if isinstance(schema, dict) else lambda name: getattr(schema, name, None)
    extractor, version, phash = get("extractor"), get("version"), get("params_hash")
    if not extractor or version is None or version == "":
        raise TypeError(
            f"feature schema must have a non-empty 'extractor' and a 'version', got {schema!r}"
        )
    return FeatureSpec(str(extractor), str(version), None if phash is None else str(phash))

"""A small registry of extractors, by name.

Built-in extractors register on import of :mod:`mlci.features`. An extractor living elsewhere is
either registered by importing its module, or named by import path (``"package.module:Class"``),
which also works on Dask workers that never imported it.
"""

from __future__ import annotations

import importlib

from mlci.features.base import FeatureExtractor
from mlci.features.exceptions import UnknownExtractorError

__all__ = ["available_extractors", "get_extractor", "register_extractor", "resolve_extractor"]

_REGISTRY: dict[str, type[FeatureExtractor]] = {}


def register_extractor(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
    """Class decorator: make ``cls`` available to :func:`get_extractor` under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise TypeError(f"register_extractor expects a FeatureExtractor subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or "-v" in name or "/" in name or ":" in name:
        raise ValueError(f"extractor name must be a non-empty string without '/', ':' or '-v', got {name!r}")
    if not isinstance(getattr(cls, "version", None), int) or cls.version < 1:
        raise ValueError(f"extractor {name!r} version must be an int >= 1, got {getattr(cls, 'version', None)!r}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"extractor name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def available_extractors() -> list[str]:
    """Names of the registered extractors."""
    return sorted(_REGISTRY)


def get_extractor(name: str, **params) -> FeatureExtractor:
    """An extractor instance with validated parameters.

    Parameters
    ----------
    name : str
        A registered name (see :func:`available_extractors`) or ``"package.module:Class"``.
    **params
        The extractor's parameters; unspecified ones take their defaults.
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownExtractorError(f"cannot import extractor {name!r}: {exc}") from exc
        register_extractor(cls)
    else:
        try:
            cls = _REGISTRY[name]
        except KeyError:
            raise UnknownExtractorError(
                f"unknown extractor {name!r}; registered: {available_extractors()}"
            ) from None
    try:
        extractor = cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for extractor {name!r}: {exc}") from exc
    extractor.validate_params()
    return extractor


def resolve_extractor(extractor: str | FeatureExtractor, params: dict | None = None, *, store=None) -> FeatureExtractor:
    """``extractor`` itself if it is an instance (then ``params`` must be empty), else ``get_extractor``.

    With ``store``, the result is bound to it (:meth:`FeatureExtractor.bind`): an extractor that
    reads a model or vectors from the store does so here, before any clip is processed.
    """
    if isinstance(extractor, FeatureExtractor):
        if params:
            raise ValueError(f"params are given twice: an extractor instance {extractor!r} and params={params!r}")
        extractor.validate_params()
        ex = extractor
    else:
        ex = get_extractor(extractor, **(params or {}))
    return ex if store is None else ex.bind(store)

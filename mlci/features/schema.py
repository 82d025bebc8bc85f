"""The feature schema: which extractor made a vector, with which parameters, and what each entry is."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODALITIES", "POOLINGS", "FeatureSchema", "check_modality", "params_hash"]

#: The clip-level vectors every extractor provides.
MODALITIES = ("audio", "video", "combined")
#: How window entries become clip entries: mean and standard deviation over windows (the built-in
#: extractor), or the mean alone (imported embeddings, averaged over time as the seed notebook did).
POOLINGS = ("mean_std", "mean")


def params_hash(params: dict[str, Any]) -> str:
    """Short stable digest of a JSON-able parameter dict (key order does not matter)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


@dataclass(frozen=True)
class FeatureSchema:
    """Names and provenance of the feature vectors of one extractor configuration.

    Parameters
    ----------
    extractor : str
        Registered extractor name.
    version : int
        Extractor version; bump it whenever the same file would give other numbers.
    params : dict
        The extractor's parameters (JSON-able), part of the cache key.
    audio_window, video_window : tuple of str
        Names of the entries of one window's audio and video vectors, in order.
    pooling : {"mean_std", "mean"}, default="mean_std"
        How clip vectors pool the windows (see :data:`POOLINGS`).

    Clip-level vectors are the mean then the standard deviation over windows of each window entry
    (``mean(<name>)``, ``std(<name>)``; the mean alone with ``pooling="mean"``); ``combined`` is
    ``audio.<...>`` then ``video.<...>``.
    """

    extractor: str
    version: int
    params: dict[str, Any] = field(hash=False)
    audio_window: tuple[str, ...]
    video_window: tuple[str, ...]
    pooling: str = "mean_std"

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def params_hash(self) -> str:
        return params_hash(self.params)

    @property
    def cache_id(self) -> str:
        """``<extractor>-v<version>-<params hash>``: the folder name of this configuration's features."""
        return f"{self.extractor}-v{self.version}-{self.params_hash}"

    def _pooled(self, window: tuple[str, ...]) -> tuple[str, ...]:
        means = tuple(f"mean({n})" for n in window)
        return means if self.pooling == "mean" else means + tuple(f"std({n})" for n in window)

    @property
    def audio(self) -> tuple[str, ...]:
        return self._pooled(self.audio_window)

    @property
    def video(self) -> tuple[str, ...]:
        return self._pooled(self.video_window)

    @property
    def combined(self) -> tuple[str, ...]:
        return tuple(f"audio.{n}" for n in self.audio) + tuple(f"video.{n}" for n in self.video)

    def names(self, modality: str) -> tuple[str, ...]:
        """Feature names of a clip-level modality (``audio``, ``video`` or ``combined``), in order."""
        return getattr(self, check_modality(modality))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "extractor": self.extractor,
            "version": self.version,
            "params": self.params,
            "params_hash": self.params_hash,
            "audio_window": list(self.audio_window),
            "video_window": list(self.video_window),
        }
        if self.pooling != "mean_std":  # written only when not the default: older schema.json files stay equal
            out["pooling"] = self.pooling
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(
            extractor=data["extractor"],
            version=int(data["version"]),
            params=dict(data["params"]),
            audio_window=tuple(data["audio_window"]),
            video_window=tuple(data["video_window"]),
            pooling=data.get("pooling", "mean_std"),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return (
            f"FeatureSchema({self.cache_id}, audio={len(self.audio)}, video={len(self.video)}, "
            f"params={self.params})"
        )

"""Label Studio: the labeling interface mlci's batches are answered in (and, later, the REST round-trip)."""

from mlci.labelstudio.interface import (
    CHOICES_NAME,
    VIDEO_NAME,
    VIDEO_VALUE,
    compare_labeling_config,
    labeling_config,
)

__all__ = [
    "CHOICES_NAME",
    "VIDEO_NAME",
    "VIDEO_VALUE",
    "labeling_config",
    "compare_labeling_config",
]

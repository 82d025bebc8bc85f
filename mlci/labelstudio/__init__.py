"""Label Studio: the REST client that turns published batches into tasks and brings annotations back.

See ``docs/configuration.md`` (``MLCI_LABEL_STUDIO_URL``, ``MLCI_LABEL_STUDIO_TOKEN``) for the two
kinds of token it accepts.
"""

from mlci.labelstudio.client import LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN, LabelStudioClient, token_kind
from mlci.labelstudio.exceptions import (
    AmbiguousProjectError,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioRequestError,
    LabelStudioUnreachableError,
    NotLabelStudioError,
    ProjectNotFoundError,
)

__all__ = [
    "LabelStudioClient",
    "token_kind",
    "PERSONAL_ACCESS_TOKEN",
    "LEGACY_TOKEN",
    "LabelStudioError",
    "LabelStudioUnreachableError",
    "NotLabelStudioError",
    "LabelStudioAuthError",
    "ProjectNotFoundError",
    "AmbiguousProjectError",
    "LabelStudioRequestError",
]

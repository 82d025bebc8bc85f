"""Label Studio connector: the catalog's project, batches in as tasks, answers back as label files.

Plain Python on ``requests`` (no Prefect); :mod:`tasks.labelstudio`, :mod:`flows.labelstudio` and
``mlci labelstudio`` wrap it. See ``docs/labelstudio.md``.
"""

from mlci.labelstudio.client import (
    LEGACY_TOKEN,
    PERSONAL_ACCESS_TOKEN,
    LabelStudioClient,
    token_kind,
)
from mlci.labelstudio.exceptions import (
    AmbiguousProjectError,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioRequestError,
    LabelStudioUnreachableError,
    NotLabelStudioError,
    ProjectNotFoundError,
)
from mlci.labelstudio.importing import (
    ImportRecord,
    ImportResult,
    import_batch,
    load_import_record,
    rounds_to_import,
)
from mlci.labelstudio.interface import (
    CHOICES_NAME,
    VIDEO_NAME,
    VIDEO_VALUE,
    compare_labeling_config,
    labeling_config,
)
from mlci.labelstudio.project import ProjectMismatchError, ensure_project
from mlci.labelstudio.pull import (
    PullResult,
    PullState,
    load_pull_state,
    pull_annotations,
)
from mlci.labelstudio.status import STATUS_COLUMNS, batch_status

__all__ = [
    "AmbiguousProjectError",
    "CHOICES_NAME",
    "LEGACY_TOKEN",
    "LabelStudioRequestError",
    "NotLabelStudioError",
    "PERSONAL_ACCESS_TOKEN",
    "token_kind",
    "VIDEO_NAME",
    "VIDEO_VALUE",
    "ImportRecord",
    "ImportResult",
    "LabelStudioAuthError",
    "LabelStudioClient",
    "LabelStudioError",
    "LabelStudioUnreachableError",
    "ProjectMismatchError",
    "ProjectNotFoundError",
    "PullResult",
    "PullState",
    "STATUS_COLUMNS",
    "batch_status",
    "compare_labeling_config",
    "ensure_project",
    "import_batch",
    "labeling_config",
    "load_import_record",
    "load_pull_state",
    "pull_annotations",
    "rounds_to_import",
]

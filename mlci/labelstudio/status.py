"""Per batch, what Label Studio holds of it: tasks imported, tasks annotated, annotations pulled.

Read from the store alone (the publish records and the last pull's state), so listing batches
needs no Label Studio server; the numbers are as of the last pull.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from mlci.labelstudio.importing import load_import_record
from mlci.labelstudio.pull import PullState, load_pull_state
from mlci.storage import Store

__all__ = ["STATUS_COLUMNS", "batch_status"]

STATUS_COLUMNS = ["round_id", "ls_project", "ls_tasks", "ls_annotated", "ls_pulled"]


def batch_status(store: Store, round_ids: Iterable[str]) -> pd.DataFrame:
    """One row per round: its project (0 when not in Label Studio), tasks, tasks annotated, annotations pulled."""
    states: dict[int, PullState] = {}
    rows = []
    for round_id in round_ids:
        record = load_import_record(store, round_id)
        if record is None:
            rows.append((round_id, 0, 0, 0, 0))
            continue
        if record.project_id not in states:
            states[record.project_id] = load_pull_state(store, record.project_id)
        annotated, pulled = states[record.project_id].by_round().get(round_id, (0, 0))
        rows.append((round_id, record.project_id, len(record.task_ids), annotated, pulled))
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)

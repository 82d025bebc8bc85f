"""Publish a batch into a Label Studio project once, and remember where its tasks went.

The batch's own files stay as the round wrote them; beside them ``labelstudio.json`` records the
project and the task id of every clip (:func:`mlci.layout.labelstudio_record_key`). It is written
once, after every task is in Label Studio. Each imported task carries ``data.mlci_round``, so a
publish that died half way finds the tasks it already imported and imports only the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlci.labelstudio.exceptions import LabelStudioError
from mlci.layout import batch_key, labelstudio_record_key
from mlci.storage import ObjectNotFoundError, Store

__all__ = ["ImportRecord", "ImportResult", "load_import_record", "import_batch", "rounds_to_import"]

#: Tasks per import request: Label Studio imports synchronously; keep each request short.
IMPORT_CHUNK = 200


@dataclass(frozen=True)
class ImportRecord:
    """Where a batch's tasks are in Label Studio: ``task_ids`` maps each clip key to its task id."""

    round_id: str
    project_id: int
    task_ids: dict[str, int]
    published_at: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ImportRecord:
        doc = json.loads(data)
        return cls(str(doc["round_id"]), int(doc["project_id"]),
                   {str(k): int(v) for k, v in doc["task_ids"].items()}, str(doc["published_at"]))


@dataclass(frozen=True)
class ImportResult:
    """What one publish did: ``n_imported`` new tasks, ``n_found`` already in the project."""

    round_id: str
    project_id: int
    n_imported: int
    n_found: int
    record_key: str

    @property
    def changed(self) -> bool:
        return self.n_imported > 0

    def summary(self) -> str:
        if not self.changed:
            return f"batch {self.round_id}: already in Label Studio project {self.project_id} ({self.n_found} tasks)"
        done = f"{self.n_imported} tasks imported" + (f", {self.n_found} were already there" if self.n_found else "")
        return f"batch {self.round_id}: {done} into Label Studio project {self.project_id}"


def load_import_record(store: Store, round_id: str) -> ImportRecord | None:
    """The batch's Label Studio record, or None when it has not been published there."""
    try:
        return ImportRecord.from_json(store.read_bytes(labelstudio_record_key(round_id)))
    except ObjectNotFoundError:
        return None


def rounds_to_import(store: Store, *, open_for: timedelta, now: datetime | None = None) -> list[str]:
    """Batches still out (published less than ``open_for`` ago) that are not in Label Studio yet, oldest first.

    A batch published while Label Studio was unreachable reaches it with the next run, as long as
    its clips are still out for labeling.
    """
    from mlci.batches.publish import published_rounds

    since = (now or datetime.now(UTC)) - open_for
    return [rid for rid, created in published_rounds(store) if created >= since
            and load_import_record(store, rid) is None]


def import_batch(
    store: Store, client: Any, project_id: int, round_id: str, *, now: datetime | None = None
) -> ImportResult:
    """Import the tasks of ``batches/<round_id>/tasks.json`` into project ``project_id`` once.

    Parameters
    ----------
    store : Store
    client : LabelStudioClient
    project_id : int
    round_id : str
        A published batch.
    now : datetime, default=None
        Stamps the record (default: the current UTC time).

    Returns
    -------
    ImportResult

    Raises
    ------
    LabelStudioError
        The batch was published to another project (one batch, one project), or Label Studio
        refused the tasks.
    ObjectNotFoundError
        No batch ``round_id`` in the store.
    """
    record_key = labelstudio_record_key(round_id)
    record = load_import_record(store, round_id)
    if record is not None:
        if record.project_id != int(project_id):
            raise LabelStudioError(
                f"batch {round_id} is already in Label Studio project {record.project_id}, not {project_id}: "
                f"set MLCI_LABEL_STUDIO_PROJECT back, or publish new batches only"
            )
        return ImportResult(round_id, record.project_id, 0, len(record.task_ids), record_key)

    tasks = json.loads(store.read_text(batch_key(round_id, "tasks.json")))
    # A publish that died half way imported some tasks: find them by their round, import the rest.
    found = {
        str(t["data"]["key"]): int(t["id"])
        for t in client.iter_tasks(project_id)
        if t.get("data", {}).get("mlci_round") == round_id and "key" in t.get("data", {})
    }
    missing = [_with_round(t, round_id) for t in tasks if str(t["data"]["key"]) not in found]
    imported: dict[str, int] = {}
    for start in range(0, len(missing), IMPORT_CHUNK):
        chunk = missing[start : start + IMPORT_CHUNK]
        ids = client.import_tasks(project_id, chunk)
        if len(ids) != len(chunk):
            raise LabelStudioError(f"Label Studio created {len(ids)} tasks for {len(chunk)} sent; publish again")
        imported.update(zip((str(t["data"]["key"]) for t in chunk), map(int, ids)))
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    record = ImportRecord(round_id, int(project_id), {**found, **imported}, stamp)
    # Written once, after every task is in: its absence is what makes the next run complete the import.
    store.write_if_absent(record_key, record.to_json())
    return ImportResult(round_id, int(project_id), len(imported), len(found), record_key)


def _with_round(task: dict[str, Any], round_id: str) -> dict[str, Any]:
    return {**task, "data": {**task["data"], "mlci_round": round_id}}

"""Pull new and changed annotations from a Label Studio project into the store's ``labels/``.

Each pull writes one file in Label Studio's JSON export format under
``labels/labelstudio/project-<id>/`` (:func:`mlci.layout.labelstudio_pull_key`), holding only the
annotations that are new or changed since the last pull, so the normal label ingestion reads it
like any export. What was pulled (annotation id -> its ``updated_at``) is kept in
``connectors/labelstudio/project-<id>.json``; it is rewritten after the file is in place, so a pull
that died between the two writes pulls the same annotations again into the same file (named by its
content): nothing twice.

What is not a label stays out: cancelled (skipped) annotations, drafts (Label Studio keeps them
apart from annotations), and annotations without a choice. An annotator is their Label Studio user
id; e-mail addresses and names are never written. An annotator who changes an answer appears again
with the new answer and its later ``updated_at``; ingestion keeps each annotator's latest answer.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mlci.layout import labelstudio_pull_key, labelstudio_state_key
from mlci.storage import ObjectNotFoundError, Store

__all__ = ["PullResult", "PullState", "load_pull_state", "pull_annotations"]


@dataclass
class PullState:
    """What the connector has pulled from one project.

    ``annotations`` maps an annotation id to the ``updated_at`` it was pulled at; ``tasks`` maps the
    id of each answered task to ``[round_id, answers]`` for the batch listing.
    """

    project_id: int
    annotations: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, list] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {"project_id": self.project_id, "annotations": self.annotations, "tasks": self.tasks}
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> PullState:
        doc = json.loads(data)
        return cls(int(doc["project_id"]), dict(doc.get("annotations", {})), dict(doc.get("tasks", {})))

    def by_round(self) -> dict[str, tuple[int, int]]:
        """``round_id -> (tasks annotated, annotations pulled)``."""
        out: dict[str, list[int]] = {}
        for round_id, n in self.tasks.values():
            if round_id:
                counts = out.setdefault(round_id, [0, 0])
                counts[0] += n > 0
                counts[1] += n
        return {r: (a, n) for r, (a, n) in out.items()}


@dataclass(frozen=True)
class PullResult:
    """What one pull found: new or changed annotations written to ``label_key`` (None: nothing new)."""

    project_id: int
    n_tasks: int
    n_new: int
    n_changed: int
    n_skipped: Counter
    label_key: str | None

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.n_skipped.items()))
        head = (f"Label Studio project {self.project_id}: {self.n_new} new and {self.n_changed} changed annotations"
                f" in {self.n_tasks} tasks")
        where = f" -> {self.label_key}" if self.label_key else " (nothing to pull)"
        return head + where + (f"; not labels: {skipped}" if skipped else "")


def load_pull_state(store: Store, project_id: int) -> PullState:
    """The project's pull state (empty before the first pull)."""
    try:
        return PullState.from_json(store.read_bytes(labelstudio_state_key(project_id)))
    except ObjectNotFoundError:
        return PullState(int(project_id))


def pull_annotations(store: Store, client: Any, project_id: int) -> PullResult:
    """Write the project's new and changed annotations as one label file; see the module docstring.

    Parameters
    ----------
    store : Store
    client : LabelStudioClient
    project_id : int

    Returns
    -------
    PullResult
    """
    state = load_pull_state(store, project_id)
    pulled = dict(state.annotations)
    tasks_out: list[dict[str, Any]] = []
    task_counts: dict[str, list] = {}
    n_tasks = n_new = n_changed = 0
    skipped: Counter = Counter()
    for task in client.iter_tasks(project_id):
        n_tasks += 1
        fresh = []
        n_labels = 0
        for ann in task.get("annotations") or []:
            why = _not_a_label(ann)
            if why:
                skipped[why] += 1
                continue
            n_labels += 1
            ann_id, stamp = str(ann["id"]), str(ann.get("updated_at") or ann.get("created_at") or "")
            if pulled.get(ann_id) == stamp:
                continue
            n_changed += ann_id in pulled
            n_new += ann_id not in pulled
            pulled[ann_id] = stamp
            fresh.append(_annotation(ann))
        if n_labels:  # tasks nobody answered yet are not recorded: new tasks alone change no state
            task_counts[str(task["id"])] = [task.get("data", {}).get("mlci_round"), n_labels]
        if fresh:
            tasks_out.append({"id": task["id"], "data": _clip_data(task.get("data", {})), "annotations": fresh})

    label_key = None
    if tasks_out:
        body = json.dumps(tasks_out, indent=1, sort_keys=True).encode()
        label_key = labelstudio_pull_key(project_id, hashlib.sha256(body).hexdigest()[:16])
        store.write_if_absent(label_key, body)
    new_state = PullState(int(project_id), pulled, task_counts)
    if new_state.to_json() != state.to_json():
        store.write_bytes(labelstudio_state_key(project_id), new_state.to_json())
    return PullResult(int(project_id), n_tasks, n_new, n_changed, skipped, label_key)


def _not_a_label(ann: dict[str, Any]) -> str | None:
    if ann.get("was_cancelled"):
        return "cancelled"
    if not any(isinstance(r, dict) and r.get("type") == "choices" for r in ann.get("result") or []):
        return "without a choice"
    return None


def _annotation(ann: dict[str, Any]) -> dict[str, Any]:
    # Only what ingestion reads: the user id, never the e-mail that some exports put in completed_by.
    who = ann.get("completed_by")
    return {
        "id": ann["id"],
        "completed_by": who.get("id") if isinstance(who, dict) else who,
        "result": ann.get("result") or [],
        "created_at": ann.get("created_at"),
        "updated_at": ann.get("updated_at") or ann.get("created_at"),
        "was_cancelled": False,
    }


def _clip_data(data: dict[str, Any]) -> dict[str, Any]:
    # The clip reference as the task carried it (ingestion resolves it) and mlci's own key and round.
    return {k: data[k] for k in ("video", "key", "mlci_round") if k in data}

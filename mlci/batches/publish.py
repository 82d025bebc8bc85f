"""Publish a planned batch to ``batches/<round_id>/`` exactly once, and read published batches back.

A batch is four objects: ``tasks.json`` (Label Studio import format), ``batch.csv`` (one row per
clip), ``labeling_config.xml`` (the Label Studio interface the tasks are answered in) and
``manifest.json``, written last with write-if-absent. A batch exists once its manifest does; a
crashed publish that left some files is completed by the next run with the same round id, and a
re-run after a complete publish writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlci.catalog import NONE_OF_THE_ABOVE
from mlci.labelstudio.interface import CHOICES_NAME, VIDEO_NAME
from mlci.layout import BATCHES_PREFIX, batch_key, batch_manifest_round_id, batch_prefix
from mlci.storage import Store

__all__ = [
    "score_column",
    "PublishResult",
    "prefill_confidence",
    "label_studio_tasks",
    "publish_batch",
    "open_batch_keys",
    "published_rounds",
    "BatchConflictError",
]


def score_column(concept: str) -> str:
    """Name of a concept's score column in ``batch.csv``: ``score_gift_giving``."""
    return "score_" + "_".join(concept.split())


class BatchConflictError(RuntimeError):
    """A batch file already exists with other content for the same round id."""


@dataclass(frozen=True)
class PublishResult:
    """Outcome of :func:`publish_batch`: ``published`` is False when the round was already out."""

    round_id: str
    location: str
    published: bool
    n_clips: int


def prefill_confidence(scores: Sequence[float], *, threshold: float = 0.5) -> float | None:
    """Probability that a pre-ticked answer is exactly right: the product over concepts of p or 1 - p.

    Each concept contributes the model's probability of the state it was pre-ticked in (``p`` when
    ``p >= threshold``, else ``1 - p``). The product, not the mean, because an annotator accepts or
    corrects the answer as a whole: it is the chance that no tick needs changing, when the scores
    are calibrated and independent. NaN scores (concepts the model could not train) are left out;
    None when no score is left.
    """
    probs = [float(p) for p in scores if p is not None and np.isfinite(p)]
    if not probs:
        return None
    return float(np.prod([p if p >= threshold else 1.0 - p for p in probs]))


def label_studio_tasks(
    batch: pd.DataFrame,
    classes: Sequence[str],
    *,
    model_version: str,
    uri_for: Any = None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Label Studio tasks for a batch, with the model's answer pre-ticked.

    Parameters
    ----------
    batch : DataFrame
        Follows :data:`mlci.tables.BATCH`.
    classes : sequence of str
        Concepts whose ``score_<concept>`` columns are read; choice values of the labeling config.
    model_version : str
        ``predictions[0].model_version``.
    uri_for : callable, default=None
        ``key -> store URI`` written as ``data.uri``; no ``uri`` when None.
    threshold : float, default=0.5
        A concept is pre-ticked when its score is at least this.

    Returns
    -------
    list of dict
        One task per row. ``data``: ``video`` (the clip URL), ``key``, ``rank`` (1 = most worth
        labeling), ``utility`` (the strategy's value; null when not finite), ``reason`` and
        ``uri``; Label Studio shows each as a sortable data manager column. ``predictions[0]``:
        ``model_version``, ``score`` (:func:`prefill_confidence` of the ticks; absent when no
        concept has a score) and ``result``, the ticked choices or "none of the above".
    """
    tasks = []
    for row in batch.itertuples(index=False):
        row = row._asdict()
        scores = {c: row.get(score_column(c)) for c in classes}
        choices = [c for c, s in scores.items() if s is not None and pd.notna(s) and s >= threshold]
        utility = float(row["utility"])
        data = {
            "video": row["url"],
            "key": row["key"],
            "rank": int(row["rank"]),
            # Label Studio rejects NaN in task data (it is not JSON).
            "utility": utility if np.isfinite(utility) else None,
            "reason": row["reason"],
        }
        if uri_for is not None:
            data["uri"] = uri_for(row["key"])
        prediction: dict[str, Any] = {"model_version": model_version}
        score = prefill_confidence(list(scores.values()), threshold=threshold)
        if score is not None:
            prediction["score"] = score
        prediction["result"] = [
            {
                "from_name": CHOICES_NAME,
                "to_name": VIDEO_NAME,
                "type": "choices",
                "value": {"choices": choices or [NONE_OF_THE_ABOVE]},
            }
        ]
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def _put_same(store: Store, key: str, data: bytes) -> None:
    """Write ``data`` unless present; present with other content is a conflict, never overwritten."""
    if not store.write_if_absent(key, data) and store.read_bytes(key) != data:
        raise BatchConflictError(f"{key} exists with other content; the batch is left as it is")


def publish_batch(
    store: Store,
    round_id: str,
    batch: pd.DataFrame,
    tasks: list[dict[str, Any]],
    manifest: dict[str, Any],
    *,
    labeling_config: str,
    now: datetime | None = None,
) -> PublishResult:
    """Write ``tasks.json``, ``batch.csv``, ``labeling_config.xml`` and last ``manifest.json`` under ``batches/<round_id>/``.

    ``labeling_config`` is the Label Studio interface of the tasks
    (:func:`mlci.labelstudio.labeling_config`). Returns ``published=False`` (and writes nothing)
    when the manifest already exists.
    """
    location = store.url_for(batch_prefix(round_id))
    if store.exists(batch_key(round_id, "manifest.json")):
        return PublishResult(round_id, location, False, len(batch))
    csv = io.StringIO()
    batch.to_csv(csv, index=False)
    # allow_nan=False: a NaN would make tasks.json invalid JSON, which Label Studio refuses to import.
    _put_same(store, batch_key(round_id, "tasks.json"), json.dumps(tasks, indent=1, allow_nan=False).encode())
    _put_same(store, batch_key(round_id, "batch.csv"), csv.getvalue().encode())
    _put_same(store, batch_key(round_id, "labeling_config.xml"), labeling_config.encode())
    record = {
        **manifest,
        "round_id": round_id,
        "created_at": (now or datetime.now(timezone.utc)).isoformat(),
        "n_clips": len(batch),
    }
    data = json.dumps(record, indent=1, default=str).encode()
    wrote = store.write_if_absent(batch_key(round_id, "manifest.json"), data)
    return PublishResult(round_id, location, wrote, len(batch))


def _read_manifests(store: Store) -> list[dict[str, Any]]:
    manifests = [json.loads(store.read_text(key)) for key in store.list(BATCHES_PREFIX)
                 if batch_manifest_round_id(key) is not None]
    return sorted(manifests, key=lambda m: m["created_at"])


def read_batches(store: Store) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Every published batch as ``(manifest, batch.csv)``, oldest first."""
    out = []
    for key in store.list(BATCHES_PREFIX):
        rid = batch_manifest_round_id(key)
        if rid is not None:
            manifest = json.loads(store.read_text(key))
            batch = pd.read_csv(io.BytesIO(store.read_bytes(batch_key(rid, "batch.csv"))))
            out.append((manifest, batch))
    return sorted(out, key=lambda mb: mb[0]["created_at"])


def published_rounds(store: Store) -> list[tuple[str, datetime]]:
    """``(round_id, published at)`` of every published batch, oldest first (manifests only)."""
    return [(m["round_id"], pd.Timestamp(m["created_at"]).to_pydatetime()) for m in _read_manifests(store)]


def open_batch_keys(
    store: Store,
    annotations: pd.DataFrame,
    *,
    expiry: timedelta,
    now: datetime | None = None,
    include_returned: bool = False,
) -> set[str]:
    """Clips of batches published within ``expiry`` whose labels have not come back yet.

    With ``include_returned``, every clip of those batches: a clip answered in a recent batch is
    not offered again for relabeling until the batch has expired.
    """
    now = now or datetime.now(timezone.utc)
    out: set[str] = set()
    for manifest, batch in read_batches(store):
        created = pd.Timestamp(manifest["created_at"])
        if created + expiry < pd.Timestamp(now):
            continue
        came_back = set()
        if not annotations.empty and not include_returned:
            came_back = set(annotations.loc[annotations["ingested_at"] > created, "asset"])
        out.update(k for k in batch["key"] if k not in came_back)
    return out

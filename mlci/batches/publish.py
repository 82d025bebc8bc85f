"""Publish a planned batch to ``batches/<round_id>/`` exactly once, and read published batches back.

A batch is three objects: ``tasks.json`` (Label Studio import format), ``batch.csv`` (one row per
clip) and ``manifest.json``, written last with write-if-absent. A batch exists once its manifest
does; a crashed publish that left the first two files is completed by the next run with the same
round id, and a re-run after a complete publish writes nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from mlci.batches.plan import score_column
from mlci.layout import BATCHES_PREFIX, batch_key, batch_manifest_round_id, batch_prefix
from mlci.storage import Store

__all__ = [
    "PublishResult",
    "label_studio_tasks",
    "publish_batch",
    "list_batches",
    "open_batch_keys",
    "published_rounds",
    "BatchConflictError",
]


class BatchConflictError(RuntimeError):
    """A batch file already exists with other content for the same round id."""


@dataclass(frozen=True)
class PublishResult:
    """Outcome of :func:`publish_batch`: ``published`` is False when the round was already out."""

    round_id: str
    location: str
    published: bool
    n_clips: int


def label_studio_tasks(
    batch: pd.DataFrame,
    classes: Sequence[str],
    *,
    model_version: str,
    uri_for: Any = None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Label Studio tasks for a batch, with the model's predictions pre-filled.

    Each task's ``data`` holds the clip URL (``video``), the store key and, when ``uri_for`` is
    given, the store URI. ``predictions[0].score`` is the clip's rank scaled to [0, 1): lower
    means more worth labeling, because Label Studio sorts by prediction score ascending.
    """
    n = max(len(batch), 1)
    tasks = []
    for row in batch.itertuples(index=False):
        row = row._asdict()
        scores = {c: row.get(score_column(c)) for c in classes}
        choices = [c for c, s in scores.items() if s is not None and pd.notna(s) and s >= threshold]
        data = {"video": row["url"], "key": row["key"], "rank": int(row["rank"]), "reason": row["reason"]}
        if uri_for is not None:
            data["uri"] = uri_for(row["key"])
        tasks.append(
            {
                "data": data,
                "predictions": [
                    {
                        "model_version": model_version,
                        "score": (int(row["rank"]) - 1) / n,
                        "result": [
                            {
                                "from_name": "concepts",
                                "to_name": "video",
                                "type": "choices",
                                "value": {"choices": choices or ["none of the above"]},
                            }
                        ],
                    }
                ],
            }
        )
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
    now: datetime | None = None,
) -> PublishResult:
    """Write ``tasks.json``, ``batch.csv`` and finally ``manifest.json`` under ``batches/<round_id>/``.

    Returns ``published=False`` (and writes nothing) when the manifest already exists.
    """
    location = store.url_for(batch_prefix(round_id))
    if store.exists(batch_key(round_id, "manifest.json")):
        return PublishResult(round_id, location, False, len(batch))
    csv = io.StringIO()
    batch.to_csv(csv, index=False)
    _put_same(store, batch_key(round_id, "tasks.json"), json.dumps(tasks, indent=1).encode())
    _put_same(store, batch_key(round_id, "batch.csv"), csv.getvalue().encode())
    record = {
        **manifest,
        "round_id": round_id,
        "created_at": (now or datetime.now(timezone.utc)).isoformat(),
        "n_clips": len(batch),
    }
    data = json.dumps(record, indent=1, default=str).encode()
    wrote = store.write_if_absent(batch_key(round_id, "manifest.json"), data)
    return PublishResult(round_id, location, wrote, len(batch))


def _read_batches(store: Store) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    out = []
    for key in store.list(BATCHES_PREFIX):
        rid = batch_manifest_round_id(key)
        if rid is not None:
            manifest = json.loads(store.read_text(key))
            batch = pd.read_csv(io.BytesIO(store.read_bytes(batch_key(rid, "batch.csv"))))
            out.append((manifest, batch))
    return sorted(out, key=lambda mb: mb[0]["created_at"])


def list_batches(store: Store, annotations: pd.DataFrame) -> pd.DataFrame:
    """Published batches, oldest first, with how many of their clips have come back labeled.

    A clip has come back when an answer for it was ingested after the batch was published
    (``annotations`` is the history table, with ``ingested_at``).
    """
    rows = []
    for manifest, batch in _read_batches(store):
        created = pd.Timestamp(manifest["created_at"])
        if annotations.empty:
            returned = 0
        else:
            later = annotations.loc[annotations["ingested_at"] > created, "asset"]
            returned = int(batch["key"].isin(set(later)).sum())
        rows.append(
            {
                "round_id": manifest["round_id"],
                "created_at": created,
                "model_version": manifest.get("model_version"),
                "strategy": manifest.get("strategy"),
                "n_clips": len(batch),
                "n_returned": returned,
            }
        )
    return pd.DataFrame(
        rows, columns=["round_id", "created_at", "model_version", "strategy", "n_clips", "n_returned"]
    )


def published_rounds(store: Store) -> list[tuple[str, datetime]]:
    """``(round_id, published at)`` of every published batch, oldest first."""
    return [(manifest["round_id"], pd.Timestamp(manifest["created_at"]).to_pydatetime())
            for manifest, _ in _read_batches(store)]


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
    for manifest, batch in _read_batches(store):
        created = pd.Timestamp(manifest["created_at"])
        if created + expiry < pd.Timestamp(now):
            continue
        came_back = set()
        if not annotations.empty and not include_returned:
            came_back = set(annotations.loc[annotations["ingested_at"] > created, "asset"])
        out.update(k for k in batch["key"] if k not in came_back)
    return out

"""A careful simulated annotator answering a published batch, for tests that live through nights."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from mlci.catalog import NONE_OF_THE_ABOVE
from mlci.demo import CONCEPTS, load_truth
from mlci.layout import batch_key


def answer_batch(store, round_id: str, name: str, seed: int, truth: pd.DataFrame | None = None) -> int:
    """Answer batch ``round_id`` from ``truth`` (default: the store's demo truth) with 95 % recall
    and 3 % false ticks, as the label file ``labels/answers/<name>.json``; clips the truth does not
    know are skipped. Returns the number of clips answered."""
    batch = pd.read_csv(io.BytesIO(store.read_bytes(batch_key(round_id, "batch.csv"))))
    truth = (load_truth(store) if truth is None else truth).set_index("key")
    rng = np.random.default_rng(seed)
    records = []
    for key in batch["key"]:
        if key not in truth.index:
            continue
        said = [c for c in CONCEPTS if (rng.random() < 0.95 if truth.loc[key, c] else rng.random() > 0.97)]
        records.append({
            "etag": f"{seed}{len(records)}", "labels": said or [NONE_OF_THE_ABOVE],
            "data": "https://clips.mlci.invalid/" + key[len("clips/"):], "annotator": "careful",
        })
    store.write_bytes(f"labels/answers/{name}.json", json.dumps(records).encode())
    return len(records)

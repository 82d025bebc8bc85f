"""Labeling batches: plan a round (which clips, why), publish it once to ``batches/<round_id>/``, and
trace what each batch bought (lineage and yield)."""

from __future__ import annotations

from mlci._lazy import lazy_exports

# Imported on first use: `mlci batches` lists batches without importing the planner's scikit-learn.
_SOURCES = {
    "RoundInputs": "mlci.batches.plan",
    "RoundPlan": "mlci.batches.plan",
    "plan_round": "mlci.batches.plan",
    "round_id": "mlci.batches.plan",
    "score_column": "mlci.batches.publish",
    "consensus_matrix": "mlci.batches.plan",
    "PublishResult": "mlci.batches.publish",
    "BatchConflictError": "mlci.batches.publish",
    "prefill_confidence": "mlci.batches.publish",
    "label_studio_tasks": "mlci.batches.publish",
    "publish_batch": "mlci.batches.publish",
    "open_batch_keys": "mlci.batches.publish",
    "published_rounds": "mlci.batches.publish",
    "RoundResult": "mlci.batches.round",
    "run_round": "mlci.batches.round",
    "record_batch_run": "mlci.batches.tracking",
    "tag_batches_used": "mlci.batches.tracking",
    "versions_frame": "mlci.batches.lineage",
    "lineage_table": "mlci.batches.lineage",
    "list_batches": "mlci.batches.lineage",
    "batch_yield": "mlci.batches.lineage",
    "batches_first_used_by": "mlci.batches.lineage",
}

__all__ = list(_SOURCES)
__getattr__, __dir__ = lazy_exports(__name__, _SOURCES)

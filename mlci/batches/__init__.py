"""Labeling batches: plan a round (which clips, why) and publish it once to ``batches/<round_id>/``."""

from mlci.batches.plan import (
    RoundInputs,
    RoundPlan,
    consensus_matrix,
    plan_round,
    round_id,
    score_column,
)
from mlci.batches.publish import (
    BatchConflictError,
    PublishResult,
    label_studio_tasks,
    list_batches,
    open_batch_keys,
    prefill_confidence,
    publish_batch,
    published_rounds,
)
from mlci.batches.round import RoundResult, run_round

__all__ = [
    "RoundInputs",
    "RoundPlan",
    "plan_round",
    "round_id",
    "score_column",
    "consensus_matrix",
    "PublishResult",
    "BatchConflictError",
    "prefill_confidence",
    "label_studio_tasks",
    "publish_batch",
    "list_batches",
    "open_batch_keys",
    "published_rounds",
    "RoundResult",
    "run_round",
]

"""Consensus labels from several annotators, annotator quality, agreement and relabel candidates.

Binary relevance: every class is merged on its own. Methods: :func:`majority_vote`,
:class:`DawidSkene` (sensitivity and specificity per annotator and class) and
:class:`OneCoinDawidSkene` (one accuracy per annotator, for sparse data). :func:`run_consensus`
stores the result of the current label snapshot under ``consensus/<snapshot>/``;
:func:`load_consensus` returns it to the training step. See ``docs/labels.md``.
"""

from mlci.consensus.agreement import (
    agreement_frame,
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    percent_agreement,
)
from mlci.consensus.core import (
    METHODS,
    ConsensusResult,
    compute_consensus,
    list_snapshots,
    load_consensus,
    load_consensus_result,
    run_consensus,
)
from mlci.consensus.dawid_skene import DawidSkene, OneCoinDawidSkene, em_binary
from mlci.consensus.exceptions import (
    ConsensusConflictError,
    ConsensusError,
    NoAnnotationsError,
    SnapshotNotFoundError,
)
from mlci.consensus.majority import TIE_RULES, hard_labels, majority_vote
from mlci.consensus.relabel import clips_to_relabel, relabel_candidates
from mlci.consensus.votes import Votes, encode_votes

__all__ = [
    "METHODS",
    "TIE_RULES",
    "ConsensusResult",
    "compute_consensus",
    "run_consensus",
    "load_consensus",
    "load_consensus_result",
    "list_snapshots",
    "majority_vote",
    "hard_labels",
    "DawidSkene",
    "OneCoinDawidSkene",
    "em_binary",
    "agreement_report",
    "agreement_frame",
    "krippendorff_alpha",
    "percent_agreement",
    "fleiss_kappa",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "clips_to_relabel",
    "relabel_candidates",
    "Votes",
    "encode_votes",
    "ConsensusError",
    "NoAnnotationsError",
    "ConsensusConflictError",
    "SnapshotNotFoundError",
]

"""Consensus of one label snapshot: compute it, store it once under ``consensus/<snapshot>/``, load it.

Store layout::

    consensus/<snapshot>/labels.parquet       CONSENSUS table
    consensus/<snapshot>/annotators.parquet   ANNOTATOR_QUALITY table
    consensus/<snapshot>/relabel.parquet      RELABEL table
    consensus/<snapshot>/agreement.json       agreement figures per class
    consensus/<snapshot>/manifest.json        method, parameters, counts; written last

``<snapshot>`` is :func:`mlci.labels.label_snapshot_id` of the annotations the consensus was
computed from; training and the labeling round record it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlci.consensus.agreement import agreement_report
from mlci.consensus.dawid_skene import DawidSkene, OneCoinDawidSkene
from mlci.consensus.exceptions import (
    ConsensusConflictError,
    NoAnnotationsError,
    SnapshotNotFoundError,
)
from mlci.consensus.majority import TIE_RULES, _majority_frame, hard_labels
from mlci.consensus.relabel import relabel_candidates, validate_band
from mlci.consensus.votes import Votes, encode_votes
from mlci.layout import (
    CONSENSUS_PREFIX,
    consensus_key,
    consensus_manifest_snapshot,
    consensus_prefix,
)
from mlci.storage import ObjectNotFoundError, Store
from mlci.tables import (
    ANNOTATOR_QUALITY,
    CONSENSUS,
    RELABEL,
    conform,
    json_bytes,
    parquet_bytes,
)

__all__ = [
    "METHODS",
    "ConsensusResult",
    "compute_consensus",
    "run_consensus",
    "load_consensus",
    "load_consensus_result",
    "list_snapshots",
]

METHODS = ("dawid_skene", "one_coin", "majority")
_FILES = {"labels": "labels.parquet", "annotators": "annotators.parquet", "relabel": "relabel.parquet"}


@dataclass
class ConsensusResult:
    """Consensus labels of one annotations view and what was learned about the annotators.

    Attributes
    ----------
    labels : pandas.DataFrame
        CONSENSUS table, one row per (asset, class), sorted.
    annotators : pandas.DataFrame
        ANNOTATOR_QUALITY table, one row per (annotator, class) with answers.
    agreement : dict
        :func:`mlci.consensus.agreement_report` per class.
    relabel : pandas.DataFrame
        RELABEL table: uncertain or tied items, most uncertain first.
    method : str
    params : dict
        The parameters the result depends on.
    fit : dict
        EM diagnostics (n_iter, converged, log_likelihood) for the Dawid–Skene methods.
    snapshot : str or None
        Label snapshot id, set when the result was stored or loaded.
    """

    labels: pd.DataFrame
    annotators: pd.DataFrame
    agreement: dict[str, Any]
    relabel: pd.DataFrame
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    snapshot: str | None = None

    def summary(self) -> pd.DataFrame:
        """One row per class: clips, positives, relabel candidates and headline agreement."""
        g = self.labels.groupby("class", sort=True)
        out = pd.DataFrame({"clips": g.size(), "positives": g["label"].sum().astype(int)})
        out["multi_vote"] = g["n_votes"].apply(lambda s: int((s >= 2).sum()))
        out["relabel"] = self.relabel.groupby("class").size().reindex(out.index, fill_value=0).astype(int)
        out["alpha"] = [self.agreement.get(c, {}).get("krippendorff_alpha", {}).get("value") for c in out.index]
        out["pct_agree"] = [self.agreement.get(c, {}).get("percent_agreement", {}).get("value") for c in out.index]
        return out.reset_index()


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, but got {method!r}")


def _params(method: str, *, tie: str, tol: float, max_iter: int, prior, band, min_overlap: int) -> dict[str, Any]:
    params: dict[str, Any] = {"tie": tie, "band": [float(x) for x in band], "min_overlap": int(min_overlap)}
    if method != "majority":
        params.update({"tol": float(tol), "max_iter": int(max_iter), "prior": [float(x) for x in prior]})
    return params


def _annotator_frame(votes: Votes, label: np.ndarray, se: np.ndarray | None, sp: np.ndarray | None) -> pd.DataFrame:
    """ANNOTATOR_QUALITY from item labels; ``se``/``sp`` of shape (n_annotators, n_classes) or None.

    With None, sensitivity and specificity are measured against the consensus labels. Agreement
    with consensus counts only items with two or more answers: a lone answer is its own consensus.
    """
    n_classes = len(votes.classes)
    n_pairs = len(votes.annotators) * n_classes
    pair = votes.row_annotator * n_classes + votes.row_class
    n_items = np.bincount(pair, minlength=n_pairs)
    multi = votes.n_votes[votes.row_item] >= 2
    y = label[votes.row_item].astype(bool)
    v = votes.value.astype(bool)
    pm = pair[multi]

    def ratio(num_mask: np.ndarray, den_mask: np.ndarray) -> np.ndarray:
        num = np.bincount(pm, weights=num_mask[multi], minlength=n_pairs)
        den = np.bincount(pm, weights=den_mask[multi], minlength=n_pairs)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    agreement = ratio(v == y, np.ones_like(v))
    if se is None:
        se_flat, sp_flat = ratio(v & y, y), ratio(~v & ~y, ~y)
    else:
        se_flat, sp_flat = se.reshape(-1), sp.reshape(-1)
    keep = n_items > 0
    idx = np.flatnonzero(keep)
    df = pd.DataFrame(
        {
            "annotator": votes.annotators[idx // n_classes].astype(str),
            "class": votes.classes[idx % n_classes].astype(str),
            "sensitivity": se_flat[idx],
            "specificity": sp_flat[idx],
            "n_items": n_items[idx].astype(np.int64),
            "agreement_with_consensus": agreement[idx],
        }
    )
    return conform(df, ANNOTATOR_QUALITY)


def compute_consensus(
    annotations: pd.DataFrame,
    *,
    method: Literal["dawid_skene", "one_coin", "majority"] = "dawid_skene",
    tie: Literal["negative", "positive"] = "negative",
    tol: float = 1e-6,
    max_iter: int = 500,
    prior: tuple[float, float] = (2.0, 1.0),
    band: tuple[float, float] = (0.2, 0.8),
    min_overlap: int = 1,
) -> ConsensusResult:
    """Merge several annotators' answers into one label per (clip, class).

    Parameters
    ----------
    annotations : pandas.DataFrame
        Current view of the ANNOTATIONS table (columns asset, annotator, class, value).
    method : {"dawid_skene", "one_coin", "majority"}, default="dawid_skene"
        :class:`DawidSkene` (sensitivity and specificity per annotator and class),
        :class:`OneCoinDawidSkene` (one accuracy per annotator; for sparse data), or
        :func:`majority_vote`.
    tie : {"negative", "positive"}, default="negative"
        Hard label of a posterior of exactly 0.5 (a tied majority vote).
    tol, max_iter, prior
        EM parameters of the Dawid–Skene methods (see :class:`DawidSkene`).
    band : tuple of (float, float), default=(0.2, 0.8)
        Posterior interval whose items become relabel candidates.
    min_overlap : int, default=1
        Minimum shared clips for a pairwise Cohen's kappa.

    Returns
    -------
    ConsensusResult
        Items with a single answer pass through: posterior and label are that answer and
        ``method`` is ``"single"``.
    """
    _check_method(method)
    if tie not in TIE_RULES:
        raise ValueError(f"tie must be one of {TIE_RULES}, but got {tie!r}")
    band = validate_band(band)
    votes = encode_votes(annotations)
    fit: dict[str, Any] = {}
    if method == "majority":
        labels = _majority_frame(votes, tie)
        annotators = _annotator_frame(votes, labels["label"].to_numpy(), None, None)
    else:
        cls = DawidSkene if method == "dawid_skene" else OneCoinDawidSkene
        model = cls(tol=tol, max_iter=max_iter, prior=tuple(prior))._fit_votes(votes)
        posterior = model.posterior_.copy()
        single = votes.n_votes == 1
        posterior[single] = votes.n_positive[single]  # a lone answer passes through
        labels = votes.item_frame()
        labels["posterior"] = posterior
        labels["label"] = hard_labels(posterior, tie)
        labels["n_votes"] = votes.n_votes
        labels["method"] = np.where(single, "single", method)
        labels = conform(labels, CONSENSUS)
        annotators = _annotator_frame(
            votes, labels["label"].to_numpy(), model.sensitivity_.to_numpy(), model.specificity_.to_numpy()
        )
        fit = {"n_iter": int(model.n_iter_), "converged": bool(model.converged_),
               "log_likelihood": float(model.log_likelihood_)}
    return ConsensusResult(
        labels=labels,
        annotators=annotators,
        agreement=agreement_report(votes, min_overlap=min_overlap),
        relabel=relabel_candidates(labels, votes.n_positive, band=band),
        method=method,
        params=_params(method, tie=tie, tol=tol, max_iter=max_iter, prior=prior, band=band, min_overlap=min_overlap),
        fit=fit,
    )


def run_consensus(
    store: Store,
    *,
    method: Literal["dawid_skene", "one_coin", "majority"] = "dawid_skene",
    tie: Literal["negative", "positive"] = "negative",
    tol: float = 1e-6,
    max_iter: int = 500,
    prior: tuple[float, float] = (2.0, 1.0),
    band: tuple[float, float] = (0.2, 0.8),
    min_overlap: int = 1,
    now: datetime | None = None,
) -> ConsensusResult:
    """Compute the consensus of the store's current annotations and store it once.

    The result goes to ``consensus/<snapshot>/`` with write-if-absent semantics: when that
    snapshot was already computed with the same method and parameters, the stored result is
    returned and nothing is written.

    Parameters are those of :func:`compute_consensus`; ``now`` stamps the manifest
    (default: the current UTC time).

    Raises
    ------
    NoAnnotationsError
        Nothing has been ingested.
    ConsensusConflictError
        The snapshot's folder already holds a result of another method or other parameters
        (compare methods in memory with :func:`compute_consensus` instead).
    """
    from mlci.labels import label_snapshot_id, load_annotations

    _check_method(method)
    annotations = load_annotations(store, current=True)
    if not len(annotations):
        raise NoAnnotationsError(f"no annotations in {store.uri}: ingest labels first (mlci labels ingest)")
    snapshot = label_snapshot_id(annotations)
    folder = consensus_prefix(snapshot)
    params = _params(method, tie=tie, tol=tol, max_iter=max_iter, prior=prior, band=validate_band(band),
                     min_overlap=min_overlap)
    manifest_key = consensus_key(snapshot, "manifest.json")
    if store.exists(manifest_key):
        manifest = json.loads(store.read_text(manifest_key))
        if manifest.get("method") != method or manifest.get("params") != params:
            raise ConsensusConflictError(
                f"{folder} already holds method {manifest.get('method')!r} with {manifest.get('params')}; "
                f"refusing to overwrite it with method {method!r} with {params}"
            )
        return load_consensus_result(store, snapshot)
    result = compute_consensus(annotations, method=method, tie=tie, tol=tol, max_iter=max_iter, prior=prior,
                               band=band, min_overlap=min_overlap)
    result.snapshot = snapshot
    payloads = {
        consensus_key(snapshot, _FILES["labels"]): parquet_bytes(result.labels),
        consensus_key(snapshot, _FILES["annotators"]): parquet_bytes(result.annotators),
        consensus_key(snapshot, _FILES["relabel"]): parquet_bytes(result.relabel),
        consensus_key(snapshot, "agreement.json"): json_bytes(result.agreement),
    }
    for key, data in payloads.items():
        # Left over by an interrupted run: identical bytes are fine, anything else is not ours to replace.
        if not store.write_if_absent(key, data) and store.read_bytes(key) != data:
            raise ConsensusConflictError(f"{key} exists without a manifest and differs from this result; inspect it")
    manifest = {
        "snapshot": snapshot,
        "method": method,
        "params": params,
        "fit": result.fit,
        "created_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "n_annotations": int(len(annotations)),
        "n_annotators": int(annotations["annotator"].nunique()),
        "n_clips": int(result.labels["asset"].nunique()),
        "n_items": int(len(result.labels)),
        "n_relabel": int(len(result.relabel)),
        "positives": {str(k): int(v) for k, v in result.labels.groupby("class")["label"].sum().items()},
        "files": sorted(k[len(folder):] for k in payloads),
    }
    if not store.write_if_absent(manifest_key, json_bytes(manifest)):
        return load_consensus_result(store, snapshot)  # a concurrent run finished first
    return result


def list_snapshots(store: Store) -> list[dict[str, Any]]:
    """Manifests of every stored consensus, oldest first."""
    keys = [k for k in store.list(CONSENSUS_PREFIX) if consensus_manifest_snapshot(k) is not None]
    manifests = [json.loads(store.read_text(k)) for k in keys]
    return sorted(manifests, key=lambda m: (m.get("created_at", ""), m.get("snapshot", "")))


def _resolve_snapshot(store: Store, snapshot: str | None) -> str:
    if snapshot is None:
        manifests = list_snapshots(store)
        if not manifests:
            raise SnapshotNotFoundError(f"no consensus stored in {store.uri}; run `mlci consensus` first")
        return manifests[-1]["snapshot"]
    if not store.exists(consensus_key(snapshot, "manifest.json")):
        raise SnapshotNotFoundError(f"no consensus for label snapshot {snapshot!r} in {store.uri}")
    return snapshot


def load_consensus(store: Store, snapshot: str | None = None) -> pd.DataFrame:
    """The CONSENSUS table of ``snapshot`` (default: the most recently computed one).

    The snapshot id is in ``df.attrs["snapshot"]`` so the caller can record it.

    Raises
    ------
    SnapshotNotFoundError
    """
    snapshot = _resolve_snapshot(store, snapshot)
    df = conform(pd.read_parquet(io.BytesIO(store.read_bytes(consensus_key(snapshot, _FILES["labels"])))), CONSENSUS)
    df.attrs["snapshot"] = snapshot
    return df


def load_consensus_result(store: Store, snapshot: str | None = None) -> ConsensusResult:
    """Every stored part of a consensus (default: the most recently computed one)."""
    snapshot = _resolve_snapshot(store, snapshot)
    folder = consensus_prefix(snapshot)
    manifest = json.loads(store.read_text(consensus_key(snapshot, "manifest.json")))

    def table(name: str, spec) -> pd.DataFrame:
        try:
            return conform(pd.read_parquet(io.BytesIO(store.read_bytes(consensus_key(snapshot, _FILES[name])))), spec)
        except ObjectNotFoundError:
            raise SnapshotNotFoundError(f"{folder}{_FILES[name]} is missing although the manifest exists") from None

    labels = table("labels", CONSENSUS)
    labels.attrs["snapshot"] = snapshot
    return ConsensusResult(
        labels=labels,
        annotators=table("annotators", ANNOTATOR_QUALITY),
        agreement=json.loads(store.read_text(consensus_key(snapshot, "agreement.json"))),
        relabel=table("relabel", RELABEL),
        method=manifest["method"],
        params=manifest["params"],
        fit=manifest.get("fit", {}),
        snapshot=snapshot,
    )

"""One active-learning round against the store: pool, score with the champion, plan, publish once."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlci.batches.plan import RoundInputs, consensus_matrix, plan_round, round_id
from mlci.batches.publish import (
    PublishResult,
    label_studio_tasks,
    open_batch_keys,
    publish_batch,
)
from mlci.catalog import ClassCatalog
from mlci.clipref import clip_url
from mlci.labelstudio.interface import labeling_config
from mlci.layout import batch_key, batch_prefix
from mlci.storage import Store
from mlci.strategies import get_strategy

__all__ = ["RoundResult", "run_round"]


@dataclass
class RoundResult:
    """What a round did. ``published`` is False when the same round was already out."""

    round_id: str
    location: str
    published: bool
    batch: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    #: Why nothing was published although the round is new (e.g. an empty pool); "" otherwise.
    reason: str = ""

    def summary(self) -> str:
        if self.reason:
            return f"round {self.round_id}: nothing published: {self.reason}"
        verb = "published" if self.published else "already published (nothing new)"
        text = f"round {self.round_id}: {len(self.batch)} clips {verb} at {self.location}"
        missing = self.manifest.get("incomplete_pool", {}).get("clips_without_features")
        return text + (f"; pool incomplete: {missing} clips without features" if missing else "")


def run_round(
    store: Store,
    *,
    model: Any,
    model_name: str,
    model_version: str,
    keys: np.ndarray,
    X: np.ndarray,
    feature_schema: Any,
    consensus: pd.DataFrame,
    relabel: pd.DataFrame,
    label_snapshot: str,
    annotations_history: pd.DataFrame,
    catalog: ClassCatalog,
    question: str,
    quarantined: Sequence[str] = (),
    strategy: str,
    strategy_params: dict[str, Any] | None = None,
    batch_size: int,
    relabel_share: float,
    open_batch_expiry: timedelta,
    base_url: str | None = None,
    random_state: int = 0,
    now: datetime | None = None,
    incomplete_pool: dict[str, Any] | None = None,
    advice: dict[str, str] | None = None,
    reassign_stopped: bool = True,
) -> RoundResult:
    """Score the pool with ``model``, choose a batch with ``strategy`` and publish it once.

    The pool is every clip with features, without consensus labels, not quarantined and not in a
    batch still out (published less than ``open_batch_expiry`` ago and not answered yet). The round
    id is derived from the model version, label snapshot, feature snapshot, strategy and its
    parameters, so running the same round again publishes nothing. Batches still out are not part
    of the id on purpose: with nothing new, the next night must not publish another batch.

    ``catalog`` and ``question`` make the batch's Label Studio interface (``labeling_config.xml``);
    every concept of the model must be in the catalog, so that each pre-ticked choice exists there.
    ``incomplete_pool`` says which clips could not be in the pool (e.g. their features failed);
    it is recorded in the manifest as ``incomplete_pool`` and in the summary.

    ``advice`` is the stop advisor's verdict per concept (recorded in the manifest); with
    ``reassign_stopped``, concepts advised to ``stop`` rank nothing and their share of the batch
    goes to the others (``stopped_concepts`` in the manifest, and part of the round id).
    """
    now = now or datetime.now(timezone.utc)
    strategy_params = dict(strategy_params or {})
    classes = list(model.classes_)
    unknown = [c for c in classes if c not in catalog.names]
    if unknown:
        raise ValueError(f"the model's concepts {unknown} are not in the class catalog {catalog.names}; "
                         "its predictions would tick choices the labeling interface does not have")
    feature_snapshot = _feature_snapshot(keys)
    determinants = {
        "model": f"{model_name}/{model_version}",
        "label_snapshot": label_snapshot,
        "feature_snapshot": feature_snapshot,
        "extractor": _schema_dict(feature_schema),
        "strategy": strategy,
        "strategy_params": strategy_params,
        "batch_size": batch_size,
        "relabel_share": relabel_share,
        "random_state": random_state,
    }
    advice = dict(advice or {})
    stopped = sorted(c for c, v in advice.items() if v == "stop" and c in classes) if reassign_stopped else []
    if stopped:  # only then, so that rounds without advice keep their ids
        determinants["stopped_concepts"] = stopped
    rid = round_id(determinants)
    if store.exists(batch_key(rid, "manifest.json")):
        batch = pd.read_csv(io.BytesIO(store.read_bytes(batch_key(rid, "batch.csv"))))
        return RoundResult(rid, store.url_for(batch_prefix(rid)), False, batch)

    still_out = open_batch_keys(store, annotations_history, expiry=open_batch_expiry, now=now)
    recent = open_batch_keys(store, annotations_history, expiry=open_batch_expiry, now=now, include_returned=True)
    proba = model.predict_proba(X, feature_schema=feature_schema) if len(keys) else np.zeros((0, len(classes)))
    trained = np.asarray(getattr(model, "trained_mask_", np.ones(len(classes), bool)))
    proba = np.where(trained[None, :], proba, np.nan)
    labeled_keys, labeled_y = consensus_matrix(consensus, classes)
    inputs = RoundInputs(
        keys=np.asarray(keys, dtype=object),
        X=X,
        proba=proba,
        classes=classes,
        labeled_keys=labeled_keys,
        labeled_y=labeled_y,
        relabel=relabel,
        unavailable=frozenset(quarantined) | frozenset(still_out),
        recently_batched=frozenset(recent),
        stopped=frozenset(stopped),
    )
    # Percent-encoded under the base URL, so that '#', '?', '%' and spaces in keys come back intact.
    url_for = (lambda k: clip_url(k, base_url)) if base_url else store.url_for
    plan = plan_round(
        inputs,
        get_strategy(strategy, **strategy_params),
        batch_size=batch_size,
        relabel_share=relabel_share,
        url_for=url_for,
        random_state=random_state,
    )
    if plan.batch.empty:
        # Publishing an empty batch would mark the round done and leave labelers nothing to do.
        reason = (f"no clip to label: pool of {plan.n_pool} clips ({len(labeled_keys)} labeled, "
                  f"{len(quarantined)} quarantined, {len(still_out)} in batches still out)")
        if stopped and len(stopped) == len(classes):
            reason = "every concept is advised to stop labeling (mlci status shows why)"
        return RoundResult(rid, store.url_for(batch_prefix(rid)), False, plan.batch, reason=reason)
    tasks = label_studio_tasks(plan.batch, classes, model_version=f"{model_name}/{model_version}", uri_for=store.url_for)
    manifest = {
        "model_name": model_name,
        "model_version": str(model_version),
        "strategy": strategy,
        "strategy_params": strategy_params,
        "feature_extractor": _schema_dict(feature_schema),
        "label_snapshot": label_snapshot,
        "feature_snapshot": feature_snapshot,
        "counts": {
            "pool": plan.n_pool,
            "new": plan.n_new,
            "relabel": plan.n_relabel,
            "quarantined": len(quarantined),
            "still_out": len(still_out),
        },
        "untrained_concepts": plan.dropped_concepts,
        "pool_prior": _pool_prior(proba, keys, labeled_keys, classes),
    }
    if advice:
        manifest["advice"] = advice
        manifest["stopped_concepts"] = stopped
    if incomplete_pool:
        manifest["incomplete_pool"] = incomplete_pool
    result: PublishResult = publish_batch(store, rid, plan.batch, tasks, manifest,
                                          labeling_config=labeling_config(catalog, question), now=now)
    return RoundResult(rid, result.location, result.published, plan.batch, manifest)


def _pool_prior(proba: np.ndarray, keys: np.ndarray, labeled_keys: np.ndarray,
                classes: Sequence[str]) -> dict[str, float | None]:
    """The champion's mean score over the unlabeled clips per concept: what a random batch would find."""
    labeled = set(labeled_keys.tolist())
    unlabeled = proba[[k not in labeled for k in keys]]
    return {c: None if not len(unlabeled) or np.isnan(unlabeled[:, j]).all() else float(np.nanmean(unlabeled[:, j]))
            for j, c in enumerate(classes)}


def _feature_snapshot(keys: np.ndarray) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, keys))).encode()).hexdigest()[:16]


def _schema_dict(schema: Any) -> dict[str, str]:
    if isinstance(schema, dict):
        return {k: str(schema[k]) for k in ("extractor", "version") if k in schema}
    return {k: str(getattr(schema, k)) for k in ("extractor", "version") if hasattr(schema, k)}

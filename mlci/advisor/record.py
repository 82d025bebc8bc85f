"""One night of the stop advisor against the store: signals of a model version, its advice, recorded once.

Layout (``mlci.layout``)::

    advisor/<model>/stop_set.json                 the fixed stop set, chosen on the first night
    advisor/<model>/v<version>/signals.parquet    ADVISOR_SIGNALS rows of that version
    advisor/<model>/v<version>/stop_predictions.parquet
    advisor/<model>/v<version>/manifest.json      the advice and the rule that gave it; written last

A version is recorded once (write-if-absent): running the nightly again with the same model version
reads the record back and changes nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlci.advisor.signals import MAX_POOL_SAMPLE, choose_stop_set, night_signals, stop_predictions
from mlci.advisor.verdict import ADVICE_COLUMNS, StopAdvisor
from mlci.layout import advisor_key, advisor_prefix, advisor_stop_set_key, advisor_version
from mlci.storage import Store
from mlci.tables import ADVISOR_SIGNALS, conform, json_bytes, parquet_bytes

__all__ = ["AdvisorNight", "load_advice", "load_history", "record_night"]


@dataclass
class AdvisorNight:
    """The advisor's record of one model version: its signals, its advice and every version's signals."""

    model_version: str
    advice: pd.DataFrame
    history: pd.DataFrame
    rule: str
    recorded: bool

    def verdicts(self) -> dict[str, str]:
        return dict(zip(self.advice["concept"], self.advice["verdict"]))

    def stopped(self) -> list[str]:
        return [c for c, v in self.verdicts().items() if v == "stop"]


def _versions(store: Store, model_name: str) -> list[int]:
    found = (advisor_version(k, model_name) for k in store.list(advisor_prefix(model_name)))
    return sorted(v for v in found if v is not None)


def _read_parquet(store: Store, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.read_bytes(key)))


def load_history(store: Store, model_name: str, *, up_to: int | None = None) -> pd.DataFrame:
    """:data:`~mlci.tables.ADVISOR_SIGNALS` of every recorded version (up to ``up_to``), oldest first."""
    parts = [_read_parquet(store, advisor_key(model_name, v, "signals.parquet"))
             for v in _versions(store, model_name) if up_to is None or v <= up_to]
    if not parts:
        return conform(pd.DataFrame({c: [] for c in ADVISOR_SIGNALS.columns}), ADVISOR_SIGNALS)
    return conform(pd.concat(parts, ignore_index=True), ADVISOR_SIGNALS)


def load_advice(store: Store, model_name: str, version: str | int | None = None) -> AdvisorNight | None:
    """The record of ``version`` (default: the latest recorded), or None when there is none."""
    versions = _versions(store, model_name)
    if version is None:
        if not versions:
            return None
        version = versions[-1]
    if int(version) not in versions:
        return None
    manifest = json.loads(store.read_text(advisor_key(model_name, version, "manifest.json")))
    advice = pd.DataFrame(manifest["advice"], columns=list(ADVICE_COLUMNS))
    numbers = [c for c in ADVICE_COLUMNS if c not in ("concept", "verdict", "reason")]
    advice[numbers] = advice[numbers].apply(pd.to_numeric)  # JSON null -> NaN
    return AdvisorNight(str(int(version)), advice,
                        load_history(store, model_name, up_to=int(version)), manifest["rule"], recorded=False)


def _stop_set(store: Store, model_name: str, pool_keys: np.ndarray, size: int, random_state: int) -> list[str]:
    key = advisor_stop_set_key(model_name)
    if not store.exists(key):
        chosen = choose_stop_set(pool_keys, size=size, random_state=random_state)
        store.write_if_absent(key, json_bytes({"keys": chosen, "size": size, "random_state": random_state}))
    return json.loads(store.read_text(key))["keys"]  # a concurrent first night may have won


def record_night(
    store: Store,
    *,
    model_name: str,
    model_version: str,
    label_snapshot: str,
    model: Any,
    keys: np.ndarray,
    X: np.ndarray,
    feature_schema: Any,
    consensus: pd.DataFrame,
    oof_ap: dict[str, float],
    advisor: StopAdvisor,
    label_budget: int | None = None,
    stop_set_size: int = 1000,
    random_state: int = 0,
    now: datetime | None = None,
) -> AdvisorNight:
    """Compute and record the signals and advice of ``model_version``, once.

    Parameters
    ----------
    store : Store
    model_name, model_version, label_snapshot : str
        The version the night trained (on every label of ``label_snapshot``).
    model : MultiLabelModel
        That version, to score the stop set and the pool.
    keys, X, feature_schema
        Every clip with features; the pool is those without a consensus label.
    consensus : DataFrame
        :data:`~mlci.tables.CONSENSUS` of ``label_snapshot``.
    oof_ap : dict
        Concept -> the version's cross-validated AP.
    advisor : StopAdvisor
    label_budget : int, default=None
        Labeled clips the team will pay for; ``budget_left`` = budget − labeled clips.
    stop_set_size : int, default=1000
    random_state : int, default=0
        Chooses the stop set (on the first night) and the pool sample.
    """
    version = int(model_version)
    recorded = _versions(store, model_name)
    if version in recorded:
        return load_advice(store, model_name, version)  # type: ignore[return-value]
    keys = np.asarray(keys, dtype=object)
    classes = list(model.classes_)
    labeled = set(consensus.loc[consensus["label"] >= 0, "asset"])
    in_pool = np.array([k not in labeled for k in keys], dtype=bool)
    stop_keys = _stop_set(store, model_name, keys[in_pool], stop_set_size, random_state)
    index = {k: i for i, k in enumerate(keys)}
    # Clips of the stop set that got a label since leave it: a model reproduces its training labels,
    # so they would make any two versions look alike.
    stop_rows = [index[k] for k in stop_keys if k in index and k not in labeled]
    pool_rows = np.flatnonzero(in_pool)
    if len(pool_rows) > MAX_POOL_SAMPLE:
        pool_rows = np.sort(np.random.default_rng(random_state).choice(pool_rows, MAX_POOL_SAMPLE, replace=False))
    rows = np.concatenate([np.asarray(stop_rows, dtype=np.int64), pool_rows])
    proba = model.predict_proba(X[rows], feature_schema=feature_schema) if len(rows) else np.zeros((0, len(classes)))
    trained = np.asarray(getattr(model, "trained_mask_", np.ones(len(classes), bool)))
    proba = np.where(trained[None, :], proba, np.nan)
    stop_proba, pool_proba = proba[: len(stop_rows)], proba[len(stop_rows):]
    predictions = stop_predictions(stop_proba, keys[stop_rows], classes)

    earlier = [v for v in recorded if v < version]
    previous = previous_predictions = None
    if earlier:
        previous = _read_parquet(store, advisor_key(model_name, earlier[-1], "signals.parquet"))
        previous_predictions = _read_parquet(store, advisor_key(model_name, earlier[-1], "stop_predictions.parquet"))
    signals = night_signals(
        classes=classes, predictions=predictions, previous_predictions=previous_predictions,
        pool_proba=pool_proba, stop_proba=stop_proba, consensus=consensus, oof_ap=oof_ap, previous=previous,
    )
    signals.insert(0, "recorded_at", pd.Timestamp(now or datetime.now(timezone.utc)))
    signals.insert(0, "label_snapshot", label_snapshot)
    signals.insert(0, "model_version", str(version))
    signals = conform(signals, ADVISOR_SIGNALS)
    history = pd.concat([load_history(store, model_name, up_to=version), signals], ignore_index=True)
    budget_left = None if label_budget is None else int(label_budget) - len(labeled)
    advice = advisor.advise(history, budget_left=budget_left)

    store.write_if_absent(advisor_key(model_name, version, "signals.parquet"), parquet_bytes(signals))
    store.write_if_absent(advisor_key(model_name, version, "stop_predictions.parquet"), parquet_bytes(predictions))
    manifest = {
        "model_name": model_name, "model_version": str(version), "label_snapshot": label_snapshot,
        "rule": advisor.rule, "advisor": asdict(advisor),
        "label_budget": label_budget, "recorded_at": signals["recorded_at"].iloc[0].isoformat(),
        "advice": json.loads(advice.to_json(orient="records")),
    }
    if not store.write_if_absent(advisor_key(model_name, version, "manifest.json"), json_bytes(manifest)):
        return load_advice(store, model_name, version)  # type: ignore[return-value]
    return AdvisorNight(str(version), advice, history, advisor.rule, recorded=True)

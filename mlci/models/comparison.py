"""The challenger against the champion on labels the champion never saw. Pure: no MLflow calls.

The champion comes in as a :class:`ChampionSnapshot` (read from the registry by
:func:`mlci.models.registry.load_champion`); :func:`compare_with_champion` scores the new labels
with both models and :meth:`ChampionComparison.decide` hands the numbers to the promotion gate
(:func:`mlci.models.promotion.decide_promotion`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlci.models.dataset import TrainingSet
from mlci.models.evaluation import evaluate_scores
from mlci.models.exceptions import FeatureSchemaMismatchError, ModelError
from mlci.models.multilabel import MultiLabelModel
from mlci.models.promotion import PromotionDecision, decide_promotion
from mlci.models.training import TrainedModel
from mlci.redact import redact_text

__all__ = ["ChampionSnapshot", "ChampionComparison", "compare_with_champion"]


@dataclass(frozen=True)
class ChampionSnapshot:
    """What the registry holds of the champion, for the comparison.

    Attributes
    ----------
    version, run_id : str
    metrics : dict or None
        Cross-validated metrics logged with the champion; None when its run could not be read.
    seen_labels : DataFrame or None
        ``asset, class`` of every label it was trained on; None when they could not be read.
    model : MultiLabelModel or None
        None when it could not be loaded.
    unavailable : str
        Why ``metrics`` or ``seen_labels`` is None (becomes the comparison's note).
    model_error : str
        Why ``model`` is None.
    """

    version: str
    run_id: str
    metrics: dict[str, float] | None = None
    seen_labels: pd.DataFrame | None = None
    model: MultiLabelModel | None = None
    unavailable: str = ""
    model_error: str = ""


@dataclass(frozen=True)
class ChampionComparison:
    """Outcome of :func:`compare_with_champion`: the promotion gate's inputs.

    Attributes
    ----------
    champion_version : str or None
        None when there is no champion.
    champion_metrics : dict or None
        The champion's cross-validated metrics.
    n_compare : int
        New labels (the champion never saw them) that both models scored.
    challenger_new_labels, champion_new_labels : dict or None
        ``{"macro_ap": ...}`` of each model on the new labels, over the concepts both could be
        evaluated on; None when there is no such concept.
    per_class : dict or None
        ``challenger`` and ``champion`` per-concept metrics on the new labels, and
        ``classes_compared``.
    note : str
        Why the new labels could not be used, if they could not.
    """

    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    n_compare: int = 0
    challenger_new_labels: dict[str, float] | None = None
    champion_new_labels: dict[str, float] | None = None
    per_class: dict[str, Any] | None = None
    note: str = ""

    @property
    def has_champion(self) -> bool:
        return self.champion_version is not None

    def decide(self, challenger: TrainedModel, *, tolerance: float, min_new_labels: int) -> PromotionDecision:
        """The promotion gate (:func:`~mlci.models.promotion.decide_promotion`) on these numbers."""
        return decide_promotion(
            challenger.evaluation.macro,
            self.champion_metrics,
            n_compare=self.n_compare,
            tolerance=tolerance,
            min_new_labels=min_new_labels,
            challenger_new_labels=self.challenger_new_labels,
            champion_new_labels=self.champion_new_labels,
            n_cross_validated=challenger.evaluation.n_evaluated_labels,
            has_champion=self.has_champion,
        )


def compare_with_champion(
    training_set: TrainingSet, challenger: TrainedModel, champion: ChampionSnapshot | None
) -> ChampionComparison:
    """Both models' metrics on the labels of ``training_set`` that ``champion`` never saw.

    The challenger's scores there are its out-of-fold scores, so neither model was fit on them.

    Parameters
    ----------
    training_set : TrainingSet
        What the challenger was trained on.
    challenger : TrainedModel
        From :func:`~mlci.models.training.train`.
    champion : ChampionSnapshot or None
        None when there is no champion.

    Returns
    -------
    ChampionComparison
    """
    if champion is None:
        return ChampionComparison()
    if champion.metrics is None:
        return ChampionComparison(champion_version=champion.version, note=champion.unavailable)
    base = {"champion_version": champion.version, "champion_metrics": dict(champion.metrics)}
    if champion.seen_labels is None:
        return ChampionComparison(**base, note=champion.unavailable)
    seen = champion.seen_labels[["asset", "class"]].astype({"asset": "string", "class": "string"})
    merged = training_set.labels_table().merge(seen.assign(_seen=True), on=["asset", "class"], how="left")
    new = merged[merged["_seen"].isna()].drop(columns="_seen").reset_index(drop=True)
    if new.empty:
        return ChampionComparison(**base, note="no labels the champion never saw")
    cannot_score = f"champion version {champion.version} cannot score the new labels: "
    if champion.model is None:
        return ChampionComparison(**base, n_compare=len(new), note=cannot_score + champion.model_error)
    champ_model = champion.model
    try:
        # The challenger's feature schema record is the training features' schema and modality.
        champ_model.check_features(challenger.model.feature_schema_)
        if champ_model.n_features_in_ != training_set.X.shape[1]:
            raise FeatureSchemaMismatchError({"n_features": champ_model.n_features_in_}, {"n_features": training_set.X.shape[1]})
    except ModelError as exc:
        return ChampionComparison(**base, n_compare=len(new), note=cannot_score + redact_text(str(exc)))

    row_of = {k: i for i, k in enumerate(training_set.keys.tolist())}
    col_of = {c: j for j, c in enumerate(training_set.classes)}
    champ_col = {str(c): j for j, c in enumerate(champ_model.classes_)}
    new = new[new["class"].isin(list(champ_col))].reset_index(drop=True)
    rows = np.array([row_of[a] for a in new["asset"]], dtype=np.int64)
    uniq, inverse = np.unique(rows, return_inverse=True)
    champ_scores = champ_model.predict_proba(training_set.X[uniq]) if uniq.size else np.empty((0, len(champ_col)))
    scores = challenger.evaluation.scores
    new["champion"] = [champ_scores[inverse[i], champ_col[c]] for i, c in enumerate(new["class"])]
    new["challenger"] = [scores[r, col_of[c]] for r, c in zip(rows, new["class"])]
    both = new[np.isfinite(new["champion"].astype(float)) & np.isfinite(new["challenger"].astype(float))]
    classes = [c for c in training_set.classes if c in champ_col]
    ch_pc, _ = evaluate_scores(both.assign(score=both["challenger"]), classes)
    cp_pc, _ = evaluate_scores(both.assign(score=both["champion"]), classes)
    common = [c for c, a, b in zip(classes, ch_pc["status"], cp_pc["status"]) if a == b == "evaluated"]
    per_class = {
        "challenger": ch_pc.to_dict(orient="records"),
        "champion": cp_pc.to_dict(orient="records"),
        "classes_compared": common,
    }
    if not common:
        return ChampionComparison(
            **base, n_compare=len(both), per_class=per_class,
            note="no concept has both a positive and a negative among the new labels",
        )
    return ChampionComparison(
        **base,
        n_compare=int(both["class"].isin(common).sum()),
        challenger_new_labels={"macro_ap": float(ch_pc.set_index("class").loc[common, "ap"].mean())},
        champion_new_labels={"macro_ap": float(cp_pc.set_index("class").loc[common, "ap"].mean())},
        per_class=per_class,
    )

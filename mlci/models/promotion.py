"""The promotion gate: does a challenger replace the champion? A pure decision, no MLflow calls.

The rule (also in ``docs/models.md``):

1. No champion yet: the challenger is promoted ("first model").
2. At least ``min_new_labels`` labels the champion never saw (``n_compare``: (clip, concept) labels
   absent from the champion's training set, scored by both models), and both models have a finite
   ``metric`` on them: compare there ("new_labels"). The challenger's scores on these labels are
   out-of-fold, so neither model was fit on them.
3. Otherwise compare the cross-validated metrics logged with each model ("cross_validation").

The challenger is promoted when ``challenger >= champion - tolerance`` (ties promote: "at least as
good"). A challenger without a finite metric is never promoted; a champion without one is replaced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

__all__ = ["PromotionDecision", "check_promotion_params", "decide_promotion", "COMPARISON_SETS"]

COMPARISON_SETS = ("first_model", "new_labels", "cross_validation")
# Differences below this are float noise (the same model retrained gives "equal" scores).
_EPS = 1e-12


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of :func:`decide_promotion`.

    Attributes
    ----------
    promote : bool
    reason : str
        One sentence with the numbers.
    comparison_set : {"first_model", "new_labels", "cross_validation"}
    n : int
        Labels in the comparison set (new labels, or the challenger's cross-validated labels).
    numbers : dict
        ``metric``, ``challenger``, ``champion``, ``delta``, ``tolerance``, ``n_new_labels``,
        ``min_new_labels``.
    """

    promote: bool
    reason: str
    comparison_set: str
    n: int
    numbers: dict = field(default_factory=dict)

    def as_tags(self, prefix: str = "mlci.promotion.") -> dict[str, str]:
        """String tags for an MLflow run or model version: the decision, and its numbers grouped in one
        JSON tag ``<prefix>numbers`` (a number that is NaN, not measured, is left out)."""
        numbers = {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in self.numbers.items()
                   if not (isinstance(v, float) and math.isnan(v))}
        return {
            f"{prefix}promote": str(self.promote).lower(),
            f"{prefix}reason": self.reason,
            f"{prefix}comparison_set": self.comparison_set,
            f"{prefix}n": str(self.n),
            f"{prefix}numbers": json.dumps(numbers, sort_keys=True),
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str, allow_nan=True)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], prefix: str = "mlci.promotion.") -> PromotionDecision:
        """Inverse of :meth:`as_tags` (also of older runs' tags, one tag per number)."""
        if f"{prefix}numbers" in tags:
            numbers = json.loads(tags[f"{prefix}numbers"])
        else:
            numbers = {}
            for key, value in tags.items():
                name = key[len(prefix):] if key.startswith(prefix) else None
                if name and name not in ("promote", "reason", "comparison_set", "n"):
                    try:
                        numbers[name] = float(value)
                    except ValueError:
                        numbers[name] = value
        return cls(
            promote=tags.get(f"{prefix}promote") == "true",
            reason=tags.get(f"{prefix}reason", ""),
            comparison_set=tags.get(f"{prefix}comparison_set", ""),
            n=int(tags.get(f"{prefix}n", 0)),
            numbers=numbers,
        )


def _finite(metrics: Mapping[str, float] | None, metric: str) -> float:
    if not metrics:
        return math.nan
    value = metrics.get(metric)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def check_promotion_params(*, tolerance: float, min_new_labels: int) -> None:
    """Raise ``ValueError`` unless ``tolerance`` is a finite number >= 0 and ``min_new_labels`` an int >= 1.

    Callers check before training, so that the gate cannot fail after a model is registered.
    """
    if not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, but got {tolerance!r}")
    if not isinstance(min_new_labels, int) or min_new_labels < 1:
        raise ValueError(f"min_new_labels must be an int >= 1, but got {min_new_labels!r}")


def decide_promotion(
    challenger_metrics: Mapping[str, float] | None,
    champion_metrics: Mapping[str, float] | None,
    *,
    n_compare: int = 0,
    tolerance: float = 0.0,
    min_new_labels: int = 50,
    challenger_new_labels: Mapping[str, float] | None = None,
    champion_new_labels: Mapping[str, float] | None = None,
    n_cross_validated: int = 0,
    metric: str = "macro_ap",
    has_champion: bool | None = None,
) -> PromotionDecision:
    """Decide whether the challenger becomes champion (see the module docstring for the rule).

    Parameters
    ----------
    challenger_metrics, champion_metrics : mapping or None
        Cross-validated metrics of each model (e.g. ``{"macro_ap": 0.8}``); None for no champion.
    n_compare : int, default=0
        Labels the champion never saw that both models scored.
    tolerance : float, default=0.0
        How much lower than the champion's the challenger's ``metric`` may be.
    min_new_labels : int, default=50
        Fewest new labels for the comparison to use them instead of cross-validation.
    challenger_new_labels, champion_new_labels : mapping or None
        Metrics of each model on those new labels.
    n_cross_validated : int, default=0
        Labels behind the challenger's cross-validated metrics (recorded as ``n`` in that case).
    metric : str, default="macro_ap"
    has_champion : bool, default=None
        Whether a champion exists; by default, whether any champion metrics were given.
    """
    check_promotion_params(tolerance=tolerance, min_new_labels=min_new_labels)
    if n_compare < 0:
        raise ValueError(f"n_compare must be >= 0, but got {n_compare!r}")
    if has_champion is None:
        has_champion = champion_metrics is not None or champion_new_labels is not None
    base = {"metric": metric, "tolerance": float(tolerance), "n_new_labels": int(n_compare), "min_new_labels": min_new_labels}
    if not has_champion:
        c = _finite(challenger_metrics, metric)
        numbers = {**base, "challenger": c, "champion": math.nan, "delta": math.nan}
        return PromotionDecision(True, "no champion yet: the first model becomes champion", "first_model", n_cross_validated, numbers)

    c_new, p_new = _finite(challenger_new_labels, metric), _finite(champion_new_labels, metric)
    if n_compare >= min_new_labels and not (math.isnan(c_new) or math.isnan(p_new)):
        comparison, n, c, p = "new_labels", int(n_compare), c_new, p_new
        where = f"on {n} labels the champion never saw"
        measured = f"new_labels_{metric}"
    else:
        comparison, n = "cross_validation", int(n_cross_validated)
        c, p = _finite(challenger_metrics, metric), _finite(champion_metrics, metric)
        if n_compare < min_new_labels:
            why = f"{n_compare} new labels < min_new_labels={min_new_labels}"
        else:
            why = f"{n_compare} new labels, but {metric} is not defined on them for both models"
        where = f"on cross-validated metrics ({why})"
        measured = f"cv_{metric}"
    numbers = {**base, "challenger": c, "champion": p, "delta": c - p}
    if math.isnan(c):
        return PromotionDecision(False, f"challenger has no {measured} {where}", comparison, n, numbers)
    if math.isnan(p):
        return PromotionDecision(True, f"champion has no {measured} {where}; challenger {measured}={c:.4f}",
                                 comparison, n, numbers)
    promote = c >= p - tolerance - _EPS
    verb = "at least as good as" if promote else "worse than"
    reason = (
        f"challenger {measured}={c:.4f} is {verb} champion {measured}={p:.4f} "
        f"(tolerance {tolerance:g}) {where}"
    )
    return PromotionDecision(bool(promote), reason, comparison, n, numbers)

"""The verdict per concept — ``keep labeling``, ``slowing`` or ``stop`` — read from its signal series.

The three rules are those the analysis flow evaluates in simulation
(:mod:`mlci.analysis.stopping`), asked here about the *latest* night rather than for the first
round they fire:

``stabilizing_predictions`` (the default)
    stop when the kappas of the last ``window`` nights are all defined and their mean is
    >= ``kappa_threshold``; slowing when last night's kappa alone is.
``oof_plateau``
    stop when the best out-of-fold AP of the last ``window`` nights is less than ``plateau_delta``
    above the best before them; slowing when less than twice that.
``overall_uncertainty``
    stop when the pool's mean uncertainty is <= ``uncertainty_threshold`` bits; slowing when <= twice it.

Guards come first: a concept with fewer than ``min_positives`` positives or negatives is never
judged (the signals of a model that has seen three positives say nothing about the concept); a
spent label budget stops every concept. The default rule is the one the analysis flow measured as
stopping closest to the real plateau on the demo corpus (docs/advisor.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlci.advisor.signals import MIN_STOP_CLIPS

__all__ = ["ADVICE_COLUMNS", "ADVICE_RULES", "VERDICTS", "StopAdvisor", "gain_per_100"]

VERDICTS = ("keep labeling", "slowing", "stop")
#: Columns of :meth:`StopAdvisor.advise`.
ADVICE_COLUMNS = ("concept", "verdict", "reason", "labels", "positives", "kappa_mean", "oof_ap", "gain_per_100",
                  "gain_se", "uncertainty", "found_rate", "prevalence", "budget_left")
ADVICE_RULES = ("stabilizing_predictions", "oof_plateau", "overall_uncertainty")


def gain_per_100(labels: np.ndarray, oof_ap: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of OOF AP per 100 labels and its standard error (NaN with < 3 usable points)."""
    x, y = np.asarray(labels, dtype=np.float64), np.asarray(oof_ap, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    resid = y - y.mean() - slope * dx
    se = float(np.sqrt(resid @ resid / (len(x) - 2) / sxx))
    return 100 * slope, 100 * se


@dataclass(frozen=True)
class StopAdvisor:
    """Reads each concept's signal series and says whether labeling it still pays.

    Parameters
    ----------
    rule : {"stabilizing_predictions", "oof_plateau", "overall_uncertainty"}
    kappa_threshold : float, default=0.99
    window : int, default=3
        Nights the kappa rule and the OOF plateau look back over.
    uncertainty_threshold : float, default=0.05
    plateau_delta : float, default=0.01
    min_positives : int, default=10
        Positives and negatives a concept needs before any rule may stop it.
    """

    rule: str = "stabilizing_predictions"
    kappa_threshold: float = 0.99
    window: int = 3
    uncertainty_threshold: float = 0.05
    plateau_delta: float = 0.01
    min_positives: int = 10

    def __post_init__(self) -> None:
        if self.rule not in ADVICE_RULES:
            raise ValueError(f"rule must be one of {list(ADVICE_RULES)}, but got {self.rule!r}")
        if not 0 < self.kappa_threshold <= 1:
            raise ValueError(f"kappa_threshold must be in (0, 1], but got {self.kappa_threshold!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be an int >= 1, but got {self.window!r}")
        if self.min_positives < 1:
            raise ValueError(f"min_positives must be >= 1, but got {self.min_positives!r}")

    def advise(self, history: pd.DataFrame, *, budget_left: int | None = None) -> pd.DataFrame:
        """One row per concept of the latest version in ``history``.

        Parameters
        ----------
        history : DataFrame
            :data:`mlci.tables.ADVISOR_SIGNALS` rows of every recorded version, any order.
        budget_left : int, default=None
            Labels left in the budget (None: no budget).

        Returns
        -------
        DataFrame
            ``concept, verdict, reason`` and the evidence: ``labels, positives, kappa_mean``
            (mean of the last ``window`` kappas), ``oof_ap, gain_per_100, gain_se, uncertainty,
            found_rate`` (positives per label among the labels since the previous version),
            ``prevalence, budget_left`` (NaN without a budget).
        """
        rows = []
        history = history.assign(_v=history["model_version"].astype(int)).sort_values("_v")
        for concept, series in history.groupby("concept", sort=False):
            rows.append(self._one(str(concept), series, budget_left))
        return pd.DataFrame(rows, columns=list(ADVICE_COLUMNS))

    def _one(self, concept: str, s: pd.DataFrame, budget_left: int | None) -> dict:
        last = s.iloc[-1]
        kappas = s["kappa"].to_numpy(np.float64)[-self.window:]
        recent = s.iloc[-(self.window + 1):]
        gain, se = gain_per_100(recent["labels"].to_numpy(), recent["oof_ap"].to_numpy())
        found = last["new_positives"] / last["new_labels"] if last["new_labels"] > 0 else np.nan
        evidence = {
            "labels": int(last["labels"]), "positives": int(last["positives"]),
            "kappa_mean": float(np.mean(kappas)) if len(kappas) == self.window and np.isfinite(kappas).all() else np.nan,
            "oof_ap": float(last["oof_ap"]), "gain_per_100": gain, "gain_se": se,
            "uncertainty": float(last["uncertainty"]), "found_rate": float(found),
            "prevalence": float(last["prevalence"]),
            "budget_left": float("nan") if budget_left is None else float(budget_left),
        }
        facts = _facts(evidence, kappas)
        negatives = evidence["labels"] - evidence["positives"]
        if budget_left is not None and budget_left <= 0:
            verdict, why = "stop", "the label budget is spent"
        elif min(evidence["positives"], negatives) < self.min_positives:
            verdict = "keep labeling"
            why = (f"{evidence['positives']} positives and {negatives} negatives so far: "
                   f"too few to judge (needs {self.min_positives} of each)")
        else:
            verdict, why = self._rule(s, kappas)
        return {"concept": concept, "verdict": verdict, "reason": f"{why}; {facts}", **evidence}

    def _rule(self, s: pd.DataFrame, kappas: np.ndarray) -> tuple[str, str]:
        if self.rule == "stabilizing_predictions":
            t = self.kappa_threshold
            if len(kappas) == self.window and np.isfinite(kappas).all() and kappas.mean() >= t:
                return "stop", f"predictions stable: mean kappa of the last {self.window} nights ≥ {t}"
            if np.isfinite(kappas[-1]) and kappas[-1] >= t:
                return "slowing", f"kappa ≥ {t} last night, not yet for {self.window} nights"
            left = int(s["stop_set_size"].iloc[-1])
            if left < MIN_STOP_CLIPS:
                return "keep labeling", (f"no kappa: only {left} clips of the stop set are still unlabeled "
                                         f"(needs {MIN_STOP_CLIPS}; raise MLCI_ADVISOR__STOP_SET_SIZE or pick another rule)")
            if len(s) == 1:
                return "keep labeling", "first night: no earlier model to compare with"
            if not np.isfinite(kappas[-1]):
                return "keep labeling", "no kappa (a model predicts one class everywhere)"
            return "keep labeling", f"predictions still change (kappa below {t})"
        if self.rule == "overall_uncertainty":
            u, t = float(s["uncertainty"].iloc[-1]), self.uncertainty_threshold
            if u <= t:
                return "stop", f"pool uncertainty {u:.3f} bits ≤ {t}"
            if u <= 2 * t:
                return "slowing", f"pool uncertainty {u:.3f} bits ≤ {2 * t}"
            return "keep labeling", f"pool uncertainty {u:.3f} bits > {2 * t}"
        a = s["oof_ap"].to_numpy(np.float64)
        before, recent = a[: -self.window], a[-self.window:]
        if not np.isfinite(before).any() or not np.isfinite(recent).any():
            return "keep labeling", f"fewer than {self.window + 1} nights with an OOF AP"
        rise = float(np.nanmax(recent) - np.nanmax(before))
        if rise < self.plateau_delta:
            return "stop", f"OOF AP rose {rise:+.3f} over {self.window} nights (< {self.plateau_delta})"
        if rise < 2 * self.plateau_delta:
            return "slowing", f"OOF AP rose {rise:+.3f} over {self.window} nights (< {2 * self.plateau_delta})"
        return "keep labeling", f"OOF AP rose {rise:+.3f} over {self.window} nights"


def _facts(e: dict, kappas: np.ndarray) -> str:
    """The numbers behind a verdict, in one line."""
    shown = ", ".join("–" if not np.isfinite(k) else f"{k:.3f}" for k in kappas)
    parts = [f"kappa {shown}" if len(kappas) else "kappa –", f"OOF AP {e['oof_ap']:.3f}"]
    if np.isfinite(e["gain_per_100"]):
        parts.append(f"{e['gain_per_100']:+.3f} ± {e['gain_se']:.3f} per 100 labels")
    if np.isfinite(e["found_rate"]):
        parts.append(f"last labels {100 * e['found_rate']:.0f} % positive vs {100 * e['prevalence']:.0f} % in the pool")
    parts.append(f"pool uncertainty {e['uncertainty']:.2f} bits")
    if np.isfinite(e["budget_left"]):
        parts.append(f"{e['budget_left']:.0f} labels left in the budget")
    return ", ".join(parts)

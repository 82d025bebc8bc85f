"""All summary tables of an analysis, computed from a simulation (and a consensus study) in one call.

:func:`summarise_analysis` returns an :class:`AnalysisSummary`; :mod:`mlci.analysis.figures`
draws it and :mod:`mlci.analysis.report` turns it into sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlci.analysis.engine import SimulationResult
from mlci.analysis.stopping import RANKING_COLUMNS, evaluate_stopping, make_rules, rank_stopping_rules
from mlci.analysis.summary import (
    MACRO,
    paired_comparisons,
    run_summaries,
    strategy_summary,
)

__all__ = [
    "AnalysisSummary",
    "common_label_range",
    "consensus_summary",
    "is_oracle",
    "summarise_analysis",
    "summarise_stopping",
]


def is_oracle(strategy: str) -> bool:
    """Whether a strategy spec reads true labels (an oracle bound, not a real strategy)."""
    return strategy.startswith("oracle_") or "by=oracle_" in strategy


def common_label_range(curves: pd.DataFrame) -> tuple[float, float] | None:
    """The label range every schedule covers: (largest first count, smallest last count), or None."""
    per = curves.groupby("schedule")["labels"].agg(["min", "max"])
    lo, hi = float(per["min"].max()), float(per["max"].min())
    return (lo, hi) if lo < hi else None


@dataclass
class AnalysisSummary:
    """The analysis in tables (each is written to CSV as it is).

    Attributes
    ----------
    runs : per-run numbers (:func:`~mlci.analysis.summary.run_summaries`)
    strategies : mean ± std per (strategy, schedule, concept) with the test against ``baseline``
    versus_baseline : paired comparisons of every strategy with ``baseline`` (random)
    versus_fixed : question 1 — re-ranking strategies against the fixed order(s)
    query_depth : per (strategy, schedule), macro AULC over the label range all schedules share
    stopping : per run and rule (:func:`~mlci.analysis.stopping.evaluate_stopping`)
    stopping_summary : per (schedule, rule) over non-oracle runs
    stopping_ranking : per (schedule, rule), how close each rule stops to the real plateau, ranked,
        with the winner marked (:func:`~mlci.analysis.stopping.rank_stopping_rules`)
    consensus : the consensus study's rows (or None)
    consensus_summary : per (method, k, budget), macro means ± std (or None)
    consensus_tests : Dawid–Skene and one-coin against majority vote, paired (or None)
    """

    runs: pd.DataFrame
    strategies: pd.DataFrame
    versus_baseline: pd.DataFrame
    versus_fixed: pd.DataFrame
    query_depth: pd.DataFrame
    stopping: pd.DataFrame
    stopping_summary: pd.DataFrame
    stopping_ranking: pd.DataFrame | None = None
    consensus: pd.DataFrame | None = None
    consensus_summary: pd.DataFrame | None = None
    consensus_tests: pd.DataFrame | None = None
    metric: str = "ap"
    baseline: str = "random"
    alpha: float = 0.05
    common_range: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Table name -> DataFrame, for writing CSV files."""
        out = {
            "runs": self.runs,
            "strategy_summary": self.strategies,
            "versus_random": self.versus_baseline,
            "versus_fixed_order": self.versus_fixed,
            "query_depth": self.query_depth,
            "stopping_runs": self.stopping,
            "stopping_summary": self.stopping_summary,
        }
        if self.stopping_ranking is not None:
            out["stopping_ranking"] = self.stopping_ranking
        if self.consensus is not None:
            out["consensus_runs"] = self.consensus
            out["consensus_summary"] = self.consensus_summary
            out["consensus_tests"] = self.consensus_tests
        return out


def _fixed_pairs(strategies: list[str]) -> list[tuple[str, str]]:
    pairs = []
    fixed = [s for s in strategies if s.startswith("fixed_order")]
    plain = "fixed_order" if "fixed_order" in strategies else None
    for s in strategies:
        if s.startswith("fixed_order") or is_oracle(s):
            continue
        if plain:
            pairs.append((s, plain))
        for f in fixed:
            if f != plain and f.split("by=", 1)[-1].split(",")[0] == s:
                pairs.append((s, f))
    return pairs


def consensus_summary(consensus: pd.DataFrame, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Macro (over concepts) label accuracy and AP per (method, k, budget), and paired tests vs majority.

    Returns
    -------
    summary : pandas.DataFrame
        method, k, budget, n_clips, repetitions, label_accuracy_mean/std, test_ap_mean/std.
    tests : pandas.DataFrame
        For each k and budget where both ran: method (dawid_skene, one_coin) vs majority on
        label accuracy and AP: diff means and paired t-test p-values.
    """
    from scipy import stats

    macro = consensus.groupby(["repetition", "method", "k", "budget", "n_clips"], sort=True)[["label_accuracy", "test_ap"]].mean().reset_index()
    summary = (
        macro.groupby(["method", "k", "budget", "n_clips"], sort=True)
        .agg(
            repetitions=("repetition", "nunique"),
            label_accuracy_mean=("label_accuracy", "mean"),
            label_accuracy_std=("label_accuracy", "std"),
            test_ap_mean=("test_ap", "mean"),
            test_ap_std=("test_ap", "std"),
        )
        .reset_index()
    )
    rows = []
    idx = macro.set_index(["method", "k", "budget", "repetition"]).sort_index()
    for (k, budget), group in macro.groupby(["k", "budget"], sort=True):
        methods = set(group["method"])
        if "majority" not in methods:
            continue
        for method in sorted(methods - {"majority", "single"}):
            a = idx.loc[(method, k, budget)]
            b = idx.loc[("majority", k, budget)]
            reps = a.index.intersection(b.index)
            row = {"method": method, "baseline": "majority", "k": int(k), "budget": int(budget), "n": len(reps)}
            for col in ("label_accuracy", "test_ap"):
                x, y = a.loc[reps, col].to_numpy(), b.loc[reps, col].to_numpy()
                d = x - y
                row[f"{col}_diff"] = float(d.mean())
                if len(d) < 2 or np.allclose(d, 0):
                    p = np.nan if len(d) < 2 else 1.0
                elif np.allclose(d, d[0]):
                    p = 0.0
                else:
                    p = float(stats.ttest_rel(x, y).pvalue)
                row[f"{col}_p"] = p
                row[f"{col}_verdict"] = (
                    ("better" if d.mean() > 0 else "worse") if np.isfinite(p) and p < alpha else "no difference"
                )
            rows.append(row)
    return summary, pd.DataFrame(rows)


def summarise_stopping(stopping: pd.DataFrame) -> pd.DataFrame:
    """Per (schedule, rule) over the non-oracle runs of :func:`~mlci.analysis.stopping.evaluate_stopping`'s table.

    Returns
    -------
    pandas.DataFrame
        schedule, rule, runs, the shares ``early``/``on_time``/``late``/``never``, medians of
        ``stop_labels``, ``labels_95``, ``labels_99`` and ``signal_at_95``, ``final_labels`` (max),
        ``labels_saved_mean``, ``score_given_up_mean``/``_max``.
    """
    real = stopping[~stopping["strategy"].map(is_oracle)]
    return (
        real.groupby(["schedule", "rule"], sort=True)
        .agg(
            runs=("timing", "size"),
            early=("timing", lambda t: float((t == "early").mean())),
            on_time=("timing", lambda t: float((t == "on time").mean())),
            late=("timing", lambda t: float((t == "late").mean())),
            never=("timing", lambda t: float((t == "never").mean())),
            stop_labels_median=("stop_labels", "median"),
            labels_95_median=("labels_95", "median"),
            labels_99_median=("labels_99", "median"),
            final_labels=("final_labels", "max"),
            labels_saved_mean=("labels_saved", "mean"),
            score_given_up_mean=("score_given_up", "mean"),
            score_given_up_max=("score_given_up", "max"),
            signal_at_95_median=("signal_at_95", "median"),
        )
        .reset_index()
    )


def summarise_analysis(
    result: SimulationResult,
    consensus: pd.DataFrame | None = None,
    *,
    metric: str = "ap",
    baseline: str = "random",
    alpha: float = 0.05,
    stopping_metric: str | None = None,
    stopping_rules: dict | None = None,
) -> AnalysisSummary:
    """Every summary table of an analysis.

    Parameters
    ----------
    result : SimulationResult
    consensus : pandas.DataFrame, default=None
        From :func:`~mlci.analysis.consensus_study.consensus_study`.
    metric : str, default="ap"
        Test metric the summaries use.
    baseline : str, default="random"
        Strategy every other one is tested against.
    alpha : float, default=0.05
    stopping_metric : str, default=None
        Curve the stopping rules are judged against (default ``test_<metric>``).
    stopping_rules : dict, default=None
        From :func:`~mlci.analysis.stopping.make_rules` (default: its defaults).
    """
    rules = stopping_rules or make_rules()
    curves = result.curves
    strategies = list(dict.fromkeys(curves["strategy"]))
    common = common_label_range(curves) if curves["schedule"].nunique() > 1 else None
    runs = run_summaries(curves, result.reference, metric=metric, common_range=common)
    versus = paired_comparisons(runs, [(s, baseline) for s in strategies if s != baseline], alpha=alpha)
    fixed = paired_comparisons(runs, _fixed_pairs(strategies), alpha=alpha)
    table = strategy_summary(runs, versus)
    macro = runs[runs["concept"] == MACRO]
    if common is not None:
        depth = (
            macro.groupby(["strategy", "schedule"], sort=True)
            .agg(aulc_common_mean=("aulc_common", "mean"), aulc_common_std=("aulc_common", "std"),
                 total_drop_mean=("total_drop", "mean"), repetitions=("repetition", "nunique"))
            .reset_index()
        )
        depth["range_from"], depth["range_to"] = common
    else:
        depth = pd.DataFrame(columns=["strategy", "schedule", "aulc_common_mean", "aulc_common_std",
                                      "total_drop_mean", "repetitions", "range_from", "range_to"])
    if result.config.stopping:
        stop = evaluate_stopping(curves, metric=stopping_metric or f"test_{metric}", rules=rules)
        stop_summary = summarise_stopping(stop)
        ranking = rank_stopping_rules(stop)
    else:
        stop = pd.DataFrame()
        stop_summary = pd.DataFrame()
        ranking = pd.DataFrame(columns=["schedule", *RANKING_COLUMNS])
    c_summary = c_tests = None
    if consensus is not None and len(consensus):
        c_summary, c_tests = consensus_summary(consensus, alpha)
    return AnalysisSummary(
        runs=runs,
        strategies=table,
        versus_baseline=versus,
        versus_fixed=fixed,
        query_depth=depth,
        stopping=stop,
        stopping_summary=stop_summary,
        stopping_ranking=ranking,
        consensus=consensus,
        consensus_summary=c_summary,
        consensus_tests=c_tests,
        metric=metric,
        baseline=baseline,
        alpha=alpha,
        common_range=common,
        extra={"rules": {name: rule[2] if len(rule) > 2 else name for name, rule in rules.items()}},
    )

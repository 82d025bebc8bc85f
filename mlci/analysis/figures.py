"""Figures of an analysis (each function returns a ``matplotlib.figure.Figure``).

Figures are built on ``Figure`` objects, not pyplot, so no global state is touched: drawing is safe
in worker threads and never opens a window.

* :func:`learning_curve_grid` — the seed's grid: one panel per concept (and the macro mean),
  one line per strategy, mean ± std over repetitions, the whole-pool model dashed.
* :func:`query_depth_figure` — the same strategy under each schedule (macro).
* :func:`consensus_figure` — label accuracy and downstream AP of each consensus method.
* :func:`stability_figure` — the stopping signals along the runs and where each rule stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlci.analysis.summarise import is_oracle
from mlci.analysis.summary import MACRO

__all__ = ["consensus_figure", "learning_curve_grid", "query_depth_figure", "save", "stability_figure"]

_METRIC_NAMES = {"ap": "AP", "auc": "ROC AUC", "accuracy": "accuracy", "recall": "recall", "f1": "F1"}


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab20" if len(names) > 10 else "tab10"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _style(name: str) -> str:
    return ":" if is_oracle(name) else ("--" if name.startswith("fixed_order") else "-")


def _log_x(ax, labels: np.ndarray) -> None:
    if labels.max() / max(labels.min(), 1) > 30:
        ax.set_xscale("log")


def save(fig, path) -> None:
    """Write ``fig`` to ``path`` (PNG, 110 dpi)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")


def learning_curve_grid(
    curves: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    schedule: str,
    metric: str = "ap",
    split: str = "test",
    strategies: Sequence[str] | None = None,
):
    """One panel per concept plus the macro mean: ``<split>_<metric>`` against labels, per strategy."""
    col = f"{split}_{metric}"
    data = curves[curves["schedule"] == schedule]
    strategies = list(strategies or dict.fromkeys(data["strategy"]))
    concepts = list(dict.fromkeys(data["concept"])) + [MACRO]
    ncols = min(4, len(concepts))
    nrows = math.ceil(len(concepts) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    colors = _colors(strategies)
    macro = data.groupby(["strategy", "repetition", "labels"])[col].mean().reset_index().assign(concept=MACRO)
    both = pd.concat([data[["strategy", "repetition", "labels", "concept", col]], macro], ignore_index=True)
    stats = both.groupby(["concept", "strategy", "labels"])[col].agg(["mean", "std"]).reset_index()
    for ax, concept in zip(axes.ravel(), concepts):
        part = stats[stats["concept"] == concept]
        for s in strategies:
            line = part[part["strategy"] == s]
            if line.empty:
                continue
            x = line["labels"].to_numpy()
            ax.plot(x, line["mean"], _style(s), color=colors[s], lw=1.6, label=s)
            ax.fill_between(x, line["mean"] - line["std"].fillna(0), line["mean"] + line["std"].fillna(0),
                            color=colors[s], alpha=0.12, lw=0)
        if split == "test" and metric in reference.columns:
            ref = reference[metric].mean() if concept == MACRO else reference.loc[reference["concept"] == concept, metric].mean()
            ax.axhline(ref, color="black", ls="--", lw=1)
        ax.set_title(concept)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        _log_x(ax, data["labels"].to_numpy())
    for ax in axes.ravel()[len(concepts):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("labels")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{_METRIC_NAMES.get(metric, metric)} ({split})")
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(names) / 5)))
    fig.suptitle(f"{_METRIC_NAMES.get(metric, metric)} on the {split} {'split' if split == 'test' else 'remaining pool'} "
                 f"against labels, schedule {schedule} (mean ± std over repetitions; dashed: whole-pool model)")
    fig.tight_layout()
    return fig


def query_depth_figure(curves: pd.DataFrame, query_depth: pd.DataFrame, *, metric: str = "ap", strategies=None):
    """Macro test score against labels under each schedule, one panel per strategy, with the AULC over the shared range."""
    col = f"test_{metric}"
    strategies = [s for s in (strategies or dict.fromkeys(curves["strategy"])) if not is_oracle(s)] or list(dict.fromkeys(curves["strategy"]))
    schedules = list(dict.fromkeys(curves["schedule"]))
    colors = _colors(schedules)
    ncols = min(4, len(strategies))
    nrows = math.ceil(len(strategies) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    macro = curves.groupby(["strategy", "schedule", "repetition", "labels"])[col].mean().groupby(["strategy", "schedule", "labels"]).mean()
    rng = (query_depth["range_from"].iloc[0], query_depth["range_to"].iloc[0]) if len(query_depth) else None
    for ax, s in zip(axes.ravel(), strategies):
        for sch in schedules:
            if (s, sch) not in macro.index.droplevel(2):
                continue
            line = macro.loc[(s, sch)]
            label = sch
            row = query_depth[(query_depth["strategy"] == s) & (query_depth["schedule"] == sch)]
            if len(row) and np.isfinite(row["aulc_common_mean"].iloc[0]):
                label = f"{sch} (AULC {row['aulc_common_mean'].iloc[0]:.3f})"
            ax.plot(line.index, line.to_numpy(), marker=".", color=colors[sch], label=label)
        if rng:
            ax.axvspan(*rng, color="grey", alpha=0.08)
        ax.set_title(s)
        ax.grid(alpha=0.3)
        ax.set_xlabel("labels")
        ax.legend(fontsize=7)
        _log_x(ax, curves["labels"].to_numpy())
    for ax in axes.ravel()[len(strategies):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"macro {_METRIC_NAMES.get(metric, metric)} (test)")
    span = f"; shaded: the {rng[0]:.0f}-{rng[1]:.0f} label range every schedule covers (AULC over it)" if rng else ""
    fig.suptitle(f"Query depth: the same strategy under each schedule{span}")
    fig.tight_layout()
    return fig


def consensus_figure(consensus_summary: pd.DataFrame):
    """Left: label accuracy against answers per clip; right: downstream test AP against labels bought."""
    fig = Figure(figsize=(12, 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    methods = list(dict.fromkeys(consensus_summary["method"]))
    colors = _colors(methods)
    full = consensus_summary.loc[consensus_summary.groupby(["method", "k"])["n_clips"].idxmax()]
    for m in methods:
        part = full[full["method"] == m].sort_values("k")
        ax1.errorbar(part["k"], part["label_accuracy_mean"], yerr=part["label_accuracy_std"].fillna(0),
                     marker="o", capsize=3, color=colors[m], label=m)
    ax1.set_xlabel("answers bought per clip (k)")
    ax1.set_ylabel("label accuracy (macro)")
    ax1.set_title("Label accuracy on the whole pool")
    ax1.grid(alpha=0.3)
    ax1.legend()
    styles = ["-", "--", ":", "-."]
    ks = sorted(consensus_summary["k"].unique())
    for m in methods:
        for i, k in enumerate(ks):
            part = consensus_summary[(consensus_summary["method"] == m) & (consensus_summary["k"] == k)].sort_values("budget")
            if part.empty:
                continue
            ax2.plot(part["budget"], part["test_ap_mean"], styles[i % 4], marker=".", color=colors[m], label=f"{m}, k={k}")
    ax2.set_xscale("log")
    ax2.set_xlabel("labels bought (answers)")
    ax2.set_ylabel("macro AP of the model (test)")
    ax2.set_title("Downstream AP against labels bought")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle("Question 3: consensus methods with simulated annotators (mean over repetitions)")
    fig.tight_layout()
    return fig


def stability_figure(curves: pd.DataFrame, stopping: pd.DataFrame, *, schedule: str, kappa_threshold: float = 0.99,
                     uncertainty_threshold: float = 0.05, strategies=None):
    """Stopping signals (macro over concepts) per strategy, and where each rule stopped relative to the 95 % point."""
    data = curves[(curves["schedule"] == schedule) & ~curves["strategy"].map(is_oracle)]
    strategies = list(strategies or dict.fromkeys(data["strategy"]))
    colors = _colors(strategies)
    fig = Figure(figsize=(19, 4.2))
    axes = fig.subplots(1, 4)
    mean = data.groupby(["strategy", "labels"])[["kappa", "uncertainty", "oof_ap", "test_ap"]].mean()
    for s in strategies:
        if s not in mean.index.get_level_values(0):
            continue
        part = mean.loc[s]
        axes[0].plot(part.index, part["kappa"], color=colors[s], label=s)
        axes[1].plot(part.index, part["uncertainty"], color=colors[s], label=s)
        axes[2].plot(part.index, part["test_ap"], color=colors[s], label=f"{s} test")
        axes[2].plot(part.index, part["oof_ap"], ":", color=colors[s])
    axes[0].axhline(kappa_threshold, color="black", ls="--", lw=1)
    axes[0].set_ylabel("kappa between consecutive models (stop set)")
    axes[1].axhline(uncertainty_threshold, color="black", ls="--", lw=1)
    axes[1].set_ylabel("mean pool uncertainty (bits)")
    axes[2].set_ylabel("AP: test (solid), out-of-fold (dotted)")
    for ax in axes[:3]:
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
        _log_x(ax, data["labels"].to_numpy())
    axes[0].legend(fontsize=7)
    stop = stopping[(stopping["schedule"] == schedule) & ~stopping["strategy"].map(is_oracle)]
    rules = list(dict.fromkeys(stop["rule"]))
    ratios = [(stop.loc[stop["rule"] == r, "stop_labels"] / stop.loc[stop["rule"] == r, "labels_95"]).dropna() for r in rules]
    axes[3].boxplot([r.to_numpy() if len(r) else [np.nan] for r in ratios], tick_labels=rules, orientation="vertical")
    axes[3].axhline(1.0, color="black", ls="--", lw=1)
    axes[3].set_yscale("log")
    axes[3].set_ylabel("stop labels / labels at 95 % of final AP")
    axes[3].tick_params(axis="x", labelrotation=20)
    never = [f"{r}: {(stop.loc[stop['rule'] == r, 'timing'] == 'never').mean():.0%} never" for r in rules]
    axes[3].set_title("; ".join(never), fontsize=8)
    fig.suptitle(f"Question 4: stopping signals, schedule {schedule} (macro over concepts, mean over repetitions; "
                 "right: below 1 = stopped before the curve reached 95 % of its final value)")
    fig.tight_layout()
    return fig

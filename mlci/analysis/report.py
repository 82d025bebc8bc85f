"""The analysis report: markdown whose every sentence is generated from the computed tables.

Sentences are templates filled with numbers, and the words that carry a judgement ("better",
"worse", "no significant difference", "early", ...) are chosen by those numbers (p-values against
``alpha``, shares, signs), never typed in for a particular result. :func:`answers` returns the
four answers alone (``docs/analysis.md`` quotes them); :func:`render_report` the whole report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mlci.analysis.engine import SimulationResult
from mlci.analysis.summarise import AnalysisSummary, is_oracle
from mlci.analysis.summary import MACRO

__all__ = ["answers", "render_report"]

_SIGNAL_UNITS = {"stabilizing_predictions": "kappa", "overall_uncertainty": "bits", "oof_plateau": "out-of-fold AP"}


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _f(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x + 0.0:.{digits}f}" if abs(x) >= 0.5 * 10**-digits else f"{0.0:.{digits}f}"


def _signed(x: float) -> str:
    """``+0.035`` / ``-0.071``; a difference that rounds to zero is ``+0.000``, never ``-0.000``."""
    return "n/a" if x is None or not np.isfinite(x) else f"{(x if abs(x) >= 0.0005 else 0.0):+.3f}"


def _labels(x: float) -> str:
    return "not reached" if x is None or not np.isfinite(x) else f"{x:.0f}"


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.0f} %"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _main_schedule(result: SimulationResult) -> str:
    if result.schedules:
        return result.schedules[0]
    return str(result.curves["schedule"].iloc[0]) if len(result.curves) else ""


def _n_pool(s: AnalysisSummary, result: SimulationResult) -> int:
    return int(result.n_pool or s.runs["max_labels"].max())


def _verdict_phrase(row, alpha: float) -> str:
    if row["verdict"] == "better":
        return f"significantly better ({_p(row['p_ttest'])})"
    if row["verdict"] == "worse":
        return f"significantly worse ({_p(row['p_ttest'])})"
    return f"not significantly different at α = {alpha} ({_p(row['p_ttest'])})"


def _q1(s: AnalysisSummary, schedule: str) -> list[str]:
    out = []
    v = s.versus_fixed
    if v is None or v.empty:
        return ["Question 1 needs the `fixed_order` strategy in the run; it was not simulated, so there is no answer."]
    macro = v[(v["concept"] == MACRO) & (v["schedule"] == schedule)]
    plain = macro[macro["baseline"] == "fixed_order"]
    model_based = plain[plain["strategy"] != "random"]
    better = model_based[model_based["verdict"] == "better"]
    worse = model_based[model_based["verdict"] == "worse"]
    same = model_based[model_based["verdict"] == "no difference"]
    if len(model_based):
        out.append(
            f"On schedule {schedule}, re-ranking the pool after every batch gave a higher macro {s.metric.upper()} "
            f"learning curve (normalised AULC) than a random order fixed in advance for {len(better)} of "
            f"{len(model_based)} re-ranking strategies ({_join(better['strategy'])}), a lower one for {len(worse)} "
            f"({_join(worse['strategy'])}), and no significant difference for {len(same)} ({_join(same['strategy'])}); "
            f"paired t-tests over {int(model_based['n'].max())} repetitions, α = {s.alpha}."
        )
        best = model_based.sort_values("diff_mean", ascending=False).iloc[0]
        out.append(
            f"The largest gain is {best['strategy']}'s: AULC {_f(best['mean'])} against {_f(best['baseline_mean'])} for the "
            f"fixed order (difference {_signed(best['diff_mean'])}, {_p(best['p_ttest'])}, Wilcoxon {_p(best['p_wilcoxon'])})."
        )
    rnd = plain[plain["strategy"] == "random"]
    if len(rnd):
        r = rnd.iloc[0]
        out.append(
            f"Random re-drawing against the fixed random order (two orders that use no model): difference "
            f"{_signed(r['diff_mean'])} AULC, {_p(r['p_ttest'])} — {'as expected, ' if r['verdict'] == 'no difference' else ''}"
            f"{'no significant difference' if r['verdict'] == 'no difference' else r['verdict']}."
        )
    static = macro[macro["baseline"] != "fixed_order"]
    for _, row in static.iterrows():
        out.append(
            f"Ranking once by {row['strategy']} with the start-set model ({row['baseline']}) against re-ranking by it after "
            f"every batch: AULC {_f(row['baseline_mean'])} vs {_f(row['mean'])}; re-ranking is {_verdict_phrase(row, s.alpha)}."
        )
    per_concept = v[(v["concept"] != MACRO) & (v["schedule"] == schedule) & (v["baseline"] == "fixed_order") & (v["strategy"] != "random")]
    if len(per_concept):
        wins = per_concept.groupby("concept")["verdict"].apply(lambda x: (x == "better").any())
        out.append(
            f"Per concept, at least one re-ranking strategy beat the fixed order significantly on {int(wins.sum())} of "
            f"{len(wins)} concepts{' (' + _join(list(wins[wins].index)) + ')' if wins.any() else ''}."
        )
    return out


def _q2(s: AnalysisSummary, schedule: str, n_pool: int) -> tuple[list[str], pd.DataFrame]:
    out = []
    t = s.strategies[s.strategies["schedule"] == schedule]
    macro = t[t["concept"] == MACRO].sort_values("aulc_mean", ascending=False)
    real = macro[~macro["strategy"].map(is_oracle)]
    ranking = [f"{r.strategy} ({r.aulc_mean:.3f} ± {0 if not np.isfinite(r.aulc_std) else r.aulc_std:.3f})" for r in real.itertuples()]
    out.append(f"Macro normalised AULC of {s.metric.upper()} on schedule {schedule}, best first (mean ± std over repetitions): {', '.join(ranking)}.")
    vs = s.versus_baseline
    vm = vs[(vs["concept"] == MACRO) & (vs["schedule"] == schedule) & ~vs["strategy"].map(is_oracle)]
    better = vm[vm["verdict"] == "better"]
    worse = vm[vm["verdict"] == "worse"]
    out.append(
        f"Against {s.baseline} (paired t-test on per-repetition AULC, α = {s.alpha}): significantly better — "
        f"{_join([f'{r.strategy} ({_signed(r.diff_mean)}, {_p(r.p_ttest)})' for r in better.itertuples()])}; significantly worse — "
        f"{_join([f'{r.strategy} ({_signed(r.diff_mean)}, {_p(r.p_ttest)})' for r in worse.itertuples()])}."
    )
    holm_ok = vm[(vm["p_holm"] < s.alpha)]
    out.append(f"After Holm's correction over the {len(vm)} comparisons with {s.baseline}, {len(holm_ok)} "
               f"{'remains' if len(holm_ok) == 1 else 'remain'} significant"
               f"{' (' + _join(list(holm_ok['strategy'])) + ')' if len(holm_ok) else ''}.")
    oracles = macro[macro["strategy"].map(is_oracle)]
    if len(oracles):
        out.append("The oracle bounds, which read true labels and cannot run for real, reach " +
                   _join([f"{r.strategy} {r.aulc_mean:.3f}" for r in oracles.itertuples()]) + ".")
    if len(real) and "labels_95_mean" in real.columns:
        best = real.iloc[0]
        base = macro[macro["strategy"] == s.baseline]
        sentence = (
            f"With {best['strategy']}, the macro curve reaches 95 % of the whole-pool model's {s.metric.upper()} after "
            f"{_labels(best['labels_95_mean'])} labels ({int(best['labels_95_reached'])} of {int(best['repetitions'])} repetitions got there"
            f"{', ' + _pct(best['labels_95_mean'] / n_pool) + ' of the pool' if np.isfinite(best['labels_95_mean']) else ''})"
        )
        if len(base):
            b = base.iloc[0]
            sentence += f"; {s.baseline} needs {_labels(b['labels_95_mean'])} ({int(b['labels_95_reached'])} of {int(b['repetitions'])})"
        out.append(sentence + ".")
    # Best strategy per concept.
    rows = []
    per = t[(t["concept"] != MACRO) & ~t["strategy"].map(is_oracle)]
    for concept, g in per.groupby("concept", sort=True):
        g = g.sort_values("aulc_mean", ascending=False)
        top = g.iloc[0]
        base = g[g["strategy"] == s.baseline]
        rows.append({
            "concept": concept,
            "best strategy": top["strategy"],
            "AULC": f"{top['aulc_mean']:.3f} ± {0 if not np.isfinite(top['aulc_std']) else top['aulc_std']:.3f}",
            f"{s.baseline} AULC": f"{base['aulc_mean'].iloc[0]:.3f}" if len(base) else "n/a",
            f"vs {s.baseline}": "—" if top["strategy"] == s.baseline else f"{top['verdict']} ({_p(top['p_ttest'])})",
            "labels to 90 %": _labels(top.get("labels_90_mean", np.nan)),
            "labels to 95 %": _labels(top.get("labels_95_mean", np.nan)),
        })
    table = pd.DataFrame(rows)
    if len(table):
        sig = table[table[f"vs {s.baseline}"].str.startswith("better")]
        out.append(
            f"Per concept, the strategy with the highest AULC beats {s.baseline} significantly on {len(sig)} of {len(table)} concepts; "
            "the winners are " + _join([f"{r['best strategy']} for {r['concept']}" for _, r in table.iterrows()]) + "."
        )
    return out, table


def _q3(s: AnalysisSummary) -> list[str]:
    if s.consensus_summary is None or s.consensus_summary.empty:
        return ["The consensus study was not run, so there is no answer to question 3."]
    out = []
    cs = s.consensus_summary
    full = cs.loc[cs.groupby(["method", "k"])["n_clips"].idxmax()].sort_values(["k", "method"])
    for k, g in full.groupby("k", sort=True):
        parts = [f"{r.method} {r.label_accuracy_mean:.3f} (AP {r.test_ap_mean:.3f})" for r in g.itertuples()]
        out.append(f"With {k} answer{'s' if k > 1 else ''} per clip on the whole pool, label accuracy (macro) is: {', '.join(parts)}.")
    tests = s.consensus_tests
    if tests is not None and len(tests):
        top = tests[tests["budget"] == tests.groupby("k")["budget"].transform("max")]
        for r in top.itertuples():
            out.append(
                f"At k = {r.k}, {r.method} against majority vote: label accuracy {_signed(r.label_accuracy_diff)} "
                f"({_p(r.label_accuracy_p)}, {r.label_accuracy_verdict}), downstream AP {_signed(r.test_ap_diff)} "
                f"({_p(r.test_ap_p)}, {r.test_ap_verdict})."
            )
    # Equal budgets: which (method, k) gives the best model for the labels bought?
    # Budgets where one answer per clip and several answers per clip can both be bought.
    shared = cs.groupby("budget").filter(lambda g: g["k"].nunique() > 1 and (g["k"] == 1).any())
    if len(shared):
        lines = []
        for budget, g in shared.groupby("budget", sort=True):
            best = g.sort_values("test_ap_mean", ascending=False).iloc[0]
            lines.append(f"{budget} labels → {best['method']} with k = {best['k']} ({best['n_clips']} clips, AP {best['test_ap_mean']:.3f})")
        out.append("For a fixed number of answers bought, the best downstream model comes from: " + "; ".join(lines) + ".")
        single = cs[cs["method"] == "single"]
        if len(single):
            wins = sum(
                1 for budget, g in shared.groupby("budget")
                if g.sort_values("test_ap_mean", ascending=False).iloc[0]["method"] == "single"
            )
            total = shared["budget"].nunique()
            if wins in (0, total):
                who = "one answer per clip on more clips" if wins else "several answers per clip, merged,"
                out.append(f"Where both are affordable, {who} gives the better model at every one of the {total} budgets compared.")
            else:
                out.append(
                    f"Where both are affordable, one answer per clip on more clips gives the better model at {wins} of "
                    f"{total} budgets, several answers per clip merged at the other {total - wins}."
                )
    return out


def _q4(s: AnalysisSummary, schedule: str) -> list[str]:
    if s.stopping_summary is None or s.stopping_summary.empty:
        return ["The stopping signals were not recorded (stopping=False), so there is no answer to question 4."]
    out = []
    ss = s.stopping_summary[s.stopping_summary["schedule"] == schedule]
    names = s.extra.get("rules", {})
    for r in ss.itertuples():
        name = names.get(r.rule, r.rule)
        at95 = f"At the curves' 95 % point its signal was {_f(r.signal_at_95_median)} {_SIGNAL_UNITS.get(r.rule, '')} (median over runs)."
        if r.never >= 1.0:
            out.append(f"{name}: never fired in any of the {r.runs} runs on schedule {schedule}. {at95}")
            continue
        out.append(
            f"{name}: over {r.runs} runs on schedule {schedule}, it stopped on time (between the points where the test "
            f"curve reached 95 % and 99 % of its final value) in {_pct(r.on_time)}, early in {_pct(r.early)}, late in "
            f"{_pct(r.late)}, and never fired in {_pct(r.never)}; median stop at {_labels(r.stop_labels_median)} labels "
            f"(the curves' median 95 % point: {_labels(r.labels_95_median)}, 99 % point: {_labels(r.labels_99_median)}); "
            f"on average it saved {r.labels_saved_mean:.0f} of up to {r.final_labels:.0f} labels and gave up "
            f"{_f(r.score_given_up_mean)} {s.metric.upper()} (at worst {_f(r.score_given_up_max)}). {at95}"
        )
    if len(ss):
        best = ss.sort_values(["on_time", "never"], ascending=[False, True]).iloc[0]
        out.append(
            f"The rule that most often stops inside the 95–99 % window is {best['rule']} ({_pct(best['on_time'])} of runs); "
            f"the rule that fires least often is {ss.sort_values('never').iloc[-1]['rule']} "
            f"(never in {_pct(ss['never'].max())} of runs)."
        )
        plateau = ss["labels_95_median"].median()
        total = ss["final_labels"].max()
        out.append(
            f"The learning curves themselves level off: half the runs reach 95 % of their final {s.metric.upper()} by "
            f"{_labels(plateau)} labels, {_pct(plateau / total) if np.isfinite(plateau) else 'n/a'} of the {total:.0f} the schedule ends with."
        )
    out += _q4_winner(s, schedule)
    return out


def _q4_winner(s: AnalysisSummary, schedule: str) -> list[str]:
    """Which rule stopped closest to the real plateau (the nightly advisor's default), and by how much."""
    ranking = s.stopping_ranking
    if ranking is None or ranking.empty:
        return []
    rows = ranking[ranking["schedule"] == schedule].sort_values("rank")
    won = rows[rows["winner"]]
    if won.empty:
        return []
    w = won.iloc[0]
    metric = s.metric.upper()
    others = _join([
        f"{r.rule} {_labels(r.distance_mean)}" + ("" if r.eligible else f" (early in {_pct(r.early_share)} of runs)")
        for r in rows[~rows["winner"]].itertuples()
    ])
    early = f"stopped early (losing more than {w['early_tolerance']:g} {metric})"
    never = f" and never fired in {_pct(w['never'])} (labeling to the end)" if w["never"] > 0 else ""
    sentence = (
        f"{w['rule']} stopped closest to the real plateau (where the test curve first reaches 99 % of its final "
        f"{metric}): {_labels(w['distance_mean'])} labels from it on average, against {others}; it spent "
        f"{_labels(w['labels_past_plateau_mean'])} labels past the plateau and gave up {_f(w['score_lost_mean'])} "
        f"{metric} on average, and {early} in {_pct(w['early_share'])} of runs{never}."
    )
    share = _pct(w["max_early_share"])
    if w["fallback"]:
        verdict = f"Every rule stops early in more than {share} of runs, so none qualifies; {w['rule']} is only the closest."
    else:
        verdict = f"It is the closest of the rules that stop early in at most {share} of runs."
    from mlci.config import AdvisorSettings

    default = AdvisorSettings().stop_rule
    advisor = ("It is the nightly stop advisor's default rule." if w["rule"] == default else
               f"The nightly stop advisor's default is {default}; to follow this data, set "
               f"MLCI_ADVISOR__STOP_RULE={w['rule']} (docs/advisor.md).")
    return [f"{sentence} {verdict} {advisor}"]


def _seed_findings(s: AnalysisSummary, schedule: str, n_pool: int) -> list[str]:
    out = []
    t = s.strategies[(s.strategies["schedule"] == schedule) & (s.strategies["concept"] == MACRO)].set_index("strategy")
    real = t[~t.index.map(is_oracle)]
    if s.baseline in t.index and len(real) > 1:
        rank = int((real["aulc_mean"] > t.loc[s.baseline, "aulc_mean"]).sum()) + 1
        fastest = real["labels_95_mean"].idxmin() if real["labels_95_mean"].notna().any() else None
        out.append(
            f"“Random does okay but flatlines”: random ranks {rank} of {len(real)} real strategies by macro AULC; "
            f"it reaches 95 % of the whole-pool model after {_labels(t.loc[s.baseline].get('labels_95_mean', np.nan))} labels"
            + (f", against {_labels(real.loc[fastest, 'labels_95_mean'])} for {fastest}." if fastest else ".")
        )
    for name in ("positive", "negative"):
        row = s.versus_baseline[(s.versus_baseline["strategy"] == name) & (s.versus_baseline["concept"] == MACRO)
                                & (s.versus_baseline["schedule"] == schedule)]
        if len(row):
            r = row.iloc[0]
            out.append(f"“{name.capitalize()} does badly”: {name} against random, AULC {_signed(r['diff_mean'])} ({_p(r['p_ttest'])}): "
                       f"{'confirmed' if r['verdict'] == 'worse' else 'not confirmed'} here.")
    if len(real) and "labels_95_mean" in real.columns and real["labels_95_mean"].notna().any():
        fastest = real["labels_95_mean"].idxmin()
        best = real.loc[fastest, "labels_95_mean"]
        out.append(
            f"“200–300 labels (20–30 % of the data) is the sweet spot”: here the strategy that gets there fastest, "
            f"{fastest}, reaches 95 % of the whole-pool model after {_labels(best)} labels on average "
            f"({int(real.loc[fastest, 'labels_95_reached'])} of {int(real.loc[fastest, 'repetitions'])} repetitions), "
            f"{_pct(best / n_pool)} of the {n_pool:.0f}-clip pool."
        )
    runs = s.runs[(s.runs["concept"] != MACRO) & (s.runs["strategy"] == "oracle_inlier")]
    if len(runs) and runs["schedule"].nunique() > 1:
        drop = runs.groupby("schedule")["total_drop"].mean().sort_values()
        out.append(
            "“Small batches with inlier oscillate”: the mean total decrease along oracle_inlier's test-AP curves is "
            + ", ".join(f"{k} {v:.3f}" for k, v in drop.items())
            + f" — largest under {drop.index[-1]}."
        )
    elif len(runs):
        other = s.runs[(s.runs["concept"] != MACRO) & (s.runs["schedule"] == schedule) & ~s.runs["strategy"].map(is_oracle)]
        out.append(
            f"“Small batches with inlier oscillate”: the mean total decrease along oracle_inlier's test-AP curves is "
            f"{runs['total_drop'].mean():.3f}, against {other['total_drop'].mean():.3f} for the real strategies."
        )
    return out


def answers(s: AnalysisSummary, result: SimulationResult) -> dict[str, list[str]]:
    """The generated sentences answering each question, keyed ``q1`` .. ``q4`` and ``seed``."""
    schedule = _main_schedule(result)
    n_pool = _n_pool(s, result)
    q2, _ = _q2(s, schedule, n_pool)
    return {"q1": _q1(s, schedule), "q2": q2, "q3": _q3(s), "q4": _q4(s, schedule), "seed": _seed_findings(s, schedule, n_pool)}


def _table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "_(empty)_"
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def render_report(
    s: AnalysisSummary,
    result: SimulationResult,
    *,
    title: str = "Labeling analysis",
    data_description: str = "",
    figures: Mapping[str, str] | None = None,
    tables: Sequence[str] = (),
) -> str:
    """The report as markdown.

    Parameters
    ----------
    s : AnalysisSummary
    result : SimulationResult
    title : str
    data_description : str
        One generated sentence about where the data came from (store, source, features).
    figures : mapping of str to str
        Caption -> relative path of each figure to embed.
    tables : sequence of str
        File names of the CSV tables written beside the report.
    """
    curves = result.curves
    cfg = result.config
    schedule = _main_schedule(result)
    n_pool = _n_pool(s, result)
    strategies = list(result.strategies or dict.fromkeys(curves["strategy"]))
    schedules = list(result.schedules or dict.fromkeys(curves["schedule"]))
    lines = [f"# {title}", ""]
    lines.append(
        "_Every sentence below is generated by `mlci.analysis.report` from the tables listed at the end; "
        "the words that judge a result are chosen by its numbers._"
    )
    lines += ["", "## Data and protocol", ""]
    if data_description:
        lines.append(data_description)
    lines.append(
        f"{len(result.concepts)} concepts ({_join(list(result.concepts))}) were simulated with {cfg.repetitions} repetitions "
        f"(seed {cfg.seed}); each repetition holds out {100 * cfg.test_size:.0f} % of the clips as a stratified test split "
        f"({result.n_test} clips) and labels a {n_pool}-clip pool batch by batch, starting from a random start set shared by every strategy. "
        f"The model is an L2 logistic regression per concept (C = {cfg.C}); scores are {s.metric.upper()} on the test split "
        f"unless stated. Strategies: {_join(strategies)}. Schedules: {_join(schedules)}; the answers use {schedule}."
    )
    if result.skipped:
        lines.append("Concepts left out: " + "; ".join(f"{k} ({v})" for k, v in result.skipped.items()) + ".")
    lines.append(f"Loading the data and simulating every unit took {result.seconds:.1f} s.")
    blocks = answers(s, result)
    headings = {
        "q1": "1. Does re-ranking after each batch beat a fixed order?",
        "q2": "2. Which strategies make labeling most efficient, per concept?",
        "q3": "3. Which consensus method should merge several answers?",
        "q4": "4. Is there a point where the model is stable and labeling can stop?",
        "seed": "The seed notebook's findings, re-checked",
    }
    for key, heading in headings.items():
        lines += ["", f"## {heading}", ""]
        lines += [f"- {sentence}" for sentence in blocks[key]]
        if key == "q2":
            _, table = _q2(s, schedule, n_pool)
            lines += ["", _table(table)]
    if figures:
        lines += ["", "## Figures", ""]
        for caption, path in figures.items():
            lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
    if tables:
        lines += ["", "## Tables", "", "Written beside this report: " + ", ".join(f"`{t}`" for t in tables) + "."]
    return "\n".join(lines) + "\n"

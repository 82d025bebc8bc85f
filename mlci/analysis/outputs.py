"""Write an analysis to a folder (figures, CSV tables, the report), publish it to the store, log it to MLflow.

Folder layout (also the MLflow parent run's artifact layout and the store's
``reports/analysis/<analysis_id>/``)::

    report.md
    report.html   the same, figures inlined: MLflow's artifact viewer shows it whole (it shows a
                  markdown file as text, and an HTML file cannot load images beside it)
    figures/learning_curves_<schedule>_<metric>.png, pool_curves_<schedule>.png,
            query_depth.png, consensus.png, stability_<schedule>.png
    tables/<name>.csv     curves, reference, runs, strategy_summary, versus_random, ...

MLflow: one parent run per analysis (params, the answers' headline numbers, every artifact) and one
nested run per (strategy, schedule) whose metrics are logged with ``step = number of labels``
(``ap_<concept>``, ``auc_<concept>``, ``ap_macro``, ``auc_macro``, ``accuracy_macro``,
``recall_macro``, ``f1_macro``, ``pool_ap_macro``, ``ap_macro_std``), so the MLflow UI's compare
view draws the learning curves; summary numbers (``aulc_macro``, ``labels_95_macro``, ...) are
logged at step 0.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mlci.analysis import figures as F
from mlci.analysis.engine import SimulationResult
from mlci.analysis.metrics import METRICS
from mlci.analysis.report import answers, render_report
from mlci.analysis.summarise import AnalysisSummary
from mlci.analysis.summary import MACRO
from mlci.layout import analysis_key

__all__ = ["ANALYSIS_TAG", "find_analysis_run", "log_to_mlflow", "publish_outputs", "write_outputs"]

#: MLflow tag holding the analysis id (data + parameter fingerprint).
ANALYSIS_TAG = "mlci.analysis_id"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def write_outputs(
    summary: AnalysisSummary,
    result: SimulationResult,
    folder: str | Path,
    *,
    title: str = "Labeling analysis",
    data_description: str = "",
    metrics: tuple[str, ...] = ("ap", "auc", "accuracy"),
) -> dict[str, Path]:
    """Draw every figure, write every table and the report into ``folder``; return name -> path."""
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    captions: dict[str, str] = {}
    curves = result.curves
    for schedule in result.schedules or sorted(curves["schedule"].unique()):
        for metric in metrics:
            name = f"figures/learning_curves_{_slug(schedule)}_{metric}.png"
            F.save(F.learning_curve_grid(curves, result.reference, schedule=schedule, metric=metric), folder / name)
            written[name] = folder / name
            if metric == metrics[0]:
                captions[f"Learning curves per concept, {schedule} ({metric.upper()}, test split)"] = name
        if result.config.evaluate_pool:
            name = f"figures/pool_curves_{_slug(schedule)}.png"
            F.save(F.learning_curve_grid(curves, result.reference, schedule=schedule, metric=metrics[0], split="pool"),
                   folder / name)
            written[name] = folder / name
        if result.config.stopping and len(summary.stopping):
            name = f"figures/stability_{_slug(schedule)}.png"
            F.save(F.stability_figure(curves, summary.stopping, schedule=schedule), folder / name)
            written[name] = folder / name
            if schedule == (result.schedules or [schedule])[0]:
                captions[f"Stopping signals and stop points, {schedule}"] = name
    if len(summary.query_depth):
        name = "figures/query_depth.png"
        F.save(F.query_depth_figure(curves, summary.query_depth, metric=summary.metric), folder / name)
        written[name] = folder / name
        captions["Query depth: each strategy under each schedule"] = name
    if summary.consensus_summary is not None and len(summary.consensus_summary):
        name = "figures/consensus.png"
        F.save(F.consensus_figure(summary.consensus_summary), folder / name)
        written[name] = folder / name
        captions["Consensus methods: label accuracy and downstream AP"] = name
    tables = {"curves": curves, "reference": result.reference, **summary.tables()}
    table_names = []
    for tname, df in tables.items():
        if df is None:
            continue
        name = f"tables/{tname}.csv"
        df.to_csv(folder / name, index=False)
        written[name] = folder / name
        table_names.append(name)
    report = render_report(summary, result, title=title, data_description=data_description,
                           figures=captions, tables=table_names)
    (folder / "report.md").write_text(report, encoding="utf-8")
    written["report.md"] = folder / "report.md"
    (folder / "report.html").write_text(report_html(report, folder, title=title), encoding="utf-8")
    written["report.html"] = folder / "report.html"
    return written


_IMAGE = re.compile(r'<img alt="([^"]*)" src="(figures/[^"]+\.png)"')
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
          "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
          "code{background:#f4f4f4;padding:0 .2em}")


def report_html(markdown_text: str, folder: str | Path, *, title: str = "mlci analysis") -> str:
    """``report.md`` as one self-contained HTML page: tables rendered, each figure inlined as a data URI."""
    import base64
    import html

    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")

    def inline(match: re.Match) -> str:
        data = base64.b64encode((Path(folder) / match.group(2)).read_bytes()).decode("ascii")
        return f'<img alt="{match.group(1)}" src="data:image/png;base64,{data}"'

    body = _IMAGE.sub(inline, body)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")


def publish_outputs(store, analysis_id: str, folder: str | Path) -> dict[str, bool]:
    """Copy the folder's files to ``reports/analysis/<analysis_id>/`` once (never overwriting).

    Returns
    -------
    dict of str to bool
        Store key -> whether this call wrote it (False: it was already there).
    """
    folder = Path(folder)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = analysis_key(analysis_id, path.relative_to(folder).as_posix())
        out[key] = store.write_if_absent(key, path.read_bytes())
    return out


def find_analysis_run(tracking_uri: str, experiment_name: str, analysis_id: str) -> str | None:
    """Id of a finished parent run of this analysis in the experiment, or None."""
    from mlci.models.tracking import client_for, mlflow_errors

    with mlflow_errors(tracking_uri):
        client = client_for(tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            return None
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=(
                f"tags.`{ANALYSIS_TAG}` = '{analysis_id}' and tags.`mlci.kind` = 'analysis' "
                "and attributes.status = 'FINISHED'"
            ),
            max_results=1,
        )
    return runs[0].info.run_id if runs else None


def _curve_metrics(curves: pd.DataFrame, concept_keys: Mapping[str, str]) -> list[tuple[str, float, int]]:
    """(name, value, step) of one (strategy, schedule): means over repetitions per label count."""
    out = []
    per = curves.groupby(["concept", "labels"])[["test_ap", "test_auc"]].mean()
    for (concept, labels), row in per.iterrows():
        key = concept_keys[concept]
        out.append((f"ap_{key}", row["test_ap"], int(labels)))
        out.append((f"auc_{key}", row["test_auc"], int(labels)))
    cols = [f"test_{m}" for m in METRICS] + ["pool_ap"]
    macro = curves.groupby(["repetition", "labels"])[cols].mean().groupby("labels")
    mean, std = macro.mean(), macro.std()
    for labels, row in mean.iterrows():
        for m in METRICS:
            out.append((f"{m}_macro", row[f"test_{m}"], int(labels)))
        out.append(("pool_ap_macro", row["pool_ap"], int(labels)))
        out.append(("ap_macro_std", std.loc[labels, "test_ap"], int(labels)))
    return out


def log_to_mlflow(
    summary: AnalysisSummary,
    result: SimulationResult,
    folder: str | Path,
    *,
    tracking_uri: str,
    experiment_name: str,
    analysis_id: str,
    run_name: str = "analysis",
    params: Mapping[str, object] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log the analysis: a parent run (params, headline metrics, artifacts) and a nested run per (strategy, schedule).

    MLflow errors come translated by :func:`mlci.models.tracking.mlflow_errors` (no password in them).

    Returns
    -------
    str
        The parent run id.
    """
    from mlflow.entities import Metric, Param

    from mlci.models.tracking import (
        class_keys,
        clean_params,
        client_for,
        default_artifact_location,
        get_or_create_experiment,
        mlflow_errors,
    )

    with mlflow_errors(tracking_uri):
        client = client_for(tracking_uri)
        exp_id = get_or_create_experiment(client, experiment_name, artifact_location=default_artifact_location(tracking_uri))
        base_tags = {ANALYSIS_TAG: analysis_id, "mlci.kind": "analysis", **(tags or {})}
        parent = client.create_run(exp_id, run_name=run_name, tags=base_tags)
        pid = parent.info.run_id
        keys = class_keys(result.concepts)
        now = int(time.time() * 1000)

        def batch(run_id: str, metrics: list[tuple[str, float, int]], params_: Mapping[str, object] = ()) -> None:
            ms = [Metric(k, float(v), now, int(s)) for k, v, s in metrics if v is not None and np.isfinite(v)]
            ps = [Param(k, v) for k, v in clean_params(dict(params_)).items()]
            for i in range(0, max(len(ms), 1), 900):
                client.log_batch(run_id, metrics=ms[i : i + 900], params=ps if i == 0 else [])

        try:
            batch(pid, _headline(summary, result), params or {})
            strategy_rows = summary.strategies
            for (strategy, schedule), part in result.curves.groupby(["strategy", "schedule"], sort=False):
                child = client.create_run(
                    exp_id,
                    run_name=f"{strategy} | {schedule}",
                    tags={"mlflow.parentRunId": pid, ANALYSIS_TAG: analysis_id, "mlci.kind": "analysis-strategy",
                          "strategy": strategy, "schedule": schedule},
                )
                cid = child.info.run_id
                metrics = _curve_metrics(part, keys)
                rows = strategy_rows[(strategy_rows["strategy"] == strategy) & (strategy_rows["schedule"] == schedule)]
                for r in rows.itertuples():
                    suffix = "macro" if r.concept == MACRO else keys[r.concept]
                    metrics.append((f"aulc_{suffix}", r.aulc_mean, 0))
                    for t in ("90", "95"):
                        metrics.append((f"labels_{t}_{suffix}", getattr(r, f"labels_{t}_mean", np.nan), 0))
                    if np.isfinite(getattr(r, "p_ttest", np.nan)):
                        metrics.append((f"p_vs_{summary.baseline}_{suffix}", r.p_ttest, 0))
                batch(cid, metrics, {"strategy": strategy, "schedule": schedule,
                                     "repetitions": result.config.repetitions, "seed": result.config.seed})
                client.set_terminated(cid, "FINISHED")
            client.log_artifacts(pid, str(folder))
            client.set_terminated(pid, "FINISHED")
        except Exception:
            client.set_terminated(pid, "FAILED")
            raise
        return pid


def _headline(summary: AnalysisSummary, result: SimulationResult) -> list[tuple[str, float, int]]:
    out = [("simulation_seconds", result.seconds, 0), ("n_pool", result.n_pool, 0), ("n_test", result.n_test, 0)]
    first = result.schedules[0] if result.schedules else None
    macro = summary.strategies[(summary.strategies["concept"] == MACRO) & (summary.strategies["schedule"] == first)]
    for r in macro.itertuples():
        out.append((f"aulc_macro_{re.sub(r'[^A-Za-z0-9_]+', '_', r.strategy)}", r.aulc_mean, 0))
    return out


def answers_markdown(summary: AnalysisSummary, result: SimulationResult) -> str:
    """The four answers as markdown bullets (for a Prefect artifact or a console)."""
    blocks = answers(summary, result)
    titles = {"q1": "Re-ranking vs fixed order", "q2": "Strategies", "q3": "Consensus", "q4": "Stopping"}
    lines = []
    for key, title in titles.items():
        lines.append(f"**{title}**")
        lines += [f"- {s}" for s in blocks[key]]
        lines.append("")
    return "\n".join(lines)

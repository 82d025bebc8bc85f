"""The advice in MLflow: tags on the model version and its training run, a picture per concept on the batch run.

Tags (``mlci.advice.<class key>`` = the verdict, ``mlci.advice.rule``) let a data scientist filter
versions and runs by advice in the UI. The pictures (``advisor/<class key>.png``: labels so far vs
cross-validated AP over the nights, batches marked) and ``advisor/advice.json`` go on the round's
batch run (:mod:`mlci.batches.tracking`), once: a re-run finds them there and logs nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlci.advisor.record import AdvisorNight

__all__ = ["log_advice", "progress_figure"]

_COLORS = {"keep labeling": "tab:green", "slowing": "tab:orange", "stop": "tab:red"}


def progress_figure(history: pd.DataFrame, concept: str, *, batch_versions: Sequence[str] = (),
                    verdict: str = "") -> Figure:
    """Labels so far vs cross-validated AP of ``concept`` over the recorded versions.

    ``batch_versions`` are the model versions that chose a published batch: each is marked by a
    dotted line at its label count.
    """
    s = history[history["concept"] == concept].assign(_v=lambda d: d["model_version"].astype(int)).sort_values("_v")
    fig = Figure(figsize=(6, 3.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(s["labels"], s["oof_ap"], marker="o", color="tab:blue", label="cross-validated AP")
    for version in set(map(str, batch_versions)) & set(s["model_version"]):
        x = int(s.loc[s["model_version"] == version, "labels"].iloc[0])
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"batch (v{version})", (x, 0.02), rotation=90, fontsize=7, color="grey",
                    xycoords=("data", "axes fraction"))
    ax.set_xlabel(f"{concept}: labels so far")
    ax.set_ylabel("cross-validated AP")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    title = f"{concept}: {verdict}" if verdict else concept
    ax.set_title(title, color=_COLORS.get(verdict, "black"), fontsize=10)
    return fig


def log_advice(
    tracking_uri: str,
    night: AdvisorNight,
    *,
    model_name: str,
    batch_run_id: str | None = None,
    batch_versions: Sequence[str] = (),
) -> None:
    """Tag ``night``'s model version and its run with the advice; draw the pictures on ``batch_run_id``."""
    from mlci.models.tracking import class_keys, mlflow_errors, tracking_context, write_json

    keys = class_keys(list(night.advice["concept"]))
    tags = {f"mlci.advice.{keys[c]}": v for c, v in night.verdicts().items()}
    tags["mlci.advice.rule"] = night.rule
    with mlflow_errors(tracking_uri), tracking_context(tracking_uri) as client:
        version = client.get_model_version(model_name, night.model_version)
        for key, value in tags.items():
            client.set_model_version_tag(model_name, night.model_version, key, value)
            if version.run_id:
                client.set_tag(version.run_id, key, value)
        if batch_run_id is None or client.list_artifacts(batch_run_id, "advisor"):
            return
        for key, value in tags.items():
            client.set_tag(batch_run_id, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "advisor"
            root.mkdir()
            for concept, verdict in night.verdicts().items():
                progress_figure(night.history, concept, batch_versions=batch_versions,
                                verdict=verdict).savefig(root / f"{keys[concept]}.png")
            write_json(root / "advice.json", night.advice.replace({np.nan: None}).to_dict(orient="records"))
            client.log_artifacts(batch_run_id, str(root), "advisor")

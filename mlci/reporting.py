"""The nightly run's summary: one dataclass, rendered as the markdown a Prefect artifact shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["NightlySummary"]


@dataclass
class NightlySummary:
    """What one nightly run did, step by step.

    ``status`` is ``completed``; ``incomplete`` when it ran to the end but skipped work (feature
    chunks that failed after their retries: their clips were not in the pool), named in
    ``warnings``; or ``skipped`` when another run held the store lock (``reason`` says who).
    """

    status: str
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    consensus: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """A short report: counts, per-concept metrics, the promotion decision, the batch location."""
        if self.status == "skipped":
            return f"# mlci nightly: skipped\n\n{self.reason}\n"
        lines = ["# mlci nightly round" + (" (INCOMPLETE)" if self.status == "incomplete" else ""), ""]
        if self.warnings:
            lines += ["## Warnings", "", *[f"- {w}" for w in self.warnings], ""]
        lb, ft, cs, md, bt = self.labels, self.features, self.consensus, self.model, self.batch
        lines += [
            "## Counts",
            "",
            "| step | result |",
            "|---|---|",
            f"| labels | {lb.get('files_new', 0)} new file(s), {lb.get('rows_added', 0)} answers added, "
            f"{lb.get('records_rejected', 0)} records rejected{_label_problems(lb)} |",
            f"| features | {ft.get('computed', 0)} computed, {ft.get('cached', 0)} cached, "
            f"{ft.get('quarantined', 0)} quarantined"
            f"{', ' + str(ft['failed']) + ' FAILED (not in the pool)' if ft.get('failed') else ''} |",
            f"| consensus | snapshot `{cs.get('snapshot', '-')}`, {cs.get('n_clips', 0)} labeled clips, "
            f"method {cs.get('method', '-')} |",
            f"| model | {md.get('name', '-')} version {md.get('version', '-')}"
            f"{' (reused: nothing new to train on)' if md.get('reused') else ''} |",
            f"| batch | {_batch_line(bt)} |",
            "",
        ]
        metrics = md.get("metrics", {})
        classes = md.get("classes", [])
        if classes:
            lines += ["## Per-concept metrics (out-of-fold)", "", "| concept | AP | ROC AUC | F1 | status |",
                      "|---|---|---|---|---|"]
            for key, name in classes:
                lines.append(
                    f"| {name} | {_fmt(metrics.get(f'ap_{key}'))} | {_fmt(metrics.get(f'roc_auc_{key}'))} | "
                    f"{_fmt(metrics.get(f'f1_{key}'))} | {md.get('class_status', {}).get(name, '-')} |"
                )
            lines.append(f"| **macro** | {_fmt(metrics.get('macro_ap'))} | {_fmt(metrics.get('macro_roc_auc'))} | "
                         f"{_fmt(metrics.get('macro_f1'))} | |")
            lines.append("")
        lines += [
            "## Promotion",
            "",
            f"{'Promoted to champion' if md.get('promoted') else 'Not promoted'}: {md.get('decision', '-')}",
            "",
            "## Batch",
            "",
            f"Round `{bt.get('round_id', '-')}` at `{bt.get('location', '-')}` "
            f"(strategy {bt.get('strategy', '-')}).",
        ]
        return "\n".join(lines) + "\n"


def _label_problems(labels: dict[str, Any]) -> str:
    problems = [
        (labels.get("duplicates", 0), "duplicate file(s) not added again"),
        (labels.get("files_without_answers", 0), "file(s) without answers (see `mlci labels ingest`)"),
        (labels.get("clip_not_in_store", 0), "answers for clips not in the store"),
    ]
    return "".join(f", {n} {what}" for n, what in problems if n)


def _batch_line(batch: dict[str, Any]) -> str:
    if batch.get("reason"):
        return f"nothing published: {batch['reason']}"
    verb = "published" if batch.get("published") else "already published (nothing new)"
    return f"{batch.get('n_clips', 0)} clips, {verb}"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"

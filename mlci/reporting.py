"""The nightly run's summary: typed records per step, rendered as the markdown a Prefect artifact shows.

The nightly flow builds a :class:`NightlySummary` from its steps' results; the command line and the
artifact only read it. Each step's record is built by one ``from_*`` constructor from that step's
own result object, so no string-keyed dict crosses modules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "PROGRESS",
    "STEP",
    "AdviceStep",
    "BatchStep",
    "ConsensusStep",
    "FeaturesStep",
    "LabelStudioStep",
    "LabelsStep",
    "ModelStep",
    "NightlySummary",
    "ends_step",
    "reports_progress",
]

#: Key, in a log record's ``extra``, of the step a record ends (the record is that step's one-line result).
STEP = "mlci_step"
#: Key, in a log record's ``extra``, of ``(done, total, unit)`` for a record that reports progress.
PROGRESS = "mlci_progress"


def ends_step(name: str) -> dict[str, str]:
    """``extra=`` for the log record that ends step ``name``: the one line the quiet console shows for it."""
    return {STEP: name}


def reports_progress(done: int, total: int, unit: str) -> dict[str, tuple[int, int, str]]:
    """``extra=`` for a log record that reports progress (the quiet console redraws one line with it)."""
    return {PROGRESS: (done, total, unit)}


@dataclass(frozen=True)
class LabelsStep:
    """What label ingestion added or refused."""

    files_new: int = 0
    rows_added: int = 0
    records_rejected: int = 0
    duplicates: int = 0
    files_without_answers: int = 0
    clip_not_in_store: int = 0

    @classmethod
    def from_report(cls, report: Any) -> LabelsStep:
        """From an :class:`mlci.labels.IngestReport`."""
        return cls(
            files_new=report.n_new,
            rows_added=report.n_rows_new,
            records_rejected=report.n_rejected,
            duplicates=report.n_duplicates,
            files_without_answers=len(report.without_answers),
            clip_not_in_store=report.n_clip_not_in_store,
        )


@dataclass(frozen=True)
class FeaturesStep:
    """What the feature run computed, reused, quarantined, or could not do."""

    computed: int = 0
    cached: int = 0
    quarantined: int = 0
    failed: int = 0
    failed_chunks: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_report(cls, report: Any) -> FeaturesStep:
        """From an :class:`mlci.features.FeatureRunReport`."""
        return cls(computed=report.n_computed, cached=report.n_reused, quarantined=report.n_quarantined,
                   failed=report.n_failed, failed_chunks=dict(report.failed_chunks))

    @property
    def complete(self) -> bool:
        return not self.failed_chunks


@dataclass(frozen=True)
class ConsensusStep:
    """The label snapshot the run trained on."""

    snapshot: str = "-"
    method: str = "-"
    n_clips: int = 0


@dataclass(frozen=True)
class ModelStep:
    """The model version the run registered (or reused) and the gate's decision.

    ``classes`` pairs each concept's metric key with its catalog name, in catalog order; ``metrics``
    are the run's MLflow metrics (``cv_macro_ap``, ``cv_ap_<key>``, …).
    """

    name: str = "-"
    version: str = "-"
    run_id: str = "-"
    #: The run's and the version's pages in the MLflow UI, when the tracking store is a server.
    links: tuple[str, str] | None = None
    reused: bool = False
    promoted: bool = False
    decision: str = "-"
    champion_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    class_status: dict[str, str] = field(default_factory=dict)
    classes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_champion(self) -> bool:
        """Whether this version is the champion after the run."""
        return self.promoted or self.version == self.champion_version


@dataclass(frozen=True)
class BatchStep:
    """The batch the round published (or why it published nothing)."""

    round_id: str = "-"
    location: str = "-"
    published: bool = False
    reason: str = ""
    n_clips: int = 0
    strategy: str = "-"
    #: Clips per reason they were chosen for (``uncertain``, ``coverage``, ``relabel``, ...).
    reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_round(cls, result: Any, strategy: str) -> BatchStep:
        """From an :class:`mlci.batches.RoundResult`."""
        reasons = result.batch["reason"].value_counts().sort_index() if len(result.batch) else {}
        return cls(round_id=result.round_id, location=result.location, published=result.published,
                   reason=result.reason, n_clips=len(result.batch), strategy=strategy,
                   reasons={str(k): int(v) for k, v in dict(reasons).items()})

    def why(self) -> str:
        """Clips per reason, e.g. ``"23 coverage, 5 relabel, 22 uncertain"`` ("" when none)."""
        return ", ".join(f"{n} {reason}" for reason, n in self.reasons.items())


@dataclass(frozen=True)
class LabelStudioStep:
    """What the Label Studio steps did: annotations pulled, batches published, or the problem that stopped them.

    ``published`` maps each batch published this run to the tasks imported for it.
    """

    project_id: int | None = None
    pulled_new: int = 0
    pulled_changed: int = 0
    pull_file: str | None = None
    published: dict[str, int] = field(default_factory=dict)
    problem: str = ""

    def line(self) -> str:
        """The summary table's cell."""
        if self.problem:
            return f"FAILED: {self.problem}"
        pulled = f"{self.pulled_new} new and {self.pulled_changed} changed answers pulled"
        published = (", ".join(f"{rid}: {n} tasks" for rid, n in self.published.items()) or "nothing new")
        return f"project {self.project_id}: {pulled}; published {published}"


@dataclass(frozen=True)
class AdviceStep:
    """The stop advice per concept: ``(concept, verdict, reason)`` for the version ``model_version``."""

    rule: str = ""
    model_version: str = ""
    concepts: list[tuple[str, str, str]] = field(default_factory=list)
    stopped_reassigned: bool = False

    @classmethod
    def from_night(cls, night: Any, *, reassigned: bool) -> AdviceStep:
        """From an :class:`mlci.advisor.AdvisorNight`."""
        rows = night.advice[["concept", "verdict", "reason"]].itertuples(index=False)
        return cls(night.rule, night.model_version, [tuple(map(str, r)) for r in rows], reassigned)

    def line(self) -> str:
        """``keep labeling: a, b; stop: c`` (verdicts in the order keep, slowing, stop)."""
        by: dict[str, list[str]] = {}
        for concept, verdict, _ in self.concepts:
            by.setdefault(verdict, []).append(concept)
        order = ["keep labeling", "slowing", "stop"]
        return "; ".join(f"{v}: {', '.join(by[v])}" for v in sorted(by, key=lambda v: order.index(v) if v in order else 9))


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
    labels: LabelsStep = field(default_factory=LabelsStep)
    features: FeaturesStep = field(default_factory=FeaturesStep)
    consensus: ConsensusStep = field(default_factory=ConsensusStep)
    model: ModelStep = field(default_factory=ModelStep)
    batch: BatchStep = field(default_factory=BatchStep)
    advice: AdviceStep = field(default_factory=AdviceStep)
    label_studio: LabelStudioStep | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return asdict(self)

    def headline(self) -> str:
        """What this run changed, in one line (a re-run with nothing new says so)."""
        if self.status == "skipped":
            return f"skipped: {self.reason}"
        md, bt = self.model, self.batch
        if md.reused:
            model = (f"no new labels: champion v{md.champion_version} kept" if md.champion_version
                     else f"nothing new to train on: v{md.version} reused")
        elif md.promoted:
            model = f"v{md.version} promoted to champion"
        else:
            model = f"v{md.version} registered, not promoted: champion v{md.champion_version} kept"
        if bt.reason:
            batch = f"no batch: {bt.reason}"
        elif bt.published:
            batch = f"batch {bt.round_id} published ({bt.n_clips} clips)"
        else:
            batch = f"batch {bt.round_id} already published"
        return f"{model}; {batch}"

    def to_markdown(self) -> str:
        """A short report: counts, per-concept metrics, the promotion decision, the batch location."""
        if self.status == "skipped":
            return f"# mlci nightly: skipped\n\n{self.reason}\n"
        lines = ["# mlci nightly round" + (" (INCOMPLETE)" if self.status == "incomplete" else ""), "",
                 f"**{self.headline()}**", ""]
        if self.warnings:
            lines += ["## Warnings", "", *[f"- {w}" for w in self.warnings], ""]
        lb, ft, cs, md, bt = self.labels, self.features, self.consensus, self.model, self.batch
        lines += [
            "## Counts",
            "",
            "| step | result |",
            "|---|---|",
            f"| labels | {lb.files_new} new file(s), {lb.rows_added} answers added, "
            f"{lb.records_rejected} records rejected{_label_problems(lb)} |",
            f"| features | {ft.computed} computed, {ft.cached} cached, {ft.quarantined} quarantined"
            f"{f', {ft.failed} FAILED (not in the pool)' if ft.failed else ''} |",
            f"| consensus | snapshot `{cs.snapshot}`, {cs.n_clips} labeled clips, method {cs.method} |",
            f"| model | {_model_cell(md)}{' (reused: nothing new to train on)' if md.reused else ''} |",
            f"| batch | {_batch_line(bt)} |",
            *([f"| stop advice | {self.advice.line()} |"] if self.advice.concepts else []),
            *([f"| label studio | {self.label_studio.line()} |"] if self.label_studio else []),
            "",
        ]
        if md.classes:
            metrics = md.metrics
            lines += ["## Per-concept metrics (cross-validated, out-of-fold)", "",
                      "| concept | cv AP | cv ROC AUC | cv F1 | status |",
                      "|---|---|---|---|---|"]
            for key, name in md.classes:
                lines.append(
                    f"| {name} | {_fmt(metrics.get(f'cv_ap_{key}'))} | {_fmt(metrics.get(f'cv_roc_auc_{key}'))} | "
                    f"{_fmt(metrics.get(f'cv_f1_{key}'))} | {md.class_status.get(name, '-')} |"
                )
            lines.append(f"| **macro** | {_fmt(metrics.get('cv_macro_ap'))} | {_fmt(metrics.get('cv_macro_roc_auc'))} | "
                         f"{_fmt(metrics.get('cv_macro_f1'))} | |")
            lines.append("")
        if md.reused:
            promotion = (f"No new decision: nothing new to train on, version {md.version} reused "
                         f"(when it was registered: {md.decision}).")
        else:
            promotion = f"{'Promoted to champion' if md.promoted else 'Not promoted'}: {md.decision}"
        if self.advice.concepts:
            ad = self.advice
            note = (" Concepts advised to stop gave their share of the batch to the others."
                    if ad.stopped_reassigned and any(v == "stop" for _, v, _ in ad.concepts) else "")
            lines += ["## Stop advice", "", f"Version {ad.model_version}, rule {ad.rule}.{note}", "",
                      "| concept | advice | why |", "|---|---|---|",
                      *[f"| {c} | **{v}** | {why} |" for c, v, why in ad.concepts], ""]
        lines += [
            "## Promotion",
            "",
            promotion,
            "",
            "## Batch",
            "",
            f"Round `{bt.round_id}` at `{bt.location}` (strategy {bt.strategy}).",
        ]
        return "\n".join(lines) + "\n"


def _model_cell(model: ModelStep) -> str:
    if model.links:
        return f"[{model.name} version {model.version}]({model.links[1]}), MLflow run [`{model.run_id}`]({model.links[0]})"
    return f"{model.name} version {model.version}, MLflow run `{model.run_id}`"


def _label_problems(labels: LabelsStep) -> str:
    problems = [
        (labels.duplicates, "duplicate file(s) not added again"),
        (labels.files_without_answers, "file(s) without answers (see `mlci labels ingest`)"),
        (labels.clip_not_in_store, "answers for clips not in the store"),
    ]
    return "".join(f", {n} {what}" for n, what in problems if n)


def _batch_line(batch: BatchStep) -> str:
    if batch.reason:
        return f"nothing published: {batch.reason}"
    verb = "published" if batch.published else "already published (nothing new)"
    return f"{batch.n_clips} clips{f' ({batch.why()})' if batch.reasons else ''}, {verb}"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"

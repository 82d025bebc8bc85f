"""Prefect tasks of the labels step: thin wrappers around :mod:`mlci.labels`."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mlci.catalog import ClassCatalog
from mlci.config import Settings
from mlci.labels import IngestReport, LabelError, ingest_labels, load_annotations
from mlci.reporting import ends_step
from tasks.retry import retry_unless

__all__ = ["ingest_labels_task", "load_annotation_history_task"]


#: A bad label file or catalog fails the same way on every attempt; storage failures are retried.
retry_on_io_only = retry_unless(LabelError)


# Ingestion is idempotent (each answer is stored at most once, passes are keyed by their content),
# so a retry after an I/O failure is safe.
@task(name="ingest-labels", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)
def ingest_labels_task(settings: Settings, *, reingest: list[str] | None = None) -> IngestReport:
    """Ingest the store's ``labels/`` and log the validation summary (:func:`mlci.labels.ingest_labels`).

    Files that gave no answers, duplicates and answers naming clips not in the store are logged as
    warnings.
    """
    store = settings.open_store()
    catalog = ClassCatalog.from_json(settings.class_catalog)
    report = ingest_labels(store, catalog, base_url=settings.clip_base_url,
                           files_root=settings.label_studio_files_root, reingest=reingest or ())
    logger = get_run_logger()
    s = report.summary()
    logger.info(
        "label files: %d (%d new, %d retried, %d already ingested, %d duplicates, %d rejected); answers accepted %d "
        "(%d new), rejected %d; new annotation rows %d; report %s",
        s["files"], s["new"], s["retried"], s["already_ingested"], s["duplicates"], s["rejected_files"],
        s["accepted"], s["answers_new"], s["rejected"], s["rows_new"], report.report_key, extra=ends_step("labels"),
    )
    for f in report.files:
        if f.status == "rejected":
            logger.warning("rejected file %s: %s", f.source, f.error)
        elif f.n_rejected:
            logger.warning("%s: %d records rejected %s", f.source, f.n_rejected, f.rejected_by_reason)
        if f.status == "duplicate":
            logger.warning("%s has the same answers as %s: not added again", f.source, f.duplicate_of)
        if f.n_accepted == 0 and f.status != "rejected":
            logger.warning("%s: no answer accepted; they are read again when the settings change", f.source)
        if f.notes_by_reason.get("clip_not_in_store"):
            logger.warning("%s: %d answers name clips not in the store (kept)", f.source,
                           f.notes_by_reason["clip_not_in_store"])
    return report


@task(name="load-annotation-history", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)
def load_annotation_history_task(settings: Settings) -> pd.DataFrame:
    """Every answer ever ingested, with ``ingested_at`` (the round uses it to close batches)."""
    return load_annotations(settings.open_store(), current=False)

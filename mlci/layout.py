"""The store layout: every key and prefix mlci reads or writes is built here, and nowhere else.

Keys are relative to the store root; readers and writers call the same function, so they cannot
drift apart. ``docs/architecture.md`` documents the same top-level prefixes (``tests/test_docs.py``
holds the two together)::

    clips/                          mp4 clips (input; never modified by mlci)
    videos/                         long videos to run detection on (input; never modified by mlci)
    embeddings/<source>/            vectors a team computed elsewhere (input): *.parquet, or one .npy + keys.txt/keys.json
    labels/                         label files as received (input)
    truth/                          demo corpus ground truth; read by evaluation code only
    annotations/                    ingested labels: append-only history shards + ingest pass markers
    consensus/<snapshot>/           consensus labels, annotator quality, agreement per label snapshot
    features/<extractor>-v<version>-<params hash>/   schema.json, clips/ and windows/ shards, active/ index
    quarantine/<extractor>-v<version>-<params hash>/ clips that could not be processed, with the reason
    batches/<round_id>/             published labeling batches (tasks.json, batch.csv, labeling_config.xml, manifest.json)
    advisor/<model>/                the stop advisor: stop_set.json, and per model version v<n>/ signals.parquet, stop_predictions.parquet, manifest.json
    detections/<model>/<version>/<video key>/<detection id>/   windows.csv, segments.csv, detections.json, manifest.json
    reports/                        label ingestion reports (reports/labels/), analyses (reports/analysis/<id>/)
    locks/<name>/                   run locks of flows running without a Prefect server

Only the standard library is imported here: :mod:`mlci.storage` and :mod:`mlci.clipref` import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLIP_PREFIX",
    "VIDEOS_PREFIX",
    "EMBEDDINGS_PREFIX",
    "EMBEDDINGS_KEY_LISTS",
    "embeddings_prefix",
    "embeddings_key",
    "embeddings_source",
    "LABELS_PREFIX",
    "TRUTH_PREFIX",
    "ANNOTATIONS_PREFIX",
    "CONSENSUS_PREFIX",
    "FEATURES_PREFIX",
    "QUARANTINE_PREFIX",
    "BATCHES_PREFIX",
    "ADVISOR_PREFIX",
    "ADVISOR_FILES",
    "advisor_key",
    "advisor_prefix",
    "advisor_stop_set_key",
    "advisor_version",
    "DETECTIONS_PREFIX",
    "DETECTION_FILES",
    "detection_prefix",
    "detection_key",
    "REPORTS_PREFIX",
    "LOCKS_PREFIX",
    "CONNECTORS_PREFIX",
    "LABEL_STUDIO_LABELS_PREFIX",
    "labelstudio_record_key",
    "labelstudio_state_key",
    "labelstudio_pull_key",
    "STORE_PREFIXES",
    "HISTORY_PREFIX",
    "MARKER_PREFIX",
    "LABEL_REPORTS_PREFIX",
    "ANALYSIS_PREFIX",
    "DEMO_CLIPS_PREFIX",
    "DEMO_VIDEO_KEY",
    "DEMO_VIDEO_TRUTH_KEY",
    "DEMO_LABELS_PREFIX",
    "TRUTH_KEY",
    "CONSENSUS_FILES",
    "BATCH_FILES",
    "FeatureLayout",
    "history_shard_key",
    "ingest_marker_key",
    "legacy_history_shard_key",
    "legacy_ingest_marker_key",
    "label_report_key",
    "consensus_prefix",
    "consensus_key",
    "consensus_manifest_snapshot",
    "batch_prefix",
    "batch_key",
    "batch_manifest_round_id",
    "analysis_key",
    "lock_prefix",
    "lock_generation_key",
    "lock_released_key",
    "demo_clip_key",
    "demo_label_key",
]

# -- top-level prefixes ---------------------------------------------------------------------------

CLIP_PREFIX = "clips/"
VIDEOS_PREFIX = "videos/"
EMBEDDINGS_PREFIX = "embeddings/"
LABELS_PREFIX = "labels/"
TRUTH_PREFIX = "truth/"
ANNOTATIONS_PREFIX = "annotations/"
CONSENSUS_PREFIX = "consensus/"
FEATURES_PREFIX = "features/"
QUARANTINE_PREFIX = "quarantine/"
BATCHES_PREFIX = "batches/"
DETECTIONS_PREFIX = "detections/"
REPORTS_PREFIX = "reports/"
LOCKS_PREFIX = "locks/"
CONNECTORS_PREFIX = "connectors/"
ADVISOR_PREFIX = "advisor/"

#: Every top-level prefix of a store, in the order the docs list them.
STORE_PREFIXES: tuple[str, ...] = (
    CLIP_PREFIX,
    VIDEOS_PREFIX,
    EMBEDDINGS_PREFIX,
    LABELS_PREFIX,
    TRUTH_PREFIX,
    ANNOTATIONS_PREFIX,
    CONSENSUS_PREFIX,
    FEATURES_PREFIX,
    QUARANTINE_PREFIX,
    BATCHES_PREFIX,
    ADVISOR_PREFIX,
    DETECTIONS_PREFIX,
    REPORTS_PREFIX,
    LOCKS_PREFIX,
    CONNECTORS_PREFIX,
)

_MANIFEST = "manifest.json"


def _manifest_owner(key: str, prefix: str) -> str | None:
    """``<name>`` of a key ``<prefix><name>/manifest.json``, else None; ``<name>`` may hold ``/``."""
    if not key.startswith(prefix) or not key.endswith("/" + _MANIFEST) or len(key) <= len(prefix) + len(_MANIFEST) + 1:
        return None
    return key[len(prefix) : -len("/" + _MANIFEST)]


# -- labels and annotations -----------------------------------------------------------------------

#: ANNOTATIONS shards, one per ingestion pass over a file's answers.
HISTORY_PREFIX = f"{ANNOTATIONS_PREFIX}history/"
#: Ingestion pass markers: settings, answers stored and report of one pass.
MARKER_PREFIX = f"{ANNOTATIONS_PREFIX}ingested/"
#: Validation reports of label ingestion runs.
LABEL_REPORTS_PREFIX = f"{REPORTS_PREFIX}labels/"


def history_shard_key(content: str, pass_id: str) -> str:
    """``annotations/history/<content>-<pass>.parquet``: the ANNOTATIONS rows one pass stored."""
    return f"{HISTORY_PREFIX}{content}-{pass_id}.parquet"


def ingest_marker_key(content: str, pass_id: str) -> str:
    """``annotations/ingested/<content>-<pass>.json``: the marker of one ingestion pass."""
    return f"{MARKER_PREFIX}{content}-{pass_id}.json"


def legacy_history_shard_key(sha256: str) -> str:
    """``annotations/history/<file sha256>.parquet``, written before ingestion passes existed."""
    return f"{HISTORY_PREFIX}{sha256}.parquet"


def legacy_ingest_marker_key(sha256: str) -> str:
    """``annotations/ingested/<file sha256>.json``, written before ingestion passes existed."""
    return f"{MARKER_PREFIX}{sha256}.json"


def label_report_key(digest: str) -> str:
    """``reports/labels/ingest-<digest>.json``: one content-addressed ingestion report."""
    return f"{LABEL_REPORTS_PREFIX}ingest-{digest}.json"


# -- imported embeddings --------------------------------------------------------------------------

#: The key list of a NumPy source, one of: one key per line, or a JSON list (of keys, or of
#: ``{"key", "start", "end"}`` objects).
EMBEDDINGS_KEY_LISTS = ("keys.txt", "keys.json")


def embeddings_prefix(source: str) -> str:
    """``embeddings/<source>/``: the files of one source of imported embeddings."""
    return f"{EMBEDDINGS_PREFIX}{source}/"


def embeddings_key(source: str, name: str) -> str:
    """``embeddings/<source>/<name>``: one file of a source (``vectors.parquet``, ``keys.txt``, ...)."""
    return embeddings_prefix(source) + name


def embeddings_source(key: str) -> str | None:
    """The source of a key ``embeddings/<source>/...``; None for any other key."""
    if not key.startswith(EMBEDDINGS_PREFIX):
        return None
    source, slash, rest = key[len(EMBEDDINGS_PREFIX):].partition("/")
    return source if source and slash and rest else None


# -- consensus ------------------------------------------------------------------------------------

#: The objects of one consensus folder; ``manifest.json`` is written last.
CONSENSUS_FILES = ("labels.parquet", "annotators.parquet", "relabel.parquet", "agreement.json", _MANIFEST)


def consensus_prefix(snapshot: str) -> str:
    """``consensus/<snapshot>/``: the folder of one label snapshot's consensus."""
    return f"{CONSENSUS_PREFIX}{snapshot}/"


def consensus_key(snapshot: str, name: str) -> str:
    """``consensus/<snapshot>/<name>`` for ``name`` in :data:`CONSENSUS_FILES`."""
    if name not in CONSENSUS_FILES:
        raise ValueError(f"name must be one of {CONSENSUS_FILES}, but got {name!r}")
    return consensus_prefix(snapshot) + name


def consensus_manifest_snapshot(key: str) -> str | None:
    """The snapshot of a key ``consensus/<snapshot>/manifest.json``; None for any other key."""
    snapshot = _manifest_owner(key, CONSENSUS_PREFIX)
    return snapshot if snapshot is not None and "/" not in snapshot else None


# -- features -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureLayout:
    """Store keys of one extractor configuration's features.

    Parameters
    ----------
    cache_id : str
        ``<extractor>-v<version>-<params hash>`` (:attr:`mlci.features.FeatureSchema.cache_id`).

    Chunk numbers are zero-padded to five digits; a ``str`` chunk (a placeholder such as
    ``"<chunk>"``, as :mod:`mlci.tables` uses to describe locations) is written as given.
    """

    cache_id: str

    @property
    def root(self) -> str:
        """``features/<cache id>/``."""
        return f"{FEATURES_PREFIX}{self.cache_id}/"

    @property
    def schema_key(self) -> str:
        """``features/<cache id>/schema.json``, written once."""
        return f"{self.root}schema.json"

    @property
    def clips(self) -> str:
        """Prefix of the CLIP_FEATURES shards."""
        return f"{self.root}clips/"

    @property
    def windows(self) -> str:
        """Prefix of the WINDOW_FEATURES shards."""
        return f"{self.root}windows/"

    @property
    def active(self) -> str:
        """Prefix of the FEATURE_INDEX objects, one per run that changed the active set."""
        return f"{self.root}active/"

    @property
    def quarantine(self) -> str:
        """``quarantine/<cache id>/``: prefix of the QUARANTINE shards."""
        return f"{QUARANTINE_PREFIX}{self.cache_id}/"

    def clip_part(self, run_id: str, chunk: int | str) -> str:
        return f"{self.clips}{_part(run_id, chunk)}"

    def window_part(self, run_id: str, chunk: int | str) -> str:
        return f"{self.windows}{_part(run_id, chunk)}"

    def quarantine_part(self, run_id: str, chunk: int | str) -> str:
        return f"{self.quarantine}{_part(run_id, chunk)}"

    def active_key(self, run_id: str) -> str:
        return f"{self.active}{run_id}.parquet"

    def window_part_for(self, clip_part: str) -> str:
        """The windows shard written together with a clips shard."""
        return self.windows + clip_part[len(self.clips) :]


def _part(run_id: str, chunk: int | str) -> str:
    number = chunk if isinstance(chunk, str) else f"{chunk:05d}"
    return f"part-{run_id}-{number}.parquet"


# -- batches --------------------------------------------------------------------------------------

#: The objects of one published batch; ``manifest.json`` is written last.
BATCH_FILES = ("tasks.json", "batch.csv", "labeling_config.xml", _MANIFEST)


def batch_prefix(round_id: str) -> str:
    """``batches/<round_id>/``: the folder of one labeling round's batch."""
    return f"{BATCHES_PREFIX}{round_id}/"


#: Files of one model version's advisor record; ``manifest.json`` is written last.
ADVISOR_FILES = ("signals.parquet", "stop_predictions.parquet", _MANIFEST)


def advisor_prefix(model_name: str) -> str:
    """``advisor/<model>/``: the stop advisor's records of one registered model."""
    return f"{ADVISOR_PREFIX}{model_name}/"


def advisor_stop_set_key(model_name: str) -> str:
    """``advisor/<model>/stop_set.json``: the fixed, label-free clips whose predictions are compared."""
    return advisor_prefix(model_name) + "stop_set.json"


def advisor_key(model_name: str, version: str | int, name: str) -> str:
    """``advisor/<model>/v<version, 8 digits>/<name>`` for ``name`` in :data:`ADVISOR_FILES`."""
    if name not in ADVISOR_FILES:
        raise ValueError(f"name must be one of {ADVISOR_FILES}, but got {name!r}")
    return f"{advisor_prefix(model_name)}v{int(version):08d}/{name}"


def advisor_version(key: str, model_name: str) -> int | None:
    """The version of an advisor manifest key of ``model_name``, else None."""
    owner = _manifest_owner(key, advisor_prefix(model_name))
    return int(owner[1:]) if owner and owner.startswith("v") and owner[1:].isdigit() else None


def batch_key(round_id: str, name: str) -> str:
    """``batches/<round_id>/<name>`` for ``name`` in :data:`BATCH_FILES`."""
    if name not in BATCH_FILES:
        raise ValueError(f"name must be one of {BATCH_FILES}, but got {name!r}")
    return batch_prefix(round_id) + name


def batch_manifest_round_id(key: str) -> str | None:
    """The round id of a key ``batches/<round_id>/manifest.json``; None for any other key."""
    return _manifest_owner(key, BATCHES_PREFIX)


# -- detections -----------------------------------------------------------------------------------

#: The objects of one detection result; ``manifest.json`` is written last.
DETECTION_FILES = ("windows.csv", "segments.csv", "detections.json", _MANIFEST)


def detection_prefix(model_name: str, version: str, video_key: str, detection_id: str | None = None) -> str:
    """``detections/<model>/<version>/<video key>/[<detection id>/]``: one video's detections by one model version."""
    base = f"{DETECTIONS_PREFIX}{model_name}/{version}/{video_key}/"
    return base if detection_id is None else f"{base}{detection_id}/"


def detection_key(model_name: str, version: str, video_key: str, detection_id: str, name: str) -> str:
    """One file of a detection result, ``name`` in :data:`DETECTION_FILES`."""
    if name not in DETECTION_FILES:
        raise ValueError(f"name must be one of {DETECTION_FILES}, but got {name!r}")
    return detection_prefix(model_name, version, video_key, detection_id) + name


# -- reports, locks -------------------------------------------------------------------------------

#: Published analyses, one folder per analysis id.
ANALYSIS_PREFIX = f"{REPORTS_PREFIX}analysis/"


def analysis_key(analysis_id: str, path: str) -> str:
    """``reports/analysis/<analysis_id>/<path>``: one file of a published analysis."""
    return f"{ANALYSIS_PREFIX}{analysis_id}/{path}"


def lock_prefix(name: str) -> str:
    """``locks/<name>/``: the generations of one run lock."""
    return f"{LOCKS_PREFIX}{name}/"


def lock_generation_key(name: str, generation: int) -> str:
    """``locks/<name>/<generation, 10 digits>.json``: one holder of the lock."""
    return f"{lock_prefix(name)}{generation:010d}.json"


def lock_released_key(name: str, generation: int) -> str:
    """``locks/<name>/<generation, 10 digits>.released``: written when that holder released it."""
    return f"{lock_prefix(name)}{generation:010d}.released"


# -- the demo corpus ------------------------------------------------------------------------------

DEMO_CLIPS_PREFIX = f"{CLIP_PREFIX}demo/"
DEMO_LABELS_PREFIX = f"{LABELS_PREFIX}demo/"
#: The demo corpus's ground truth (TRUTH table).
TRUTH_KEY = f"{TRUTH_PREFIX}labels.csv"
#: A long video of demo scenes, for the detection flow, and where each concept is in it.
DEMO_VIDEO_KEY = f"{VIDEOS_PREFIX}demo/scenes.mp4"
DEMO_VIDEO_TRUTH_KEY = f"{TRUTH_PREFIX}videos/scenes.csv"


def demo_clip_key(index: int) -> str:
    """``clips/demo/clip-NNNN.mp4``."""
    return f"{DEMO_CLIPS_PREFIX}clip-{index:04d}.mp4"


def demo_label_key(annotator: str) -> str:
    """``labels/demo/<annotator>.json``: one simulated annotator's label file."""
    return f"{DEMO_LABELS_PREFIX}{annotator}.json"


# -- Label Studio connector -----------------------------------------------------------------------

#: What the connector knows between runs (which annotations it has pulled), per project.
LABEL_STUDIO_STATE_PREFIX = f"{CONNECTORS_PREFIX}labelstudio/"
#: Pulled annotations, written as Label Studio JSON exports that the normal ingestion reads.
LABEL_STUDIO_LABELS_PREFIX = f"{LABELS_PREFIX}labelstudio/"
#: Beside a batch: the Label Studio project and task ids its tasks were imported as.
LABEL_STUDIO_RECORD = "labelstudio.json"


def labelstudio_record_key(round_id: str) -> str:
    """``batches/<round_id>/labelstudio.json``: where a batch's tasks went in Label Studio."""
    return batch_prefix(round_id) + LABEL_STUDIO_RECORD


def labelstudio_state_key(project_id: int) -> str:
    """``connectors/labelstudio/project-<id>.json``: the annotations already pulled from a project."""
    return f"{LABEL_STUDIO_STATE_PREFIX}project-{int(project_id)}.json"


def labelstudio_pull_key(project_id: int, digest: str) -> str:
    """``labels/labelstudio/project-<id>/pull-<digest>.json``: one pull's new or changed annotations."""
    return f"{LABEL_STUDIO_LABELS_PREFIX}project-{int(project_id)}/pull-{digest}.json"

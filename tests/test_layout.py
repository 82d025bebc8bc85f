"""``mlci.layout``: the keys it builds are the store's real layout, spelled out literally here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlci import layout


def test_top_level_prefixes():
    assert layout.STORE_PREFIXES == (
        "clips/", "videos/", "embeddings/", "labels/", "truth/", "annotations/", "consensus/",
        "features/", "quarantine/", "batches/", "advisor/", "detections/", "reports/", "locks/", "connectors/",
    )


def test_advisor_keys():
    assert layout.advisor_stop_set_key("m") == "advisor/m/stop_set.json"
    key = layout.advisor_key("m", 12, "manifest.json")
    assert key == "advisor/m/v00000012/manifest.json"
    assert layout.advisor_version(key, "m") == 12
    assert layout.advisor_version("advisor/m/v00000012/signals.parquet", "m") is None
    assert layout.advisor_version(key, "other") is None
    with pytest.raises(ValueError, match="must be one of"):
        layout.advisor_key("m", 1, "model.pkl")


def test_label_studio_keys():
    assert layout.labelstudio_record_key("r-1") == "batches/r-1/labelstudio.json"
    assert layout.labelstudio_state_key(7) == "connectors/labelstudio/project-7.json"
    assert layout.labelstudio_pull_key(7, "ab12") == "labels/labelstudio/project-7/pull-ab12.json"
    assert layout.labelstudio_pull_key(7, "ab12").startswith(layout.LABELS_PREFIX)  # ingestion reads it


def test_annotation_and_report_keys():
    assert layout.history_shard_key("c0ffee", "p1") == "annotations/history/c0ffee-p1.parquet"
    assert layout.ingest_marker_key("c0ffee", "p1") == "annotations/ingested/c0ffee-p1.json"
    assert layout.legacy_history_shard_key("ab12") == "annotations/history/ab12.parquet"
    assert layout.legacy_ingest_marker_key("ab12") == "annotations/ingested/ab12.json"
    assert layout.label_report_key("0123456789abcdef") == "reports/labels/ingest-0123456789abcdef.json"
    assert layout.analysis_key("an1", "figures/x.png") == "reports/analysis/an1/figures/x.png"


def test_consensus_keys():
    assert layout.consensus_prefix("s1") == "consensus/s1/"
    assert [layout.consensus_key("s1", n) for n in layout.CONSENSUS_FILES] == [
        "consensus/s1/labels.parquet", "consensus/s1/annotators.parquet", "consensus/s1/relabel.parquet",
        "consensus/s1/agreement.json", "consensus/s1/manifest.json",
    ]
    with pytest.raises(ValueError, match=r"name must be one of .* but got 'labels.csv'"):
        layout.consensus_key("s1", "labels.csv")


def test_consensus_manifest_snapshot_reads_only_top_level_manifests():
    assert layout.consensus_manifest_snapshot("consensus/s1/manifest.json") == "s1"
    assert layout.consensus_manifest_snapshot("consensus/s1/old/manifest.json") is None
    assert layout.consensus_manifest_snapshot("consensus/s1/labels.parquet") is None
    assert layout.consensus_manifest_snapshot("batches/s1/manifest.json") is None


def test_feature_keys():
    f = layout.FeatureLayout("basic-v3-abcd")
    assert (f.root, f.schema_key, f.clips, f.windows, f.active, f.quarantine) == (
        "features/basic-v3-abcd/", "features/basic-v3-abcd/schema.json", "features/basic-v3-abcd/clips/",
        "features/basic-v3-abcd/windows/", "features/basic-v3-abcd/active/", "quarantine/basic-v3-abcd/",
    )
    assert f.clip_part("r1", 7) == "features/basic-v3-abcd/clips/part-r1-00007.parquet"
    assert f.window_part("r1", 7) == "features/basic-v3-abcd/windows/part-r1-00007.parquet"
    assert f.quarantine_part("r1", 7) == "quarantine/basic-v3-abcd/part-r1-00007.parquet"
    assert f.active_key("r1") == "features/basic-v3-abcd/active/r1.parquet"
    assert f.window_part_for(f.clip_part("r1", 7)) == f.window_part("r1", 7)
    assert f.clip_part("<run>", "<chunk>") == "features/basic-v3-abcd/clips/part-<run>-<chunk>.parquet"


def test_batch_keys():
    assert layout.batch_prefix("r-1") == "batches/r-1/"
    assert [layout.batch_key("r-1", n) for n in layout.BATCH_FILES] == [
        "batches/r-1/tasks.json", "batches/r-1/batch.csv", "batches/r-1/labeling_config.xml",
        "batches/r-1/manifest.json",
    ]
    with pytest.raises(ValueError, match="but got 'report.md'"):
        layout.batch_key("r-1", "report.md")
    assert layout.batch_manifest_round_id("batches/r-1/manifest.json") == "r-1"
    assert layout.batch_manifest_round_id("batches/r-1/batch.csv") is None
    assert layout.batch_manifest_round_id("batches/manifest.json") is None
    assert layout.batch_manifest_round_id("consensus/r-1/manifest.json") is None


def test_lock_and_demo_keys():
    assert layout.lock_prefix("nightly") == "locks/nightly/"
    assert layout.lock_generation_key("nightly", 12) == "locks/nightly/0000000012.json"
    assert layout.lock_released_key("nightly", 12) == "locks/nightly/0000000012.released"
    assert layout.demo_clip_key(3) == "clips/demo/clip-0003.mp4"
    assert layout.demo_label_key("alice") == "labels/demo/alice.json"
    assert layout.TRUTH_KEY == "truth/labels.csv"


def test_every_key_is_under_a_top_level_prefix():
    f = layout.FeatureLayout("x")
    keys = [
        layout.HISTORY_PREFIX, layout.MARKER_PREFIX, layout.LABEL_REPORTS_PREFIX, layout.ANALYSIS_PREFIX,
        layout.DEMO_CLIPS_PREFIX, layout.DEMO_LABELS_PREFIX, layout.TRUTH_KEY, f.root, f.quarantine,
        layout.consensus_prefix("s"), layout.batch_prefix("r"), layout.lock_prefix("n"),
    ]
    assert all(k.startswith(layout.STORE_PREFIXES) for k in keys), keys


def test_importing_the_layout_imports_only_the_standard_library():
    code = "import sys, mlci.layout; print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlci', 'pandas', 'numpy', 'pyarrow')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mlci', 'mlci.layout']"

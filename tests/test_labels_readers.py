"""Label readers and validation: the seed export, Label Studio JSON / JSON_MIN, long CSV, bad input."""

from __future__ import annotations

import json

import pytest

from mlci.catalog import ClassCatalog
from mlci.config import default_class_catalog
from mlci.labels import (
    FILE_REASONS,
    RECORD_REASONS,
    LabelFileError,
    detect_format,
    normalize_label_file,
    read_label_file,
)

SEED_BASE = "https://vmlr-workshop.STORAGE/"
BASE = "https://clips.example.invalid/"
CLASSES = ["holiday", "halloween", "gift giving", "family moments", "shopping scenes"]


@pytest.fixture(scope="module")
def catalog():
    return ClassCatalog.from_json(default_class_catalog())


def normalize(data: bytes, local_store, catalog, *, source="labels/f.json", fmt=None, base_url=BASE, **kw):
    raw = read_label_file(data, source=source, fmt=fmt)
    return normalize_label_file(raw, catalog, store=local_store, base_url=base_url, **kw)


def answers(df):
    """{(asset, annotator): set of positive classes}."""
    out = {}
    for (asset, annotator), g in df.groupby(["asset", "annotator"]):
        out[(asset, annotator)] = set(g.loc[g["value"] == 1, "class"])
    return out


# --- the seed export ---------------------------------------------------------------------------


def test_seed_file_counts(seed_labels_path, local_store, catalog):
    data = seed_labels_path.read_bytes()
    assert detect_format(data, source="labels_final.json") == "flat"
    raw = read_label_file(data, source="labels/labels_final.json")
    assert raw.format == "flat" and len(raw.records) == 1000 and raw.n_entries == 1000
    result = normalize_label_file(raw, catalog, store=local_store, base_url=SEED_BASE)
    rep, df = result.report, result.annotations
    assert rep.label_counts == {
        "family moments": 413,
        "holiday": 318,
        "halloween": 285,
        "gift giving": 217,
        "none of the above": 187,
        "shopping scenes": 103,
    }
    assert rep.notes_by_reason == {"empty_labels": 2, "none_of_the_above_conflict": 15}
    assert rep.n_rejected == 0 and rep.n_skipped == 2 and rep.n_accepted == 998 and rep.n_read == 1000
    # One row per catalog class for each of the 998 answered clips, one annotator named after the file.
    assert len(df) == 998 * 5 and df["asset"].nunique() == 998
    assert set(df["annotator"]) == {"labels_final.json"}
    assert df["asset"].str.startswith("clips/").all()
    positives = df.groupby("class")["value"].sum().to_dict()
    assert positives == {"family moments": 413, "holiday": 318, "halloween": 285, "gift giving": 217,
                         "shopping scenes": 103}
    # A conflict keeps its real classes: 'holiday' + 'none of the above' is a holiday positive.
    conflict = next(n for n in rep.notes if n["reason"] == "none_of_the_above_conflict")
    rows = df[df["record_index"] == conflict["index"]]
    assert rows["value"].sum() >= 1
    # 'none of the above' alone is negative for every class.
    nota_only = [i for i, r in enumerate(json.loads(data)) if r["labels"] == ["none of the above"]]
    assert df[df["record_index"].isin(nota_only)]["value"].sum() == 0


def test_seed_empty_as_negative(seed_labels_path, local_store, catalog):
    result = normalize(seed_labels_path.read_bytes(), local_store, catalog, base_url=SEED_BASE, empty="negative")
    assert result.report.n_accepted == 1000 and result.report.notes_by_reason["empty_labels"] == 2
    assert result.annotations["asset"].nunique() == 1000


# --- Label Studio ------------------------------------------------------------------------------


def label_studio_export() -> bytes:
    def choices(*names, from_name="concepts"):
        return {"from_name": from_name, "to_name": "video", "type": "choices", "value": {"choices": list(names)}}

    tasks = [
        {
            "id": 1,
            "data": {"video": BASE + "gifts/a.mp4"},
            "annotations": [
                {"id": 10, "completed_by": 1, "result": [choices("Holiday", "gift  giving")],
                 "was_cancelled": False, "created_at": "2024-05-01T10:00:00Z"},
                {"id": 11, "completed_by": {"id": 2, "email": "bo@example.org"},
                 "result": [choices("none of the above")], "created_at": "2024-05-01T11:00:00Z",
                 "updated_at": "2024-05-02T09:30:00+02:00"},
                {"id": 12, "completed_by": 3, "result": [choices("halloween")], "was_cancelled": True},
            ],
            "predictions": [],
        },
        {
            "id": 2,
            "data": {"video": BASE + "xmas/b.mp4", "title": "b"},
            "annotations": [
                {"id": 13, "completed_by": {"id": 4}, "result": [
                    choices("family moments"),
                    choices("shopping scenes", from_name="second"),
                    {"from_name": "notes", "to_name": "video", "type": "textarea", "value": {"text": ["busy"]}},
                ]},
                {"id": 14, "completed_by": 1, "result": []},
            ],
        },
    ]
    return json.dumps(tasks).encode()


def test_label_studio_json(local_store, catalog):
    data = label_studio_export()
    assert detect_format(data, source="export.json") == "label_studio"
    raw = read_label_file(data, source="labels/ls.json")
    assert raw.format == "label_studio"
    assert [n.reason for n in raw.notes] == ["cancelled"]
    result = normalize_label_file(raw, catalog, store=local_store, base_url=BASE)
    got = answers(result.annotations)
    assert got == {
        ("clips/gifts/a.mp4", "1"): {"holiday", "gift giving"},
        ("clips/gifts/a.mp4", "bo@example.org"): set(),  # none of the above: all negative
        ("clips/xmas/b.mp4", "4"): {"family moments", "shopping scenes"},
    }
    rep = result.report
    assert rep.n_read == 5 and rep.n_accepted == 3 and rep.n_skipped == 2 and rep.n_rejected == 0
    assert rep.notes_by_reason == {"cancelled": 1, "empty_labels": 1}
    # updated_at wins over created_at (the answer as it was finally given), converted to UTC.
    bo = result.annotations[result.annotations["annotator"] == "bo@example.org"]
    assert str(bo["created_at"].iloc[0]) == "2024-05-02 07:30:00+00:00"
    # Records point back at the task.
    assert set(result.annotations["record_index"]) == {0, 1}


def test_label_studio_choice_name_filter(local_store, catalog):
    raw = read_label_file(label_studio_export(), source="ls.json", choice_name="concepts")
    result = normalize_label_file(raw, catalog, store=local_store, base_url=BASE)
    assert answers(result.annotations)[("clips/xmas/b.mp4", "4")] == {"family moments"}


def label_studio_min_export() -> bytes:
    meta = {"lead_time": 3.5, "created_at": "2024-06-01T08:00:00Z", "updated_at": "2024-06-01T08:00:00Z"}
    records = [
        {"video": BASE + "a.mp4", "id": 1, "choice": "Halloween", "annotator": "ann@example.org",
         "annotation_id": 21, **meta},
        {"video": BASE + "b.mp4", "id": 2, "choice": {"choices": ["holiday", "Family Moments"]}, "annotator": 7,
         "annotation_id": 22, **meta},
        {"video": BASE + "c.mp4", "id": 3, "annotator": "ann@example.org", "annotation_id": 23, **meta},
    ]
    return json.dumps(records).encode()


def test_label_studio_json_min(local_store, catalog):
    data = label_studio_min_export()
    assert detect_format(data, source="min.json") == "label_studio_min"
    result = normalize(data, local_store, catalog, source="labels/min.json")
    assert answers(result.annotations) == {
        ("clips/a.mp4", "ann@example.org"): {"halloween"},
        ("clips/b.mp4", "7"): {"holiday", "family moments"},
    }
    # The choice key absent: nothing ticked, reported as an empty answer.
    assert result.report.notes_by_reason == {"empty_labels": 1}
    assert result.report.n_read == 3 and result.report.n_accepted == 2


# --- CSV ---------------------------------------------------------------------------------------


def test_long_csv(local_store, catalog):
    text = (
        "asset,annotator,label,created_at\n"
        f"{BASE}a.mp4,ann,holiday,2024-01-01T00:00:00Z\n"
        f"{BASE}a.mp4,ann,Gift Giving,2024-01-01T00:00:00Z\n"
        "clips/b.mp4,ann,none of the above,2024-01-01T00:00:00Z\n"
        "b.mp4,cy,halloween,\n"
        f"{BASE}a.mp4,ann,halloween,2024-02-01T00:00:00Z\n"
    )
    data = text.encode()
    assert detect_format(data, source="labels.csv") == "csv"
    result = normalize(data, local_store, catalog, source="labels/l.csv")
    df = result.annotations
    # Rows of one (asset, annotator, time) form one answer; a later time is a separate answer.
    assert result.report.n_accepted == 4
    jan = df[(df["asset"] == "clips/a.mp4") & (df["created_at"].dt.month == 1)]
    assert set(jan.loc[jan["value"] == 1, "class"]) == {"holiday", "gift giving"}
    feb = df[(df["asset"] == "clips/a.mp4") & (df["created_at"].dt.month == 2)]
    assert set(feb.loc[feb["value"] == 1, "class"]) == {"halloween"}
    assert answers(df)[("clips/b.mp4", "cy")] == {"halloween"}
    assert df[(df["asset"] == "clips/b.mp4") & (df["annotator"] == "ann")]["value"].sum() == 0


def test_explicit_format_override(local_store, catalog):
    # A CSV without a .csv name is detected as CSV; forcing JSON on it rejects the file as invalid JSON.
    data = b"asset,annotator,label\nclips/a.mp4,ann,holiday\n"
    assert read_label_file(data, source="labels/export.txt").format == "csv"
    with pytest.raises(LabelFileError) as err:
        read_label_file(data, source="labels/export.txt", fmt="flat")
    assert err.value.reason == "invalid_json"
    with pytest.raises(ValueError, match="fmt must be one of"):
        read_label_file(data, source="x", fmt="xml")
    # Forcing a JSON layout reads records the detector would have classified otherwise.
    flat = json.dumps([{"labels": ["holiday"], "data": BASE + "a.mp4", "annotator": "z", "annotation_id": 1}]).encode()
    assert read_label_file(flat, source="f.json").format == "label_studio_min"
    assert read_label_file(flat, source="f.json", fmt="flat").records[0].labels == ["holiday"]


# --- bad input ---------------------------------------------------------------------------------


def test_each_record_rejection_reason(local_store, catalog):
    records = [
        {"labels": ["holiday"], "data": BASE + "ok.mp4"},  # 0 valid
        {"labels": ["holiday", "xmas tree"], "data": BASE + "a.mp4"},  # 1 unknown class
        {"labels": ["holiday"]},  # 2 no clip reference
        {"labels": ["holiday"], "data": ""},  # 3 empty clip reference
        {"labels": ["holiday"], "data": "https://elsewhere.example/clip.mp4"},  # 4 not our base
        {"labels": ["holiday"], "data": BASE + "../../etc/passwd"},  # 5 escapes the store
        {"labels": ["holiday"], "data": BASE + "%2e%2e/secret.mp4"},  # 6 escapes, URL-encoded
        {"labels": ["holiday"], "data": local_store.root.parent.as_uri() + "/other/x.mp4"},  # 7 outside root
        {"labels": "holiday", "data": BASE + "b.mp4"},  # 8 labels not a list
        {"labels": ["holiday", 3], "data": BASE + "b.mp4"},  # 9 a label not a string
        {"labels": ["holiday"], "data": 42},  # 10 clip reference not a string
        {"labels": ["holiday"], "data": BASE + "b.mp4", "annotator": ["x"]},  # 11 annotator type
        {"labels": ["holiday"], "data": BASE + "b.mp4", "created_at": "yesterday"},  # 12 bad time
        ["holiday", BASE + "c.mp4"],  # 13 record not an object
        {"labels": ["Shopping_Scenes"], "data": BASE + "ok2.mp4", "annotator": 5},  # 14 valid
    ]
    result = normalize(json.dumps(records).encode(), local_store, catalog, source="labels/bad.json")
    by_index = {r["index"]: r["reason"] for r in result.report.rejected}
    assert by_index == {
        1: "unknown_class",
        2: "missing_clip_ref",
        3: "missing_clip_ref",
        4: "unresolvable_clip_ref",
        5: "clip_ref_escapes_store",
        6: "clip_ref_escapes_store",
        7: "clip_ref_escapes_store",
        8: "wrong_type",
        9: "wrong_type",
        10: "wrong_type",
        11: "wrong_type",
        12: "wrong_type",
        13: "wrong_type",
    }
    assert set(by_index.values()) == set(RECORD_REASONS)
    assert "xmas tree" in next(r["message"] for r in result.report.rejected if r["index"] == 1)
    # The valid rows of the partly bad file are kept.
    assert answers(result.annotations) == {
        ("clips/ok.mp4", "bad.json"): {"holiday"},
        ("clips/ok2.mp4", "5"): {"shopping scenes"},
    }
    rep = result.report
    assert rep.n_read == 15 and rep.n_accepted == 2 and rep.n_rejected == 13
    assert rep.rejected_by_reason["clip_ref_escapes_store"] == 3


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("labels/empty.json", b"", "empty_file"),
        ("labels/blank.csv", b"  \n\n", "empty_file"),
        ("labels/binary.json", bytes(range(256)) * 4, "not_text"),
        ("labels/latin1.json", '[{"labels": ["café"]}]'.encode("latin-1"), "not_text"),
        ("labels/truncated.json", b'[{"labels": ["holiday"], "data": "x', "invalid_json"),
        ("labels/object.json", b'{"labels": ["holiday"]}', "unknown_format"),
        ("labels/number.json", b"42", "unknown_format"),
        ("labels/other.json", b'[{"foo": 1}]', "unknown_format"),
        ("labels/header.csv", b"clip,who,what\na,b,c\n", "invalid_csv"),
        ("labels/quote.csv", b'asset,annotator,label\n"a.mp4,ann,holiday\n', "invalid_csv"),
    ],
)
def test_whole_file_rejections(name, data, reason):
    with pytest.raises(LabelFileError) as err:
        read_label_file(data, source=name)
    assert err.value.reason == reason and err.value.reason in FILE_REASONS
    assert err.value.source == name and name in str(err.value)


def test_csv_row_problems_reject_rows_only(local_store, catalog):
    text = "asset,annotator,label\nclips/a.mp4,ann,holiday\nclips/b.mp4,ann\n,ann,holiday\nclips/c.mp4,ann,yule\n"
    result = normalize(text.encode(), local_store, catalog, source="labels/rows.csv")
    assert {r["index"]: r["reason"] for r in result.report.rejected} == {
        1: "wrong_type", 2: "missing_clip_ref", 3: "unknown_class"
    }
    assert answers(result.annotations) == {("clips/a.mp4", "ann"): {"holiday"}}


def test_empty_json_list_is_an_empty_file_of_records(local_store, catalog):
    result = normalize(b"[]", local_store, catalog)
    assert result.report.n_read == 0 and len(result.annotations) == 0


def test_normalize_parameter_errors(local_store, catalog):
    raw = read_label_file(b"[]", source="x.json")
    with pytest.raises(ValueError, match="empty must be one of"):
        normalize_label_file(raw, catalog, store=local_store, base_url=BASE, empty="maybe")
    with pytest.raises(TypeError, match="data must be bytes"):
        read_label_file("[]", source="x.json")

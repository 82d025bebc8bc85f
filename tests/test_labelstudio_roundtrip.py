"""The Label Studio round trip on a real server: batch -> tasks -> two annotators -> pull -> ingestion
-> consensus -> the next night's batch; re-runs change nothing; a server that is down costs only its steps."""

from __future__ import annotations

import json
import re
import socket

import pytest
from typer.testing import CliRunner

from cli import app
from mlci.demo import DemoCorpusSpec, generate_demo_corpus
from mlci.labelstudio import LabelStudioClient, labeling_config
from mlci.storage import open_store

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio]

BATCH = 6
CORPUS = DemoCorpusSpec(n_clips=40, seed=21, duration=1.0, size=(64, 48))


def _choices(*names: str) -> list[dict]:
    return [{"from_name": "concepts", "to_name": "video", "type": "choices", "value": {"choices": list(names)}}]


def _snapshot(store) -> dict[str, str]:
    return {key: store.stat(key).identity for key in store.list("")}


@pytest.fixture
def env(prefect_harness, label_studio, tmp_path, monkeypatch, request):
    store = open_store(str(tmp_path / "store"))
    generate_demo_corpus(store, CORPUS, n_jobs=2)
    title = f"mlci-{request.node.name}"[:40]
    for name, value in {
        "MLCI_HOME": str(tmp_path / "home"),
        "MLCI_STORE": str(tmp_path / "store"),
        "MLCI_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLCI_LABEL_STUDIO_URL": label_studio.url,
        "MLCI_LABEL_STUDIO_TOKEN": label_studio.admin.token,
        "MLCI_LABEL_STUDIO_PROJECT": title,
        "MLCI_ROUND__BATCH_SIZE": str(BATCH),
        "MLCI_ROUND__RELABEL_SHARE": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return store, title


def test_batches_go_to_label_studio_and_answers_come_back(env, label_studio):
    from flows.nightly import nightly
    from mlci.labels import load_annotations

    store, title = env
    admin = LabelStudioClient(label_studio.url, label_studio.admin.token)

    # Night 1: the project is created from the catalog, the batch becomes tasks with predictions.
    first = nightly()
    assert first.status == "completed", first.warnings
    ls = first.label_studio
    assert ls.problem == "" and ls.pulled_new == 0 and ls.published == {first.batch.round_id: BATCH}
    project = admin.find_project(title)
    assert project["id"] == ls.project_id
    tasks = list(admin.iter_tasks(ls.project_id))
    assert len(tasks) == BATCH and {t["data"]["mlci_round"] for t in tasks} == {first.batch.round_id}
    record = json.loads(store.read_text(f"batches/{first.batch.round_id}/labelstudio.json"))
    assert record["project_id"] == ls.project_id
    assert record["task_ids"] == {t["data"]["key"]: t["id"] for t in tasks}
    by_key = {t["data"]["key"]: t["id"] for t in tasks}
    a, b, c = sorted(by_key)[:3]

    # Two annotators through Label Studio's API: one answers clip a twice (the later answer counts),
    # the other answers a and b; a cancelled annotation is not a label.
    one = LabelStudioClient(label_studio.url, label_studio.annotators[0].token)
    two = LabelStudioClient(label_studio.url, label_studio.annotators[1].token)
    changed = one.create_annotation(by_key[a], _choices("holiday"))
    one.update_annotation(changed["id"], _choices("halloween"))
    two.create_annotation(by_key[a], _choices("halloween", "gift giving"))
    two.create_annotation(by_key[b], _choices("none of the above"))
    one.create_annotation(by_key[c], _choices("holiday"), was_cancelled=True)

    # Night 2 pulls before ingesting, trains on the answers, publishes a batch without the answered clips.
    second = nightly()
    assert second.status == "completed", second.warnings
    assert second.label_studio.pulled_new == 3 and second.label_studio.pulled_changed == 0
    pulled = json.loads(store.read_text(second.label_studio.pull_file))
    assert not re.search(r"@|email", json.dumps(pulled))  # user ids only
    current = load_annotations(store)
    answers = current[current["asset"] == a].set_index(["annotator", "class"])["value"]
    id1, id2 = str(label_studio.annotators[0].id), str(label_studio.annotators[1].id)
    assert answers[(id1, "halloween")] == 1 and answers[(id1, "holiday")] == 0  # the later answer
    assert answers[(id2, "gift giving")] == 1
    assert not (current["asset"] == c).any() or id1 not in set(current.loc[current["asset"] == c, "annotator"])
    assert second.batch.published and second.model.version == "2"
    batch2 = second.batch.round_id
    assert second.label_studio.published == {batch2: BATCH}
    new_keys = {t["data"]["key"] for t in admin.iter_tasks(ls.project_id) if t["data"]["mlci_round"] == batch2}
    assert len(new_keys) == BATCH and not new_keys & {a, b}

    # Publish and pull again by hand: nothing changes in the store or in Label Studio.
    before, n_tasks = _snapshot(store), len(list(admin.iter_tasks(ls.project_id)))
    runner = CliRunner()
    published = runner.invoke(app, ["labelstudio", "publish"])
    assert published.exit_code == 0 and "nothing to publish" in published.output, published.output
    again = runner.invoke(app, ["labelstudio", "publish", first.batch.round_id])
    assert again.exit_code == 0 and "already in Label Studio" in again.output, again.output
    pulled_again = runner.invoke(app, ["labelstudio", "pull"])
    assert pulled_again.exit_code == 0 and "nothing to pull" in pulled_again.output, pulled_again.output
    assert _snapshot(store) == before and len(list(admin.iter_tasks(ls.project_id))) == n_tasks
    listing = runner.invoke(app, ["batches", "--json"])
    row = next(r for r in json.loads(listing.output) if r["round_id"] == first.batch.round_id)
    assert [row["ls_project"], row["ls_tasks"], row["ls_annotated"], row["ls_pulled"]] == [ls.project_id, BATCH, 2, 3]
    assert row["n_answered"] == 2  # the two annotated tasks, as answers ingested into the store

    # Label Studio down: the night runs its other steps, says so, and exits 3.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    result = runner.invoke(app, ["nightly"], env={"MLCI_LABEL_STUDIO_URL": dead})
    assert result.exit_code == 3, result.output
    assert "could not find the Label Studio project" in result.output and "did not answer" in result.output
    assert label_studio.admin.token not in result.output and "Traceback" not in result.output


def test_a_project_whose_interface_differs_is_refused_naming_the_difference(env, label_studio):
    store, title = env
    admin = LabelStudioClient(label_studio.url, label_studio.admin.token)
    from mlci.catalog import ClassCatalog
    from mlci.config import Settings

    settings = Settings()
    catalog = ClassCatalog.from_json(settings.class_catalog)
    config = labeling_config(catalog, settings.labeling_question).replace('value="halloween"', 'value="easter"')
    # Looking never creates: status and pull ask for setup first.
    for command in ("status", "pull"):
        looked = CliRunner().invoke(app, ["labelstudio", command])
        assert looked.exit_code == 1 and "run `mlci labelstudio setup` first" in looked.output, looked.output
    assert admin.find_project(title) is None
    admin.create_project(title, config)
    result = CliRunner().invoke(app, ["labelstudio", "setup"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert line.startswith("error: ") and len(line.splitlines()) == 1
    assert "does not match the class catalog" in line and "halloween" in line and "easter" in line


def test_a_publish_that_died_half_way_is_completed_not_duplicated(env, label_studio):
    from flows.nightly import nightly
    from mlci.catalog import ClassCatalog
    from mlci.config import Settings
    from mlci.labelstudio import ensure_project, import_batch, load_import_record

    store, title = env
    settings = Settings()
    summary = nightly()  # publishes the first batch, into Label Studio too
    round_id, project_id = summary.batch.round_id, summary.label_studio.project_id
    admin = LabelStudioClient(label_studio.url, label_studio.admin.token)
    assert ensure_project(admin, ClassCatalog.from_json(settings.class_catalog), title=title,
                          question=settings.labeling_question)["id"] == project_id

    # The same batch in a second project, as a publish that died after importing half its tasks.
    other = admin.create_project(f"{title}-2", admin.get_project(project_id)["label_config"])
    tasks = json.loads(store.read_text(f"batches/{round_id}/tasks.json"))
    half = [{**t, "data": {**t["data"], "mlci_round": round_id}} for t in tasks[: BATCH // 2]]
    early_ids = admin.import_tasks(other["id"], half)
    store.delete(f"batches/{round_id}/labelstudio.json")  # the record is written last: it never was

    result = import_batch(store, admin, other["id"], round_id)
    assert (result.n_found, result.n_imported) == (BATCH // 2, BATCH - BATCH // 2)
    in_project = list(admin.iter_tasks(other["id"]))
    assert len(in_project) == BATCH and len({t["data"]["key"] for t in in_project}) == BATCH  # none twice
    record = load_import_record(store, round_id)
    assert record.project_id == other["id"] and set(early_ids) <= set(record.task_ids.values())
    again = import_batch(store, admin, other["id"], round_id)
    assert (again.n_imported, len(list(admin.iter_tasks(other["id"])))) == (0, BATCH)

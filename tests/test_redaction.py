"""A password inside a URL setting is never shown, logged, raised or stored.

First the one redaction function, then the places that format URLs (settings, storage and MLflow
errors), then the whole story: a secret planted in ``MLCI_MLFLOW_TRACKING_URI`` (a real
``mlflow server``) and in ``MLCI_S3_ENDPOINT_URL``, the real commands and flows run on them, working
and failing, and every output is searched for it: stdout and stderr of each command, the MLflow
server's database, artifacts and log, every object in the store, Prefect's database and home.
"""

from __future__ import annotations

import base64
import os
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError

from mlci.config import Settings
from mlci.params import ParameterError
from mlci.redact import redact_text, redact_url

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:pw@host:5000/api", "http://alice:***@host:5000/api"),
        ("https://alice:p%40ss@host", "https://alice:***@host"),
        ("http://alice:p@ss@host/x", "http://alice:***@host/x"),  # an unencoded '@' in the password
        ("http://alice:@host", "http://alice:***@host"),
        ("API request to http://a:b@h:1/api/2.0/x failed; see http://c:d@e/f", "API request to http://a:***@h:1/api/2.0/x failed; see http://c:***@e/f"),
        ("endpoint 'http://u:secret@127.0.0.1:9000'", "endpoint 'http://u:***@127.0.0.1:9000'"),
        ("s3://key:secret@bucket/prefix", "s3://key:***@bucket/prefix"),
        ("https://b.s3.amazonaws.com/k.mp4?X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abc123&versionId=7",
         "https://b.s3.amazonaws.com/k.mp4?X-Amz-Credential=***&X-Amz-Signature=***&versionId=7"),
        ("GET /bucket/clip.mp4?x-amz-security-token=T0K3N HTTP/1.1", "GET /bucket/clip.mp4?x-amz-security-token=*** HTTP/1.1"),
        ("http://h/?token=abc&password=pw&access_token=t&api_key=k&page=2",
         "http://h/?token=***&password=***&access_token=***&api_key=***&page=2"),
    ],
)
def test_redact_text_hides_passwords_and_secret_parameters(text, expected):
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # redacting twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "http://host:5000/api/2.0/mlflow/runs/get?run_id=abc",
        "sqlite:////home/me/.mlci/mlflow.db",
        "s3://bucket/store/clips/a b.mp4",
        "file:///tmp/x?y=1",
        "mailto-like bob@example.org and host:8080",
        "no URL at all: 3 of 5 files",
        "",
    ],
)
def test_redact_text_leaves_everything_else_alone(text):
    assert redact_text(text) == text


def test_redact_url_keeps_none():
    assert redact_url(None) is None
    assert redact_url("http://u:p@h") == "http://u:***@h"


def test_settings_repr_and_validation_errors_hide_passwords(tmp_path):
    settings = Settings(home=tmp_path, mlflow_tracking_uri="http://alice:hunter2@mlflow:5000", _env_file=None)
    assert settings.tracking_uri == "http://alice:hunter2@mlflow:5000"  # the value itself is intact
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert "http://alice:***@mlflow:5000" in repr(settings)
    with pytest.raises(ValidationError) as info:
        Settings(home=tmp_path, s3_endpoint_url="http://minio:hunter2@minio:9000", _env_file=None)
    text = str(info.value)
    assert "hunter2" not in text and "http://minio:***@minio:9000" in text and "must not contain credentials" in text


def test_mlflow_errors_hide_the_password_and_say_unreachable(monkeypatch):
    from mlci.models import TrackingUnreachableError, list_versions

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = uuid.uuid4().hex  # not in this file's source, which a traceback quotes
    with pytest.raises(TrackingUnreachableError) as info:
        list_versions(f"http://alice:{password}@127.0.0.1:{port}", "mlci-concepts")
    shown = "".join(traceback.format_exception(info.value))
    assert password not in shown
    assert f"http://alice:***@127.0.0.1:{port} unreachable after 0 retries (could not connect)" in str(info.value)


# -- the whole story ------------------------------------------------------------------------------

SECRET = f"Pw{uuid.uuid4().hex}"  # only letters and digits: the same in every encoding
S3_SECRET = f"S3pw{uuid.uuid4().hex}"


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlci"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _files(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for path in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
            out[str(path)] = path.read_bytes()
    return out


def _prefect_database() -> Path:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    return Path(url.split(":///", 1)[1])


def _events_mentioning(db: Path, text: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT count(*) FROM events WHERE CAST(payload AS TEXT) LIKE ?", (f"%{text}%",)).fetchone()[0]


@pytest.mark.slow
def test_a_planted_secret_appears_nowhere(prefect_harness, s3_endpoint, mlflow_server, tmp_path, monkeypatch):
    from prefect.settings import get_current_settings

    from mlci.demo import DemoCorpusSpec, generate_demo_corpus
    from mlci.storage import open_store

    port, server_root, stop_server = mlflow_server.port, mlflow_server.root, mlflow_server.stop
    bucket = f"mlci-secret-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    store = open_store(f"s3://{bucket}/store", endpoint_url=s3_endpoint)
    generate_demo_corpus(store, DemoCorpusSpec(n_clips=40, seed=3, duration=1.5, size=(64, 48)), n_jobs=2)

    home = tmp_path / "home"
    tracking_uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
    shown_uri = f"http://alice:***@127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    env.update(MLCI_HOME=str(home), MLCI_STORE=f"s3://{bucket}/store", MLCI_S3_ENDPOINT_URL=s3_endpoint,
               MLCI_MLFLOW_TRACKING_URI=tracking_uri, PREFECT_API_URL=str(get_current_settings().api.url))
    outputs: list[str] = []

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        done = _run(list(args), {**env, **extra}, tmp_path)
        outputs.extend([done.stdout, done.stderr])
        return done

    # Working: a nightly that trains, logs and registers on the server, then the model listing.
    night = run("nightly", "--batch-size", "10", "--relabel-share", "0", "--verbose")  # all of Prefect's log
    assert night.returncode == 0, night.stderr[-3000:]
    assert "version 1" in night.stdout
    models = run("models")
    assert models.returncode == 0 and "champion" in models.stdout, models.stderr[-2000:]

    # Failing: the server goes away; a listing and a flow that needs the champion end in one line.
    stop_server()
    started = time.monotonic()
    down = run("models")
    assert time.monotonic() - started < 30
    assert down.returncode == 1 and down.stderr.strip() == (
        f"error: MLflow tracking server {shown_uri} unreachable after 2 retries (could not connect): "
        "check MLCI_MLFLOW_TRACKING_URI and that the server is up"
    )
    round_ = run("round", "--batch-size", "10", "--relabel-share", "0")
    assert round_.returncode == 1 and "Traceback" not in round_.stderr
    [line] = [x for x in round_.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: MLflow tracking server {shown_uri} unreachable")

    # A password in the S3 endpoint is refused by the command line and by a flow run without it.
    s3_url = f"http://s3user:{S3_SECRET}@127.0.0.1:{s3_endpoint.rsplit(':', 1)[1]}"
    refused = run("batches", MLCI_S3_ENDPOINT_URL=s3_url)
    assert refused.returncode == 1 and "s3user:***@" in refused.stderr
    from flows.nightly import nightly

    monkeypatch.setenv("MLCI_S3_ENDPOINT_URL", s3_url)
    with pytest.raises(ParameterError, match=r"s3user:\*\*\*@") as info:  # the flow's first check
        nightly(store=f"s3://{bucket}/store")
    outputs.append("".join(traceback.format_exception(info.value)))

    # Prefect's server persists logs and events in the background: wait until both failures are in.
    db = _prefect_database()
    deadline = time.monotonic() + 60
    while _events_mentioning(db, shown_uri) == 0 or _events_mentioning(db, "s3user:***@") == 0:
        assert time.monotonic() < deadline, "the failed runs' events never reached Prefect's database"
        time.sleep(1)

    stored = {f"s3://{bucket}/{o['Key']}": s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
              for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])}
    assert any(key.endswith("batch.csv") for key in stored)
    files = _files(server_root, home, db.parent, Path(os.environ["PREFECT_HOME"]))
    assert any(name.endswith("MLmodel") for name in files) and any(name.endswith("prefect-test.db") for name in files)
    prefect_bytes = b"".join(v for k, v in files.items() if Path(k).parent == db.parent)
    assert shown_uri.encode() in prefect_bytes  # the URL did reach Prefect's database, redacted

    forms = [SECRET, S3_SECRET, base64.b64encode(f"alice:{SECRET}".encode()).decode()]
    for form in forms:
        needle = form.encode()
        assert [_around(text, form) for text in outputs if form in text] == []
        assert [k for k, v in stored.items() if needle in v] == []
        assert [(k, _around(v, needle)) for k, v in files.items() if needle in v] == []


def _around(text, needle, width: int = 300):
    """Where ``needle`` was found, for the failure message."""
    i = text.find(needle)
    return text[max(0, i - width): i + width]


def test_signed_clip_reference_is_redacted_in_the_rejection(local_store):
    from mlci.storage import UnresolvableReferenceError

    signature = uuid.uuid4().hex
    ref = f"https://other.s3.amazonaws.com/clips/a.mp4?X-Amz-Signature={signature}&X-Amz-Expires=600"
    with pytest.raises(UnresolvableReferenceError) as info:
        local_store.resolve_clip_ref(ref, base_url="https://clips.mlci.invalid/")
    assert signature not in str(info.value)
    assert "clips/a.mp4?X-Amz-Signature=***&X-Amz-Expires=600" in str(info.value)


def test_a_signed_clip_url_in_a_label_file_is_stored_redacted(tmp_path):
    """A rejected reference is quoted in the stored ingest report: without its signature."""
    import json

    from mlci.catalog import ClassCatalog
    from mlci.config import default_class_catalog
    from mlci.labels import ingest_labels
    from mlci.storage import open_store

    store = open_store(str(tmp_path / "store"))
    signed = "https://bucket.s3.amazonaws.com/real/a.mp4?X-Amz-Signature=deadbeefcafe&X-Amz-Expires=60"
    store.write_text("labels/export.json", json.dumps([{"etag": "1", "labels": ["holiday"], "data": signed}]))
    report = ingest_labels(store, ClassCatalog.from_json(default_class_catalog()),
                           base_url="https://clips.example.invalid/")
    assert report.n_rejected == 1
    stored = b"".join(store.read_bytes(k) for k in store.list("") if not k.startswith("labels/"))
    assert b"X-Amz-Signature=***" in stored and b"deadbeefcafe" not in stored

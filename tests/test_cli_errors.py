"""Every command on bad input ends with one ``error:`` line, quickly, and creates nothing.

Each kind of bad store or server is real: moto's S3 server for a missing bucket or an empty prefix,
a closed port for an endpoint that refuses connections, a listening socket that never answers for
one that hangs, a folder that does not exist. The commands run as the user runs them (``mlci`` in a
child process), so a traceback would show in their output.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from mlci.storage import InvalidStoreURIError, check_bucket_name, open_store

BIN = Path(sys.executable).parent
ONE_LINE_ERROR = re.compile(r"^error: \S.*$")
# A command and its arguments; each opens the configured store first.
STORE_COMMANDS = [
    ["batches"],
    ["labels", "ingest"],
    ["consensus"],
    ["features"],
    ["train"],
    ["round"],
    ["nightly"],
    ["analysis"],
    ["detect"],
    ["serve", "--port", "0"],
]


def run_mlci(*args: str, home: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """``mlci args`` in a child process with only ``env`` configured (no MLCI_* of the test process)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLCI_", "MLFLOW_"))}
    full.update(MLCI_HOME=str(home), **env)
    start = time.monotonic()
    done = subprocess.run([str(BIN / "mlci"), *args], env=full, cwd=home.parent, capture_output=True, text=True,
                          timeout=300)
    return done, time.monotonic() - start


def assert_one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 1, nothing on stdout, stderr exactly one ``error:`` line holding ``fragments``."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ONE_LINE_ERROR.match(lines[0]), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def home(tmp_path) -> Path:
    """An MLCI_HOME that does not exist yet (mlci creates only Prefect's folder in it)."""
    return tmp_path / "home"


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def _created(home: Path) -> list[str]:
    """What a command left in its home, apart from Prefect's folder (which every command sets up)."""
    if not home.exists():
        return []
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if not p.relative_to(home).parts[0] == "prefect")


# -- store URIs refused before any connection ----------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "fragments"),
    [
        ("gs://x", ["unsupported store URI scheme 'gs' in 'gs://x'", "s3://bucket/prefix", "check --store"]),
        ("s3:///x", ["no bucket in 's3:///x'", "use s3://bucket/prefix", "check --store"]),
        ("file://host/x", ["a file:// store URI names a local folder (file:///abs/path)"]),
    ],
    ids=["gs-scheme", "s3-without-bucket", "file-with-host"],
)
def test_store_uri_that_names_no_store(home, uri, fragments):
    done, _ = run_mlci("batches", "--store", uri, home=home)
    assert_one_error_line(done, *fragments)
    assert _created(home) == []


@pytest.mark.parametrize("bucket", ["Bad_Bucket", "ab", "1.2.3.4", "a..b", "-abc", "x" * 64])
def test_invalid_bucket_names_are_refused_before_any_request(bucket, closed_port):
    # The endpoint refuses connections: the error can only come from the name check.
    with pytest.raises(InvalidStoreURIError, match=re.escape(f"invalid S3 bucket name {bucket!r}")):
        open_store(f"s3://{bucket}/store", endpoint_url=f"http://127.0.0.1:{closed_port}", must_exist=True)
    assert check_bucket_name("mlci-test.bucket-1", "s3://mlci-test.bucket-1") == "mlci-test.bucket-1"


def test_invalid_bucket_name(home, closed_port):
    done, _ = run_mlci("batches", "--store", "s3://Bad_Bucket/store", home=home,
                       MLCI_S3_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}")
    assert_one_error_line(done, "invalid S3 bucket name 'Bad_Bucket' in 's3://Bad_Bucket/store'",
                          "3-63 lowercase letters, digits, '.' and '-'", "check --store / MLCI_STORE")


def test_missing_bucket(home, s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    buckets_before = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    done, _ = run_mlci("batches", "--store", "s3://no-such-bucket-here/store", home=home,
                       MLCI_S3_ENDPOINT_URL=s3_endpoint)
    assert_one_error_line(done, f"bucket 'no-such-bucket-here' does not exist at {s3_endpoint}",
                          "create it or fix the store URI")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == buckets_before


def test_mistyped_s3_prefix(home, s3_endpoint, s3_bucket):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="store/labels/a.json", Body=b"[]")
    done, _ = run_mlci("labels", "ingest", "--store", f"s3://{s3_bucket}/stroe", home=home,
                       MLCI_S3_ENDPOINT_URL=s3_endpoint)
    assert_one_error_line(done, f"no store at s3://{s3_bucket}/stroe", "nothing under that prefix")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == ["store/labels/a.json"]


# -- endpoints that refuse or hang: bounded by the configured limits ------------------------------


def test_s3_endpoint_refusing_connections(home, closed_port):
    done, seconds = run_mlci("batches", "--store", "s3://mlci-bucket/store", home=home,
                             MLCI_S3_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}", MLCI_S3_MAX_ATTEMPTS="2")
    assert_one_error_line(done, f"S3 endpoint http://127.0.0.1:{closed_port} unreachable for s3://mlci-bucket/store",
                          "after 2 attempts (could not connect)", "check MLCI_S3_ENDPOINT_URL")
    assert seconds < 30


def test_s3_endpoint_that_never_answers_is_bounded_by_the_read_timeout(home, silent_port):
    # botocore's own default would wait 60 s per attempt, 5 attempts.
    done, seconds = run_mlci("batches", "--store", "s3://mlci-bucket/store", home=home,
                             MLCI_S3_ENDPOINT_URL=f"http://127.0.0.1:{silent_port}",
                             MLCI_S3_READ_TIMEOUT="1", MLCI_S3_MAX_ATTEMPTS="2")
    assert_one_error_line(done, "unreachable", "after 2 attempts (no answer within 1 s)")
    assert seconds < 30


def test_no_aws_credentials(home, closed_port):
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
           "AWS_CONFIG_FILE": str(home / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    done, _ = run_mlci("batches", "--store", "s3://mlci-bucket/store", home=home,
                       MLCI_S3_ENDPOINT_URL=f"http://127.0.0.1:{closed_port}", **env)
    assert_one_error_line(done, "no usable AWS credentials for s3://mlci-bucket/store",
                          "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")


def test_mlflow_server_refusing_connections(home, closed_port):
    # MLflow's own defaults (7 retries with backoff) made this take about 4 minutes.
    done, seconds = run_mlci("models", home=home, MLCI_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{closed_port}")
    assert_one_error_line(done, f"MLflow tracking server http://127.0.0.1:{closed_port} unreachable after 2 retries "
                                "(could not connect)", "check MLCI_MLFLOW_TRACKING_URI")
    assert seconds < 30


def test_mlflow_server_that_never_answers_is_bounded_by_the_timeout(home, silent_port):
    # MLflow's own default waits 120 s per request.
    done, seconds = run_mlci("models", home=home, MLCI_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{silent_port}",
                             MLCI_MLFLOW_TIMEOUT="1", MLCI_MLFLOW_MAX_RETRIES="1")
    assert_one_error_line(done, "unreachable after 1 retries (no answer within 1 s)")
    assert seconds < 30


def test_user_set_mlflow_variables_win(home, silent_port):
    # A user who set MLflow's own variable keeps it; MLCI_MLFLOW_TIMEOUT only fills in what is unset.
    done, seconds = run_mlci("models", home=home, MLCI_MLFLOW_TRACKING_URI=f"http://127.0.0.1:{silent_port}",
                             MLCI_MLFLOW_TIMEOUT="100", MLFLOW_HTTP_REQUEST_TIMEOUT="1",
                             MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    assert_one_error_line(done, "unreachable after 0 retries (no answer within 1 s)")
    assert seconds < 30


# -- errors inside a flow run -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["features", "--extractor", "no-such-extractor"], "error: unknown extractor 'no-such-extractor'"),
        (["nightly"], "error: no annotations in file://"),
        (["round"], "error: no consensus stored in file://"),
        (["analysis"], "error: no feature run for basic-v1"),
        (["detect", "videos/"], "error: no MLflow database at "),
    ],
    ids=["features", "nightly", "round", "analysis", "detect"],
)
def test_flow_commands_end_an_expected_error_in_one_line(prefect_harness, home, tmp_path, command, message):
    from prefect.settings import get_current_settings

    store = tmp_path / "store"
    store.mkdir()
    done, _ = run_mlci(*command, "--store", str(store), home=home, PREFECT_API_URL=str(get_current_settings().api.url))
    assert done.returncode == 1, done.stderr[-3000:]
    # The run's log lines stay (Prefect's console log), without tracebacks; the last word is one error line.
    assert "Traceback" not in done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr[-3000:]
    assert "Finished in state Failed" in done.stderr


# -- nothing is created that was not there --------------------------------------------------------


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=[c[0] for c in STORE_COMMANDS])
def test_every_command_refuses_a_mistyped_folder_store(home, tmp_path, command):
    typo = tmp_path / "stroe"
    done, seconds = run_mlci(*command, "--store", str(typo), home=home)
    assert_one_error_line(done, f"no store at {typo}: check --store / MLCI_STORE",
                          "only `mlci demo-data` and `mlci demo` create a new store")
    assert not typo.exists()
    assert _created(home) == []  # no MLflow database, no default store
    assert seconds < 30  # refused before Prefect or a flow starts


def test_default_store_is_not_created_by_reading(home):
    done, _ = run_mlci("batches", home=home)
    assert_one_error_line(done, f"no store at {home / 'store'}")
    assert not (home / "store").exists()


def test_store_path_that_is_a_file(home, tmp_path):
    (tmp_path / "a-file").write_text("not a store")
    done, _ = run_mlci("consensus", "--store", str(tmp_path / "a-file"), home=home)
    assert_one_error_line(done, f"no store at {tmp_path / 'a-file'}: it is a file, not a folder")


def test_models_does_not_create_the_mlflow_database(home):
    done, _ = run_mlci("models", home=home)
    assert_one_error_line(done, f"no MLflow database at {home / 'mlflow.db'}", "check MLCI_MLFLOW_TRACKING_URI")
    assert not (home / "mlflow.db").exists() and _created(home) == []


def test_registry_lookups_do_not_create_the_mlflow_database(tmp_path):
    from mlci.models import TrackingStoreNotFoundError, list_versions, load_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for lookup in (lambda: list_versions(uri, "mlci-concepts"), lambda: load_model(uri, "mlci-concepts")):
        with pytest.raises(TrackingStoreNotFoundError, match=re.escape(f"no MLflow database at {tmp_path / 'mlflow.db'}")):
            lookup()
    assert list(tmp_path.iterdir()) == []


def test_demo_data_creates_a_new_store(home, tmp_path):
    target = tmp_path / "new-store"
    done, _ = run_mlci("demo-data", "--store", str(target), "--clips", "2", "--duration", "1", "--size", "64x48",
                       home=home)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (target / "clips" / "demo").iterdir()) == ["clip-0000.mp4", "clip-0001.mp4"]
    listed, _ = run_mlci("batches", "--store", str(target), home=home)
    assert listed.returncode == 0 and listed.stdout.strip() == "no batches published yet"


def test_bad_setting_names_its_variable(home):
    done, _ = run_mlci("batches", home=home, MLCI_S3_READ_TIMEOUT="soon")
    assert_one_error_line(done, "MLCI_S3_READ_TIMEOUT: Input should be a valid number")


def test_version_needs_no_valid_configuration(home):
    import mlci

    done, _ = run_mlci("--version", home=home, MLCI_RANDOM_STATE="not a number")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"mlci {mlci.__version__}\n", "")

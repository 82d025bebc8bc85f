"""Shared fixtures: real components only (moto's S3 server on loopback, SQLite MLflow, Prefect harness)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# Tests must never read a developer's .env or talk to a real AWS account.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for _name in [n for n in os.environ if n.startswith("MLCI_")]:
    del os.environ[_name]
# As the CLI does (mlci.orchestrator): no telemetry racing the migration of each new Prefect database.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_addoption(parser):
    parser.addoption("--stack", action="store_true",
                     help="run tests/stack: the production topology started for real (make test-stack)")


def pytest_ignore_collect(collection_path, config):
    # The stack test installs PostgreSQL and starts seven services: only on request.
    if collection_path.name == "stack" and collection_path.parent == Path(__file__).parent:
        return not config.getoption("--stack")
    return None


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of a real S3 HTTP endpoint (moto's threaded server) on 127.0.0.1, random port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"mlci-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_endpoint, s3_bucket):
    from mlci.storage import open_store

    return open_store(f"s3://{s3_bucket}/store", endpoint_url=s3_endpoint, max_attempts=3)


@pytest.fixture
def local_store(tmp_path):
    from mlci.storage import open_store

    return open_store(str(tmp_path / "store"))


@pytest.fixture(params=["local", "s3"])
def store(request):
    """The same test against both backends."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def settings(tmp_path, s3_endpoint):
    """Settings with everything under tmp_path (store, MLflow SQLite database)."""
    from mlci.config import Settings

    return Settings(home=tmp_path / "mlci-home", s3_endpoint_url=s3_endpoint, _env_file=None)


@pytest.fixture
def tracking_uri(tmp_path):
    """A fresh SQLite MLflow tracking store."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 (see tests/mlflow_server.py), stopped after the test.

    Gives a :class:`mlflow_server.MlflowServer`: ``url``, ``port``, ``root`` (database, artifacts,
    log), ``kill()`` (SIGKILL, a crash), ``start()`` (again, same port and database), ``stop()``.
    """
    from mlflow_server import MlflowServer

    server = MlflowServer(tmp_path / "mlflow-server").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One Prefect test server for the whole session (it takes ~10 s to start), in a temporary home."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    from mlci.orchestrator import STARTUP_TIMEOUT_SECONDS

    with prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_SECONDS):
        yield


@pytest.fixture(scope="session")
def catalog():
    """The class catalog shipped with the package (the seed's classes.json)."""
    from mlci.catalog import ClassCatalog
    from mlci.config import default_class_catalog

    return ClassCatalog.from_json(default_class_catalog())


@pytest.fixture(scope="session")
def seed_labels_path():
    """The seed's real label export (a copy of shared/seed/labels_final.json)."""
    return FIXTURES / "labels_final.json"


class CuttingProxy:
    """An HTTP proxy on 127.0.0.1 in front of the S3 server that can cut the connection of chosen requests.

    ``cut(pattern)`` makes every request whose ``"METHOD /path"`` matches the regex lose its
    connection without an answer, the way a network failure looks to the client; ``cut(None)``
    heals it. ``cut_requests`` counts the requests cut.
    """

    def __init__(self, target: str):
        import http.client
        import re
        import socket
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        upstream = urlparse(target)
        proxy = self
        self._pattern = None
        self.cut_requests = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                pattern = proxy._pattern
                if pattern is not None and re.search(pattern, f"{self.command} {self.path}"):
                    proxy.cut_requests += 1
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for k, v in response.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                length = response.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def cut(self, pattern: str | None) -> None:
        self._pattern = pattern

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def cutting_proxy(s3_endpoint):
    """A :class:`CuttingProxy` in front of the session's S3 server."""
    proxy = CuttingProxy(s3_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on 127.0.0.1 for the session (see tests/labelstudio_server.py).

    Gives a :class:`labelstudio_server.LabelStudioServer`: ``url``; ``admin`` (a ``LabelStudioUser``
    with ``email``, ``password``, ``id`` and a personal access ``token``); ``legacy_token`` (the
    admin's, enabled for the organisation); ``annotators`` (two more users with their own tokens);
    ``secret_key`` (signs the server's JWTs). The first use on a clean clone installs Label Studio
    into .venv-labelstudio (~2 min); later sessions start it in ~10 s.
    """
    from labelstudio_server import start_label_studio

    server = start_label_studio(tmp_path_factory.mktemp("label-studio") / "data")
    yield server
    server.stop()


@pytest.fixture
def label_studio_client(label_studio):
    """A :class:`mlci.labelstudio.LabelStudioClient` acting as the admin, by personal access token."""
    from mlci.labelstudio import LabelStudioClient

    return LabelStudioClient(label_studio.url, label_studio.admin.token, timeout=30.0)

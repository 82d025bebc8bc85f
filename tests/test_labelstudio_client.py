"""LabelStudioClient against a real Label Studio 1.23 (the ``label_studio`` fixture) and real bad servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from labelstudio_server import free_port
from mlci.config import Settings
from mlci.labelstudio import (
    LEGACY_TOKEN,
    PERSONAL_ACCESS_TOKEN,
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioRequestError,
    LabelStudioUnreachableError,
    NotLabelStudioError,
    ProjectNotFoundError,
)

pytestmark = pytest.mark.labelstudio

LABEL_CONFIG = """<View>
  <Video name="video" value="$video"/>
  <Choices name="concepts" toName="video" choice="multiple">
    <Choice value="holiday"/>
    <Choice value="gift_giving"/>
  </Choices>
</View>"""


def choices(*values: str) -> list[dict]:
    return [{"from_name": "concepts", "to_name": "video", "type": "choices", "value": {"choices": list(values)}}]


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    """Neither the message, the repr nor any chained cause shows a secret."""
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    for secret in secrets:
        assert all(secret not in text for text in texts), secret[:8]


def new_project(client: LabelStudioClient, prefix: str = "mlci-test") -> dict:
    return client.create_project(f"{prefix}-{uuid.uuid4().hex[:8]}", LABEL_CONFIG)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def expired_access_token(secret_key: str, user_id: int) -> str:
    """An HS256 access token for ``user_id``, signed with the server's key, expired a minute ago."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"token_type": "access", "exp": now - 60, "iat": now - 360,
                                 "jti": uuid.uuid4().hex, "user_id": user_id}).encode())
    signature = hmac.new(secret_key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class FakeWebServer:
    """An HTTP server on 127.0.0.1 that is not Label Studio: answers every request with ``status``."""

    def __init__(self, status: int, content_type: str, body: bytes):
        owner = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(f"{self.command} {self.path}")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def web_page():
    server = FakeWebServer(200, "text/html", b"<html><body>Welcome to nginx!</body></html>")
    yield server
    server.close()


@pytest.fixture
def unavailable():
    server = FakeWebServer(503, "application/json", b'{"detail": "upstream down"}')
    yield server
    server.close()


# -- authentication ---------------------------------------------------------------------------------

def test_whoami_with_a_personal_access_token(label_studio, label_studio_client):
    assert label_studio_client.token_kind == PERSONAL_ACCESS_TOKEN
    me = label_studio_client.whoami()
    assert (me["id"], me["email"]) == (label_studio.admin.id, "admin@mlci.test")


def test_whoami_with_a_legacy_token(label_studio):
    client = LabelStudioClient(label_studio.url, label_studio.legacy_token)
    assert client.token_kind == LEGACY_TOKEN
    assert client.whoami()["id"] == label_studio.admin.id


def test_each_annotator_has_their_own_token(label_studio):
    ids = [LabelStudioClient(label_studio.url, a.token).whoami()["id"] for a in label_studio.annotators]
    assert ids == [a.id for a in label_studio.annotators]
    assert len({label_studio.admin.id, *ids}) == 3


def test_an_expired_access_token_is_renewed_once(label_studio, label_studio_client, monkeypatch):
    client = label_studio_client
    client.whoami()
    expired = expired_access_token(label_studio.secret_key, label_studio.admin.id)
    # The server itself refuses it: this is a real expired token, not a stand-in.
    refused = requests.get(f"{label_studio.url}/api/current-user/whoami",
                           headers={"Authorization": f"Bearer {expired}"}, timeout=10)
    assert refused.status_code == 401
    refreshes = []
    real_refresh = client._refresh
    monkeypatch.setattr(client, "_refresh", lambda: refreshes.append(1) or real_refresh())
    client._access_token = expired  # as if five minutes had passed since the last renewal

    assert client.whoami()["id"] == label_studio.admin.id
    assert len(refreshes) == 1 and client._access_token not in (None, expired)
    client.whoami()
    assert len(refreshes) == 1  # the renewed token is kept


@pytest.mark.parametrize("kind", ["personal access token", "legacy token"])
def test_a_rejected_token_raises_auth_error_at_once_without_showing_it(label_studio, kind, caplog):
    if kind == "personal access token":  # a real token with its signature changed
        header, payload, signature = label_studio.admin.token.split(".")
        token = f"{header}.{payload}.{signature[::-1]}"
    else:
        token = "0123456789abcdef0123456789abcdef01234567"
    client = LabelStudioClient(label_studio.url, token, max_attempts=3, backoff=5.0)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(LabelStudioAuthError, match=f"rejected the {kind}") as info:
        client.whoami()
    assert time.monotonic() - started < 4.0  # not retried (a retry would sleep 5 s)
    assert_no_secret(info.value, token)
    assert token not in caplog.text and token not in repr(client)


# -- bad addresses ----------------------------------------------------------------------------------

def test_nothing_listening_is_unreachable_after_the_configured_attempts(caplog):
    port = free_port()
    token = "f" * 40
    client = LabelStudioClient(f"http://127.0.0.1:{port}", token, timeout=1.0, max_attempts=3, backoff=0.05)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mlci.labelstudio"), \
            pytest.raises(LabelStudioUnreachableError) as info:
        client.whoami()
    assert time.monotonic() - started < 3.0
    assert info.value.attempts == 3
    assert str(info.value) == (
        f"Label Studio at http://127.0.0.1:{port} did not answer after 3 attempt(s) (Connection refused): "
        "check that the server is running and MLCI_LABEL_STUDIO_URL points at it"
    )
    assert len([r for r in caplog.records if "attempt" in r.getMessage()]) == 2
    assert_no_secret(info.value, token)


def test_a_password_in_the_url_is_not_shown():
    client = LabelStudioClient(f"http://me:hunter2@127.0.0.1:{free_port()}", "f" * 40, timeout=1.0,
                               max_attempts=1)
    with pytest.raises(LabelStudioUnreachableError) as info:
        client.whoami()
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(client)
    assert "http://me:***@127.0.0.1" in str(info.value)


@pytest.mark.parametrize("token", ["a" * 40, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ4IjoxfQ.c2ln"])
def test_a_web_page_is_not_label_studio(web_page, token):
    client = LabelStudioClient(web_page.url, token, max_attempts=3, backoff=0.01)
    with pytest.raises(NotLabelStudioError, match="does not answer like a Label Studio server") as info:
        client.whoami()
    assert "text/html, not JSON" in str(info.value)
    assert len(web_page.requests) == 1  # a wrong address is not retried
    assert_no_secret(info.value, token)


def test_5xx_is_retried_for_reads_but_a_post_is_sent_once(unavailable):
    client = LabelStudioClient(unavailable.url, "b" * 40, max_attempts=3, backoff=0.01)
    with pytest.raises(LabelStudioUnreachableError, match=r"after 3 attempt\(s\) \(HTTP 503\)"):
        client.get_project(1)
    assert len(unavailable.requests) == 3
    unavailable.requests.clear()
    # An import that failed with 503 may still have created tasks: never sent twice.
    with pytest.raises(LabelStudioError, match="HTTP 503: upstream down"):
        client.import_tasks(1, [{"data": {"video": "x"}}])
    assert unavailable.requests == ["POST /api/projects/1/import?return_task_ids=true"]


# -- projects ---------------------------------------------------------------------------------------

def test_create_find_and_get_a_project(label_studio_client):
    client = label_studio_client
    project = new_project(client)
    # Label Studio's title filter matches substrings: a longer title must not be found instead.
    longer = client.create_project(project["title"] + "-longer", LABEL_CONFIG, description="another")
    assert client.find_project(project["title"])["id"] == project["id"]
    assert client.find_project(longer["title"])["id"] == longer["id"]
    assert client.find_project(project["title"][:-1]) is None
    got = client.get_project(project["id"])
    assert (got["title"], got["label_config"]) == (project["title"], LABEL_CONFIG)
    assert client.get_project(longer["id"])["description"] == "another"


def test_a_missing_project_is_named(label_studio_client):
    client = label_studio_client
    for call in (lambda: client.get_project(987654), lambda: list(client.iter_tasks(987654)),
                 lambda: client.import_tasks(987654, [{"data": {"video": "x"}}])):
        with pytest.raises(ProjectNotFoundError, match="no project 987654 in Label Studio at http://127.0.0.1:"):
            call()


def test_a_refused_request_carries_label_studios_message(label_studio, label_studio_client):
    with pytest.raises(LabelStudioRequestError) as info:
        label_studio_client.create_project("broken", "<View><Choices")
    assert info.value.status == 400
    assert str(info.value).startswith(f"Label Studio at {label_studio.url} refused POST /api/projects/ with HTTP 400: "
                                      "Validation error - label_config: ")
    assert_no_secret(info.value, label_studio.admin.token)


# -- tasks and annotations --------------------------------------------------------------------------

def test_import_returns_the_ids_in_order_and_iter_tasks_pages_through_them(label_studio_client, monkeypatch):
    client = label_studio_client
    project = new_project(client)
    tasks = [{"data": {"video": f"https://clips.mlci.invalid/{i:03d}.mp4", "clip": i}} for i in range(25)]
    ids = client.import_tasks(project["id"], tasks)
    assert len(ids) == 25 and ids == sorted(ids) and len(set(ids)) == 25
    assert client.import_tasks(project["id"], []) == []

    pages = []
    real_send = client._send
    monkeypatch.setattr(client, "_send", lambda method, path, **kw: (
        pages.append(kw["params"]["page"]) if path == "/api/tasks/" else None) or real_send(method, path, **kw))
    listed = list(client.iter_tasks(project["id"], page_size=10))
    assert pages == [1, 2, 3]
    assert [t["id"] for t in listed] == ids
    assert [t["data"] for t in listed] == [t["data"] for t in tasks]
    assert all(t["annotations"] == [] for t in listed)
    pages.clear()
    assert len(list(client.iter_tasks(project["id"], page_size=5))) == 25 and pages == [1, 2, 3, 4, 5]


def test_two_annotators_one_cancels_one_updates(label_studio, label_studio_client):
    first, second = (LabelStudioClient(label_studio.url, a.token) for a in label_studio.annotators)
    one, two = label_studio.annotators
    project = new_project(label_studio_client)
    t1, t2, t3 = label_studio_client.import_tasks(project["id"], [{"data": {"video": f"v{i}.mp4"}} for i in range(3)])

    a1 = first.create_annotation(t1, choices("holiday"))
    a2 = second.create_annotation(t1, choices("gift_giving"))
    a3 = second.create_annotation(t2, [], was_cancelled=True)
    a4 = first.create_annotation(t2, choices("holiday", "gift_giving"))
    assert (a1["completed_by"], a3["was_cancelled"]) == (one.id, True)
    first.update_annotation(a1["id"], choices("gift_giving"))

    listed = {t["id"]: t for t in label_studio_client.iter_tasks(project["id"], page_size=2)}
    assert list(listed) == [t1, t2, t3]

    def seen(task_id):
        return sorted((a["id"], a["completed_by"], a["was_cancelled"], a["result"]) for a in listed[task_id]["annotations"])

    assert seen(t1) == [(a1["id"], one.id, False, choices("gift_giving")),
                        (a2["id"], two.id, False, choices("gift_giving"))]
    assert seen(t2) == [(a3["id"], two.id, True, []), (a4["id"], one.id, False, choices("holiday", "gift_giving"))]
    assert listed[t3]["annotations"] == []
    updated = next(a for a in listed[t1]["annotations"] if a["id"] == a1["id"])
    assert updated["updated_at"] > updated["created_at"]
    assert set(updated) == {"id", "completed_by", "was_cancelled", "result", "created_at", "updated_at"}


def test_annotating_a_missing_task_is_refused_with_the_reason(label_studio_client):
    with pytest.raises(LabelStudioRequestError, match="HTTP 404: No Task matches the given query"):
        label_studio_client.create_annotation(987654, choices("holiday"))


# -- configuration and repr -------------------------------------------------------------------------

def test_settings_build_the_client_and_never_show_the_token(monkeypatch):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    monkeypatch.setenv("MLCI_LABEL_STUDIO_URL", "http://labels.example:8080")
    monkeypatch.setenv("MLCI_LABEL_STUDIO_TOKEN", token)
    settings = Settings(_env_file=None)
    assert token not in repr(settings) and token not in str(settings)
    client = LabelStudioClient.from_settings(settings, timeout=5.0)
    assert (client.url, client.timeout, client.token_kind) == ("http://labels.example:8080", 5.0, PERSONAL_ACCESS_TOKEN)
    assert repr(client) == ("LabelStudioClient(url='http://labels.example:8080', token=<personal access token>, "
                            "timeout=5.0, max_attempts=3)")
    monkeypatch.delenv("MLCI_LABEL_STUDIO_TOKEN")
    with pytest.raises(LabelStudioError, match="set MLCI_LABEL_STUDIO_TOKEN$"):
        LabelStudioClient.from_settings(Settings(_env_file=None))


def test_the_test_server_listens_on_loopback_only(label_studio):
    # /proc/net/tcp lists listening sockets (state 0A) as hex "address:port"; 0100007F is 127.0.0.1.
    port = int(label_studio.url.rsplit(":", 1)[1])
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    listening = [local for _, local, _, state, *_ in rows if state == "0A" and int(local.split(":")[1], 16) == port]
    assert listening == [f"0100007F:{port:04X}"]

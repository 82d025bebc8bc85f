"""A small client for Label Studio's REST API (checked against Label Studio 1.23): projects, tasks, annotations.

Authentication takes either kind of token Label Studio hands out:

* a **personal access token** (the default since 1.17; the only kind a new organisation accepts):
  a JWT *refresh* token. It is exchanged at ``/api/token/refresh/`` for an access token that lives
  5 minutes and is sent as ``Authorization: Bearer <access>``; when Label Studio answers 401 the
  access token is renewed once and the request sent again;
* a **legacy token** (40 hex characters, sent as ``Authorization: Token <token>``), accepted only
  when the organisation has legacy tokens enabled.

The kind is told from the token itself (a JWT has three base64 parts). Neither token appears in any
message, log line or repr.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import requests

from mlci.labelstudio.exceptions import (
    AmbiguousProjectError,
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioRequestError,
    LabelStudioUnreachableError,
    NotLabelStudioError,
    ProjectNotFoundError,
)
from mlci.redact import REDACTED, redact_url

__all__ = ["LabelStudioClient", "PERSONAL_ACCESS_TOKEN", "LEGACY_TOKEN", "token_kind"]

logger = logging.getLogger(__name__)

PERSONAL_ACCESS_TOKEN = "personal access token"
LEGACY_TOKEN = "legacy token"

#: Answers worth another attempt: Label Studio restarting behind a proxy, or asking us to slow down.
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Methods Label Studio applies the same way twice; the others (POST) are retried only when the
#: request certainly never reached the server, or a retried import would create its tasks twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
#: Fields of an annotation that :meth:`LabelStudioClient.iter_tasks` keeps.
ANNOTATION_FIELDS = ("id", "completed_by", "was_cancelled", "result", "created_at", "updated_at")
#: Fields of a task that :meth:`LabelStudioClient.iter_tasks` keeps (besides its annotations).
TASK_FIELDS = ("id", "data", "meta", "created_at", "updated_at")


def token_kind(token: str) -> str:
    """``PERSONAL_ACCESS_TOKEN`` if ``token`` is a JWT (header.payload.signature), else ``LEGACY_TOKEN``."""
    parts = token.split(".")
    if len(parts) != 3:
        return LEGACY_TOKEN
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return LEGACY_TOKEN
    return PERSONAL_ACCESS_TOKEN if isinstance(header, dict) and "alg" in header else LEGACY_TOKEN


class LabelStudioClient:
    """Projects, tasks and annotations of one Label Studio server, as one user.

    Parameters
    ----------
    url : str
        Address of Label Studio, e.g. ``http://127.0.0.1:8080`` (a trailing ``/`` is ignored).
    token : str
        A personal access token or a legacy token of the user to act as (see the module docstring).
    timeout : float, default=30.0
        Seconds each attempt waits for a connection and, separately, for the answer.
    max_attempts : int, default=3
        Attempts per request when the server cannot be reached or answers 5xx/429, with exponential
        backoff between them. A POST is attempted again only when its connection was never made.
    backoff : float, default=0.5
        Seconds before the second attempt; doubled before each following one (at most 8 s).

    Examples
    --------
    >>> client = LabelStudioClient("http://127.0.0.1:8080", token)     # doctest: +SKIP
    >>> project = client.create_project("mlci batch 7", label_config)  # doctest: +SKIP
    >>> client.import_tasks(project["id"], [{"data": {"video": url}}])  # doctest: +SKIP
    [1]
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, max_attempts: int = 3,
                 backoff: float = 0.5):
        self.url = url
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._token = token
        self._access_token: str | None = None
        self._session = requests.Session()

    @classmethod
    def from_settings(cls, settings, **kwargs: Any) -> LabelStudioClient:
        """A client for ``settings.label_studio_url`` and ``settings.label_studio_token`` (both required)."""
        if not settings.label_studio_url or settings.label_studio_token is None:
            missing = [name for name, value in (("MLCI_LABEL_STUDIO_URL", settings.label_studio_url),
                                                ("MLCI_LABEL_STUDIO_TOKEN", settings.label_studio_token))
                       if not value]
            raise LabelStudioError(f"Label Studio is not configured: set {' and '.join(missing)}")
        return cls(settings.label_studio_url, settings.label_studio_token.get_secret_value(), **kwargs)

    def __repr__(self) -> str:
        return (f"LabelStudioClient(url={self._shown_url!r}, token=<{self.token_kind}>, "
                f"timeout={self.timeout!r}, max_attempts={self.max_attempts!r})")

    @property
    def token_kind(self) -> str:
        """``"personal access token"`` or ``"legacy token"``."""
        return token_kind(self._token)

    @property
    def _base(self) -> str:
        return self.url.rstrip("/")

    @property
    def _shown_url(self) -> str:
        return redact_url(self._base)

    # -- public API -------------------------------------------------------------------------------

    def whoami(self) -> dict:
        """The token's user (``{"id": ..., "email": ..., ...}``); proves that URL and token work."""
        user = self._request("GET", "/api/current-user/whoami")
        if not isinstance(user, dict) or "id" not in user:
            raise NotLabelStudioError(self._shown_url, "its whoami answer has no user id")
        return user

    def find_project(self, title: str) -> dict | None:
        """The project titled exactly ``title``, or None; :class:`AmbiguousProjectError` if several are."""
        found = []
        page = 1
        while True:
            # Label Studio's title filter matches substrings, case-insensitively: keep exact titles.
            body = self._request("GET", "/api/projects/", params={"title": title, "page": page, "page_size": 100})
            found += [p for p in body["results"] if p.get("title") == title]
            # "next" is an absolute URL built from Label Studio's HOST setting: follow page numbers instead.
            if not body.get("next"):
                break
            page += 1
        if len(found) > 1:
            raise AmbiguousProjectError(self._shown_url, title, sorted(p["id"] for p in found))
        return found[0] if found else None

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        """Create a project; returns it as Label Studio does (``id``, ``title``, ``label_config``, ...)."""
        return self._request("POST", "/api/projects/",
                             payload={"title": title, "label_config": label_config, "description": description})

    def get_project(self, project_id: int) -> dict:
        """The project ``project_id`` (with ``label_config``); :class:`ProjectNotFoundError` if absent."""
        return self._request("GET", f"/api/projects/{int(project_id)}/", project_id=int(project_id))

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Create ``tasks`` (``{"data": {...}, "predictions": [...]}``) in one request; their ids, in order.

        Label Studio's import answers with the new ids when asked (``return_task_ids=true``). The
        request is sent once: a connection lost after sending raises, and the caller decides
        (re-reading the project's tasks tells whether they were created).
        """
        if not tasks:
            return []
        body = self._request("POST", f"/api/projects/{int(project_id)}/import", params={"return_task_ids": "true"},
                             payload=list(tasks), project_id=project_id)
        ids = body.get("task_ids")
        if not isinstance(ids, list) or len(ids) != len(tasks):
            got = "no task ids" if not isinstance(ids, list) else f"{len(ids)} task ids"
            raise LabelStudioError(
                f"Label Studio at {self._shown_url} imported {body.get('task_count')} of {len(tasks)} tasks into "
                f"project {project_id} and returned {got}: check the project's tasks before importing again"
            )
        return [int(i) for i in ids]

    def iter_tasks(self, project_id: int, *, page_size: int = 100) -> Iterator[dict]:
        """Every task of the project, oldest first, one page of ``page_size`` per request.

        Each task is ``{"id", "data", "meta", "created_at", "updated_at", "annotations"}`` and each
        annotation ``{"id", "completed_by" (user id), "was_cancelled", "result", "created_at",
        "updated_at"}``; drafts and predictions are left out.
        """
        page = 1
        seen = 0
        while True:
            try:
                body = self._request(
                    "GET", "/api/tasks/", project_id=project_id,
                    params={"project": int(project_id), "page": page, "page_size": page_size, "fields": "all"},
                )
            except LabelStudioRequestError as exc:
                # Tasks deleted while paging can leave the last page empty: Label Studio says 404 "Invalid page".
                if exc.status == 404 and page > 1:
                    return
                raise
            tasks = body["tasks"]
            for task in tasks:
                yield _task_record(task)
            seen += len(tasks)
            if len(tasks) < page_size or seen >= body.get("total", 0):
                return
            page += 1

    def create_annotation(self, task_id: int, result: list[dict], *, was_cancelled: bool = False) -> dict:
        """Annotate task ``task_id`` as the token's user; ``was_cancelled`` records a skipped task."""
        return self._request("POST", f"/api/tasks/{int(task_id)}/annotations/",
                             payload={"result": result, "was_cancelled": was_cancelled})

    def update_annotation(self, annotation_id: int, result: list[dict]) -> dict:
        """Replace the result of annotation ``annotation_id`` (its ``updated_at`` moves)."""
        return self._request("PATCH", f"/api/annotations/{int(annotation_id)}/", payload={"result": result})

    # -- HTTP -------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict | None = None, payload: Any = None,
                 project_id: int | None = None) -> Any:
        """One API call: authenticated, retried, its answer parsed; every failure a one-line error."""
        renewed = False
        while True:
            response = self._send(method, path, params=params, payload=payload, headers=self._auth_header())
            if response.status_code == 401 and self.token_kind == PERSONAL_ACCESS_TOKEN and not renewed:
                # Access tokens live 5 minutes: renew once, then a second 401 is a real refusal.
                self._access_token = None
                renewed = True
                continue
            return self._answer(method, path, response, project_id=project_id)

    def _auth_header(self) -> dict[str, str]:
        if self.token_kind == LEGACY_TOKEN:
            return {"Authorization": f"Token {self._token}"}
        if self._access_token is None:
            self._access_token = self._refresh()
        return {"Authorization": f"Bearer {self._access_token}"}

    def _refresh(self) -> str:
        """A new access token for the personal access token."""
        path = "/api/token/refresh/"
        response = self._send("POST", path, payload={"refresh": self._token}, headers={})
        if response.status_code == 401:
            raise LabelStudioAuthError(self._shown_url, PERSONAL_ACCESS_TOKEN, self._detail(response))
        body = self._answer("POST", path, response)
        if not isinstance(body, dict) or not isinstance(body.get("access"), str):
            raise NotLabelStudioError(self._shown_url, f"POST {path} returned no access token")
        return body["access"]

    def _send(self, method: str, path: str, *, params: dict | None = None, payload: Any = None,
              headers: dict[str, str]) -> requests.Response:
        """The response to the first attempt that gets a non-retryable answer, else Unreachable."""
        url = self._base + path
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                delay = min(self.backoff * 2 ** (attempt - 2), 8.0)
                logger.warning("Label Studio %s %s: %s; attempt %d of %d in %.1f s", method, path, reason,
                               attempt, self.max_attempts, delay)
                time.sleep(delay)
            try:
                response = self._session.request(method, url, params=params, json=payload, headers=headers,
                                                 timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectionError as exc:
                reason = _connection_reason(exc)
                # ConnectTimeout and refused connections never reached the server; anything else may have.
                never_sent = isinstance(exc, requests.exceptions.ConnectTimeout) or "refused" in reason.lower()
                if method in _IDEMPOTENT or never_sent:
                    continue
                raise LabelStudioUnreachableError(self._shown_url, attempt, f"{reason} during {method} {path}; "
                                                  "not sent again, it may have been applied") from None
            except requests.exceptions.Timeout:
                reason = f"no answer within {self.timeout:g} s"
                if method in _IDEMPOTENT:
                    continue
                raise LabelStudioUnreachableError(self._shown_url, attempt, f"{reason} to {method} {path}; "
                                                  "not sent again, it may have been applied") from None
            if response.status_code in _RETRY_STATUS and (method in _IDEMPOTENT or response.status_code == 429):
                reason = f"HTTP {response.status_code}"
                continue
            return response
        raise LabelStudioUnreachableError(self._shown_url, self.max_attempts, reason)

    def _answer(self, method: str, path: str, response: requests.Response, *,
                project_id: int | None = None) -> Any:
        """The JSON body of a 2xx answer; the matching error for anything else."""
        status = response.status_code
        body = _json_or_none(response)
        if body is None and status != 204:
            project_path = f"/api/projects/{project_id}/"
            if status == 404 and project_id is not None and path != project_path:
                # The import endpoint answers a missing project with Label Studio's HTML 404 page, not
                # JSON: ask for the project itself, which raises ProjectNotFoundError if it is missing.
                self.get_project(project_id)
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise NotLabelStudioError(self._shown_url, f"{method} {path} answered HTTP {status} with {kind}, not JSON")
        if 200 <= status < 300:
            return body
        detail = self._detail(response)
        if status == 401:
            raise LabelStudioAuthError(self._shown_url, self.token_kind, detail)
        if status == 404 and project_id is not None and "project" in detail.lower():
            raise ProjectNotFoundError(self._shown_url, int(project_id))
        if status >= 500:
            raise LabelStudioError(f"Label Studio at {self._shown_url} failed on {method} {path} with HTTP {status}: "
                                   f"{detail} (see the server's log)")
        raise LabelStudioRequestError(self._shown_url, method, path, status, detail)

    def _detail(self, response: requests.Response) -> str:
        """Label Studio's own explanation of an error, on one line, without our tokens."""
        body = _json_or_none(response)
        if isinstance(body, dict):
            parts = [str(body["detail"])] if body.get("detail") else []
            errors = body.get("validation_errors")
            if isinstance(errors, dict):
                parts += [f"{field}: {'; '.join(map(str, v)) if isinstance(v, list) else v}"
                          for field, v in errors.items()]
            text = " - ".join(parts) or json.dumps(body)[:300]
        else:
            text = response.text[:300] or f"HTTP {response.status_code}"
        return self._scrub(" ".join(text.split()))

    def _scrub(self, text: str) -> str:
        for secret in (self._token, self._access_token):
            if secret:
                text = text.replace(secret, REDACTED)
        return text


def _json_or_none(response: requests.Response) -> Any:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _connection_reason(exc: Exception) -> str:
    """Why a connection failed, briefly ("Connection refused"), without the URL requests puts around it."""
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                  "Connection reset by peer", "Remote end closed connection", "timed out"):
        if known in text:
            return known
    return type(exc).__name__


def _task_record(task: dict) -> dict:
    record = {name: task.get(name) for name in TASK_FIELDS}
    record["annotations"] = [
        {**{name: a.get(name) for name in ANNOTATION_FIELDS}, "completed_by": _user_id(a.get("completed_by"))}
        for a in task.get("annotations") or []
    ]
    return record


def _user_id(completed_by: Any) -> int | None:
    # Label Studio sends the id; some versions and exports send the user as {"id": ..., "email": ...}.
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    return None if completed_by is None else int(completed_by)
